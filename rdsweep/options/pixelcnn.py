"""The PixelCNN++-style autoregressive Bernoulli decoder of appendix F of "Fixing a Broken ELBO".

z -> gated Dense -> H*W values, reshaped to a context map (B, H, W, 1), which joins the image
(B, H, W, 1) as the network's 2-channel input: the first layer sees the image channel through
shifted convs (appendix F's "masked" image) and the context channel through a 1x1 conv. The
network follows PixelCNN++ (Salimans et al. 2017) with gated activations (rdsweep.layers.Gated /
gate) throughout:

- two streams: "u" sees the image rows strictly above a pixel (down-shifted convs, kernel 2x3),
  "ul" sees the rows above and the pixels to the left in the pixel's own row
  (down-right-shifted convs, kernel 2x2, plus a 1x1 shortcut from u);
- six blocks at H, H/2, H/4 (up pass) and H/4, H/2, H (down pass), each of gated resnet layers,
  with strided shifted convs to go down and transposed shifted convs to go up; every output of
  the up pass feeds the down-pass layer of the same size (PixelCNN++'s shortcut connections),
  so the down-pass blocks have one more layer than the up-pass ones after the first;
- the final ul map (B, H, W, depth) -> 1x1 conv -> one Bernoulli logit per pixel.

Causality: the logit of pixel i (raster order) depends only on image pixels < i; the context
map enters unshifted (through a 1x1 conv), so z reaches every pixel, the first one too.

Sizes: "paper": depth 64, 2 resnet layers per block; "small": depth 32, 1 per block; "tiny":
depth 8, 1 per block (the MLP-scale "+" decoder: it sees the whole image, trains at a few hundred
images/s on 2 CPU cores, and ignores z at beta = 1); `depth` and `resnets_per_block` override the
preset. Images must be single-channel with sides that are
multiples of 4 (28x28x1 for MNIST).

`PixelCNNDecoder(z)` returns a `PixelCNNBernoulli`: `log_prob(x)` is one parallel pass (nats,
summed over pixels); `sample_and_log_prob(key, n)` runs the network once per pixel inside a
`lax.fori_loop` (H*W passes), so it is for drawing samples, not for training.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import flax.linen as nn
from flax import struct

from rdsweep.config import SIZE, DecoderConfig
from rdsweep.distributions import Bernoulli, Distribution
from rdsweep.layers import Conv, Deconv, Gated, gate
from rdsweep.option import Option, at_least, check_size, preset, require

PRESETS = {"tiny": {"depth": 8, "resnets_per_block": 1},
           "small": {"depth": 32, "resnets_per_block": 1},
           "paper": {"depth": 64, "resnets_per_block": 2}}


def down_shift(x: jax.Array) -> jax.Array:
    """(B, H, W, C): row r takes row r-1's values; the top row becomes zeros."""
    return jnp.pad(x, ((0, 0), (1, 0), (0, 0), (0, 0)))[:, :-1]


def right_shift(x: jax.Array) -> jax.Array:
    """(B, H, W, C): column c takes column c-1's values; the left column becomes zeros."""
    return jnp.pad(x, ((0, 0), (0, 0), (1, 0), (0, 0)))[:, :, :-1]


