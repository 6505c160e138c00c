"""The `rdsweep` command: a Hydra app that runs one training job per (multi)run.

    rdsweep beta=0.5 train.steps=2000
    rdsweep -m beta=0.1,0.3,1,3

Importing this module changes nothing; `start()` readies the process when a command or a job
starts.
"""

from __future__ import annotations

import functools
import logging
import sys
import threading

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.types import RunMode
from omegaconf import DictConfig

from rdsweep import experiment, registry, resolvers
from rdsweep.console import BAD_INPUT, error_line, fail
from rdsweep.run_folder import release
from rdsweep.startup import prepare_job
from rdsweep.status import Status

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=None)  # once per process
def start() -> None:
    """The process's start-up: where errors nobody catches are logged, rdsweep's configs in
    Hydra's ConfigStore, its launchers among Hydra's plugins, its resolvers in OmegaConf.

    main() calls it before Hydra composes anything (the grid launcher's jobs run in that
    process); each job (`app`) calls it too, in whatever process its launcher runs it: joblib's
    and submitit's workers unpickle `app` and never call main(). Hydra hands them the driver's
    ConfigStore and resolvers (its singleton state, which run_job's `hydra.job.env_set` and
    folder name need before `app` starts), but not the hooks."""
    # A log file on a full disk must not print a traceback for each record: main.log is best
    # effort.
    logging.raiseExceptions = False
    # Errors in libraries' own threads (orbax's and tensorstore's savers) and exit handlers
    # (tensorboardX's writer), e.g. on a full disk, go to main.log only (the console's filter
    # drops this logger): the run's own one-line error says what happened.
    libraries = logging.getLogger("libraries")
    threading.excepthook = lambda a: libraries.error(
        "thread %s: %s", getattr(a.thread, "name", "?"), a.exc_value,
        exc_info=(a.exc_type, a.exc_value, a.exc_traceback))
    sys.unraisablehook = lambda u: libraries.error(
        "%s", u.err_msg or "exception ignored",
        exc_info=(u.exc_type, u.exc_value, u.exc_traceback))
    registry.register()
    _register_launchers()
    resolvers.register()


def _register_launchers() -> None:
    """hydra/launcher=grid, and slurm with its extra. Editable installs hide namespace plugins
    from Hydra 1.3's plugin scan (hydra issue #3252), so they are registered here."""
    from hydra_plugins.rdsweep_grid_launcher.grid_launcher import GridLauncher

    Plugins.instance().register(GridLauncher)
    try:
        from hydra_plugins.rdsweep_slurm_launcher.slurm_launcher import SlurmLauncher
    except ModuleNotFoundError as e:  # without the slurm extra, hydra/launcher=slurm is not there
        if not (e.name or "").startswith("hydra_plugins.hydra_submitit_launcher"):
            raise
    else:
        Plugins.instance().register(SlurmLauncher)


@hydra.main(version_base="1.3", config_path="pkg://rdsweep.conf", config_name="config")
def app(cfg: DictConfig) -> float:
    """Runs one job; returns its test ELBO (for sweepers that optimise)."""
    start()
    run_dir = prepare_job(cfg)
    if run_dir is None:
        return float("nan")
    single = HydraConfig.get().mode == RunMode.RUN
    try:
        metrics = experiment.run(cfg, run_dir)
        if single and metrics["status"] == Status.DIVERGED:
            fail(f"the run diverged at step {metrics['steps']} "
                 f"({', '.join(metrics['non_finite'])} not finite; see "
                 f"{run_dir}/metrics.json): try a lower train.lr", 1)
        return metrics.get("test", {}).get("elbo", float("nan"))
    except BAD_INPUT as e:  # e.g. the folder holds checkpoints of another config
        if single:
            fail(str(e))
        log.error("%s", e)
    except Exception as e:
        # metrics.json says "failed" (if the disk let it be written); the traceback goes to
        # main.log, and a sweep goes on: its end reports the failure
        log.exception("run failed")
        if single:
            fail(f"the run failed ({error_line(e)}); the traceback is in {run_dir}/main.log", 1)
    finally:
        release(run_dir)
    return float("nan")


def main() -> None:
    start()
    app()


if __name__ == "__main__":
    sys.exit(main())
