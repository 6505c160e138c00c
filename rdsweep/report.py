"""`rdsweep-report SWEEP_DIR`: one table of every run of a sweep folder and the paper's plots.

    rdsweep-report outputs/sweeps/2026-11-24/10-00-00-000000 --compare paper_mnist

Writes into SWEEP_DIR/report/: results.csv and results.parquet (one row per run, planned jobs
that never started included), families.md (R / D / ELBO, a row per family, a column per beta or
sigma), rd_plane.png (D against R), skew.png (-ELBO against R), images.png
(the inputs, reconstructions and samples of a few runs) and, with --compare, the paper's beta = 1
numbers next to ours. Runs that are not completed are never dropped silently: they are rows of
the table and are counted under each plot.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from importlib import resources
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import matplotlib
import numpy as np
import pandas as pd
import yaml
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from rdsweep.fileio import atomic_write
from rdsweep.outputs import CHECKPOINTS, IMAGES, METRICS, load_metrics
from rdsweep.sweep import PLAN, read_plan

# Figures here are pyplot-free; Agg still guards against a display backend if pyplot is imported.
matplotlib.use("Agg")

HYDRA_CONFIG = os.path.join(".hydra", "config.yaml")
REPORT = "report"
STATUSES = ("completed", "diverged", "failed", "incomplete", "missing", "corrupt")
TEST_METRICS = ("rate", "distortion", "elbo", "iwae", "iwae_samples")
COLUMNS = ("run", "status", "family", "objective", "beta", "sigma", "warmup_steps", "seed",
           *TEST_METRICS, "steps", "seconds", "images_per_s", "detail")
INTEGER_COLUMNS = ("warmup_steps", "seed", "iwae_samples", "steps")
TEXT_COLUMNS = ("run", "status", "family", "objective", "detail")
KEY_COLUMNS = ("family", "objective", "beta", "sigma", "seed", "status", "rate", "distortion",
               "elbo", "iwae", "detail")
UNKNOWN = "?"

# Model part class -> (its conf option name, its paper code or None). Keyed by class name, not
# module path, because early runs recorded rdsweep.models.StandardGaussianMarginal.
PARTS: Dict[str, Dict[str, Tuple[str, Optional[str]]]] = {
    "encoder": {"ConvEncoder": ("conv", "-"), "IAFEncoder": ("conv_iaf", "+"),
                "MLPEncoder": ("mlp", None)},
    "decoder": {"ConvDecoder": ("conv", "-"), "PixelCNNDecoder": ("pixelcnn", "+"),
                "MLPDecoder": ("mlp", None)},
    "marginal": {"StandardGaussianMarginal": ("gaussian", "-"), "MAFMarginal": ("maf", "+"),
                 "VampPrior": ("vamp", "v"), "MixtureMarginal": ("mixture", None)},
}
PAPER_ORDER = str.maketrans("-+v", "012")
OBJECTIVES = {"BetaObjective": "beta", "TargetRateObjective": "target_rate"}
MARKERS = "osD^v<>PX*hp"
FAILURES = ("diverged", "failed", "corrupt")  # named one by one under the plots
NAMED_PER_STATUS = 4


class ReportError(Exception):
    """A problem that stops the report before anything is written; the message names the path."""


# --- reading one run ---------------------------------------------------------------------------

def _class_name(target: Any) -> str:
    return str(target).rsplit(".", 1)[-1]


def family_label(targets: Mapping[str, Any]) -> str:
    """Paper notation ("-+v") from the encoder, decoder and marginal `_target_`s; when a part is
    not one of the paper's, the parts' short names instead ("mlp/mlp/mixture")."""
    parts = []
    for group, options in PARTS.items():
        name = _class_name(targets.get(group))
        parts.append(options.get(name, (name, None)))
    if any(code is None for _, code in parts):
        return "/".join(name for name, _ in parts)
    return "".join(code for _, code in parts)


def _number(value: Any) -> float:
    """value as a float, NaN if it is absent or not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def describe_config(cfg: DictConfig) -> Dict[str, Any]:
    """family, objective, beta, sigma, warmup_steps and seed of a run's config."""

    def get(key: str) -> Any:
        return OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)

    objective_class = _class_name(get("objective._target_"))
    objective = OBJECTIVES.get(objective_class, objective_class)
    return {"family": family_label({group: get(f"{group}._target_") for group in PARTS}),
            "objective": objective,
            "beta": _number(get("objective.beta")) if objective == "beta" else np.nan,
            "sigma": _number(get("objective.sigma")) if objective == "target_rate" else np.nan,
            "warmup_steps": _number(get("objective.warmup_steps")),
            "seed": _number(get("seed"))}


