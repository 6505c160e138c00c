"""The `rdsweep` command: a Hydra app that runs one training job per (multi)run.

    rdsweep beta=0.5 train.steps=2000
    rdsweep -m beta=0.1,0.3,1,3
"""

from __future__ import annotations

import logging
import sys

import hydra
import jax
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from rdsweep import config as config_lib
from rdsweep import experiment, sweep
from rdsweep.callbacks import check, check_run_folder, fail
from rdsweep.config import ConfigError
from rdsweep.input_pipeline import DataError

log = logging.getLogger(__name__)


config_lib.register()
OmegaConf.register_new_resolver("rdsweep_slug", sweep.run_slug, replace=True)
OmegaConf.register_new_resolver("rdsweep_xla_flags", sweep.xla_flags, replace=True)
OmegaConf.register_new_resolver("rdsweep_gpu_memory", sweep.gpu_memory_fraction, replace=True)


@hydra.main(version_base="1.3", config_path="pkg://rdsweep.conf", config_name="config")
def app(cfg: DictConfig) -> float:
    """Runs one job; returns its test ELBO (for sweepers that optimise)."""
    hydra_cfg = HydraConfig.get()
    run_dir = hydra_cfg.runtime.output_dir
    try:
        check(cfg)
        if check_run_folder(run_dir, cfg):
            log.info("%s already holds this run, finished: skipped", run_dir)
            return float("nan")
        log.info("run folder: %s", run_dir)
        if cfg.compilation_cache_dir:
            jax.config.update("jax_compilation_cache_dir", cfg.compilation_cache_dir)
        return experiment.run(cfg, run_dir).get("test", {}).get("elbo", float("nan"))
    except (ConfigError, DataError) as e:
        if hydra_cfg.mode == RunMode.RUN:
            fail(str(e))
        log.error("%s", e)
    except Exception:
        if hydra_cfg.mode == RunMode.RUN:
            raise
        # metrics.json says "failed"; the sweep goes on and its end reports the failure
        log.exception("run failed")
    return float("nan")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
