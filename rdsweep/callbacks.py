"""Hydra callbacks: bad input rejected before Hydra creates any output folder (through
rdsweep.validation and rdsweep.run_folder); a sweep's plan, progress and final report.

`on_run_start` and `on_multirun_start` run before Hydra makes a run or sweep folder, so a value
out of range, missing data or a run folder that holds another finished run ends here with one
line and exit code 2, and nothing is written. For a sweep every swept value is checked up front
(and no two jobs may train the same model), then the sweep's plan (every job and its folder) is
written. Each finished job logs the sweep's progress; the sweep's end writes the report
(rdsweep-report) and exits 1 if any run did not finish.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
from typing import Any

from hydra.core.hydra_config import HydraConfig

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from hydra.errors import HydraException

from rdsweep import sweep
from rdsweep.hydra_adapter import BASIC_SWEEPER, compose_job, split_sweep
from rdsweep.console import BAD_INPUT, fail
from rdsweep.run_folder import claim, finished_here
from rdsweep.status import FINISHED, Status, recorded_status
from rdsweep.validation import validate

log = logging.getLogger(__name__)


def _one_line(e: Exception) -> str:
    """Hydra's or OmegaConf's error in one line: its first paragraph's unindented lines, and
    the options it lists as available."""
    paragraphs = str(e).strip().split("\n\n")
    lines = [line.strip() for line in paragraphs[0].splitlines() if line[:1] != " "]
    if e.__cause__ is not None:  # e.g. OmegaConf's "Key 'hidden' not in 'ToyEncoderConfig'"
        lines.append(str(e.__cause__).strip().splitlines()[0])
    listed = [p.splitlines() for p in paragraphs if p.startswith("Available options")]
    options = list(itertools.takewhile(lambda line: line[:1] == "\t", listed[0][1:] if listed
                                       else []))
    options = [option.strip() for option in options]
    return "; ".join(lines) + (f"; valid: {', '.join(options)}" if options else "")


class ValidateConfig(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            validate(config)
            run_dir = OmegaConf.select(config, "hydra.run.dir")
            if finished_here(run_dir, config):
                if recorded_status(run_dir) == Status.DIVERGED:
                    fail(f"{run_dir} holds this run, diverged (see its metrics.json); not run "
                         "again: change the config (e.g. a lower train.lr) and the folder", 1)
                print(f"rdsweep: {run_dir} already holds this run, finished; not run again",
                      file=sys.stderr)
                sys.exit(0)
            claim(run_dir)  # held until the process ends; nothing was written before it
        except BAD_INPUT as e:
            fail(str(e))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Checks every job before anything is written: with the basic sweeper each job's
        composed config; with another sweeper, the base config with each swept value of each
        key, one key at a time (the command line's sweeps and hydra.sweeper.params')."""
        overrides = OverridesParser.create().parse_overrides(sweep.sweep_lines(config))
        try:
            validate(config)
            if config.hydra.sweeper._target_ == BASIC_SWEEPER:
                jobs = [(job, compose_job(config, job))
                        for job in split_sweep(sweep.sweep_lines(config))]
                for _, composed in jobs:
                    validate(composed)
                sweep.check_distinct(jobs)
                overrides = []
            for override in overrides:
                key = override.key_or_group
                if override.is_sweep_override() and not isinstance(OmegaConf.select(config, key),
                                                          DictConfig):
                    for value in override.sweep_iterator():
                        trial = config.copy()
                        with open_dict(trial):
                            OmegaConf.update(trial, key, value, force_add=False)
                        validate(trial)
        except BAD_INPUT as e:
            fail(str(e))
        except (OmegaConfBaseException, HydraException) as e:
            fail(_one_line(e))
        try:
            sweep.write_plan(config.hydra.sweep.dir, sweep.planned_jobs(config))
        except OSError as e:
            fail(f"hydra.sweep.dir={config.hydra.sweep.dir} cannot be written ({e.strerror}): "
                 "choose a folder you can write")

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            log.info("sweep %s: %s", config.hydra.sweep.dir, sweep.progress(config.hydra.sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from rdsweep import report  # pandas and matplotlib: only at the sweep's end

        sweep_dir = config.hydra.sweep.dir
        try:
            report.write_report(sweep_dir)
        except Exception:  # the runs' own outputs are what matters; the report can be redone
            log.exception("the sweep's report failed; run: rdsweep-report %s", sweep_dir)
        jobs = sweep.read_plan(sweep_dir)
        unfinished = [job["subdir"] for job in jobs
                      if recorded_status(os.path.join(sweep_dir, job["subdir"])) not in FINISHED]
        if unfinished:
            fail_line = (f"{len(unfinished)} of {len(jobs)} runs did not finish "
                         f"(e.g. {unfinished[0]}); see {sweep_dir}/report/results.csv")
            print(f"rdsweep: error: {fail_line}", file=sys.stderr)
            sys.exit(1)
