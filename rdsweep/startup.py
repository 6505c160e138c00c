"""A Hydra job's start-up, before it trains: its config checked (a sweep's job), its run folder
claimed and recorded, and JAX's persistent compilation cache turned on."""

from __future__ import annotations

import logging
import sys
from typing import Optional

import jax
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from rdsweep.console import BAD_INPUT, fail
from rdsweep.run_folder import (FolderBusy, claim, finished_here, release, unwritable,
                                write_record)
from rdsweep.validation import validate

log = logging.getLogger(__name__)


def prepare_job(cfg: DictConfig) -> Optional[str]:
    """Readies the current Hydra job: returns its run folder, locked by this process and with
    its record written, or None if it must not train (the folder holds this run finished, is in
    use by another process, or the job's config is bad input). A single run was checked and
    locked by the callback before its folder existed; a sweep's job is checked and locked here.
    Bad input ends a single run with one line and exit 2; in a sweep it is one line too (the job
    then has no metrics.json, and the sweep's end reports it as not finished)."""
    single = HydraConfig.get().mode == RunMode.RUN
    run_dir = HydraConfig.get().runtime.output_dir
    try:
        if not single:
            validate(cfg)
        claim(run_dir)
        if finished_here(run_dir, cfg):
            log.info("%s already holds this run, finished: skipped", run_dir)
            release(run_dir)
            return None
        try:
            write_record(run_dir, cfg)
        except OSError as e:
            raise unwritable(run_dir, e) from None
    except BAD_INPUT as e:
        if not isinstance(e, FolderBusy):
            release(run_dir)
        if single:
            fail(str(e))
        # stderr, not the log: the folder (and its main.log) may be another process's
        print(f"rdsweep: {e}", file=sys.stderr)
        return None
    log.info("run folder: %s", run_dir)
    if cfg.compilation_cache_dir:  # null: off
        jax.config.update("jax_compilation_cache_dir", cfg.compilation_cache_dir)
    return run_dir
