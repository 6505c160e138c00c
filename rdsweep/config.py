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
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf


# Model configs take their shapes from the top level by interpolation, so that nested
# options (the conv encoder inside conv_iaf) see them too.
LATENT = "${latent_dim}"
IMAGE = "${data.image_shape}"
SIZE = "${size}"


@dataclass
class DataConfig:
    name: str = MISSING  # tensorflow-datasets name, or toy
    # static: one fixed draw (data already 0/1 is kept as is); dynamic: Bernoulli(x) per use
    binarization: str = "static"
    image_shape: List[int] = field(default_factory=lambda: [28, 28, 1])  # after preprocessing


@dataclass
class TFDSDataConfig(DataConfig):
    """A tensorflow-datasets dataset of images (rdsweep.input_pipeline)."""

    static_seed: int = 0  # the fixed draw of static binarization of grey data
    train_split: str = "train"
    test_split: str = "test"  # e.g. validation (binarized_mnist has one)
    invert: bool = False  # ink = 1 - value (Omniglot stores ink as 0)
    resize: str = "none"  # PIL filter to reach image_shape: none, box, bilinear, lanczos
    dir: Optional[str] = None  # tfds data_dir; null -> $TFDS_DATA_DIR or tfds' default
    download: bool = False  # let tfds download and prepare (needs internet and TensorFlow)
    # Decoded arrays are cached here so that later runs start fast.
    cache_dir: str = "${oc.env:RDSWEEP_CACHE,${oc.env:HOME,.}/.cache/rdsweep}"


@dataclass
class ToyDataConfig(DataConfig):
    """The toy problem of the paper's section 4 (rdsweep.toy): a distribution over `bins` bins of
    a two-cluster mixture, given exactly; its examples are one-hot bins."""

    name: str = "toy"
    bins: int = 30
    cluster_prob: float = 0.7  # P(z* = 1)
    information: float = 0.5  # I(x; z*) in nats; the clusters' separation is solved to give it
    cluster_scale: float = 1.0  # the standard deviation of h in each cluster
    range: List[float] = field(default_factory=lambda: [-5.0, 5.0])  # the bins' span of h
    image_shape: List[int] = field(default_factory=lambda: ["${data.bins}"])  # one-hot bins


@dataclass
class EncoderConfig:
    _target_: str = MISSING
    latent_dim: int = LATENT  # type: ignore[assignment]


@dataclass
class MLPEncoderConfig(EncoderConfig):
    _target_: str = "rdsweep.models.MLPEncoder"
    hidden: List[int] = field(default_factory=lambda: [512, 512])


@dataclass
class ConvEncoderConfig(EncoderConfig):
    _target_: str = "rdsweep.conv.ConvEncoder"
    size: str = SIZE
    channels: Optional[List[int]] = None  # overrides the size preset


@dataclass
class ConvIAFEncoderConfig(EncoderConfig):
    _target_: str = "rdsweep.flows.IAFEncoder"
    base: ConvEncoderConfig = field(default_factory=ConvEncoderConfig)
    size: str = SIZE
    steps: int = 4
    hidden: Optional[List[int]] = None  # MADE widths; overrides the size preset
    context: bool = False  # condition the flow on x (costly with a VampPrior)


@dataclass
class DecoderConfig:
    _target_: str = MISSING
    image_shape: List[int] = IMAGE  # type: ignore[assignment]


@dataclass
class MLPDecoderConfig(DecoderConfig):
    _target_: str = "rdsweep.models.MLPDecoder"
    hidden: List[int] = field(default_factory=lambda: [512, 512])


@dataclass
class ConvDecoderConfig(DecoderConfig):
    _target_: str = "rdsweep.conv.ConvDecoder"
    size: str = SIZE
    channels: Optional[List[int]] = None


@dataclass
class PixelCNNDecoderConfig(DecoderConfig):
    _target_: str = "rdsweep.pixelcnn.PixelCNNDecoder"
    size: str = SIZE
    depth: Optional[int] = None
    resnets_per_block: Optional[int] = None


@dataclass
class ToyEncoderConfig(EncoderConfig):
    _target_: str = "rdsweep.toy.ToyEncoder"


@dataclass
class ToyDecoderConfig(DecoderConfig):
    _target_: str = "rdsweep.toy.ToyDecoder"