def describe_overrides(overrides: Sequence[str]) -> Dict[str, Any]:
    """What a planned job's overrides say about it (a job that never started has nothing else):
    unset keys are unknown, except the objective, which defaults to beta as in conf/config.yaml."""
    values = dict(o.lstrip("+~").split("=", 1) for o in overrides if "=" in o)
    objective = values.get("objective", "beta")
    return {"family": values.get("family", UNKNOWN),
            "objective": objective,
            "beta": _number(values.get("beta")) if objective == "beta" else np.nan,
            "sigma": _number(values.get("sigma")) if objective == "target_rate" else np.nan,
            "warmup_steps": _number(values.get("objective.warmup_steps")),
            "seed": _number(values.get("seed"))}


def run_config(run_dir: str, metrics: Optional[Mapping[str, Any]]) -> Optional[DictConfig]:
    """The run's config: from metrics.json, else from .hydra/config.yaml, else None."""
    if metrics is not None and isinstance(metrics.get("config"), dict):
        return OmegaConf.create(metrics["config"])
    try:
        cfg = OmegaConf.load(os.path.join(run_dir, HYDRA_CONFIG))
    except (OSError, yaml.YAMLError):  # then the plan's overrides describe the run instead
        return None
    return cfg if isinstance(cfg, DictConfig) else None


def metrics_outcome(metrics: Mapping[str, Any]) -> Dict[str, Any]:
    """status, the test metrics, steps, timing and detail recorded in a metrics.json."""
    status = metrics.get("status")
    if status not in ("completed", "diverged", "failed"):
        return {"status": "corrupt", "detail": f"metrics.json has status {status!r}"}
    outcome = {"status": status, "steps": metrics.get("steps"), "seconds": metrics.get("seconds"),
               "images_per_s": metrics.get("images_per_s")}
    if status == "diverged":
        outcome["detail"] = f"diverged at step {metrics.get('steps')}"
    elif status == "failed":
        outcome["detail"] = metrics.get("error")
    elif isinstance(metrics.get("test"), dict):
        outcome.update({key: metrics["test"].get(key) for key in TEST_METRICS})
    else:
        return {"status": "corrupt", "detail": "metrics.json is completed without test metrics"}
    return outcome


def latest_checkpoint(run_dir: str) -> Optional[int]:
    """The largest step among checkpoints/<step>/ folders, None if there is none."""
    folder = os.path.join(run_dir, CHECKPOINTS)
    steps = [int(name) for name in (os.listdir(folder) if os.path.isdir(folder) else [])
             if name.isdigit() and os.path.isdir(os.path.join(folder, name))]
    return max(steps, default=None)


def incomplete_outcome(run_dir: str) -> Dict[str, Any]:
    """A started run without metrics.json: running, or killed, at its newest checkpoint."""
    step = latest_checkpoint(run_dir)
    detail = "no checkpoint" if step is None else f"checkpoint at step {step}"
    return {"status": "incomplete", "steps": step or 0, "detail": detail}


def read_run(sweep_dir: str, subdir: str, overrides: Sequence[str]) -> Dict[str, Any]:
    """One row of the table: what the run is and how it went."""
    run_dir = os.path.join(sweep_dir, subdir)
    if not os.path.isdir(run_dir):
        return {"run": subdir, **describe_overrides(overrides), "status": "missing",
                "detail": "not started (no run folder)"}
    metrics, problem = load_metrics(run_dir)
    cfg = run_config(run_dir, metrics)
    description = describe_config(cfg) if cfg is not None else describe_overrides(overrides)
    if problem is not None:
        outcome = {"status": "corrupt", "detail": f"metrics.json unreadable: {problem}"}
    elif metrics is not None:
        outcome = metrics_outcome(metrics)
    else:
        outcome = incomplete_outcome(run_dir)
    return {"run": subdir, **description, **outcome}


