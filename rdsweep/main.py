"""The `rdsweep` command: a Hydra app that runs one training job per (multi)run.

    rdsweep beta=0.5 train.steps=2000
    rdsweep -m beta=0.1,0.3,1,3
"""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.rdsweep_grid_launcher.grid_launcher import GridLauncher
from rdsweep import experiment, lifecycle, registry, sweep

log = logging.getLogger(__name__)


registry.register()
# Editable installs hide namespace plugins from Hydra 1.3's plugin scan (hydra issue #3252):
# register rdsweep's own launcher (hydra/launcher=grid) explicitly.
Plugins.instance().register(GridLauncher)
OmegaConf.register_new_resolver("rdsweep_slug", sweep.run_slug, replace=True)
OmegaConf.register_new_resolver("rdsweep_xla_flags", sweep.xla_flags, replace=True)
OmegaConf.register_new_resolver("rdsweep_gpu_memory", sweep.gpu_memory_fraction, replace=True)


@hydra.main(version_base="1.3", config_path="pkg://rdsweep.conf", config_name="config")
def app(cfg: DictConfig) -> float:
    """Runs one job; returns its test ELBO (for sweepers that optimise)."""
    run_dir = lifecycle.prepare_job(cfg)
    if run_dir is None:
        return float("nan")
    single = HydraConfig.get().mode == RunMode.RUN
    try:
        return experiment.run(cfg, run_dir).get("test", {}).get("elbo", float("nan"))
    except lifecycle.BAD_INPUT as e:  # e.g. the folder holds checkpoints of another config
        if single:
            lifecycle.fail(str(e))
        log.error("%s", e)
    except Exception:
        if single:
            raise
        # metrics.json says "failed"; the sweep goes on and its end reports the failure
        log.exception("run failed")
    return float("nan")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
