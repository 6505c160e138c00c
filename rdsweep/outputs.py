"""Run outputs: metrics.json (written atomically), the learning curve as CSV, TensorBoard."""

from __future__ import annotations

import csv
import json
import os
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from tqdm.auto import tqdm

from rdsweep.fileio import atomic_write

METRICS = "metrics.json"
TRAIN_LOG = "train_log.csv"
VALID_ELBO = "valid_elbo"  # the train log's column of validation ELBOs (early stopping's checks)
IMAGES = "images.png"


def write_metrics(run_dir: str, metrics: Dict[str, Any]) -> None:
    """metrics.json, atomically: a failed write leaves the previous file intact."""
    atomic_write(os.path.join(run_dir, METRICS),
                 lambda f: f.write(json.dumps(metrics, indent=2, sort_keys=True) + "\n"))


def load_metrics(run_dir: str) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """(metrics.json's content, None), (None, None) if there is none, or (None, why it is
    unreadable)."""
    path = os.path.join(run_dir, METRICS)
    if not os.path.exists(path):
        return None, None
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        return None, f"{type(e).__name__}: {e}"
    if not isinstance(data, dict):
        return None, f"a JSON {type(data).__name__}, not an object"
    return data, None


def read_metrics(run_dir: str) -> Optional[Dict[str, Any]]:
    """The run's metrics.json, or None if it is missing or unreadable."""
    return load_metrics(run_dir)[0]


def write_train_log(run_dir: str, rows: List[Dict[str, float]]) -> None:
    """The learning curve, one row per compiled chunk of steps (rewritten whole, atomically)."""

    def write(f):
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    atomic_write(os.path.join(run_dir, TRAIN_LOG), write)


def number(value: Any) -> float:
    """value as a float, NaN if it is absent or not a number (a cell of a run's outputs)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def read_train_log(run_dir: str) -> Optional[Dict[str, np.ndarray]]:
    """The learning curve write_train_log wrote: column -> (rows,) floats, NaN where a row has
    no number; None if the run has no readable log (a step and an elbo column, a step that is
    a number)."""
    try:
        with open(os.path.join(run_dir, TRAIN_LOG), newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    if not rows or not {"step", "elbo"} <= set(rows[0]):
        return None
    log = {column: np.array([number(row.get(column)) for row in rows])
           for column in rows[0] if column is not None}
    return log if np.isfinite(log["step"]).any() else None


def _train_scalars(row: Dict[str, float]) -> Dict[str, float]:
    return {f"train/{key}": row[key]
            for key in ("loss", "rate", "distortion", "elbo", "images_per_s")}


def _summary_writer():
    """tensorboardX's SummaryWriter class, imported when used and without torch: tensorboardX
    imports torch whenever it is installed (1-3 s of start-up) only to name its tensor type in
    annotations; rdsweep writes floats."""
    block = "torch" not in sys.modules  # once imported, there is nothing to save
    if block:
        sys.modules["torch"] = None  # `import torch` raises ImportError, which tensorboardX handles
    try:
        from tensorboardX import SummaryWriter
    finally:
        if block:
            del sys.modules["torch"]
    return SummaryWriter


class RunLog:
    """A run's live outputs besides the CSV: TensorBoard scalars under `<run_dir>/tensorboard`
    and a progress bar over the training steps (shown only when stderr is a terminal).

    A run resumed from its checkpoint at step S purges the events after S, which the killed
    process may have written already (those up to S it wrote before saving), so each step
    appears once.

    Every scalar also goes to the run's `tracker` (rdsweep.options.trackers), if given: it
    starts here and gets the rows before S first (`rows`, restored from the checkpoint).
    """

    def __init__(self, run_dir: str, steps: int, start_step: int, tensorboard: bool = True,
                 tracker: Any = None, rows: Sequence[Dict[str, float]] = ()):
        self.writer = None
        if tensorboard:
            self.writer = _summary_writer()(os.path.join(run_dir, "tensorboard"),
                                        purge_step=start_step + 1)
        self.bar = tqdm(total=steps, initial=start_step, unit="step", disable=None,
                        dynamic_ncols=True)
        self.tracker = tracker
        if tracker:
            tracker.start()
            for row in rows:
                tracker.scalars(_train_scalars(row), row["step"])

    def train(self, row: Dict[str, float]) -> None:
        """One log row of `rdsweep.train.train` (its step, means in nats, images/s)."""
        self.bar.update(row["step"] - self.bar.n)
        self.bar.set_postfix(R=f"{row['rate']:.2f}", D=f"{row['distortion']:.2f}")
        self._scalars(_train_scalars(row), row["step"])

    def test(self, results: Dict[str, Any], step: int) -> None:
        """The test-set bounds of `rdsweep.evaluate.evaluate`, at the final step."""
        self._scalars({f"test/{key}": results[key] for key in ("rate", "distortion", "elbo",
                                                                "iwae")}, step)

    def _scalars(self, values: Dict[str, float], step: int) -> None:
        """The one path of every scalar: TensorBoard and the tracker."""
        if self.writer:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)
        if self.tracker:
            self.tracker.scalars(values, step)

    def __enter__(self) -> "RunLog":
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()
        if self.writer:
            self.writer.close()