# --- the table ---------------------------------------------------------------------------------

def _is_run_folder(path: str) -> bool:
    return (os.path.isfile(os.path.join(path, METRICS))
            or os.path.isdir(os.path.join(path, ".hydra")))


def list_runs(sweep_dir: str) -> List[Tuple[str, List[str]]]:
    """(subdir, overrides) of the planned jobs, then of run folders the plan does not name
    (an earlier launch into the same folder), so that no run is left out."""
    planned = {job["subdir"]: job["overrides"] for job in read_plan(sweep_dir)}
    found = sorted(name for name in os.listdir(sweep_dir)
                   if name not in planned and _is_run_folder(os.path.join(sweep_dir, name)))
    return list(planned.items()) + [(name, []) for name in found]


def make_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows -> the results table: COLUMNS in order, numbers as numbers, sorted by family then
    objective, beta, sigma and seed."""
    table = pd.DataFrame(list(rows)).reindex(columns=list(COLUMNS))
    for column in COLUMNS:
        if column in INTEGER_COLUMNS:
            table[column] = pd.to_numeric(table[column], errors="coerce").round().astype("Int64")
        elif column not in TEXT_COLUMNS:
            table[column] = pd.to_numeric(table[column], errors="coerce").astype(float)
    table["detail"] = table["detail"].map(lambda d: None if pd.isna(d) else str(d)).astype(object)
    return (table.sort_values(["family", "objective", "beta", "sigma", "seed", "run"],
                              na_position="last", kind="stable", key=_sort_key)
            .reset_index(drop=True))


def _sort_key(column: pd.Series) -> pd.Series:
    """Families in the paper's order ("-" before "+" before "v"); other columns as they are."""
    return column.str.translate(PAPER_ORDER) if column.name == "family" else column


def _warn(message: str) -> None:
    print(f"rdsweep-report: warning: {message}", file=sys.stderr)


def collect(sweep_dir: str) -> pd.DataFrame:
    """The results table of a sweep folder: one row per planned job or run folder.

    Raises ReportError if the folder is missing or holds neither runs nor a plan. A run whose
    metrics.json is unreadable becomes a `corrupt` row, with a warning on stderr.
    """
    if not os.path.isdir(sweep_dir):
        raise ReportError(f"{sweep_dir}: " + ("not a folder" if os.path.exists(sweep_dir)
                                              else "no such folder"))
    runs = list_runs(sweep_dir)
    if not runs:
        raise ReportError(f"{sweep_dir} holds no runs (no {PLAN}, no folder with {METRICS} "
                          "or .hydra/)")
    table = make_table([read_run(sweep_dir, subdir, overrides) for subdir, overrides in runs])
    for row in table[table.status == "corrupt"].itertuples():
        _warn(f"{os.path.join(sweep_dir, row.run)}: {row.detail}")
    return table


def completed(table: pd.DataFrame) -> pd.DataFrame:
    """The completed runs that have a rate and a distortion, with -ELBO as `neg_elbo`."""
    done = table[(table.status == "completed") & table.rate.notna() & table.distortion.notna()]
    return done.assign(neg_elbo=-done.elbo)


def entropy_estimate(table: pd.DataFrame) -> Optional[float]:
    """H, estimated by the best (lowest) -IWAE of the completed runs; None if there is none."""
    best = (-table.loc[table.status == "completed", "iwae"]).min()
    return None if pd.isna(best) else float(best)


# --- plots -------------------------------------------------------------------------------------

def setting(row: Any) -> str:
    """The swept knob of a run: "β=0.3" or "σ=10"."""
    if row.objective == "target_rate":
        return f"σ={row.sigma:g}"
    return f"β={row.beta:g}" if pd.notna(row.beta) else f"{row.objective} ?"


