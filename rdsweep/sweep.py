"""A sweep's jobs and their folders: folder names, the plan of all jobs, progress, and the JAX
settings that let several jobs share one machine.

`sweep_plan.json` in the sweep folder lists every job of the grid (merged over re-launches), so
that the report can show jobs that never started, and progress can count runs finished/total.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from typing import Dict, List, Sequence, Tuple

from omegaconf import DictConfig, OmegaConf

from rdsweep.fileio import atomic_write
from rdsweep.identity import same_model_reason, trained
from rdsweep.hydra_adapter import BASIC_SWEEPER, override_dirname, split_sweep
from rdsweep.option import ConfigError
from rdsweep.status import FINISHED, Status, recorded_status

log = logging.getLogger(__name__)

PLAN = "sweep_plan.json"
DEFAULT_SUBDIR = "${rdsweep_slug:${hydra.job.override_dirname}}"


def run_slug(override_dirname: str) -> str:
    """A sweep job's folder name from its overrides: readable, filesystem-safe, unique."""
    safe = re.sub(r"[^A-Za-z0-9=.,_+-]", "_", override_dirname) or "base"
    if safe != override_dirname or len(safe) > 160:
        safe = f"{safe[:150]}-{hashlib.sha256(override_dirname.encode()).hexdigest()[:8]}"
    return safe


def sweep_lines(config: DictConfig) -> List[str]:
    """The sweep's override lines as the basic sweeper reads them: hydra.sweeper.params first
    (an experiment's grid), then the command line's."""
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    return [*(f"{k}={v}" for k, v in params.items()), *config.hydra.overrides.task]


def planned_jobs(config: DictConfig) -> List[Dict]:
    """Every job of the sweep with its folder name, or [] if a job's folder cannot be known in
    advance (another sweeper, or a custom hydra.sweep.subdir)."""
    sweep = OmegaConf.to_container(config.hydra.sweep, resolve=False)
    if sweep.get("subdir") != DEFAULT_SUBDIR or config.hydra.sweeper._target_ != BASIC_SWEEPER:
        return []
    naming = config.hydra.job.config.override_dirname
    return [{"subdir": run_slug(override_dirname(job, naming.exclude_keys, naming.item_sep,
                                                  naming.kv_sep)), "overrides": job}
            for job in split_sweep(sweep_lines(config))]


def check_distinct(jobs: Sequence[Tuple[Sequence[str], DictConfig]]) -> None:
    """Raises ConfigError if two of a sweep's jobs (overrides, composed config) would train the
    same model (rdsweep.identity.same_model_reason): e.g. a beta grid with
    objective=target_rate, or a value written twice (beta=1,1.0)."""
    seen: Dict[str, Tuple[Sequence[str], DictConfig]] = {}
    for overrides, cfg in jobs:
        key = repr(sorted(trained(cfg).items()))
        if key in seen:
            other, other_cfg = seen[key]
            raise ConfigError(f"{' '.join(other)} and {' '.join(overrides)} train the same "
                              f"model: {same_model_reason(other_cfg, cfg)}")
        seen[key] = (overrides, cfg)


def read_plan(sweep_dir: str) -> List[Dict]:
    """The jobs listed in sweep_dir's plan ([] if it has none or it is unreadable)."""
    try:
        with open(os.path.join(sweep_dir, PLAN)) as f:
            return list(json.load(f)["jobs"])
    except (OSError, ValueError, KeyError, TypeError):
        return []


def write_plan(sweep_dir: str, jobs: List[Dict]) -> None:
    """Adds jobs to sweep_dir's plan; the jobs of earlier launches stay listed."""
    merged = {job["subdir"]: job for job in read_plan(sweep_dir) + jobs}
    atomic_write(os.path.join(sweep_dir, PLAN),
                 lambda f: json.dump({"jobs": list(merged.values())}, f, indent=1))


def progress(sweep_dir: str) -> str:
    """'k/N runs finished (c completed, d diverged)[, f failed]' over the plan's jobs."""
    jobs = read_plan(sweep_dir)
    statuses = [recorded_status(os.path.join(sweep_dir, job["subdir"])) for job in jobs]
    counts = {str(s): statuses.count(s) for s in FINISHED}
    detail = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    text = f"{sum(counts.values())}/{len(jobs)} runs finished" + (f" ({detail})" if detail else "")
    failed = statuses.count(Status.FAILED)
    return text + (f", {failed} failed" if failed else "")


def _concurrent(n_jobs: int) -> int:
    """Jobs at once for a launcher's n_jobs, counted as joblib does (-1: one per core)."""
    return (os.cpu_count() or 1) + 1 + n_jobs if n_jobs < 0 else max(1, n_jobs)


def xla_flags(n_jobs: int) -> str:
    """XLA_FLAGS for one of n_jobs concurrent jobs on this machine: the user's flags, plus
    single-threaded XLA:CPU when there are no more cores than jobs (else the jobs' thread
    pools fight over the cores), unless the user's flags set it."""
    n = _concurrent(n_jobs)
    flags = os.environ.get("XLA_FLAGS", "")
    if n > 1 and (os.cpu_count() or 1) <= n and "xla_cpu_multi_thread_eigen" not in flags:
        flags = f"{flags} --xla_cpu_multi_thread_eigen=false"
    return flags.strip()


def gpu_memory_fraction(n_jobs: int) -> str:
    """XLA_PYTHON_CLIENT_MEM_FRACTION for one of n_jobs jobs sharing a GPU (JAX's default
    preallocates 75% of it in each process)."""
    default = f"{0.75 / _concurrent(n_jobs):.3f}"
    return os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION", default)