class ShiftedConv(nn.Module):
    """Conv whose output at (r, c) reads only input rows <= r: padded on top by kh-1 and, with
    right=False, kw//2 on each side (down-shifted: columns c-kw//2 .. c+kw//2), with right=True
    kw-1 on the left (down-right-shifted: columns <= c). With stride 2 the output (i, j) reads
    input rows <= 2i (and columns <= 2j when right). Output (B, ceil(H/s), ceil(W/s), features).
    """

    features: int
    kernel: Tuple[int, int] = (2, 3)
    right: bool = False
    stride: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = self.kernel
        cols = (kw - 1, 0) if self.right else ((kw - 1) // 2, (kw - 1) // 2)
        return Conv(self.features, self.kernel, strides=self.stride,
                    padding=((kh - 1, 0), cols), name="conv")(x)


# The two streams' layers: u is down-shifted (2x3), ul down-right-shifted (2x2).
U_CONV = functools.partial(ShiftedConv, kernel=(2, 3), right=False)
UL_CONV = functools.partial(ShiftedConv, kernel=(2, 2), right=True)
U_DOWN = functools.partial(ShiftedConv, kernel=(2, 3), right=False, stride=2)
UL_DOWN = functools.partial(ShiftedConv, kernel=(2, 2), right=True, stride=2)
# Up: stride-2 transposed convs with 2 kernel rows, "SAME": output row r reads input row r // 2
# only (and, for 2x2, output column c reads input column c // 2 only).
U_UP = functools.partial(Deconv, kernel_size=(2, 3), strides=2, padding="SAME")
UL_UP = functools.partial(Deconv, kernel_size=(2, 2), strides=2, padding="SAME")


class GatedResnet(nn.Module):
    """x + gate(conv(gate(conv(x) + 1x1(aux)))): conv is one stream's shifted conv (keeps the
    stream's causality); aux (same H, W), if given, is a shortcut from another stream or an
    earlier block. Shapes: x (B, H, W, d) -> (B, H, W, d)."""

    conv: Any  # features -> shifted conv module

    @nn.compact
    def __call__(self, x: jax.Array, aux: Optional[jax.Array] = None) -> jax.Array:
        depth = x.shape[-1]
        h = self.conv(2 * depth)(x)
        if aux is not None:
            h = h + nn.Dense(2 * depth, name="aux")(aux)
        return x + Gated(self.conv, depth)(gate(h))


class PixelCNNNet(nn.Module):
    """(context (B, H, W, 1), image (B, H, W, 1) in {0, 1}) -> logits (B, H, W, 1); the logit at
    pixel i (raster order) depends on image pixels < i only, and on the context anywhere."""

    depth: int
    resnets: int

    @nn.compact
    def __call__(self, context: jax.Array, x: jax.Array) -> jax.Array:
        d, n = self.depth, self.resnets
        x = 2.0 * x - 1.0  # pixels in [-1, 1]: unlike 0, distinct from the shifts' zero padding
        # First layer, on the 2-channel input: the image channel through shifted convs (u sees
        # the rows above, ul the rows above and the pixels to the left), the context channel
        # through a 1x1 conv, unshifted.
        u = gate(down_shift(U_CONV(2 * d, name="in_u")(x))
                 + nn.Dense(2 * d, name="context_u")(context))
        ul = gate(down_shift(ShiftedConv(2 * d, (1, 3), name="in_ul_above")(x))
                  + right_shift(ShiftedConv(2 * d, (2, 1), right=True, name="in_ul_left")(x))
                  + nn.Dense(2 * d, name="context_ul")(context))
        us, uls = [u], [ul]
        # Up pass: blocks at H, H/2, H/4, every output kept for the down pass.
        for block in range(3):
            if block:
                us.append(Gated(U_DOWN, d, name=f"up{block}_down_u")(us[-1]))
                uls.append(Gated(UL_DOWN, d, name=f"up{block}_down_ul")(uls[-1]))
            for i in range(n):
                us.append(GatedResnet(U_CONV, name=f"up{block}_u{i}")(us[-1]))
                uls.append(GatedResnet(UL_CONV, name=f"up{block}_ul{i}")(uls[-1], us[-1]))
        # Down pass: blocks at H/4, H/2, H, each layer fed the matching up-pass output.
        u, ul = us.pop(), uls.pop()
        for block in range(3):
            if block:
                u = Gated(U_UP, d, name=f"down{block}_up_u")(u)
                ul = Gated(UL_UP, d, name=f"down{block}_up_ul")(ul)
            for i in range(n + (block > 0)):
                u = GatedResnet(U_CONV, name=f"down{block}_u{i}")(u, us.pop())
                ul = GatedResnet(UL_CONV, name=f"down{block}_ul{i}")(
                    ul, jnp.concatenate([u, uls.pop()], axis=-1))
        assert not us and not uls  # every up-pass output was used once
        return nn.Dense(1, name="logits")(ul)


class PixelCNNBernoulli(Distribution):
    """Autoregressive Bernoulli over images (..., H, W, 1), batch = context.shape[:-3].

    context: the decoder's map of z, (*batch, H, W, 1); variables: the network's variables;
    net: the (unbound) PixelCNNNet. A pytree (context and variables are leaves), so it can
    cross jit boundaries; log-probabilities are in nats, summed over pixels.
    """

    context: jax.Array
    variables: Any
    net: PixelCNNNet = struct.field(pytree_node=False)

    def logits(self, x: jax.Array) -> jax.Array:
        """Logits of every pixel given the pixels before it, one parallel pass. x: (*s, H, W, 1)
        with s broadcastable against batch (e.g. (n, *batch) samples); result: x broadcast."""
        image = self.context.shape[-3:]
        shape = jnp.broadcast_shapes(x.shape[:-3], self.context.shape[:-3]) + image
        context = jnp.broadcast_to(self.context, shape).reshape((-1,) + image)
        x = jnp.broadcast_to(x, shape).reshape((-1,) + image).astype(context.dtype)
        return self.net.apply(self.variables, context, x).reshape(shape)

    def log_prob(self, x: jax.Array) -> jax.Array:
        """log d(x | z) in nats, (*batch,)."""
        return Bernoulli(self.logits(x), event_ndims=3).log_prob(x)

    def sample_and_log_prob(self, key: jax.Array, n: int) -> Tuple[jax.Array, jax.Array]:
        """n samples per batch element, (n, *batch, H, W, 1) in {0, 1}, drawn pixel by pixel in
        raster order (one network pass per pixel), and their log-probabilities, (n, *batch),
        summed from the logits each pixel was drawn with."""
        batch, image = self.context.shape[:-3], self.context.shape[-3:]
        height, width, _ = image
        m = n * math.prod(batch)
        context = jnp.broadcast_to(self.context, (n,) + self.context.shape).reshape((m,) + image)
        dtype = context.dtype
        # One uniform per pixel up front: pixel = [u < sigmoid(logit)] is a Bernoulli(logit) draw.
        uniforms = jax.random.uniform(key, (m, height, width), dtype)

        def step(i, carry):
            x, log_p = carry
            r, c = i // width, i % width
            logit = self.net.apply(self.variables, context, x)[:, r, c, 0]
            pixel = (uniforms[:, r, c] < nn.sigmoid(logit)).astype(dtype)
            log_p = log_p + Bernoulli(logit, event_ndims=0).log_prob(pixel)
            return x.at[:, r, c, 0].set(pixel), log_p

        x, log_p = jax.lax.fori_loop(0, height * width, step,
                                     (jnp.zeros((m,) + image, dtype), jnp.zeros((m,), dtype)))
        return x.reshape((n,) + batch + image), log_p.reshape((n,) + batch)


class PixelCNNDecoder(nn.Module):
    """z (..., L) -> PixelCNNBernoulli over images of image_shape (H, W, 1), batch z.shape[:-1].

    z -> gated Dense(H*W) -> context map (..., H, W, 1) -> PixelCNNNet(depth, resnets_per_block).
    """

    image_shape: Tuple[int, ...]
    size: str = "small"
    depth: Optional[int] = None
    resnets_per_block: Optional[int] = None
    PRESETS: ClassVar[Dict[str, Dict[str, int]]] = PRESETS

    @nn.compact
    def __call__(self, z: jax.Array) -> PixelCNNBernoulli:
        image = tuple(int(s) for s in self.image_shape)
        if len(image) != 3 or image[2] != 1 or image[0] % 4 or image[1] % 4:
            raise ValueError(f"PixelCNNDecoder needs (H, W, 1) images with H and W multiples "
                             f"of 4, got {image}")
        depth, resnets = int(preset(self, "depth")), int(preset(self, "resnets_per_block"))
        context = Gated(nn.Dense, math.prod(image), name="context")(z)
        context = context.reshape(z.shape[:-1] + image)
        net = PixelCNNNet(depth, resnets, name="net")
        if self.is_initializing():  # create the network's parameters
            flat = context.reshape((-1,) + image)
            net(flat, jnp.zeros_like(flat))
        # The distribution applies the network itself (log_prob, and once per pixel when
        # sampling inside lax loops), so it gets the unbound module and its variables.
        module, variables = net.unbind()
        return PixelCNNBernoulli(context=context, variables=variables, net=module)


@dataclass
class PixelCNNDecoderConfig(DecoderConfig):
    _target_: str = f"{__name__}.PixelCNNDecoder"
    size: str = SIZE
    depth: Optional[int] = None  # overrides the size preset
    resnets_per_block: Optional[int] = None  # overrides the size preset
    PRESETS: ClassVar = PRESETS

    def check(self, key: str) -> None:
        check_size(f"{key}.size", self.size, PRESETS)
        at_least(f"{key}.depth", self.depth, 1, optional=True)
        at_least(f"{key}.resnets_per_block", self.resnets_per_block, 1, optional=True)
        shape = self.image_shape
        require(len(shape) == 3 and shape[2] == 1 and shape[0] % 4 == 0 and shape[1] % 4 == 0,
                "data.image_shape", shape, "decoder=pixelcnn needs [height, width, 1] with "
                "sides multiples of 4")


OPTIONS = [
    Option("decoder", "pixelcnn", PixelCNNDecoderConfig,
           "gated PixelCNN++ (appendix F): autoregressive Bernoulli over the whole image",
           code="+"),
]