def footer(table: pd.DataFrame) -> str:
    """The runs a plot leaves out, counted per status; failures named one by one."""
    shown = completed(table)
    left_out = table[~table.index.isin(shown.index)]
    if left_out.empty:
        return f"all {len(table)} runs shown"
    parts = []
    for status in STATUSES:
        runs = left_out[left_out.status == status]
        if runs.empty:
            continue
        text = f"{len(runs)} {status}"
        if status in FAILURES:
            names = [f"{setting(r)} {r.family}" for r in runs.itertuples()]
            if len(names) > NAMED_PER_STATUS:
                names = names[:NAMED_PER_STATUS] + [f"{len(runs) - NAMED_PER_STATUS} more"]
            text += f" ({', '.join(names)})"
        parts.append(text)
    return "not shown: " + ", ".join(parts)


def _scatter_families(ax: Axes, points: pd.DataFrame, y: str) -> None:
    """One marker and colour per family (in the legend), each point labelled with its setting."""
    colours = matplotlib.colormaps["tab20"]
    for i, (family, group) in enumerate(points.groupby("family", sort=True)):
        ax.scatter(group.rate, group[y], marker=MARKERS[i % len(MARKERS)], color=colours(i % 20),
                   label=family, zorder=3)
        for row in group.itertuples():
            ax.annotate(setting(row), (row.rate, getattr(row, y)), xytext=(3, 3),
                        textcoords="offset points", fontsize=6)


Guides = Callable[[Axes, pd.DataFrame, Optional[float], Tuple[float, float],
                   Tuple[float, float]], None]


