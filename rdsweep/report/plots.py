"""The report's figures: rd_plane.png (D against R), skew.png (-ELBO against R), curves.png
(each run's ELBO during training) and images.png (a few runs' inputs, reconstructions and
samples); each names the runs it leaves out."""

from __future__ import annotations

import os
import textwrap
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from PIL import Image

from rdsweep import early_stopping
from rdsweep.status import Status
from rdsweep.outputs import IMAGES, VALID_ELBO, read_train_log
import rdsweep.report.settings as settings
from rdsweep.report.runs import completed, entropy_estimate

# Figures here are pyplot-free; Agg still guards against a display backend if pyplot is imported.
matplotlib.use("Agg")

MARKERS = "osD^v<>PX*hp"
FAILURES = (Status.DIVERGED, Status.FAILED, Status.CORRUPT)  # named one by one under the plots
NAMED_PER_STATUS = 4


def footer(table: pd.DataFrame) -> str:
    """The runs a plot leaves out, counted per status; failures named one by one."""
    shown = completed(table)
    left_out = table[~table.index.isin(shown.index)]
    if left_out.empty:
        return f"all {len(table)} runs shown"
    parts = []
    for status in Status:
        runs = left_out[left_out.status == status]
        if runs.empty:
            continue
        text = f"{len(runs)} {status}"
        if status in FAILURES:
            names = [settings.label(r, table) for r in runs.to_dict("records")]
            if len(names) > NAMED_PER_STATUS:
                names = names[:NAMED_PER_STATUS] + [f"{len(runs) - NAMED_PER_STATUS} more"]
            text += f" ({', '.join(names)})"
        parts.append(text)
    return "not shown: " + ", ".join(parts)


LABEL_POINTS = 7  # the knob labels' font size; a label is drawn only where it has room


def _plot_curves(ax: Axes, points: pd.DataFrame, table: pd.DataFrame, y: str) -> None:
    """One colour per curve (family and settings other than the knob), one marker per family,
    each named once in the legend; a curve's runs joined in knob order (means over seeds);
    knob values written beside the points where they do not overlap another label."""
    colours = matplotlib.colormaps["tab10"]  # beyond ten curves the family's marker tells
    families = sorted(set(points.family))
    records = points.to_dict("records")
    curves: dict = {}
    for row in records:
        curves.setdefault(settings.curve_label(row, table), []).append(row)
    for i, (name, rows) in enumerate(curves.items()):
        colour = colours(i % colours.N)
        marker = MARKERS[families.index(rows[0]["family"]) % len(MARKERS)]
        ax.scatter([r["rate"] for r in rows], [r[y] for r in rows], marker=marker, s=22,
                   color=colour, label=name, zorder=3)
        line = (pd.DataFrame({"knob": [settings.knob_value(r, table) for r in rows],
                              "rate": [r["rate"] for r in rows], y: [r[y] for r in rows]})
                .dropna(subset=["knob"]).groupby("knob").mean().sort_index())
        if len(line) > 1:
            ax.plot(line.rate, line[y], color=colour, linewidth=0.9, zorder=2,
                    gid=f"curve:{name}")
    _label_points(ax, records, table, y)


def _curve_count(points: pd.DataFrame, table: pd.DataFrame) -> int:
    return len({settings.curve_label(r, table) for r in points.to_dict("records")})


def _label_points(ax: Axes, records: List[dict], table: pd.DataFrame, y: str) -> None:
    """The knob value beside each point, in order of rising rate, leaving out a label whose
    drawn box would overlap one already there (the legend and the tables name every run)."""
    renderer = ax.figure.canvas.get_renderer()  # the axes are laid out: boxes are final
    placed = []
    for row in sorted(records, key=lambda r: (r["rate"], r[y])):
        text = settings.knob_label(row, table).split("=", 1)[-1]
        label = ax.annotate(text, (row["rate"], row[y]), xytext=(3, 2),
                            textcoords="offset points", fontsize=LABEL_POINTS, color="0.25",
                            gid="knob-label")
        box = label.get_window_extent(renderer)
        if any(box.overlaps(other) for other in placed):
            label.remove()
            continue
        placed.append(box)


Guides = Callable[[Axes, pd.DataFrame, Optional[float], Tuple[float, float],
                   Tuple[float, float]], None]


