"""Hydra callbacks that reject bad input before Hydra creates any output folder.

`on_run_start` and `on_multirun_start` run before Hydra makes a run or sweep folder, so a value
out of range, missing data or a run folder that holds another finished run ends here with one
line and exit code 2, and nothing is written. For a sweep every swept value is checked up front.
"""

from __future__ import annotations

import sys
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from rdsweep.config import ConfigError, config_hash, validate
from rdsweep.input_pipeline import DataError, check_available
from rdsweep.outputs import read_metrics


def fail(message: str) -> None:
    """One line on stderr, exit code 2."""
    print(f"rdsweep: error: {message}", file=sys.stderr)
    sys.exit(2)


def check(cfg: DictConfig) -> None:
    """Raises ConfigError or DataError if cfg cannot run."""
    validate(cfg)
    check_available(cfg.data)


def check_run_folder(run_dir: str, cfg: DictConfig) -> bool:
    """True if run_dir already holds this config's completed run; raises if it holds another's."""
    existing = read_metrics(run_dir)
    if not existing or existing.get("status") != "completed":
        return False
    if existing.get("config_hash") != config_hash(cfg):
        raise ConfigError(
            f"hydra.run.dir={run_dir} already holds a completed run of another config; "
            "choose another hydra.run.dir (finished runs are never overwritten)")
    return True


class ValidateConfig(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check(config)
            run_dir = OmegaConf.select(config, "hydra.run.dir")
            if check_run_folder(run_dir, config):
                print(f"rdsweep: {run_dir} already holds this run, completed; not run again",
                      file=sys.stderr)
                sys.exit(0)
        except (ConfigError, DataError) as e:
            fail(str(e))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Checks the base config with each swept value of each key, one key at a time: the
        command line's sweeps and those of hydra.sweeper.params (an experiment's grid)."""
        params = OmegaConf.select(config, "hydra.sweeper.params") or {}
        lines = [*config.hydra.overrides.task, *(f"{k}={v}" for k, v in params.items())]
        overrides = OverridesParser.create().parse_overrides(lines)
        try:
            check(config)
            for override in overrides:
                key = override.key_or_group
                if override.is_sweep_override() and not isinstance(OmegaConf.select(config, key),
                                                          DictConfig):
                    for value in override.sweep_iterator():
                        trial = config.copy()
                        with open_dict(trial):
                            OmegaConf.update(trial, key, value, force_add=False)
                        check(trial)
        except (ConfigError, DataError) as e:
            fail(str(e))
        except OmegaConfBaseException as e:
            fail(str(e).splitlines()[0])
