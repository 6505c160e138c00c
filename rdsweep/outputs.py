"""Run outputs: metrics.json (written atomically) and the learning curve as CSV."""

from __future__ import annotations

import csv
import json
import os
from typing import Any, Dict, List, Optional

from rdsweep.fileio import atomic_write

METRICS = "metrics.json"
TRAIN_LOG = "train_log.csv"
IMAGES = "images.png"


def write_metrics(run_dir: str, metrics: Dict[str, Any]) -> None:
    """metrics.json, atomically: a failed write leaves the previous file intact."""
    atomic_write(os.path.join(run_dir, METRICS),
                 lambda f: f.write(json.dumps(metrics, indent=2, sort_keys=True) + "\n"))


def read_metrics(run_dir: str) -> Optional[Dict[str, Any]]:
    """The run's metrics.json, or None if it is missing or not valid JSON."""
    try:
        with open(os.path.join(run_dir, METRICS)) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_train_log(run_dir: str, rows: List[Dict[str, float]]) -> None:
    """The learning curve, one row per compiled chunk of steps (rewritten whole, atomically)."""

    def write(f):
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    atomic_write(os.path.join(run_dir, TRAIN_LOG), write)
