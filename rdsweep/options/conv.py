"""The convolutional encoder and decoder of appendix F of "Fixing a Broken ELBO" (options
encoder=conv, decoder=conv: the paper's "-" parts). Every layer except the last of each network
is linearly gated (rdsweep.layers.Gated).

Sizes: "paper" is appendix F's channel list; "small" halves every width (CPU-sized). A
`channels` list overrides the preset.

Shapes (for 28x28x1 images, latent_dim L):
- ConvEncoder:  x (B, 28, 28, 1) in {0, 1} -> 28 -> 28 -> 14 -> 14 -> 7 -> 1x1x256 (paper)
  -> DiagGaussian over z, batch (B,), event (L,).
- ConvDecoder:  z (B, L) -> 1x1xL -> 7 -> 7 -> 14 -> 14 -> 28 -> 28 -> logits (B, 28, 28, 1)
  -> Bernoulli, batch (B,), event (28, 28, 1); log_prob in nats.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, ClassVar, Dict, List, Optional, Sequence, Tuple

import jax
import flax.linen as nn

from rdsweep.config import SIZE, DecoderConfig, EncoderConfig
from rdsweep.distributions import Bernoulli, DiagGaussian
from rdsweep.layers import Conv, Deconv, Gated
from rdsweep.option import Option, check_size, preset, require, widths

# Appendix F's widths, layer by layer; "small" halves each.
PAPER_ENCODER_CHANNELS = (32, 32, 64, 64, 256)
PAPER_DECODER_CHANNELS = (64, 64, 64, 32, 32, 32)
ENCODER_PRESETS = {"small": {"channels": tuple(c // 2 for c in PAPER_ENCODER_CHANNELS)},
                   "paper": {"channels": PAPER_ENCODER_CHANNELS}}
DECODER_PRESETS = {"small": {"channels": tuple(c // 2 for c in PAPER_DECODER_CHANNELS)},
                   "paper": {"channels": PAPER_DECODER_CHANNELS}}


def _conv(kernel: int, stride: int, padding: str) -> Callable[[int], nn.Module]:
    return functools.partial(Conv, kernel_size=(kernel, kernel), strides=stride,
                             padding=padding)


def _deconv(kernel: int, stride: int, padding: str) -> Callable[[int], nn.Module]:
    return functools.partial(Deconv, kernel_size=(kernel, kernel), strides=stride,
                             padding=padding)


class ConvFeatures(nn.Module):
    """The encoder's conv stack: x (B, H, W, C) in {0, 1} -> (B, channels[-1]) features.

    Gated Conv(c0,5,1,same) - Conv(c1,5,2,same) - Conv(c2,5,1,same) - Conv(c3,5,2,same) -
    Conv(c4, H/4 x W/4, 1, valid), the last kernel covering the whole remaining map (7x7 for
    28x28 images, as in the paper), so its output is 1x1.
    """

    size: str = "small"
    channels: Optional[Sequence[int]] = None
    PRESETS: ClassVar[Dict[str, Dict[str, Tuple[int, ...]]]] = ENCODER_PRESETS

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = tuple(preset(self, "channels"))
        h = 2.0 * x - 1.0  # inputs in [-1, 1], as in the paper
        for i, (width, stride) in enumerate(zip(c[:4], (1, 2, 1, 2))):
            h = Gated(_conv(5, stride, "SAME"), width, name=f"conv{i}")(h)
        last = functools.partial(Conv, kernel_size=h.shape[-3:-1], padding="VALID")
        h = Gated(last, c[4], name="conv4")(h)  # (B, 1, 1, c4)
        return h.reshape(h.shape[0], -1)


class ConvEncoder(nn.Module):
    """x (B, H, W, C) in {0, 1} -> DiagGaussian(loc = Linear(h), scale = softplus(Linear(h))),
    batch (B,), event (latent_dim,), with h = ConvFeatures(x). `features(x)` returns h, (B, c4)."""

    latent_dim: int
    size: str = "small"
    channels: Optional[Sequence[int]] = None
    PRESETS: ClassVar[Dict[str, Dict[str, Tuple[int, ...]]]] = ENCODER_PRESETS

    def setup(self):
        channels = None if self.channels is None else tuple(self.channels)
        self.body = ConvFeatures(size=self.size, channels=channels)
        self.loc = nn.Dense(self.latent_dim)
        self.scale = nn.Dense(self.latent_dim)

    def features(self, x: jax.Array) -> jax.Array:
        """The final feature vector, (B, c4) (256 at paper size), e.g. as an IAF's context."""
        return self.body(x)

    def __call__(self, x: jax.Array) -> DiagGaussian:
        h = self.body(x)
        return DiagGaussian(self.loc(h), nn.softplus(self.scale(h)))


