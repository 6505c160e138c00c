"""Decoder option linear: d(x|z) = prod_i Bernoulli(x_i; sigmoid(W z + b)_i), a factorized
Bernoulli whose logits are linear in z (the weakest decoder; a baseline for what z must carry).

It is also the smallest complete option, the example to copy for a new one: a Flax module that
returns a distribution (rdsweep.distributions), its config dataclass (the group's keys, their
checks) and its `Option` entry; rdsweep.registry finds it, and tests/test_linear.py tests it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Tuple

import flax.linen as nn
import jax

from rdsweep.config import DecoderConfig
from rdsweep.distributions import Bernoulli
from rdsweep.option import Option


class LinearDecoder(nn.Module):
    """z (..., L) -> Bernoulli logits W z + b over images of image_shape, batch z.shape[:-1]."""

    image_shape: Tuple[int, ...]

    @nn.compact
    def __call__(self, z: jax.Array) -> Bernoulli:
        logits = nn.Dense(math.prod(self.image_shape))(z)
        return Bernoulli(logits.reshape(z.shape[:-1] + tuple(self.image_shape)),
                         event_ndims=len(self.image_shape))


@dataclass
class LinearDecoderConfig(DecoderConfig):
    _target_: str = f"{__name__}.LinearDecoder"


OPTIONS = [
    Option("decoder", "linear", LinearDecoderConfig,
           "factorized Bernoulli with logits linear in z (the weakest decoder)"),
]
