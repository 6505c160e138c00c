"""The `rdsweep` command: a Hydra app that runs one training job per (multi)run.

    rdsweep beta=0.5 train.steps=2000
    rdsweep -m beta=0.1,0.3,1,3
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from rdsweep import config as config_lib
from rdsweep import experiment
from rdsweep.callbacks import check, check_run_folder, fail
from rdsweep.config import ConfigError
from rdsweep.input_pipeline import DataError

log = logging.getLogger(__name__)


def run_slug(override_dirname: str) -> str:
    """A sweep job's folder name from its overrides: readable, filesystem-safe, unique."""
    safe = re.sub(r"[^A-Za-z0-9=.,_+-]", "_", override_dirname) or "base"
    if safe != override_dirname or len(safe) > 160:
        safe = f"{safe[:150]}-{hashlib.sha256(override_dirname.encode()).hexdigest()[:8]}"
    return safe


config_lib.register()
OmegaConf.register_new_resolver("rdsweep_slug", run_slug, replace=True)


@hydra.main(version_base="1.3", config_path="pkg://rdsweep.conf", config_name="config")
def app(cfg: DictConfig) -> float:
    """Runs one job; returns its test ELBO (for sweepers that optimise)."""
    hydra_cfg = HydraConfig.get()
    run_dir = hydra_cfg.runtime.output_dir
    try:
        check(cfg)
        if check_run_folder(run_dir, cfg):
            log.info("%s already holds this run, completed: skipped", run_dir)
            return float("nan")
        log.info("run folder: %s", run_dir)
        return experiment.run(cfg, run_dir)["test"]["elbo"]
    except (ConfigError, DataError) as e:
        if hydra_cfg.mode == RunMode.RUN:
            fail(str(e))
        raise  # in a sweep, Hydra records the failed job and the others go on


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
