"""A run's status, and the outcome its metrics.json records (status, test metrics, timing):
what a re-launch, a sweep's progress and the report read of a run."""

from __future__ import annotations

import enum
import numbers
from typing import Any, Dict, Mapping, Optional

from rdsweep.outputs import load_metrics


class Status(str, enum.Enum):
    """A run's status. A run writes the first three into metrics.json; the report says the
    last three of folders without a usable one."""

    COMPLETED = "completed"
    DIVERGED = "diverged"  # the loss became non-finite; a re-run would repeat it exactly
    FAILED = "failed"  # an exception; a re-launch runs it again
    INCOMPLETE = "incomplete"  # started, no metrics.json yet (running, or killed)
    MISSING = "missing"  # planned, never started
    CORRUPT = "corrupt"  # metrics.json unreadable or inconsistent

    def __str__(self) -> str:
        return self.value


FINISHED = (Status.COMPLETED, Status.DIVERGED)  # not run again by a re-launch
RECORDED = (Status.COMPLETED, Status.DIVERGED, Status.FAILED)  # the statuses a run writes
TEST_METRICS = ("rate", "distortion", "elbo", "iwae", "iwae_samples")  # metrics.json["test"]


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def corrupt(detail: str) -> Dict[str, Any]:
    return {"status": Status.CORRUPT, "detail": detail}


def metrics_outcome(metrics: Mapping[str, Any]) -> Dict[str, Any]:
    """status, the test metrics, steps, timing and detail recorded in a metrics.json."""
    status = metrics.get("status")
    if status not in RECORDED:
        return corrupt(f"metrics.json has status {status!r}")
    status = Status(status)
    outcome = {"status": status, "steps": metrics.get("steps"), "seconds": metrics.get("seconds"),
               "images_per_s": metrics.get("images_per_s")}
    if status == Status.DIVERGED:
        outcome["detail"] = f"diverged at step {metrics.get('steps')}"
    elif status == Status.FAILED:
        outcome["detail"] = metrics.get("error")
    elif not isinstance(metrics.get("test"), dict):
        return corrupt("metrics.json is completed without test metrics")
    else:
        test = metrics["test"]
        bad = [key for key in TEST_METRICS if not _is_number(test.get(key))]
        if bad:
            return corrupt("metrics.json is completed with test values that are not numbers: "
                            + ", ".join(bad))
        outcome.update({key: test[key] for key in TEST_METRICS})
    return outcome


def recorded_status(run_dir: str) -> Optional[Status]:
    """What run_dir's metrics.json says: its status, CORRUPT if it is unreadable or says
    completed without numeric test metrics, None if there is none."""
    metrics, problem = load_metrics(run_dir)
    if problem is not None:
        return Status.CORRUPT
    if metrics is None:
        return None
    return Status(metrics_outcome(metrics)["status"])
