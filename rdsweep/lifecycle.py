"""A run's life before and after training: its status, the checks of its config (once, before
any folder exists), its run folder, and the one-line failure of bad input."""

from __future__ import annotations

import enum
import logging
import sys
from typing import Optional

import jax
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig

from rdsweep import registry
from rdsweep.config import config_hash
from rdsweep.option import ConfigError, DataError
from rdsweep.outputs import read_metrics

log = logging.getLogger(__name__)


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
BAD_INPUT = (ConfigError, DataError)


def fail(message: str) -> None:
    """One line on stderr, exit code 2."""
    print(f"rdsweep: error: {message}", file=sys.stderr)
    sys.exit(2)


def validate(cfg: DictConfig) -> None:
    """Raises ConfigError or DataError if cfg cannot run: every option's values, the options'
    requirements on each other, and the data's availability."""
    registry.check(cfg)
    source = instantiate(cfg.data)
    if not source.pictures and cfg.eval.image_examples:
        raise ConfigError(f"eval.image_examples={cfg.eval.image_examples} is invalid: must be 0 "
                          f"for data={cfg.data.name} (its examples are not pictures)")
    source.check_available()


def finished_here(run_dir: str, cfg: DictConfig) -> bool:
    """True if run_dir already holds this config's finished run (a re-run would repeat it
    exactly); raises ConfigError if it holds another config's."""
    existing = read_metrics(run_dir)
    if not existing or existing.get("status") not in FINISHED:
        return False
    if existing.get("config_hash") != config_hash(cfg):
        raise ConfigError(
            f"hydra.run.dir={run_dir} already holds a finished run of another config; "
            "choose another hydra.run.dir (finished runs are never overwritten)")
    return True


def use_compilation_cache(directory: Optional[str]) -> None:
    """JAX's persistent compilation cache in `directory` (None: off)."""
    if directory:
        jax.config.update("jax_compilation_cache_dir", directory)


def prepare_job(cfg: DictConfig) -> Optional[str]:
    """Readies the current Hydra job: returns its run folder, or None if it must not train (the
    folder holds this run finished, or the job's config is bad input). A single run was checked
    by the callback before its folder existed; a sweep's job is checked here, as a whole. Bad
    input ends a single run with one line and exit 2; in a sweep it is logged (the job then has
    no metrics.json, and the sweep's end reports it as not finished)."""
    single = HydraConfig.get().mode == RunMode.RUN
    run_dir = HydraConfig.get().runtime.output_dir
    try:
        if not single:
            validate(cfg)
        if finished_here(run_dir, cfg):
            log.info("%s already holds this run, finished: skipped", run_dir)
            return None
    except BAD_INPUT as e:
        if single:
            fail(str(e))
        log.error("%s", e)
        return None
    log.info("run folder: %s", run_dir)
    use_compilation_cache(cfg.compilation_cache_dir)
    return run_dir
