"""hydra/launcher=grid: a sweep's jobs that differ only in grid scalars (seed, beta, sigma,
train.lr) train as one compiled, vmapped program per group of equal structure.

Each job still gets its own Hydra run folder (.hydra/, main.log) through Hydra's `run_job`,
its start-up checks, and its own metrics.json, train_log.csv, checkpoints and images, written
by `rdsweep.experiment.run_grid` exactly as a job of another launcher writes them (a job of
another launcher is a grid of one). Finished runs
are skipped; a group resumes from its runs' checkpoints. The training log of a group goes to
the sweep's console (each run's train_log.csv has its rows).
"""
# No `from __future__ import annotations`: Hydra's plugin scan imports this module without
# entering it in sys.modules, where dataclasses would look string annotations up.


import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

from rdsweep import experiment, sweep
from rdsweep.run_folder import release
from rdsweep.startup import prepare_job

log = logging.getLogger(__name__)


@dataclass
class GridLauncherConf:
    _target_: str = "hydra_plugins.rdsweep_grid_launcher.grid_launcher.GridLauncher"


ConfigStore.instance().store(group="hydra/launcher", name="grid", node=GridLauncherConf,
                             provider="rdsweep")


class GridLauncher(Launcher):
    def __init__(self) -> None:
        super().__init__()
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        # task_function (rdsweep's app) is not called: the jobs run through run_grid
        self.config = config
        self.hydra_context = hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None and self.hydra_context is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        log.info("Launching %d jobs as grids", len(job_overrides))
        returns: List[JobReturn] = []
        pending: List[Dict[str, Any]] = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            config = self.hydra_context.config_loader.load_sweep_config(self.config,
                                                                        list(overrides))
            with open_dict(config):
                config.hydra.job.id = idx
                config.hydra.job.num = idx
            job: Dict[str, Any] = {}

            def prepare(cfg: DictConfig) -> Optional[str]:
                job.update(cfg=cfg, run_dir=prepare_job(cfg))
                return job["run_dir"]

            returns.append(run_job(hydra_context=self.hydra_context, task_function=prepare,
                                   config=config, job_dir_key="hydra.sweep.dir",
                                   job_subdir_key="hydra.sweep.subdir"))
            if job.get("run_dir"):
                pending.append(job)
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)

        groups: Dict[str, List[Dict[str, Any]]] = defaultdict(list)
        for job in pending:
            groups[experiment.grid_key(job["cfg"])].append(job)
        for group in groups.values():
            log.info("training %d runs as one grid: %s", len(group),
                     ", ".join(Path(job["run_dir"]).name for job in group))
            try:
                experiment.run_grid([job["cfg"] for job in group],
                                    [job["run_dir"] for job in group])
            except Exception:  # recorded as failed in the runs' metrics.json; go on
                log.exception("a grid failed")
            for job in group:
                release(job["run_dir"])
            sweep_dir = str(self.config.hydra.sweep.dir)
            log.info("sweep %s: %s", sweep_dir, sweep.progress(sweep_dir))
        return returns
