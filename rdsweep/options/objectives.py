"""The training objectives (options objective=beta, objective=target_rate): the loss from the
batch-mean rate and distortion (nats).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import struct

from rdsweep.config import ObjectiveConfig
from rdsweep.option import Option, at_least


def warmup(step: jax.Array, warmup_steps: int) -> jax.Array:
    """KL annealing weight: rises linearly from 0 at step 0 to 1 at `warmup_steps` (0: always 1)."""
    if warmup_steps <= 0:
        return jnp.ones((), jnp.float32)
    return jnp.minimum(1.0, step / warmup_steps).astype(jnp.float32)


# Objectives are pytrees whose weights (beta, sigma) are leaves: they live in the train state,
# so a grid of models that differ only in them trains as one vmapped program.
@struct.dataclass
class BetaObjective:
    """D + beta * R (beta = 1: the negative ELBO); beta is annealed over `warmup_steps`."""

    beta: float
    warmup_steps: int = struct.field(pytree_node=False, default=0)

    def __call__(self, rate: jax.Array, distortion: jax.Array, step: jax.Array) -> jax.Array:
        """rate, distortion: batch means (nats); step: the optimiser step. Returns the loss."""
        return distortion + self.beta * warmup(step, self.warmup_steps) * rate


@struct.dataclass
class TargetRateObjective:
    """D + |sigma - R|: pins the (batch-mean) rate at sigma nats; the penalty is annealed."""

    sigma: float
    warmup_steps: int = struct.field(pytree_node=False, default=0)

    def __call__(self, rate: jax.Array, distortion: jax.Array, step: jax.Array) -> jax.Array:
        return distortion + warmup(step, self.warmup_steps) * jnp.abs(self.sigma - rate)


@dataclass
class BetaObjectiveConfig(ObjectiveConfig):
    KNOB = "beta"
    _target_: str = f"{__name__}.BetaObjective"
    beta: float = "${beta}"  # type: ignore[assignment]  # the top-level sweep key

    def check(self, key: str) -> None:
        super().check(key)
        at_least(f"{key}.beta", self.beta, 0, integer=False)


@dataclass
class TargetRateObjectiveConfig(ObjectiveConfig):
    KNOB = "sigma"
    _target_: str = f"{__name__}.TargetRateObjective"
    sigma: float = "${sigma}"  # type: ignore[assignment]  # the top-level sweep key

    def check(self, key: str) -> None:
        super().check(key)
        at_least(f"{key}.sigma", self.sigma, 0, integer=False)


OPTIONS = [
    Option("objective", "beta", BetaObjectiveConfig, "D + beta R (beta = 1: the negative ELBO)"),
    Option("objective", "target_rate", TargetRateObjectiveConfig,
           "D + |sigma - R|: pins the rate at sigma nats"),
]
