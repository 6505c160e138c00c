"""Early stopping (train.early_stopping): a run's validation ELBO at every log line, its best
check, and whether it has stopped. All of it is read from the run's log rows, which its
checkpoints hold, so a resumed run stops where an uninterrupted one would."""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence

import jax

from rdsweep.data import Split
from rdsweep.evaluate import evaluate
from rdsweep.outputs import VALID_ELBO


def validation_elbo(apply_fn, params: Any, split: Split, key: jax.Array, batch_size: int,
                    binarization: str) -> float:
    """The ELBO of `params` on the validation split (one z sample per example, the same `key`
    at every check, so that checks differ by the model only)."""
    bounds, _ = evaluate(apply_fn, params, split.images, key, 1, batch_size, binarization,
                         weights=split.weights)
    return float(bounds["elbo"])


def improved(rows: Sequence[Dict[str, Any]]) -> bool:
    """Whether the last row's check is the best so far (strictly better than every earlier)."""
    checks = [row[VALID_ELBO] for row in rows if VALID_ELBO in row]
    return bool(checks) and all(checks[-1] > c for c in checks[:-1]) and math.isfinite(checks[-1])


def stopped(rows: Sequence[Dict[str, Any]], patience: int, start_step: int) -> bool:
    """Whether more than `patience` checks in a row, at steps >= start_step, have not
    improved on the best before them (the VampPrior code's rule)."""
    best, count = -math.inf, 0
    for row in rows:
        if VALID_ELBO not in row:
            continue
        if row[VALID_ELBO] > best:
            best, count = row[VALID_ELBO], 0
        else:
            count += 1
        if row["step"] < start_step:
            count = 0
        if count > patience:
            return True
    return False


def summary(rows: Sequence[Dict[str, Any]], stopped_at: Optional[int]) -> Dict[str, Any]:
    """What metrics.json records: the best check's step and ELBO, and where training stopped
    (None: it ran all its steps)."""
    checks = [(row[VALID_ELBO], -row["step"]) for row in rows if VALID_ELBO in row]
    elbo, minus_step = max(checks)
    return {"best_step": -minus_step, "best_valid_elbo": elbo, "stopped_at": stopped_at}
