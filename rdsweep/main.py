"""The `rdsweep` command: a Hydra app that runs one training job per (multi)run.

    rdsweep beta=0.5 train.steps=2000
    rdsweep -m beta=0.1,0.3,1,3
"""

from __future__ import annotations

import logging
import sys
from typing import Optional

import hydra
import jax
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra_plugins.rdsweep_grid_launcher.grid_launcher import GridLauncher
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from rdsweep import config as config_lib
from rdsweep import experiment, sweep
from rdsweep.callbacks import check, check_run_folder, fail
from rdsweep.config import ConfigError
from rdsweep.input_pipeline import DataError

log = logging.getLogger(__name__)


config_lib.register()
# Editable installs hide namespace plugins from Hydra 1.3's plugin scan (hydra issue #3252):
# register rdsweep's own launcher (hydra/launcher=grid) explicitly.
Plugins.instance().register(GridLauncher)
OmegaConf.register_new_resolver("rdsweep_slug", sweep.run_slug, replace=True)
OmegaConf.register_new_resolver("rdsweep_xla_flags", sweep.xla_flags, replace=True)
OmegaConf.register_new_resolver("rdsweep_gpu_memory", sweep.gpu_memory_fraction, replace=True)


def prepare(cfg: DictConfig) -> Optional[str]:
    """Checks a job before it runs; returns its run folder, or None if the folder holds this
    run finished already. Raises ConfigError or DataError."""
    run_dir = HydraConfig.get().runtime.output_dir
    check(cfg)
    if check_run_folder(run_dir, cfg):
        log.info("%s already holds this run, finished: skipped", run_dir)
        return None
    log.info("run folder: %s", run_dir)
    if cfg.compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", cfg.compilation_cache_dir)
    return run_dir


def prepare_or_log(cfg: DictConfig) -> Optional[str]:
    """`prepare`; bad input ends a single run with one line and exit 2, and in a sweep is logged
    (the job then has no metrics.json and the sweep's end reports it as not finished)."""
    try:
        return prepare(cfg)
    except (ConfigError, DataError) as e:
        if HydraConfig.get().mode == RunMode.RUN:
            fail(str(e))
        log.error("%s", e)
        return None


@hydra.main(version_base="1.3", config_path="pkg://rdsweep.conf", config_name="config")
def app(cfg: DictConfig) -> float:
    """Runs one job; returns its test ELBO (for sweepers that optimise)."""
    run_dir = prepare_or_log(cfg)
    if run_dir is None:
        return float("nan")
    try:
        return experiment.run(cfg, run_dir).get("test", {}).get("elbo", float("nan"))
    except ConfigError as e:  # the folder holds checkpoints of another config
        if HydraConfig.get().mode == RunMode.RUN:
            fail(str(e))
        log.error("%s", e)
    except Exception:
        if HydraConfig.get().mode == RunMode.RUN:
            raise
        # metrics.json says "failed"; the sweep goes on and its end reports the failure
        log.exception("run failed")
    return float("nan")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