def _runs_figure(table: pd.DataFrame, y: str, ylabel: str, title: str,
                 guides: Guides) -> Figure:
    """The completed runs as (R, y) points with the view's guide lines, and the footer."""
    fig = Figure(figsize=(8, 6.5))
    ax = fig.subplots()
    points = completed(table)
    _scatter_families(ax, points, y)
    if points.empty:
        ax.text(0.5, 0.5, "no completed run", ha="center", va="center", transform=ax.transAxes)
    xlim, ylim = ax.get_xlim(), ax.get_ylim()
    guides(ax, points, entropy_estimate(table), xlim, ylim)
    ax.set_xlim(xlim)  # the guides are clipped to the data, not the data squeezed by the guides
    ax.set_ylim(ylim)
    ax.set(xlabel="rate R (nats)", ylabel=ylabel, title=title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")
    fig.subplots_adjust(bottom=0.15)
    fig.text(0.01, 0.01, textwrap.fill(footer(table), 130), fontsize=7, va="bottom")
    return fig


def _entropy_label(h: float) -> str:
    return f"H ≈ {h:.1f} (best -IWAE, an estimate)"


def _rd_guides(ax: Axes, points: pd.DataFrame, h: Optional[float], xlim: Tuple[float, float],
               ylim: Tuple[float, float]) -> None:
    """ELBO isolines D + R = c at a few levels spanning the runs, and the line D = H - R."""
    x = np.array(xlim)
    if not points.empty:
        total = points.rate + points.distortion
        for c in MaxNLocator(nbins=4).tick_values(total.min(), total.max()):
            ax.plot(x, c - x, color="0.8", lw=0.8, ls="--", zorder=1)
            # label each isoline where it enters the view from the top or the left
            x_text = max(xlim[0], c - ylim[1])
            if x_text < xlim[1] and c - x_text > ylim[0]:
                ax.annotate(f"D+R={c:g}", (x_text, c - x_text), xytext=(2, -2),
                            textcoords="offset points", color="0.5", fontsize=6, va="top")
    if h is not None:
        ax.plot(x, h - x, color="k", lw=1, label=_entropy_label(h), zorder=2)


def _skew_guides(ax: Axes, points: pd.DataFrame, h: Optional[float], xlim: Tuple[float, float],
                 ylim: Tuple[float, float]) -> None:
    """-ELBO >= H: the line D = H - R of the RD plane is horizontal in this view."""
    if h is not None:
        ax.axhline(h, color="k", lw=1, label=_entropy_label(h), zorder=2)


def rd_plane_figure(table: pd.DataFrame) -> Figure:
    """Distortion against rate, with D = H - R and the ELBO isolines (the paper's figure 1)."""
    return _runs_figure(table, "distortion", "distortion D (nats)", "rate-distortion plane",
                        _rd_guides)


def skew_figure(table: pd.DataFrame) -> Figure:
    """-ELBO against rate (the paper's figure 3b): runs of equal ELBO at different rates."""
    return _runs_figure(table, "neg_elbo", "-ELBO = D + R (nats)", "skew view: -ELBO against R",
                        _skew_guides)


def choose_image_runs(table: pd.DataFrame, sweep_dir: str, count: int = 5) -> List[str]:
    """Up to `count` completed runs with images.png, spread over their range of rates: for
    evenly spaced rates from the lowest to the highest, the nearest run not yet chosen."""
    points = completed(table)
    points = points[[os.path.isfile(os.path.join(sweep_dir, run, IMAGES)) for run in points.run]]
    chosen: List[str] = []
    if points.empty:
        return chosen
    for target in np.linspace(points.rate.min(), points.rate.max(), min(count, len(points))):
        left = points[~points.run.isin(chosen)]
        chosen.append(left.run.iloc[int(np.argmin(np.abs(left.rate.to_numpy() - target)))])
    return sorted(chosen, key=points.set_index("run").rate.get)


def caption(row: Any) -> str:
    """"family setting R=.. D=.. ELBO=..", and the status if the run is not completed."""
    text = (f"{row.family} {setting(row)}   R={row.rate:.1f}  D={row.distortion:.1f}  "
            f"ELBO={row.elbo:.1f}")
    return text if row.status == "completed" else f"{text}   ({row.status})"


def images_figure(table: pd.DataFrame, sweep_dir: str, runs: Sequence[str]) -> Figure:
    """The images.png of `runs` stacked vertically, each under its caption."""
    pictures = [np.asarray(Image.open(os.path.join(sweep_dir, run, IMAGES)).convert("L"))
                for run in runs]
    width = 8.0
    heights = [width * p.shape[0] / p.shape[1] + 0.3 for p in pictures]  # + the caption
    fig = Figure(figsize=(width, sum(heights)))
    axes = fig.subplots(len(runs), 1, squeeze=False, gridspec_kw={"height_ratios": heights})
    rows = {row.run: row for row in table.itertuples()}
    for ax, run, picture in zip(axes[:, 0], runs, pictures):
        ax.imshow(picture, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(caption(rows[run]), fontsize=8, loc="left")
        ax.axis("off")
    fig.subplots_adjust(left=0.01, right=0.99, top=0.97, bottom=0.01, hspace=0.25)
    return fig


# --- the family x setting table ----------------------------------------------------------------

def family_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per family, one column per setting (β=.. / σ=..), each cell "R / D / ELBO" of the
    completed runs (means, "(n runs)" if several seeds), else the statuses of its runs."""
    ordered = table.sort_values(["objective", "beta", "sigma"], kind="stable")
    ordered = ordered.assign(setting=[setting(row) for row in ordered.itertuples()])

    def cell(runs: pd.DataFrame) -> str:
        done = runs[runs.status == "completed"]
        if done.empty:
            return ", ".join(sorted(set(runs.status)))
        text = " / ".join(f"{done[q].mean():.1f}" for q in ("rate", "distortion", "elbo"))
        return text + (f" ({len(done)} runs)" if len(done) > 1 else "")

    cells = {key: cell(runs) for key, runs in ordered.groupby(["family", "setting"], sort=False)}
    settings = list(dict.fromkeys(ordered.setting))
    return pd.DataFrame([{"family": family, **{s: cells.get((family, s)) for s in settings}}
                         for family in dict.fromkeys(table.family)])


# --- comparison with the paper -----------------------------------------------------------------

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
    ours = table[(table.status == "completed") & (table.objective == "beta")
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


# --- writing and printing ----------------------------------------------------------------------

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


def _save_figure(fig: Figure, path: str) -> None:
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110), binary=True)


def _save_csv(frame: pd.DataFrame, path: str) -> None:
    atomic_write(path, lambda f: frame.to_csv(f, index=False))


def _check_image_runs(table: pd.DataFrame, sweep_dir: str, runs: Sequence[str]) -> None:
    """ReportError unless every run of --images is in the table and has an images.png."""
    for run in runs:
        if run not in set(table.run):
            raise ReportError(f"--images {run}: no such run in {sweep_dir}")
        if not os.path.isfile(os.path.join(sweep_dir, run, IMAGES)):
            raise ReportError(f"--images {run}: {os.path.join(sweep_dir, run, IMAGES)} "
                              "does not exist")


def build_report(sweep_dir: str, compare: Optional[str] = None,
                 image_runs: Optional[Sequence[str]] = None
                 ) -> Tuple[pd.DataFrame, Optional[pd.DataFrame], Dict[str, str]]:
    """(the table, the comparison or None, the paths written by file name). Every argument is
    checked before the first file is written."""
    reference = load_reference(compare) if compare else None
    table = collect(sweep_dir)
    if image_runs:
        _check_image_runs(table, sweep_dir, image_runs)
    runs = list(image_runs) if image_runs else choose_image_runs(table, sweep_dir)
    comparison = compare_with(table, reference) if reference is not None else None

    folder = os.path.join(sweep_dir, REPORT)
    paths = {name: os.path.join(folder, name)
             for name in ("results.csv", "results.parquet", "families.md", "rd_plane.png",
                          "skew.png")}
    _save_csv(table, paths["results.csv"])
    atomic_write(paths["results.parquet"], lambda f: table.to_parquet(f, index=False),
                 binary=True)
    atomic_write(paths["families.md"], lambda f: f.write(
        f"Test R / D / ELBO (nats) per family and setting, {sweep_dir}\n\n"
        + markdown(family_table(table)) + "\n"))
    _save_figure(rd_plane_figure(table), paths["rd_plane.png"])
    _save_figure(skew_figure(table), paths["skew.png"])
    if runs:
        paths["images.png"] = os.path.join(folder, "images.png")
        _save_figure(images_figure(table, sweep_dir, runs), paths["images.png"])
    if comparison is not None:
        name = f"compare_{compare}.csv"
        paths[name] = os.path.join(folder, name)
        _save_csv(comparison, paths[name])
    return table, comparison, paths


def write_report(sweep_dir: str, compare: Optional[str] = None,
                 image_runs: Optional[Sequence[str]] = None) -> Dict[str, str]:
    """Writes SWEEP_DIR/report/ (see the module docstring); returns the paths by file name."""
    return build_report(sweep_dir, compare, image_runs)[2]


def summary(sweep_dir: str, table: pd.DataFrame, comparison: Optional[pd.DataFrame],
            compare: Optional[str], paths: Mapping[str, str]) -> str:
    """What main prints: counts per status, H, the key columns, the comparison, the paths."""
    counts = table.status.value_counts()
    lines = [f"{len(table)} runs in {sweep_dir}: "
             + ", ".join(f"{counts[s]} {s}" for s in STATUSES if s in counts)]
    h = entropy_estimate(table)
    if h is not None:
        lines.append(f"H estimate (best -IWAE of the completed runs): {h:.2f} nats")
    lines += ["", markdown(table[list(KEY_COLUMNS)])]
    if comparison is not None:
        lines += ["", f"beta = 1 against {compare} (diff = ours - paper):",
                  markdown(comparison, missing="missing")]
    lines += ["", "written:"] + [f"  {path}" for path in paths.values()]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rdsweep-report",
        description="Collects the runs of a sweep folder into SWEEP_DIR/report/: results.csv, "
                    "results.parquet, families.md, rd_plane.png, skew.png, images.png.")
    parser.add_argument("sweep_dir", metavar="SWEEP_DIR", help="a sweep folder (hydra.sweep.dir)")
    parser.add_argument("--compare", metavar="NAME",
                        help="compare beta = 1 with a reference table, e.g. paper_mnist")
    parser.add_argument("--images", nargs="+", metavar="SUBDIR",
                        help="the runs shown in images.png (default: up to 5 spread over R)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
    """The rdsweep-report command; exits with status 2 and one error line on a bad argument."""
    args = _parser().parse_args(argv)
    try:
        table, comparison, paths = build_report(args.sweep_dir, args.compare, args.images)
    except ReportError as e:
        print(f"rdsweep-report: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print(summary(args.sweep_dir, table, comparison, args.compare, paths))


if __name__ == "__main__":
    main()
