"""Reading a sweep folder into the results table: one row per run, with what the run is (family,
objective, the setting columns of rdsweep.report.settings, seed, and its trained config as JSON)
and how it went (status, test metrics, timing)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import yaml
from omegaconf import DictConfig, OmegaConf

from rdsweep import registry
from rdsweep.checkpoints import kept_steps
from rdsweep.identity import trained
from rdsweep.outputs import METRICS, load_metrics, number
import rdsweep.report.settings as settings
from rdsweep.report.convergence import elbo_gain, run_drift
from rdsweep.status import TEST_METRICS, Status, corrupt, metrics_outcome
from rdsweep.sweep import PLAN, read_plan

HYDRA_CONFIG = os.path.join(".hydra", "config.yaml")
EVAL = "eval"  # a run's re-evaluations by rdsweep-eval: eval/<name>.json
# Convergence (rdsweep.report.convergence): the training ELBO's drift over the last tenth of the
# steps, and the test ELBO gained since the newest earlier checkpoint evaluated by rdsweep-eval.
CONVERGENCE = ("train_elbo_drift", "test_elbo_gain", "gain_since_step")
# The setting columns (rdsweep.report.settings) go between HEAD and TAIL; `config` holds each
# run's trained keys as JSON, from which a merged table finds its setting columns again.
HEAD = ("run", "status", "family", "objective")
TAIL = ("seed", *TEST_METRICS, "steps", "seconds", "images_per_s", *CONVERGENCE, "detail",
        "config")
COLUMNS = (*HEAD, *TAIL)
INTEGER_COLUMNS = ("seed", "iwae_samples", "steps", "gain_since_step")
TEXT_COLUMNS = ("run", "status", "family", "objective", "detail", "config")
UNKNOWN = "?"
PAPER_ORDER = str.maketrans("-+v", "012")


class ReportError(Exception):
    """A problem that stops the report before anything is written; the message names the path."""


# --- reading one run ---------------------------------------------------------------------------

def describe_config(cfg: DictConfig, recorded: Mapping[str, Any]) -> Dict[str, Any]:
    """family, objective, seed and trained config (JSON) of a run's config. The family and
    objective are metrics.json's (`recorded`) if it has them, else the registry's names for
    the config's parts (runs without metrics.json yet)."""
    return {"family": recorded.get("family") or registry.family_code(cfg),
            "objective": recorded.get("objective") or registry.option_name(cfg, "objective"),
            "seed": number(OmegaConf.select(cfg, "seed", default=None)),
            "config": settings.dumps(trained(cfg))}


def describe_overrides(overrides: Sequence[str]) -> Dict[str, Any]:
    """What a planned job's overrides say about it (a job that never started has nothing else):
    unset keys are unknown, except the objective, which defaults to beta as in conf/config.yaml.
    `overrides` (key -> value) fills its setting columns where it names them."""
    values = dict(o.lstrip("+~").split("=", 1) for o in overrides if "=" in o)
    return {"family": values.get("family", values.get("mlp_family", UNKNOWN)),
            "objective": values.get("objective", "beta"),
            "seed": number(values.get("seed")), "overrides": values}


def run_config(run_dir: str, metrics: Optional[Mapping[str, Any]]) -> Optional[DictConfig]:
    """The run's config: from metrics.json, else from .hydra/config.yaml, else None."""
    if metrics is not None and isinstance(metrics.get("config"), dict):
        return OmegaConf.create(metrics["config"])
    try:
        cfg = OmegaConf.load(os.path.join(run_dir, HYDRA_CONFIG))
    except (OSError, yaml.YAMLError):  # then the plan's overrides describe the run instead
        return None
    return cfg if isinstance(cfg, DictConfig) else None


def incomplete_outcome(run_dir: str) -> Dict[str, Any]:
    """A started run without metrics.json: running, or killed, at its newest checkpoint."""
    step = max(kept_steps(run_dir), default=None)
    detail = "no checkpoint" if step is None else f"checkpoint at step {step}"
    return {"status": Status.INCOMPLETE, "steps": step or 0, "detail": detail}


def eval_path(run_dir: str, name: str) -> str:
    """The file of the run's re-evaluation `name` (rdsweep-eval)."""
    return os.path.join(run_dir, EVAL, f"{name}.json")


def eval_outcome(run_dir: str, name: str) -> Dict[str, Any]:
    """The test metrics of the run's re-evaluation `name`, or none with a detail saying why."""
    path = eval_path(run_dir, name)
    try:
        with open(path) as f:
            test = json.load(f)["test"]
        return {key: test[key] for key in TEST_METRICS}
    except FileNotFoundError:
        return {key: np.nan for key in TEST_METRICS} | {"detail": f"no {EVAL}/{name}.json"}
    except (OSError, ValueError, KeyError, TypeError) as e:
        return {key: np.nan for key in TEST_METRICS} | {
            "detail": f"{EVAL}/{name}.json unreadable: {type(e).__name__}: {e}"}


