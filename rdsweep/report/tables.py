"""The report's text tables: families.md (R / D / ELBO per curve and knob value, and the spread
over seeds where a setting has several runs), the comparison with a published table
(rdsweep.reference), and markdown."""

from __future__ import annotations

from importlib import resources
from typing import Any, Dict, List, Tuple

import numpy as np
import pandas as pd

from rdsweep.status import Status
import rdsweep.report.settings as settings
from rdsweep.report.runs import ReportError


def _records(table: pd.DataFrame) -> List[Dict[str, Any]]:
    return table.to_dict("records")


def _by_curve_and_knob(table: pd.DataFrame) -> Dict[Tuple[str, str], pd.DataFrame]:
    """(curve label, knob label) -> its runs, in the table's order: the runs of one setting."""
    groups: Dict[Tuple[str, str], List[int]] = {}
    for index, row in zip(table.index, _records(table)):
        groups.setdefault((settings.curve_label(row, table), settings.knob_label(row, table)),
                          []).append(index)
    return {key: table.loc[rows] for key, rows in groups.items()}


def family_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per curve (family and settings other than the knob), one column per knob value
    (beta=.., sigma=..), each cell "R / D / ELBO" of the completed runs of that setting (means,
    "(n runs)" if several seeds), else the statuses of its runs."""
    order = table.sort_values(["objective", *settings.of(table)[1]], kind="stable")
    order.attrs = table.attrs

    def cell(runs: pd.DataFrame) -> str:
        done = runs[runs.status == Status.COMPLETED]
        if done.empty:
            return ", ".join(sorted(set(runs.status)))
        text = " / ".join(f"{done[q].mean():.1f}" for q in ("rate", "distortion", "elbo"))
        return text + (f" ({len(done)} runs)" if len(done) > 1 else "")

    groups = _by_curve_and_knob(order)
    knobs = list(dict.fromkeys(knob for _, knob in groups))
    curves = list(dict.fromkeys(settings.curve_label(r, table) for r in _records(table)))
    cells = {key: cell(runs) for key, runs in groups.items()}
    return pd.DataFrame([{"family, settings": curve, **{k: cells.get((curve, k)) for k in knobs}}
                         for curve in curves])


QUANTITIES = ("rate", "distortion", "elbo", "iwae")  # the test bounds a table summarises


def spread_table(table: pd.DataFrame) -> pd.DataFrame:
    """The settings with several completed runs (seeds): their count, and for each of QUANTITIES
    "mean (min to max)" over those runs, two decimals."""
    done = table[table.status == Status.COMPLETED]
    done.attrs = table.attrs
    rows = []
    for (curve, knob), runs in _by_curve_and_knob(done).items():
        if len(runs) > 1:
            rows.append({"setting": f"{curve} {knob}", "runs": len(runs),
                         **{q: f"{runs[q].mean():.2f} ({runs[q].min():.2f} to "
                               f"{runs[q].max():.2f})" for q in QUANTITIES}})
    return pd.DataFrame(rows, columns=["setting", "runs", *QUANTITIES])


def reference_names() -> List[str]:
    """The reference tables that --compare accepts: the CSV files of rdsweep.reference."""
    files = resources.files("rdsweep.reference").iterdir()
    return sorted(f.name[:-len(".csv")] for f in files if f.name.endswith(".csv"))


def load_reference(name: str) -> pd.DataFrame:
    """A reference table (what each row matches, then its QUANTITIES); ReportError for an
    unknown name."""
    if name not in reference_names():
        raise ReportError(f"unknown --compare {name!r}; valid names: "
                          + ", ".join(reference_names()))
    with _reference_file(name).open() as f:
        return pd.read_csv(f, comment="#", dtype={"family": str})


def reference_source(name: str) -> str:
    """Where a reference table's numbers come from: its leading "#" lines, as one paragraph."""
    lines = _reference_file(name).read_text().splitlines()
    comments = [line[1:].strip() for line in lines[:next(
        (i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))]]
    return " ".join(comments)


def _reference_file(name: str) -> Any:
    return resources.files("rdsweep.reference").joinpath(f"{name}.csv")


def compare_with(table: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Per reference row and per setting of ours that matches it: the reference's quantities
    (its columns among QUANTITIES; an empty cell: no reference number), ours (completed runs,
    mean over seeds) and ours - reference; NaN and runs = 0 where we have no such run. A
    reference row names what it matches in its other columns (e.g. family, objective, beta):
    our runs equal there, and apart in every other setting column."""
    quantities = [c for c in reference.columns if c in QUANTITIES]
    keys = [c for c in reference.columns if c not in QUANTITIES]
    done = table[table.status == Status.COMPLETED]
    apart = [c for c in ["family", *settings.of(table)[0]] if c not in keys]
    rows = []
    for ref in reference.to_dict("records"):
        match = np.ones(len(done), bool)
        for key in keys:
            match &= _equal(settings.values_of(done, key), ref[key]).to_numpy()
        ours = done[match]
        groups = list(ours.groupby(apart, dropna=False, sort=False)) if apart and len(
            ours) else []
        for values, runs in groups or [((np.nan,) * len(apart), ours)]:
            values = values if isinstance(values, tuple) else (values,)
            row = {key: ref[key] for key in keys} | dict(zip(apart, values))
            row["runs"] = len(runs)
            for q in quantities:
                mean = runs[q].mean() if len(runs) else np.nan
                row |= {f"{q}_paper": float(ref[q]), f"{q}_ours": mean,
                        f"{q}_diff": mean - float(ref[q])}
            rows.append(row)
    out = pd.DataFrame(rows)
    # shown: the columns that part runs of one family (the rest is the family's own)
    out = out.drop(columns=[c for c in apart if c != "family" and not (
        out.groupby("family", dropna=False)[c].nunique() > 1).any()])
    return out[[c for c in out.columns if c in keys]
               + [c for c in out.columns if c not in keys]]


def comparison_markdown(comparison: pd.DataFrame) -> str:
    """The comparison as markdown: the compared numbers to two decimals, the other columns as
    the labels write settings (0.0005, not 0.00), "missing" where a number is absent."""
    numbers = tuple(f"{q}_{side}" for q in QUANTITIES for side in ("paper", "ours", "diff"))
    shown = comparison.copy()
    for column in shown.columns:
        if column not in numbers and column != "runs":
            shown[column] = [settings.show(v) if settings.present(v) else None
                             for v in shown[column]]
    return markdown(shown, missing="missing", digits=2)


def _equal(column: pd.Series, value: Any) -> pd.Series:
    """column == value, numbers compared with np.isclose."""
    numbers = pd.to_numeric(column, errors="coerce")
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return pd.Series(np.isclose(numbers, float(value)), index=column.index)
    return column.astype(str) == str(value)


def markdown(table: pd.DataFrame, missing: str = "", digits: int = 1) -> str:
    """A markdown table; floats to `digits` decimals, NaN and None as `missing`."""

    def cell(value: Any) -> str:
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            return missing
        return f"{value:.{digits}f}" if isinstance(value, (float, np.floating)) else str(value)

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |"
              for row in table.itertuples(index=False)]
    return "\n".join(lines)