def _runs_figure(table: pd.DataFrame, y: str, ylabel: str, title: str,
                 guides: Guides) -> Figure:
    """The completed runs as (R, y) points with the view's guide lines, and the footer."""
    points = completed(table)
    many = _curve_count(points, table) > 12
    fig = Figure(figsize=(11 if many else 8, 6.5))
    FigureCanvasAgg(fig)  # a canvas to measure the labels on
    ax = fig.subplots()
    # the layout first, so that the labels' boxes are where they are drawn; with many curves
    # the legend goes beside the axes, not over the runs
    fig.subplots_adjust(bottom=0.15, right=0.68 if many else 0.9)
    if points.empty:
        ax.text(0.5, 0.5, "no completed run", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.scatter(points.rate, points[y], alpha=0)  # the limits first, then the labels
    xlim, ylim = ax.get_xlim(), ax.get_ylim()
    guides(ax, points, entropy_estimate(table), xlim, ylim)
    ax.set_xlim(xlim)  # the guides are clipped to the data, not the data squeezed by the guides
    ax.set_ylim(ylim)
    _plot_curves(ax, points, table, y)
    knobs = "/".join(settings.of(table)[1]) or "the objective's parameter"
    ax.set(xlabel="rate R (nats)", ylabel=ylabel,
           title=f"{title} (points labelled by {knobs})")
    if ax.get_legend_handles_labels()[0]:
        if many:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1)
        else:
            ax.legend(fontsize=7, loc="best")
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


RUNS_IN_LEGEND = 12  # beyond, the legend names curves (runs' settings but the knob), not runs
FIRST_STEPS = 0.25  # the y range leaves out each run's first quarter of steps: its low start
LINE_STYLES = ("-", "--", ":", "-.")  # a new style for each further ten legend entries


