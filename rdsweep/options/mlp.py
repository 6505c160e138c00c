"""The MLP encoder and decoder (options encoder=mlp, decoder=mlp): the CPU-scale "-" parts.

- MLPEncoder: x (B, *image) in {0, 1} -> MLP -> DiagGaussian over z, batch (B,), event (L,).
- MLPDecoder: z (..., L) -> MLP -> factorized Bernoulli logits, batch z.shape[:-1], event image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

import flax.linen as nn
import jax

from rdsweep.config import DecoderConfig, EncoderConfig
from rdsweep.distributions import Bernoulli, DiagGaussian
from rdsweep.option import Option, widths


class MLP(nn.Module):
    """Dense layers with ReLU between them; the last layer is linear."""

    features: Sequence[int]

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        for i, width in enumerate(self.features):
            h = nn.Dense(width)(h)
            if i < len(self.features) - 1:
                h = nn.relu(h)
        return h


class MLPEncoder(nn.Module):
    """x -> MLP -> factorized Gaussian (scale = softplus)."""

    latent_dim: int
    hidden: Sequence[int] = (512, 512)

    @nn.compact
    def __call__(self, x: jax.Array) -> DiagGaussian:
        h = 2.0 * x.reshape(x.shape[0], -1) - 1.0  # inputs in [-1, 1], as in the paper
        h = nn.relu(MLP(tuple(self.hidden))(h))
        return DiagGaussian(nn.Dense(self.latent_dim, name="loc")(h),
                            nn.softplus(nn.Dense(self.latent_dim, name="scale")(h)))


class MLPDecoder(nn.Module):
    """z -> MLP -> factorized Bernoulli logits over the image."""

    image_shape: Tuple[int, ...]
    hidden: Sequence[int] = (512, 512)

    @nn.compact
    def __call__(self, z: jax.Array) -> Bernoulli:
        logits = MLP(tuple(self.hidden) + (math.prod(self.image_shape),))(z)
        return Bernoulli(logits.reshape(z.shape[:-1] + tuple(self.image_shape)),
                         event_ndims=len(self.image_shape))


@dataclass
class MLPEncoderConfig(EncoderConfig):
    _target_: str = f"{__name__}.MLPEncoder"
    hidden: List[int] = field(default_factory=lambda: [512, 512])

    def check(self, key: str) -> None:
        widths(f"{key}.hidden", self.hidden)


@dataclass
class MLPDecoderConfig(DecoderConfig):
    _target_: str = f"{__name__}.MLPDecoder"
    hidden: List[int] = field(default_factory=lambda: [512, 512])

    def check(self, key: str) -> None:
        widths(f"{key}.hidden", self.hidden)


OPTIONS = [
    Option("encoder", "mlp", MLPEncoderConfig, "MLP (ReLU) -> factorized Gaussian", code="-"),
    Option("decoder", "mlp", MLPDecoderConfig, "MLP (ReLU) -> factorized Bernoulli", code="-"),
]
