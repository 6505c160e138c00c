"""A run's setting in a report: the config keys whose values differ between the runs reported,
the seed excepted (rdsweep.identity.trained), shown as a few readable columns. Runs are averaged
only when they agree on all of them, i.e. when they are seeds of one setting.

The columns, from the keys that vary: a part whose option varies is one column named by its
group ("encoder": mlp / conv), and its inner keys are left out where the option decides them;
the paper's parts (encoder, decoder, marginal) are left out where the family code names them one
to one; copies of a top-level alias (encoder.latent_dim, decoder.latent_dim) are one column
named by it ("latent_dim"); the objective's knob (`KNOB` of its config: beta, sigma) is always a
column, named by it. Every hidden key is decided by the columns shown, so grouping by the columns
groups by the whole identity."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from rdsweep import identity, registry

TARGET = "._target_"
_ABSENT = "(absent)"


def _option(path: str, target: Any, flat: Mapping[str, Any]) -> str:
    """The option name of the part at `path` ("encoder", "encoder.base") from its target."""
    group = path.split(".")[0]
    node = {"_target_": target, "name": flat.get(f"{path}.name")}
    if group not in registry.GROUPS:
        return str(target).rsplit(".", 1)[-1]
    return registry.option_name({group: node}, group)


def expand(flat: Mapping[str, Any]) -> Dict[str, Any]:
    """A run's trained keys less the seed, each part's `_target_` replaced by its option name
    under the part's own path ("encoder": "iaf")."""
    out: Dict[str, Any] = {}
    for key, value in flat.items():
        if key == identity.REPLICATE:
            continue
        if key.endswith(TARGET):
            path = key[:-len(TARGET)]
            out[path] = _option(path, value, flat)
        else:
            out[key] = value
    return out


def knob_of(objective: Any) -> Optional[str]:
    """The knob of an objective option, by its name (None if it declares none or is unknown)."""
    opt = registry.options()["objective"].get(objective) if isinstance(objective, str) else None
    return identity.knob(opt) if opt is not None else None


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _constant_within(rows: Sequence[Mapping[str, Any]], key: str, by: str) -> bool:
    """Whether `key` has one value among the rows that share each value of `by`."""
    seen: Dict[Any, Any] = {}
    for row in rows:
        group, value = _hashable(row.get(by, _ABSENT)), _hashable(row.get(key, _ABSENT))
        if seen.setdefault(group, value) != value:
            return False
    return True


def _coded_one_to_one(rows: Sequence[Mapping[str, Any]], part: str) -> bool:
    """Whether the family code names the part's option one to one among the rows."""
    names = {row.get(part) for row in rows}
    codes = {}
    for name in names:
        opt = registry.options()[part].get(name) if isinstance(name, str) else None
        if opt is None or not opt.code:
            return False
        codes[name] = opt.code
    return len(set(codes.values())) == len(codes)


def setting_columns(configs: Sequence[Optional[Mapping[str, Any]]], objectives: Sequence[Any]
                    ) -> Tuple[List[Dict[str, Any]], List[str], List[str]]:
    """(per run: column -> value, the setting columns in order, the knob columns among them).

    configs: each run's trained keys (rdsweep.identity.trained, flat), None where unknown (a
    run that never started: its values come from its overrides, see `from_overrides`);
    objectives: each run's objective option name (its knob is that option's)."""
    known = [expand(c) for c in configs if c is not None]
    keys = list(dict.fromkeys(k for row in known for k in row))
    varying = [k for k in keys
               if len({_hashable(row.get(k, _ABSENT)) for row in known}) > 1]
    parts = [k for k in varying if any(f"{k}{TARGET}" in c for c in configs if c)]
    shown = []
    for key in varying:
        if key == "objective":
            continue  # a column of its own in every report
        owner = max((p for p in parts if key.startswith(p + ".")), key=len, default=None)
        if owner is not None and _constant_within(known, key, owner):
            continue
        if key in registry.PARTS and key in parts and _coded_one_to_one(known, key):
            continue
        shown.append(key)
    names = _merge_aliases(known, shown)
    knobs = list(dict.fromkeys(k for o in objectives for k in [knob_of(o)] if k))
    for k in knobs:  # the knob's own column, varying or not
        names = {key: name for key, name in names.items()
                 if name != k and key != f"objective.{k}"}
    columns = [n for n in dict.fromkeys(names.values())]
    columns = sorted(columns, key=lambda n: (n not in parts, n.count("."), n)) + knobs
    rows = []
    for config, objective in zip(configs, objectives):
        if config is None:
            rows.append({})
            continue
        row = expand(config)
        values = {name: _cell(row.get(key)) for key, name in names.items() if key in row}
        knob = knob_of(objective)
        if knob:
            values[knob] = _cell(row.get(f"objective.{knob}"))
        rows.append(values)
    return rows, columns, knobs