def earlier_evaluations(run_dir: str) -> List[Tuple[int, float]]:
    """(step, test ELBO) of each readable re-evaluation in the run's eval/ folder."""
    folder = os.path.join(run_dir, EVAL)
    found = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        try:
            with open(os.path.join(folder, name)) as f:
                record = json.load(f)
            found.append((int(record["step"]), float(record["test"]["elbo"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not an evaluation file, or a broken one: eval_outcome names those
    return found


def convergence(run_dir: str, outcome: Mapping[str, Any]) -> Dict[str, Any]:
    """The CONVERGENCE columns of a completed run (its outcome holds steps and test elbo)."""
    steps = number(outcome.get("steps"))
    gain, since = (elbo_gain(int(steps), number(outcome["elbo"]), earlier_evaluations(run_dir))
                   if np.isfinite(steps) else (np.nan, None))
    drift = run_drift(run_dir)
    return {"train_elbo_drift": np.nan if drift is None else drift, "test_elbo_gain": gain,
            "gain_since_step": since}


def read_run(sweep_dir: str, subdir: str, overrides: Sequence[str],
             eval_name: Optional[str] = None) -> Dict[str, Any]:
    """One row of the table: what the run is and how it went; with eval_name, a completed
    run's test metrics are those of its re-evaluation eval/<eval_name>.json."""
    run_dir = os.path.join(sweep_dir, subdir)
    if not os.path.isdir(run_dir):
        return {"run": subdir, **describe_overrides(overrides), "status": Status.MISSING,
                "detail": "not started (no run folder)"}
    metrics, problem = load_metrics(run_dir)
    cfg = run_config(run_dir, metrics)
    description = (describe_config(cfg, metrics or {}) if cfg is not None
                   else describe_overrides(overrides))
    if problem is not None:
        outcome = corrupt(f"metrics.json unreadable: {problem}")
    elif metrics is not None:
        outcome = metrics_outcome(metrics)
    else:
        outcome = incomplete_outcome(run_dir)
    if eval_name and outcome["status"] == Status.COMPLETED:
        outcome.update(eval_outcome(run_dir, eval_name))
    if outcome["status"] == Status.COMPLETED:
        outcome.update(convergence(run_dir, outcome))
    return {"run": subdir, **description, **outcome}


# --- the table ---------------------------------------------------------------------------------

def _is_run_folder(path: str) -> bool:
    return (os.path.isfile(os.path.join(path, METRICS))
            or os.path.isdir(os.path.join(path, ".hydra")))


def list_runs(sweep_dir: str) -> List[Tuple[str, List[str]]]:
    """(subdir, overrides) of the runs to report: the folder itself (".") if it is one run's
    folder; else the planned jobs, then the run folders the plan does not name (an earlier
    launch into the same folder), so that no run is left out."""
    if _is_run_folder(sweep_dir):
        return [(os.curdir, [])]
    planned = {job["subdir"]: job["overrides"] for job in read_plan(sweep_dir)}
    found = sorted(name for name in os.listdir(sweep_dir)
                   if name not in planned and _is_run_folder(os.path.join(sweep_dir, name)))
    return list(planned.items()) + [(name, []) for name in found]


def make_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows -> the results table: HEAD, the setting columns, TAIL, numbers as numbers, sorted by
    family then objective, the setting columns and seed. A row without a config keeps the
    setting values it has (an earlier report's row) or its overrides give. The table's
    attrs["settings"] and attrs["knobs"] name the setting and knob columns."""
    rows = [dict(row) for row in rows]
    configs = [settings.loads(row.get("config")) for row in rows]
    values, columns, knobs = settings.setting_columns(configs,
                                                      [r.get("objective") for r in rows])
    for row, config, value in zip(rows, configs, values):
        if config is None:
            value = {c: row[c] for c in columns if c in row and settings.present(row[c])}
            value |= settings.from_overrides(row.get("overrides") or {}, columns)
        row.update({c: value.get(c, np.nan) for c in columns})
    table = pd.DataFrame(rows).reindex(columns=[*HEAD, *columns, *TAIL])
    for column in COLUMNS:
        if column in INTEGER_COLUMNS:
            table[column] = pd.to_numeric(table[column], errors="coerce").round().astype("Int64")
        elif column not in TEXT_COLUMNS:
            table[column] = pd.to_numeric(table[column], errors="coerce").astype(float)
    for column in columns:
        table[column] = _setting_values(table[column])
    for column in ("detail", "config"):
        table[column] = table[column].map(lambda d: None if pd.isna(d) else str(d)).astype(object)
    table = (table.sort_values(["family", "objective", *columns, "seed", "run"],
                               na_position="last", kind="stable", key=_sort_key)
             .reset_index(drop=True))
    table.attrs.update(settings=columns, knobs=knobs, curves=settings.find_curve_columns(
        table.objective.dropna(), columns, knobs))
    return table


def _setting_values(column: pd.Series) -> pd.Series:
    """A setting column as numbers if every value is one (whole numbers as integers), else as
    text (missing: None)."""
    numbers = pd.to_numeric(column, errors="coerce")
    if numbers.notna().sum() == column.notna().sum():
        whole = numbers.notna().any() and (numbers.dropna() % 1 == 0).all()
        return numbers.round().astype("Int64") if whole else numbers.astype(float)
    return column.map(lambda v: None if not settings.present(v) else str(v)).astype(object)


def _sort_key(column: pd.Series) -> pd.Series:
    """Families in the paper's order ("-" before "+" before "v"); other columns as they are."""
    return column.str.translate(PAPER_ORDER) if column.name == "family" else column


def _warn(message: str) -> None:
    print(f"rdsweep-report: warning: {message}", file=sys.stderr)


def collect(sweep_dir: str, eval_name: Optional[str] = None) -> pd.DataFrame:
    """The results table of a sweep folder: one row per planned job or run folder (one row if
    sweep_dir is itself a run folder). eval_name: the test metrics of completed runs are those
    of their re-evaluation eval/<eval_name>.json (rdsweep-eval), NaN where it is missing.

    Raises ReportError if the folder is missing or holds neither runs nor a plan. A run whose
    metrics.json is unreadable or inconsistent becomes a `corrupt` row, with a warning on stderr.
    """
    if not os.path.isdir(sweep_dir):
        raise ReportError(f"{sweep_dir}: " + ("not a folder" if os.path.exists(sweep_dir)
                                              else "no such folder"))
    runs = list_runs(sweep_dir)
    if not runs:
        raise ReportError(f"{sweep_dir} holds no runs (no {PLAN}, no folder with {METRICS} "
                          "or .hydra/)")
    table = make_table([read_run(sweep_dir, subdir, overrides, eval_name)
                        for subdir, overrides in runs])
    for row in table[table.status == Status.CORRUPT].itertuples():
        _warn(f"{os.path.join(sweep_dir, row.run)}: {row.detail}")
    return table


def read_results(path: str, option: str = "--include") -> pd.DataFrame:
    """An earlier report's results.csv as a results table (make_table's columns and types).
    Raises ReportError, naming `option` and the path, if it cannot be read or lacks one of
    COLUMNS."""
    where = " ".join(filter(None, [option, path]))
    try:
        rows = pd.read_csv(path, dtype={column: str for column in TEXT_COLUMNS})
    except (OSError, ValueError) as e:
        raise ReportError(f"{where}: not a readable CSV ({type(e).__name__}: {e})") from None
    missing = [column for column in COLUMNS if column not in rows.columns]
    if missing:
        raise ReportError(f"{where}: not a results.csv of rdsweep-report "
                          f"(no column {', '.join(missing)})")
    return make_table(rows.to_dict("records"))


def merge(table: pd.DataFrame, earlier: pd.DataFrame) -> pd.DataFrame:
    """table with the rows of an earlier report added (a sweep continued in a new folder, the
    old one gone). A run in both keeps table's row, unless only the earlier row is completed:
    a finished result is never replaced by an unfinished one."""
    done = table.run[table.status == Status.COMPLETED]
    old_done = earlier.run[earlier.status == Status.COMPLETED]
    keep_new = ~table.run.isin(old_done) | table.run.isin(done)
    keep_old = ~earlier.run.isin(table.run[keep_new])
    return make_table(pd.concat([table[keep_new], earlier[keep_old]]).to_dict("records"))


# --- what the plots and tables take from it ----------------------------------------------------

def completed(table: pd.DataFrame) -> pd.DataFrame:
    """The completed runs that have a rate and a distortion, with -ELBO as `neg_elbo`."""
    done = table[(table.status == Status.COMPLETED) & table.rate.notna()
                 & table.distortion.notna()]
    return done.assign(neg_elbo=-done.elbo)


def entropy_estimate(table: pd.DataFrame) -> Optional[float]:
    """H, estimated by the best (lowest) -IWAE of the completed runs; None if there is none."""
    best = (-table.loc[table.status == Status.COMPLETED, "iwae"]).min()
    return None if pd.isna(best) else float(best)
