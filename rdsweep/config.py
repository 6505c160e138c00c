"""Structured configs: the schema of every option, registered in Hydra's ConfigStore.

Each config group (data, encoder, decoder, marginal, objective) has one dataclass per option,
stored under the option's name, so a mistyped key or a wrongly typed value fails at start-up with
Hydra's message. Model options carry a `_target_` that `hydra.utils.instantiate` builds; a new
option is a new dataclass here plus its module, and nothing else changes.

Ranges that types cannot express (beta >= 0, ...) are checked by `validate`, before any output
folder exists (see rdsweep.callbacks).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf


@dataclass
class DataConfig:
    name: str = MISSING  # tensorflow-datasets name
    binarization: str = "static"  # static: data already 0/1; dynamic: Bernoulli(x/255) per use
    train_split: str = "train"
    test_split: str = "test"
    dir: Optional[str] = None  # tfds data_dir; null -> $TFDS_DATA_DIR or tfds' default
    download: bool = False  # let tfds download and prepare (needs internet and TensorFlow)
    # Decoded arrays are cached here so that later runs start fast.
    cache_dir: str = "${oc.env:RDSWEEP_CACHE,${oc.env:HOME,.}/.cache/rdsweep}"


@dataclass
class EncoderConfig:
    _target_: str = MISSING


@dataclass
class MLPEncoderConfig(EncoderConfig):
    _target_: str = "rdsweep.models.MLPEncoder"
    hidden: List[int] = field(default_factory=lambda: [512, 512])


@dataclass
class DecoderConfig:
    _target_: str = MISSING


@dataclass
class MLPDecoderConfig(DecoderConfig):
    _target_: str = "rdsweep.models.MLPDecoder"
    hidden: List[int] = field(default_factory=lambda: [512, 512])


@dataclass
class MarginalConfig:
    _target_: str = MISSING


@dataclass
class GaussianMarginalConfig(MarginalConfig):
    _target_: str = "rdsweep.models.StandardGaussianMarginal"


@dataclass
class ObjectiveConfig:
    _target_: str = MISSING


@dataclass
class BetaObjectiveConfig(ObjectiveConfig):
    _target_: str = "rdsweep.objectives.BetaObjective"
    beta: float = "${beta}"  # type: ignore[assignment]  # the top-level sweep key


@dataclass
class TrainConfig:
    steps: int = 6000
    batch_size: int = 64
    lr: float = 1e-3
    log_every: int = 500  # steps per compiled chunk and per log line


@dataclass
class EvalConfig:
    iwae_samples: int = 100  # k of the IWAE bound
    batch_size: int = 500  # examples per evaluation batch
    train_examples: int = 10000  # the first N training examples are evaluated too (0: none)


@dataclass
class Config:
    data: DataConfig = MISSING
    encoder: EncoderConfig = MISSING
    decoder: DecoderConfig = MISSING
    marginal: MarginalConfig = MISSING
    objective: ObjectiveConfig = MISSING
    seed: int = 0
    latent_dim: int = 64
    beta: float = 1.0
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def register() -> None:
    """Stores the schema and every group option in Hydra's ConfigStore."""
    cs = ConfigStore.instance()
    cs.store(name="rdsweep_schema", node=Config)
    cs.store(group="data", name="binarized_mnist",
             node=DataConfig(name="binarized_mnist", binarization="static"))
    cs.store(group="data", name="mnist", node=DataConfig(name="mnist", binarization="dynamic"))
    cs.store(group="encoder", name="mlp", node=MLPEncoderConfig)
    cs.store(group="decoder", name="mlp", node=MLPDecoderConfig)
    cs.store(group="marginal", name="gaussian", node=GaussianMarginalConfig)
    cs.store(group="objective", name="beta", node=BetaObjectiveConfig)


class ConfigError(ValueError):
    """A config value outside its valid range; the message names the option."""


# (option, predicate, what is valid)
_RANGES = [
    ("beta", lambda c: c.beta >= 0, "must be >= 0"),
    ("latent_dim", lambda c: c.latent_dim >= 1, "must be an integer >= 1"),
    ("train.steps", lambda c: c.train.steps >= 1, "must be an integer >= 1"),
    ("train.batch_size", lambda c: c.train.batch_size >= 1, "must be an integer >= 1"),
    ("train.lr", lambda c: c.train.lr > 0, "must be > 0"),
    ("train.log_every", lambda c: c.train.log_every >= 1, "must be an integer >= 1"),
    ("eval.iwae_samples", lambda c: c.eval.iwae_samples >= 1, "must be an integer >= 1"),
    ("eval.batch_size", lambda c: c.eval.batch_size >= 1, "must be an integer >= 1"),
    ("eval.train_examples", lambda c: c.eval.train_examples >= 0, "must be an integer >= 0"),
    ("data.binarization", lambda c: c.data.binarization in ("static", "dynamic"),
     "must be one of: static, dynamic"),
]


def validate(cfg: Any) -> None:
    """Raises ConfigError naming the first option outside its valid range."""
    for key, ok, valid in _RANGES:
        if not ok(cfg):
            raise ConfigError(f"{key}={OmegaConf.select(cfg, key)} is invalid: {valid}")
    if cfg.data.dir is not None and not os.path.isdir(cfg.data.dir):
        raise ConfigError(
            f"data.dir={cfg.data.dir} is invalid: no such directory (give a tensorflow-datasets "
            "data_dir holding prepared data, or leave data.dir unset to use $TFDS_DATA_DIR)")


def job_config(cfg: DictConfig) -> DictConfig:
    """The resolved config of the job alone, without Hydra's own node."""
    job = OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k != "hydra"])
    return OmegaConf.create(OmegaConf.to_container(job, resolve=True))


# Where data is found, not what it is: not part of a run's identity.
_LOCATION_KEYS = ("dir", "download", "cache_dir")


def config_hash(cfg: DictConfig) -> str:
    """A short, stable identity of a run: sha256 of the resolved job config, less data locations."""
    job = OmegaConf.to_container(job_config(cfg))
    for key in _LOCATION_KEYS:
        job["data"].pop(key, None)
    text = OmegaConf.to_yaml(OmegaConf.create(job), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
