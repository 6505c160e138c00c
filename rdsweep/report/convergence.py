"""Has a run converged? Two measures: the drift of its training ELBO over the end of training,
read from its train_log.csv (one row per compiled chunk: the chunk's mean loss, rate, distortion
and ELBO), and the test ELBO gained since an earlier kept checkpoint (evaluated by
`rdsweep-eval RUN --step previous`): training ELBO can still rise while the test ELBO has
stopped (overfitting), so the test gain is the one that says whether more training would help."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from rdsweep.outputs import read_train_log

TAIL = 0.1  # the last tenth of the steps
TOLERANCE = 0.3  # nats: a run whose ELBO drifts less than this over the tail has converged


def elbo_drift(steps: np.ndarray, elbo: np.ndarray, tail: float = TAIL) -> float:
    """How far the training ELBO moves over the last `tail` of the steps, in nats per example:
    the slope of a least-squares line through the chunk means logged there, times the tail's
    length in steps. Positive: still improving. A line rather than the last minus the first
    point, because one chunk's mean is noisy (a few tenths of a nat at batch 64).

    steps, elbo: (n,) the log rows' steps (increasing) and chunk-mean ELBOs. NaN if fewer than
    two rows fall in the tail."""
    steps = np.asarray(steps, np.float64)
    elbo = np.asarray(elbo, np.float64)
    start = steps[-1] * (1.0 - tail)
    window = steps >= start
    if window.sum() < 2:
        return float("nan")
    slope = np.polyfit(steps[window], elbo[window], 1)[0]
    return float(slope * (steps[-1] - start))


def run_drift(run_dir: str, tail: float = TAIL) -> Optional[float]:
    """elbo_drift of a run folder's train_log.csv; None if it has no readable log."""
    log = read_train_log(run_dir)
    return None if log is None else elbo_drift(log["step"], log["elbo"], tail)


def elbo_gain(final_step: int, final_elbo: float, earlier: Sequence[Tuple[int, float]]
              ) -> Tuple[float, Optional[int]]:
    """(final test ELBO minus the test ELBO at the newest earlier evaluated step, that step):
    nats per example, positive if the end of training still improved it; (NaN, None) without
    an evaluation before final_step. earlier: (step, test ELBO) of a run's evaluations."""
    before = [(step, elbo) for step, elbo in earlier if step < final_step]
    if not before:
        return float("nan"), None
    step, elbo = max(before)
    return float(final_elbo - elbo), int(step)