def _merge_aliases(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> Dict[str, str]:
    """key -> column name: the keys that copy a top-level alias (their last part is its name)
    share one column named by it when they agree in every run; other keys keep their name."""
    names = {key: key for key in keys}
    for alias in identity.aliases():
        copies = [k for k in keys if k.rsplit(".", 1)[-1] == alias]
        agree = all(len({_hashable(row[k]) for k in copies if k in row}) <= 1 for row in rows)
        if copies and agree:
            names.update(dict.fromkeys(copies, alias))
    return names


def _cell(value: Any) -> Any:
    """A value as a table cell: lists as "a,b", None as NaN."""
    if value is None:
        return np.nan
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return value


def from_overrides(overrides: Mapping[str, str], columns: Sequence[str]) -> Dict[str, Any]:
    """A never-started run's setting columns, as far as its overrides give them."""
    return {c: _number_or_text(overrides[c]) for c in columns if c in overrides}


def _number_or_text(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def dumps(flat: Optional[Mapping[str, Any]]) -> Optional[str]:
    """A run's trained keys as the results table's `config` cell (JSON), None if unknown."""
    return None if flat is None else json.dumps(
        {k: list(v) if isinstance(v, tuple) else v for k, v in flat.items()}, sort_keys=True)


def loads(cell: Any) -> Optional[Dict[str, Any]]:
    """The `config` cell back as trained keys; None for an empty cell."""
    if not isinstance(cell, str) or not cell:
        return None
    return {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(cell).items()}


# --- what the tables and plots take from a results table ------------------------------------

def values_of(table: pd.DataFrame, key: str) -> pd.Series:
    """Each run's value of `key`: the table's column if it has one, else from the run's `config`
    (a part's option name for a part: "marginal" -> "vamp"), NaN where unknown; for keys that
    are not columns, e.g. a part that the family code names."""
    if key in table:
        return table[key]
    configs = [loads(cell) for cell in table["config"]]
    return pd.Series([np.nan if c is None else _cell(expand(c).get(key)) for c in configs],
                     index=table.index, dtype=object)

def of(table: Any) -> Tuple[List[str], List[str]]:
    """(the setting columns, the knob columns) of a results table (runs.make_table)."""
    return list(table.attrs.get("settings", [])), list(table.attrs.get("knobs", []))


def curve_columns(table: Any) -> List[str]:
    """The columns that tell one curve from another: the family, the objective if the table
    has several, and every setting but the knobs (attrs["curves"], set by runs.make_table)."""
    return list(table.attrs.get("curves", ["family"]))


def find_curve_columns(objectives: Sequence[str], columns: Sequence[str],
                       knobs: Sequence[str]) -> List[str]:
    """curve_columns of a table with these objectives, setting columns and knobs."""
    several = ["objective"] if len(set(objectives)) > 1 else []
    return ["family", *several, *(c for c in columns if c not in knobs)]


def show(value: Any) -> str:
    """A setting value as written in labels: numbers in %g, missing as "?"."""
    if not present(value):
        return "?"
    return f"{value:g}" if isinstance(value, (float, int, np.number)) else str(value)


def present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value))


def curve_label(row: Mapping[str, Any], table: Any) -> str:
    """"--- latent_dim=2": the family (the objective if several) and the other settings."""
    shown = {"family": "{}", "objective": "({})"}
    return " ".join(shown[c].format(row[c]) if c in shown else f"{c}={show(row[c])}"
                    for c in curve_columns(table))


def knob_label(row: Mapping[str, Any], table: Any) -> str:
    """"beta=0.3": the run's knob and its value ("<objective> ?" if unknown)."""
    for knob in of(table)[1]:
        if present(row.get(knob)):
            return f"{knob}={show(row[knob])}"
    return f"{row['objective']} ?"


def label(row: Mapping[str, Any], table: Any) -> str:
    return f"{curve_label(row, table)} {knob_label(row, table)}"


def knob_value(row: Mapping[str, Any], table: Any) -> float:
    """The run's knob value (NaN if unknown): the x of its curve."""
    for knob in of(table)[1]:
        if present(row.get(knob)):
            return float(row[knob])
    return float("nan")
