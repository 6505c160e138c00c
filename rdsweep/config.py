"""The config schema: the top level (seed, beta, train, eval, ...) and the base class of each
model group's options, registered in Hydra's ConfigStore by `rdsweep.registry`.

Each option of a group (encoder, decoder, marginal, objective, data) is a dataclass declared
beside its implementation in `rdsweep.options`, so a mistyped key or a wrongly typed value fails
at start-up with Hydra's message, and ranges that types cannot express (beta >= 0, ...) are
checked by the dataclasses' own `check` (see rdsweep.validation), before any output folder exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf

from rdsweep.data import DataSource
from rdsweep.option import above, at_least, one_of, require

# Model configs take their shapes from the top level by interpolation, so that nested
# options (the base encoder inside iaf) see them too.
LATENT = "${latent_dim}"
IMAGE = "${data.image_shape}"
SIZE = "${size}"


@dataclass
class PartConfig:
    """A model part (encoder, decoder, marginal): built by hydra.utils.instantiate."""

    _target_: str = MISSING

    def check(self, key: str) -> None:
        """Raises ConfigError naming key.<field> if a value is out of range."""


@dataclass
class EncoderConfig(PartConfig):
    latent_dim: int = LATENT  # type: ignore[assignment]


@dataclass
class DecoderConfig(PartConfig):
    image_shape: List[int] = IMAGE  # type: ignore[assignment]


@dataclass
class MarginalConfig(PartConfig):
    latent_dim: int = LATENT  # type: ignore[assignment]


@dataclass
class ObjectiveConfig(PartConfig):
    # The key that the objective's sweeps vary, e.g. "beta": the report draws a curve over it
    # and labels points by it.
    KNOB: ClassVar[Optional[str]] = None
    warmup_steps: int = 0  # KL annealing: the rate's weight rises from 0 over these steps

    def check(self, key: str) -> None:
        at_least(f"{key}.warmup_steps", self.warmup_steps, 0)


@dataclass
class TrackerConfig(PartConfig):
    """Where a run's results are reported besides its folder (rdsweep/options/trackers.py)."""


@dataclass
class EarlyStoppingConfig:
    """Stop a run once its validation ELBO (the data's validation split, checked at every log
    line) has not improved for more than `patience` checks in a row, counting only checks from
    `start_step` on (a KL warm-up first); its result is then the model of the best check."""

    patience: Optional[int] = None  # null: train all the steps
    start_step: int = 0

    def check(self, key: str) -> None:
        at_least(f"{key}.patience", self.patience, 0, optional=True)
        at_least(f"{key}.start_step", self.start_step, 0)


@dataclass
class TrainConfig:
    steps: int = 6000
    epochs: Optional[float] = None  # if set: steps = ceil(epochs * train examples / batch_size)
    batch_size: Optional[int] = 64  # null: full batch (every training example, each step)
    lr: float = 1e-3
    normalize_gradients: bool = False  # Adam on g / ||g|| (the paper's optimiser)
    # The norm of normalize_gradients: global (all parameters: the Broken-ELBO paper's) or
    # per_tensor (each parameter array by its own: the VampPrior code's).
    gradient_norm: str = "global"
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
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    # hydra/launcher=grid: how a grid's models are stepped in one program: vmap (batched),
    # map (one after another), auto (rdsweep.cpu_tuning.grid_batching: map for one model or
    # convolutions on the CPU, vmap otherwise).
    grid_batching: str = "auto"
    # XLA:CPU's fusions of the training step (rdsweep.cpu_tuning): xla (its defaults), single_dot
    # (YNNPACK fuses single dots only), auto (single_dot for the conv decoder's models).
    fusions: str = "auto"

    def check(self, key: str) -> None:
        at_least(f"{key}.steps", self.steps, 1)
        at_least(f"{key}.batch_size", self.batch_size, 1, optional=True,
                 also=", or null (full batch)")
        above(f"{key}.lr", self.lr, 0)
        at_least(f"{key}.log_every", self.log_every, 1)
        at_least(f"{key}.checkpoint_every", self.checkpoint_every, 0,
                 also=" (0: checkpoint only at the end)")
        at_least(f"{key}.keep_checkpoints", self.keep_checkpoints, 1)
        one_of(f"{key}.grid_batching", self.grid_batching, ("auto", "vmap", "map"))
        one_of(f"{key}.fusions", self.fusions, ("auto", "xla", "single_dot"))
        one_of(f"{key}.gradient_norm", self.gradient_norm, ("global", "per_tensor"))
        self.early_stopping.check(f"{key}.early_stopping")
        above(f"{key}.epochs", self.epochs, 0, optional=True)
        at_least(f"{key}.lr_hold_steps", self.lr_hold_steps, 0, optional=True)
        at_least(f"{key}.lr_hold_epochs", self.lr_hold_epochs, 0, integer=False, optional=True)
        require(self.lr_hold_steps is None or self.lr_hold_epochs is None,
                f"{key}.lr_hold_epochs", self.lr_hold_epochs,
                f"give at most one of {key}.lr_hold_steps and {key}.lr_hold_epochs")


@dataclass
class EvalConfig:
    iwae_samples: int = 100  # k of the IWAE bound
    batch_size: int = 500  # examples per evaluation batch
    train_examples: int = 10000  # the first N training examples are evaluated too (0: none)
    image_examples: int = 10  # test inputs, reconstructions and samples in images.png (0: none)

    def check(self, key: str) -> None:
        at_least(f"{key}.iwae_samples", self.iwae_samples, 1)
        at_least(f"{key}.batch_size", self.batch_size, 1)
        at_least(f"{key}.train_examples", self.train_examples, 0)
        at_least(f"{key}.image_examples", self.image_examples, 0)


@dataclass
class Config:
    data: DataSource = MISSING
    encoder: EncoderConfig = MISSING
    decoder: DecoderConfig = MISSING
    marginal: MarginalConfig = MISSING
    objective: ObjectiveConfig = MISSING
    tracker: TrackerConfig = MISSING  # where results are reported, not what a run is
    seed: int = 0
    latent_dim: int = 64
    size: str = "small"  # network presets, e.g. small (CPU-sized) or paper (appendix F)
    beta: float = 1.0
    sigma: float = 10.0  # target rate (nats) of objective=target_rate
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # JAX's persistent compilation cache: a run of shapes compiled before starts sooner.
    # null: off. Where, not what: not part of a run's identity.
    compilation_cache_dir: Optional[str] = (
        "${oc.env:RDSWEEP_CACHE,${oc.env:HOME,.}/.cache/rdsweep}/jax")

    @staticmethod
    def check(cfg: DictConfig) -> None:
        """The top level's own values of a composed config (the groups check theirs)."""
        at_least("beta", cfg.beta, 0, integer=False)
        at_least("latent_dim", cfg.latent_dim, 1)
        at_least("sigma", cfg.sigma, 0, integer=False)
        OmegaConf.to_object(cfg.train).check("train")
        require(cfg.train.early_stopping.patience is None
                or OmegaConf.to_object(cfg.data).has_validation(),
                "train.early_stopping.patience", cfg.train.early_stopping.patience,
                f"needs a validation split, which data={cfg.data.name} has not as configured "
                "(data.validation_split=validation for a tfds dataset that has one, "
                "data.validation_examples=N for synthetic)")
        OmegaConf.to_object(cfg.eval).check("eval")


def job_config(cfg: DictConfig) -> DictConfig:
    """The resolved config of the job alone, without Hydra's own node."""
    job = OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k != "hydra"])
    return OmegaConf.create(OmegaConf.to_container(job, resolve=True))
