"""Whether a config can run, checked before any folder exists: every option's values, the
options' requirements on each other, and the data's availability (once per data config and
process: a sweep's jobs mostly share their data)."""

from __future__ import annotations

from typing import Set

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rdsweep import registry
from rdsweep.option import ConfigError

_available: Set[str] = set()  # the data configs found available by this process


def validate(cfg: DictConfig) -> None:
    """Raises ConfigError or DataError if cfg cannot run."""
    registry.check(cfg)
    source = instantiate(cfg.data)
    if not source.pictures and cfg.eval.image_examples:
        raise ConfigError(f"eval.image_examples={cfg.eval.image_examples} is invalid: must be 0 "
                          f"for data={cfg.data.name} (its examples are not pictures)")
    data = OmegaConf.to_yaml(cfg.data, resolve=True)
    if data not in _available:
        source.check_available()
        _available.add(data)