class ConvDecoder(nn.Module):
    """z (..., L) -> factorized Bernoulli over images, batch z.shape[:-1], event image_shape.

    From z as a 1x1xL map: gated Deconv(c0, H/4, 1, valid) [H/4] - Deconv(c1,5,1,same) -
    Deconv(c2,5,2,same) [H/2] - Deconv(c3,5,1,same) - Deconv(c4,5,2,same) [H] -
    Deconv(c5,4,1,same) - linear Conv(C,5,1,same) -> logits. For 28x28 images the first kernel is
    7, as in the paper. H and W must be multiples of 4.
    """

    image_shape: Tuple[int, ...]
    size: str = "small"
    channels: Optional[Sequence[int]] = None
    PRESETS: ClassVar[Dict[str, Dict[str, Tuple[int, ...]]]] = DECODER_PRESETS

    @nn.compact
    def __call__(self, z: jax.Array) -> Bernoulli:
        height, width, colors = tuple(self.image_shape)
        if height % 4 or width % 4:
            raise ValueError(f"ConvDecoder needs image sides that are multiples of 4, "
                             f"got {tuple(self.image_shape)}")
        c = tuple(preset(self, "channels"))
        h = z.reshape(-1, 1, 1, z.shape[-1])
        first = functools.partial(Deconv, kernel_size=(height // 4, width // 4),
                                  padding="VALID")
        layers = [first, _deconv(5, 1, "SAME"), _deconv(5, 2, "SAME"), _deconv(5, 1, "SAME"),
                  _deconv(5, 2, "SAME"), _deconv(4, 1, "SAME")]
        for i, (layer, width_i) in enumerate(zip(layers, c)):
            h = Gated(layer, width_i, name=f"deconv{i}")(h)
        logits = Conv(colors, (5, 5), padding="SAME", name="out")(h)
        return Bernoulli(logits.reshape(z.shape[:-1] + (height, width, colors)),
                         event_ndims=3)


def _check_conv(key: str, size: str, channels: Optional[List[int]], presets, layers: int) -> None:
    check_size(f"{key}.size", size, presets)
    widths(f"{key}.channels", channels, layers, ", one per layer of appendix F")


@dataclass
class ConvEncoderConfig(EncoderConfig):
    _target_: str = f"{__name__}.ConvEncoder"
    size: str = SIZE
    channels: Optional[List[int]] = None  # overrides the size preset
    PRESETS: ClassVar = ENCODER_PRESETS

    def check(self, key: str) -> None:
        _check_conv(key, self.size, self.channels, self.PRESETS, len(PAPER_ENCODER_CHANNELS))


@dataclass
class ConvDecoderConfig(DecoderConfig):
    _target_: str = f"{__name__}.ConvDecoder"
    size: str = SIZE
    channels: Optional[List[int]] = None  # overrides the size preset
    PRESETS: ClassVar = DECODER_PRESETS

    def check(self, key: str) -> None:
        _check_conv(key, self.size, self.channels, self.PRESETS, len(PAPER_DECODER_CHANNELS))
        height, width = self.image_shape[:2]
        require(len(self.image_shape) == 3 and height % 4 == 0 and width % 4 == 0,
                "data.image_shape", self.image_shape,
                "decoder=conv needs [height, width, channels] with sides multiples of 4")


OPTIONS = [
    Option("encoder", "conv", ConvEncoderConfig, "gated conv net of appendix F -> factorized "
           "Gaussian", code="-"),
    Option("decoder", "conv", ConvDecoderConfig, "gated deconv net of appendix F -> factorized "
           "Bernoulli", code="-"),
]