def curves_figure(table: pd.DataFrame, sweep_dir: str) -> Optional[Figure]:
    """Each run's ELBO against the training step, from its train_log.csv: the training chunks'
    means faint, the validation ELBO (early stopping's checks) solid with a dot at its best
    check. The y range is that of the runs that did not diverge. None if no run of the table
    has a log."""
    logs = [(row, read_train_log(os.path.join(sweep_dir, row["run"])))
            for row in table.to_dict("records")]
    shown = [(row, log) for row, log in logs if log is not None]
    if not shown:
        return None
    by_run = len(shown) <= RUNS_IN_LEGEND
    fig = Figure(figsize=(8, 6.5))
    ax = fig.subplots()
    fig.subplots_adjust(bottom=0.15)
    colours = matplotlib.colormaps["tab10"]
    legend: Dict[str, Tuple[Any, str]] = {}  # name -> (colour, line style)
    in_view: List[np.ndarray] = []
    validated = False
    for row, log in shown:
        name = settings.label(row, table) if by_run else settings.curve_label(row, table)
        i = len(legend)
        colour, style = legend.setdefault(name, (
            colours(i % colours.N), LINE_STYLES[i // colours.N % len(LINE_STYLES)]))
        step = log["step"]
        keep = [] if row["status"] == Status.DIVERGED else in_view
        later = step >= FIRST_STEPS * np.nanmax(step)
        ax.plot(step, log["elbo"], color=colour, ls=style, lw=0.7, alpha=0.35,
                gid=f"train:{row['run']}")
        keep.append(log["elbo"][later])
        valid = log.get(VALID_ELBO, np.full(step.shape, np.nan))
        checked = np.isfinite(valid) & np.isfinite(step)
        if checked.any():
            validated = True
            ax.plot(step[checked], valid[checked], color=colour, ls=style, lw=1.2,
                    gid=f"valid:{row['run']}")
            best = early_stopping.summary([{"step": s, VALID_ELBO: v} for s, v in
                                           zip(step[checked], valid[checked])], None)
            ax.plot(best["best_step"], best["best_valid_elbo"], "o", color=colour, ms=4,
                    gid=f"best:{row['run']}")
            keep.append(valid[later])
    values = np.concatenate(in_view) if in_view else np.array([])
    values = values[np.isfinite(values)]
    if values.size:
        pad = 0.05 * max(float(np.ptp(values)), 1.0)
        ax.set_ylim(values.min() - pad, values.max() + pad)
    handles = [Line2D([], [], color=c, ls=style, label=n) for n, (c, style) in legend.items()]
    handles.append(Line2D([], [], color="0.5", lw=0.7, alpha=0.35, label="training (chunk means)"))
    if validated:
        handles.append(Line2D([], [], color="0.5", lw=1.2, marker="o", ms=4,
                              label="validation (dot: best check)"))
    ax.legend(handles=handles, fontsize=7, loc="lower right")
    ax.set(xlabel="training step", ylabel="ELBO (nats per example)", title="ELBO during training")
    missing = [row for row, log in logs if log is None]
    counted = [f"{n} {status}" for status in Status
               if (n := sum(row["status"] == status for row in missing))]
    text = ("no readable train_log.csv: " + ", ".join(counted) if missing
            else f"all {len(table)} runs shown")
    fig.text(0.01, 0.01, textwrap.fill(text, 130), fontsize=7, va="bottom")
    return fig


def _with_images(table: pd.DataFrame, sweep_dir: str) -> pd.DataFrame:
    points = completed(table)
    with_images = [os.path.isfile(os.path.join(sweep_dir, run, IMAGES)) for run in points.run]
    return points[np.array(with_images, bool)]


def _spread_over_rate(points: pd.DataFrame, count: int) -> List[str]:
    """Up to `count` runs of `points`, for evenly spaced rates from the lowest to the highest
    the nearest run not yet chosen; in order of rate."""
    chosen: List[str] = []
    if points.empty:
        return chosen
    for target in np.linspace(points.rate.min(), points.rate.max(), min(count, len(points))):
        left = points[~points.run.isin(chosen)]
        chosen.append(left.run.iloc[int(np.argmin(np.abs(left.rate.to_numpy() - target)))])
    return sorted(chosen, key=points.set_index("run").rate.get)


def choose_image_runs(table: pd.DataFrame, sweep_dir: str, count: int = 5) -> List[str]:
    """Up to `count` completed runs with images.png, spread over their range of rates."""
    return _spread_over_rate(_with_images(table, sweep_dir), count)


EQUAL_ELBO = 1.0  # nats: test ELBOs this close count as equal


def choose_equal_elbo_runs(table: pd.DataFrame, sweep_dir: str, count: int = 4,
                           tolerance: float = EQUAL_ELBO) -> List[str]:
    """Up to `count` completed runs with images.png whose test ELBOs lie within `tolerance`
    nats of each other and whose rates spread the most, spread over that range (the paper's
    figure of models the ELBO cannot tell apart); [] if no such runs differ in rate by more
    than `tolerance` nats."""
    points = _with_images(table, sweep_dir)
    best, span = points.iloc[:0], tolerance
    for elbo in points.elbo:
        window = points[(points.elbo >= elbo) & (points.elbo <= elbo + tolerance)]
        if window.rate.max() - window.rate.min() > span:
            best, span = window, window.rate.max() - window.rate.min()
    return _spread_over_rate(best, count)


def caption(row: Any, table: pd.DataFrame) -> str:
    """"family settings R=.. D=.. ELBO=..", and the status if the run is not completed."""
    text = (f"{settings.label(row, table)}   R={row['rate']:.1f}  D={row['distortion']:.1f}  "
            f"ELBO={row['elbo']:.1f}")
    return text if row["status"] == Status.COMPLETED else f"{text}   ({row['status']})"


def images_figure(table: pd.DataFrame, sweep_dir: str, runs: Sequence[str]) -> Figure:
    """The images.png of `runs` stacked vertically, each under its caption."""
    pictures = [np.asarray(Image.open(os.path.join(sweep_dir, run, IMAGES)).convert("L"))
                for run in runs]
    width = 8.0
    heights = [width * p.shape[0] / p.shape[1] + 0.3 for p in pictures]  # + the caption
    fig = Figure(figsize=(width, sum(heights)))
    axes = fig.subplots(len(runs), 1, squeeze=False, gridspec_kw={"height_ratios": heights})
    rows = {row["run"]: row for row in table.to_dict("records")}
    for ax, run, picture in zip(axes[:, 0], runs, pictures):
        ax.imshow(picture, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(caption(rows[run], table), fontsize=8, loc="left")
        ax.axis("off")
    fig.subplots_adjust(left=0.01, right=0.99, top=0.97, bottom=0.01, hspace=0.25)
    return fig