@dataclass
class MarginalConfig:
    _target_: str = MISSING
    latent_dim: int = LATENT  # type: ignore[assignment]


@dataclass
class GaussianMarginalConfig(MarginalConfig):
    _target_: str = "rdsweep.marginals.StandardGaussianMarginal"


@dataclass
class MixtureMarginalConfig(MarginalConfig):
    _target_: str = "rdsweep.marginals.MixtureMarginal"
    components: int = 10


@dataclass
class VampMarginalConfig(MarginalConfig):
    _target_: str = "rdsweep.marginals.VampPrior"
    image_shape: List[int] = IMAGE  # type: ignore[assignment]
    size: str = SIZE
    pseudo_inputs: Optional[int] = None  # overrides the size preset (paper 500, small 50)


@dataclass
class MAFMarginalConfig(MarginalConfig):
    _target_: str = "rdsweep.flows.MAFMarginal"
    size: str = SIZE
    steps: int = 4
    hidden: Optional[List[int]] = None


@dataclass
class CategoricalMarginalConfig(MarginalConfig):
    _target_: str = "rdsweep.marginals.CategoricalMarginal"


@dataclass
class ObjectiveConfig:
    _target_: str = MISSING
    warmup_steps: int = 0  # KL annealing: the rate's weight rises from 0 over these steps


@dataclass
class BetaObjectiveConfig(ObjectiveConfig):
    _target_: str = "rdsweep.objectives.BetaObjective"
    beta: float = "${beta}"  # type: ignore[assignment]  # the top-level sweep key


@dataclass
class TargetRateObjectiveConfig(ObjectiveConfig):
    _target_: str = "rdsweep.objectives.TargetRateObjective"
    sigma: float = "${sigma}"  # type: ignore[assignment]


@dataclass
class TrainConfig:
    steps: int = 6000
    epochs: Optional[float] = None  # if set: steps = ceil(epochs * train examples / batch_size)
    batch_size: Optional[int] = 64  # null: full batch (every training example, each step)
    lr: float = 1e-3
    normalize_gradients: bool = False  # Adam on g / ||g|| (the paper's optimiser)
    # Hold lr, then decay it linearly to 0 at the last step; the hold in steps or epochs
    # (at most one; neither: constant lr).
    lr_hold_steps: Optional[int] = None
    lr_hold_epochs: Optional[float] = None
    log_every: int = 500  # steps per compiled chunk and per log line
    # Checkpoint at the first log line at or past every multiple of this (0: only at the end);
    # a run started again in its folder resumes from the newest one.
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2  # the newest N; an unreadable newest one falls back to the next
    tensorboard: bool = True  # scalars under <run folder>/tensorboard
    # hydra/launcher=grid: how a grid's models are stepped in one program: vmap (batched),
    # map (one after another), auto (map on the CPU, vmap on GPUs).
    grid_batching: str = "auto"


@dataclass
class EvalConfig:
    iwae_samples: int = 100  # k of the IWAE bound
    batch_size: int = 500  # examples per evaluation batch
    train_examples: int = 10000  # the first N training examples are evaluated too (0: none)
    image_examples: int = 10  # test inputs, reconstructions and samples in images.png (0: none)


@dataclass
class Config:
    data: DataConfig = MISSING
    encoder: EncoderConfig = MISSING
    decoder: DecoderConfig = MISSING
    marginal: MarginalConfig = MISSING
    objective: ObjectiveConfig = MISSING
    seed: int = 0
    latent_dim: int = 64
    size: str = "small"  # network presets: small (CPU-sized) or paper (appendix F)
    beta: float = 1.0
    sigma: float = 10.0  # target rate (nats) of objective=target_rate
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # JAX's persistent compilation cache: a run of shapes compiled before starts sooner.
    # null: off. Where, not what: not part of a run's identity.
    compilation_cache_dir: Optional[str] = (
        "${oc.env:RDSWEEP_CACHE,${oc.env:HOME,.}/.cache/rdsweep}/jax")


