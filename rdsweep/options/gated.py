"""Gated MLP encoder and decoder (options encoder=gated_mlp, decoder=gated_mlp): the one-layer
VAE of Tomczak & Welling, "VAE with a VampPrior" (AISTATS 2018), as its code builds it.

A gated dense layer is h = (W x + b) * sigmoid(V x + c) (Dauphin et al. 2017), with no other
non-linearity. Weights are He-initialised (normal, sd sqrt(2 / fan_in)), as in that code.

- GatedEncoder: x (B, *image) in {0, 1} -> gated layers -> DiagGaussian over z, batch (B,),
  event (L,); the log-variance is clipped to `log_var_range` (the code's Hardtanh(-6, 2)).
- GatedDecoder: z (..., L) -> gated layers -> Bernoulli logits over the image, batch
  z.shape[:-1], event image; logits clipped to +-`max_logit` if set (the code clamps the pixel
  probabilities to [1e-5, 1 - 1e-5], i.e. logits to +-11.51).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from rdsweep.config import DecoderConfig, EncoderConfig
from rdsweep.distributions import Bernoulli, DiagGaussian
from rdsweep.option import Option, above, require, widths

HE = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


class GatedDense(nn.Module):
    """(W x + b) * sigmoid(V x + c): x (..., d_in) -> (..., features)."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dense = functools.partial(nn.Dense, self.features, kernel_init=HE)
        return dense(name="h")(x) * nn.sigmoid(dense(name="gate")(x))


def gated_layers(h: jax.Array, hidden: Sequence[int]) -> jax.Array:
    for width in hidden:
        h = GatedDense(width)(h)
    return h


class GatedEncoder(nn.Module):
    latent_dim: int
    hidden: Sequence[int] = (300, 300)
    log_var_range: Tuple[float, float] = (-6.0, 2.0)

    @nn.compact
    def __call__(self, x: jax.Array) -> DiagGaussian:
        h = gated_layers(x.reshape(x.shape[0], -1), self.hidden)
        log_var = jnp.clip(nn.Dense(self.latent_dim, kernel_init=HE, name="log_var")(h),
                           *self.log_var_range)
        return DiagGaussian(nn.Dense(self.latent_dim, kernel_init=HE, name="loc")(h),
                            jnp.exp(0.5 * log_var))


class GatedDecoder(nn.Module):
    image_shape: Tuple[int, ...]
    hidden: Sequence[int] = (300, 300)
    max_logit: Optional[float] = None

    @nn.compact
    def __call__(self, z: jax.Array) -> Bernoulli:
        h = gated_layers(z, self.hidden)
        logits = nn.Dense(math.prod(self.image_shape), kernel_init=HE, name="logits")(h)
        if self.max_logit is not None:
            logits = jnp.clip(logits, -self.max_logit, self.max_logit)
        return Bernoulli(logits.reshape(z.shape[:-1] + tuple(self.image_shape)),
                         event_ndims=len(self.image_shape))


@dataclass
class GatedEncoderConfig(EncoderConfig):
    _target_: str = f"{__name__}.GatedEncoder"
    hidden: List[int] = field(default_factory=lambda: [300, 300])
    log_var_range: List[float] = field(default_factory=lambda: [-6.0, 2.0])

    def check(self, key: str) -> None:
        widths(f"{key}.hidden", self.hidden)
        low_high = list(self.log_var_range)
        require(len(low_high) == 2 and low_high[0] < low_high[1], f"{key}.log_var_range",
                low_high, "must be [low, high] with low < high")


@dataclass
class GatedDecoderConfig(DecoderConfig):
    _target_: str = f"{__name__}.GatedDecoder"
    hidden: List[int] = field(default_factory=lambda: [300, 300])
    max_logit: Optional[float] = None  # null: logits unclipped

    def check(self, key: str) -> None:
        widths(f"{key}.hidden", self.hidden)
        above(f"{key}.max_logit", self.max_logit, 0, optional=True)


OPTIONS = [
    Option("encoder", "gated_mlp", GatedEncoderConfig,
           "gated dense layers -> factorized Gaussian (the VampPrior paper's VAE)", code="-"),
    Option("decoder", "gated_mlp", GatedDecoderConfig,
           "gated dense layers -> factorized Bernoulli (the VampPrior paper's VAE)", code="-"),
]
