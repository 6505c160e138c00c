"""The report's figures: rd_plane.png (D against R), skew.png (-ELBO against R) and images.png
(a few runs' inputs, reconstructions and samples); each names the runs it leaves out."""

from __future__ import annotations

import os
import textwrap
from typing import Any, Callable, List, Optional, Sequence, Tuple

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from rdsweep.lifecycle import Status
from rdsweep.outputs import IMAGES
from rdsweep.report.runs import completed, entropy_estimate, setting

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
            names = [f"{setting(r)} {r.family}" for r in runs.itertuples()]
            if len(names) > NAMED_PER_STATUS:
                names = names[:NAMED_PER_STATUS] + [f"{len(runs) - NAMED_PER_STATUS} more"]
            text += f" ({', '.join(names)})"
        parts.append(text)
    return "not shown: " + ", ".join(parts)


def _scatter_families(ax: Axes, points: pd.DataFrame, y: str) -> None:
    """One marker and colour per family (in the legend), each point labelled with its setting;
    a family's beta runs joined in beta order (means over seeds), so its curve shows."""
    colours = matplotlib.colormaps["tab20"]
    for i, (family, group) in enumerate(points.groupby("family", sort=True)):
        ax.scatter(group.rate, group[y], marker=MARKERS[i % len(MARKERS)], color=colours(i % 20),
                   label=family, zorder=3)
        curve = (group[group.objective == "beta"].groupby("beta")[["rate", y]].mean()
                 .sort_index())
        if len(curve) > 1:
            ax.plot(curve.rate, curve[y], color=colours(i % 20), linewidth=0.8, zorder=2,
                    gid=f"curve:{family}")
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
    return text if row.status == Status.COMPLETED else f"{text}   ({row.status})"


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