OPTIONS = {
    "encoder": {"mlp": MLPEncoderConfig, "conv": ConvEncoderConfig,
                "conv_iaf": ConvIAFEncoderConfig, "toy": ToyEncoderConfig},
    "decoder": {"mlp": MLPDecoderConfig, "conv": ConvDecoderConfig,
                "pixelcnn": PixelCNNDecoderConfig, "toy": ToyDecoderConfig},
    "marginal": {"gaussian": GaussianMarginalConfig, "mixture": MixtureMarginalConfig,
                 "vamp": VampMarginalConfig, "maf": MAFMarginalConfig,
                 "categorical": CategoricalMarginalConfig},
    "objective": {"beta": BetaObjectiveConfig, "target_rate": TargetRateObjectiveConfig},
    "data": {
        "binarized_mnist": TFDSDataConfig(name="binarized_mnist"),
        "mnist": TFDSDataConfig(name="mnist", binarization="dynamic"),
        # 105x105, ink 0 -> 28x28, ink 1: PIL's box filter averages each 3.75-pixel cell.
        "omniglot": TFDSDataConfig(name="omniglot", binarization="dynamic", invert=True,
                                   resize="box"),
        "toy": ToyDataConfig,
    },
}


def register() -> None:
    """Stores the schema and every group option in Hydra's ConfigStore."""
    cs = ConfigStore.instance()
    cs.store(name="rdsweep_schema", node=Config)
    for group, options in OPTIONS.items():
        for name, node in options.items():
            cs.store(group=group, name=name, node=node)


class ConfigError(ValueError):
    """A config value outside its valid range; the message names the option."""


# (option, predicate, what is valid)
_RANGES = [
    ("beta", lambda c: c.beta >= 0, "must be >= 0"),
    ("latent_dim", lambda c: c.latent_dim >= 1, "must be an integer >= 1"),
    ("train.steps", lambda c: c.train.steps >= 1, "must be an integer >= 1"),
    ("train.batch_size", lambda c: c.train.batch_size is None or c.train.batch_size >= 1,
     "must be an integer >= 1, or null (full batch)"),
    ("train.lr", lambda c: c.train.lr > 0, "must be > 0"),
    ("train.log_every", lambda c: c.train.log_every >= 1, "must be an integer >= 1"),
    ("train.checkpoint_every", lambda c: c.train.checkpoint_every >= 0,
     "must be an integer >= 0 (0: checkpoint only at the end)"),
    ("train.keep_checkpoints", lambda c: c.train.keep_checkpoints >= 1,
     "must be an integer >= 1"),
    ("eval.iwae_samples", lambda c: c.eval.iwae_samples >= 1, "must be an integer >= 1"),
    ("eval.batch_size", lambda c: c.eval.batch_size >= 1, "must be an integer >= 1"),
    ("eval.train_examples", lambda c: c.eval.train_examples >= 0, "must be an integer >= 0"),
    ("data.binarization", lambda c: c.data.binarization in ("static", "dynamic"),
     "must be one of: static, dynamic"),
    ("size", lambda c: c.size in ("small", "paper"), "must be one of: small, paper"),
    ("train.grid_batching", lambda c: c.train.grid_batching in ("auto", "vmap", "map"),
     "must be one of: auto, vmap, map"),
    ("sigma", lambda c: c.sigma >= 0, "must be >= 0"),
    ("objective.warmup_steps", lambda c: c.objective.warmup_steps >= 0,
     "must be an integer >= 0"),
    ("train.epochs", lambda c: c.train.epochs is None or c.train.epochs > 0, "must be > 0"),
    ("train.lr_hold_steps", lambda c: c.train.lr_hold_steps is None or c.train.lr_hold_steps >= 0,
     "must be an integer >= 0"),
    ("train.lr_hold_epochs",
     lambda c: c.train.lr_hold_epochs is None or c.train.lr_hold_epochs >= 0, "must be >= 0"),
    ("train.lr_hold_epochs",
     lambda c: c.train.lr_hold_steps is None or c.train.lr_hold_epochs is None,
     "give at most one of train.lr_hold_steps and train.lr_hold_epochs"),
    ("eval.image_examples", lambda c: c.eval.image_examples >= 0, "must be an integer >= 0"),
]


# The conv networks' channel lists have one width per layer.
_CONV_LAYERS = {"encoder.channels": 5, "encoder.base.channels": 5, "decoder.channels": 6}

