"""The report's text tables: families.md (R / D / ELBO per family and setting, and the spread
over seeds where a setting has several runs), the comparison with the paper's numbers
(rdsweep.reference), and markdown."""

from __future__ import annotations

from importlib import resources
from typing import Any, List

import numpy as np
import pandas as pd

from rdsweep.lifecycle import Status
from rdsweep.report.runs import ReportError, setting


def _with_settings(table: pd.DataFrame) -> pd.DataFrame:
    """table ordered by objective, beta and sigma, with a `setting` column (β=.. / σ=..)."""
    ordered = table.sort_values(["objective", "beta", "sigma"], kind="stable")
    return ordered.assign(setting=[setting(row) for row in ordered.itertuples()])


def family_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per family, one column per setting (β=.. / σ=..), each cell "R / D / ELBO" of the
    completed runs (means, "(n runs)" if several seeds), else the statuses of its runs."""
    ordered = _with_settings(table)

    def cell(runs: pd.DataFrame) -> str:
        done = runs[runs.status == Status.COMPLETED]
        if done.empty:
            return ", ".join(sorted(set(runs.status)))
        text = " / ".join(f"{done[q].mean():.1f}" for q in ("rate", "distortion", "elbo"))
        return text + (f" ({len(done)} runs)" if len(done) > 1 else "")

    cells = {key: cell(runs) for key, runs in ordered.groupby(["family", "setting"], sort=False)}
    settings = list(dict.fromkeys(ordered.setting))
    return pd.DataFrame([{"family": family, **{s: cells.get((family, s)) for s in settings}}
                         for family in dict.fromkeys(table.family)])


SPREAD = ("rate", "distortion", "elbo", "iwae")


def spread_table(table: pd.DataFrame) -> pd.DataFrame:
    """The (family, setting) pairs with several completed runs (seeds): their count, and for
    each of SPREAD "mean (min to max)" over those runs, two decimals."""
    done = _with_settings(table[table.status == Status.COMPLETED])
    rows = []
    for (family, where), runs in done.groupby(["family", "setting"], sort=False):
        if len(runs) > 1:
            rows.append({"family": family, "setting": where, "runs": len(runs),
                         **{q: f"{runs[q].mean():.2f} ({runs[q].min():.2f} to "
                               f"{runs[q].max():.2f})" for q in SPREAD}})
    return pd.DataFrame(rows, columns=["family", "setting", "runs", *SPREAD])


def reference_names() -> List[str]:
    """The reference tables that --compare accepts: the CSV files of rdsweep.reference."""
    files = resources.files("rdsweep.reference").iterdir()
    return sorted(f.name[:-len(".csv")] for f in files if f.name.endswith(".csv"))


def load_reference(name: str) -> pd.DataFrame:
    """A reference table (family, rate, distortion, elbo); ReportError for an unknown name."""
    if name not in reference_names():
        raise ReportError(f"unknown --compare {name!r}; valid names: "
                          + ", ".join(reference_names()))
    with resources.files("rdsweep.reference").joinpath(f"{name}.csv").open() as f:
        return pd.read_csv(f, comment="#", dtype={"family": str})


def compare_with(table: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Per reference family: its (R, D, ELBO), ours (completed beta-objective runs at beta = 1,
    mean over seeds) and ours - reference; NaN and runs = 0 where we have no such run."""
    ours = table[(table.status == Status.COMPLETED) & (table.objective == "beta")
                 & np.isclose(table.beta, 1.0)]
    quantities = ["rate", "distortion", "elbo"]
    means = ours.groupby("family")[quantities].mean()
    out = reference[["family"]].copy()
    out["runs"] = out.family.map(ours.family.value_counts()).fillna(0).astype(int)
    for q in quantities:
        out[f"{q}_paper"] = reference[q].astype(float)
        out[f"{q}_ours"] = out.family.map(means[q]).astype(float)
        out[f"{q}_diff"] = out[f"{q}_ours"] - out[f"{q}_paper"]
    return out


def markdown(table: pd.DataFrame, missing: str = "") -> str:
    """A markdown table; floats to one decimal, NaN and None as `missing`."""

    def cell(value: Any) -> str:
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            return missing
        return f"{value:.1f}" if isinstance(value, (float, np.floating)) else str(value)

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |"
              for row in table.itertuples(index=False)]
    return "\n".join(lines)