# Knobs of some options only: checked where the chosen option has them.
# (option, predicate on its value, what is valid)
_IF_SET = [
    ("data.resize", lambda v: v in ("none", "box", "bilinear", "lanczos"),
     "must be one of: none, box, bilinear, lanczos"),
    ("data.bins", lambda v: v >= 2, "must be an integer >= 2"),
    ("data.cluster_prob", lambda v: 0 < v < 1, "must be in (0, 1)"),
    ("data.cluster_scale", lambda v: v > 0, "must be > 0"),
    ("data.range", lambda v: len(v) == 2 and v[0] < v[1], "must be [low, high] with low < high"),
] + [(key, lambda v: v >= 1, "must be an integer >= 1")
     for key in ("encoder.steps", "marginal.steps", "marginal.components",
                 "marginal.pseudo_inputs", "decoder.depth", "decoder.resnets_per_block")]


def validate(cfg: Any) -> None:
    """Raises ConfigError naming the first option outside its valid range."""
    for key, ok, valid in _RANGES:
        if not ok(cfg):
            raise ConfigError(f"{key}={OmegaConf.select(cfg, key)} is invalid: {valid}")
    for key, ok, valid in _IF_SET:
        value = OmegaConf.select(cfg, key)
        if value is not None and not ok(value):
            raise ConfigError(f"{key}={_show(value)} is invalid: {valid}")
    for key, layers in _CONV_LAYERS.items():
        value = OmegaConf.select(cfg, key)
        if value is not None and (len(value) != layers or min(value) < 1):
            raise ConfigError(f"{key}={list(value)} is invalid: must list {layers} widths >= 1, "
                              "one per layer of appendix F")
    data_dir = OmegaConf.select(cfg, "data.dir")
    if data_dir is not None and not os.path.isdir(data_dir):
        raise ConfigError(
            f"data.dir={data_dir} is invalid: no such directory (give a tensorflow-datasets "
            "data_dir holding prepared data, or leave data.dir unset to use $TFDS_DATA_DIR)")
    _check_toy(cfg)


def _show(value: Any) -> Any:
    return list(value) if isinstance(value, ListConfig) else value


def _option(cfg: Any, group: str) -> str:
    """The name of the group's chosen option (its `_target_` if it is none of OPTIONS')."""
    target = cfg[group]._target_
    return next((name for name, node in OPTIONS[group].items() if node._target_ == target),
                target)


def _check_toy(cfg: Any) -> None:
    """The toy problem's parts fit only each other; its information must be reachable."""
    encoder, decoder, marginal = (_option(cfg, g) for g in ("encoder", "decoder", "marginal"))
    if (encoder == "toy") != (marginal == "categorical"):
        raise ConfigError(f"marginal={marginal} is invalid with encoder={encoder}: the toy "
                          "encoder's latent is discrete and needs marginal=categorical, which "
                          "fits no other encoder")
    toy_data = cfg.data.name == "toy"
    for group, option in (("encoder", encoder), ("decoder", decoder)):
        if option == "toy" and not toy_data:
            raise ConfigError(f"{group}=toy is invalid with data={cfg.data.name}: it models "
                              "one-hot bins and needs data=toy")
    if not toy_data:
        return
    from rdsweep import toy  # imports jax: only for toy data

    top = toy.widest(cfg.data).information
    if not 0 < cfg.data.information < top:
        raise ConfigError(
            f"data.information={cfg.data.information} is invalid: must be in (0, {top:.4f}) "
            "nats, below I(x; z*) at the widest separation (the clusters' means at the ends of "
            "data.range), which is below H(z*)")
    if cfg.eval.image_examples:
        raise ConfigError(f"eval.image_examples={cfg.eval.image_examples} is invalid: must be 0 "
                          "for data=toy (its examples are bins, not images)")


def job_config(cfg: DictConfig) -> DictConfig:
    """The resolved config of the job alone, without Hydra's own node."""
    job = OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k != "hydra"])
    return OmegaConf.create(OmegaConf.to_container(job, resolve=True))


# Where data and caches are found, not what a run is: not part of its identity.
_LOCATION_KEYS = ("dir", "download", "cache_dir")
_TOP_LOCATION_KEYS = ("compilation_cache_dir",)


def config_hash(cfg: DictConfig) -> str:
    """A short, stable identity of a run: sha256 of the resolved job config, less data locations."""
    job = OmegaConf.to_container(job_config(cfg))
    for key in _LOCATION_KEYS:
        job["data"].pop(key, None)
    for key in _TOP_LOCATION_KEYS:
        job.pop(key, None)
    text = OmegaConf.to_yaml(OmegaConf.create(job), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
