"""Layers shared by the conv and PixelCNN parts: the linear gate, and conv / transposed-conv
layers that are fast on the CPU.

`Gated` makes any linear layer linearly gated, h(x) = (W1 x + b1) * sigmoid(W2 x + b2) (dense,
conv or transposed conv; one layer with twice the outputs, split in half, so W1 and W2 together
have 2 * (weights + biases) of the plain layer).

The conv layers (`Conv`, `Deconv`) have the parameters and outputs of flax's nn.Conv and
nn.ConvTranspose, but compute through `conv2d`, a stride-1 conv with a hand-written gradient, so
that training is fast on CPU, inside lax.scan too (see the note above conv2d).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Tuple

import jax
import jax.numpy as jnp
import flax.linen as nn
import numpy as np


def gate(h: jax.Array) -> jax.Array:
    """(..., 2n) -> (..., n): first half * sigmoid(second half)."""
    a, b = jnp.split(h, 2, axis=-1)
    return a * nn.sigmoid(b)


class Gated(nn.Module):
    """Linearly gated layer h(x) = (W1 x + b1) * sigmoid(W2 x + b2).

    layer: features -> a linear flax module (e.g. functools.partial(Conv, kernel_size=(5, 5)));
    it is built once with 2 * features outputs, which hold both W1 and W2.
    Output: x's leading axes, last axis `features`.
    """

    layer: Callable[[int], nn.Module]
    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return gate(self.layer(2 * self.features)(x))


# XLA:CPU runs the convs of lax's own gradients (batch-contracting kernel gradients, in/out-
# swapped input gradients, dilated transposed convs) 10-20x slower inside loops (lax.scan over
# training steps; jax issue #12868) and slower than need be outside. So every conv here is a
# stride-1 forward conv with a hand-written gradient made of forward convs and matmuls;
# strides and transposes are rewritten into stride-1 convs (space-to-depth, pixel shuffle).
Padding = Tuple[Tuple[int, int], Tuple[int, int]]
_DIMS = ("NHWC", "HWIO", "NHWC")


def _forward_conv(x: jax.Array, kernel: jax.Array, padding: Padding) -> jax.Array:
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=_DIMS)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv2d(x: jax.Array, kernel: jax.Array, padding: Padding) -> jax.Array:
    """Stride-1 conv, x (B, H, W, C), kernel (kh, kw, C, F), padding ((top, bottom), (left,
    right)) (negative crops) -> (B, H + top + bottom - kh + 1, W + left + right - kw + 1, F)."""
    return _forward_conv(x, kernel, padding)


def _conv2d_fwd(x, kernel, padding):
    return _forward_conv(x, kernel, padding), (x, kernel)


def _conv2d_bwd(padding, residuals, g):
    x, kernel = residuals
    kh, kw, c, f = kernel.shape
    (top, bottom), (left, right) = padding
    # Input gradient: a forward conv of g with the flipped kernel, inputs and outputs swapped.
    flipped = jnp.flip(kernel, (0, 1)).swapaxes(2, 3)
    dx = _forward_conv(g, flipped, ((kh - 1 - top, kh - 1 - bottom),
                                    (kw - 1 - left, kw - 1 - right)))
    # Kernel gradient: one matmul per tap, contracting batch and positions.
    xp = jax.lax.pad(x, jnp.zeros((), x.dtype),
                     ((0, 0, 0), (top, bottom, 0), (left, right, 0), (0, 0, 0)))
    oh, ow = g.shape[1:3]
    g2 = g.reshape(-1, f)
    taps = [xp[:, a:a + oh, b:b + ow].reshape(-1, c).T @ g2 for a in range(kh) for b in range(kw)]
    return dx, jnp.stack(taps).reshape(kh, kw, c, f)


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def strided_conv2d(x: jax.Array, kernel: jax.Array, stride: int, padding: Padding) -> jax.Array:
    """lax.conv_general_dilated(x, kernel, (stride, stride), padding), NHWC/HWIO, computed as a
    stride-1 conv2d of the space-to-depth of x with the kernel's taps regrouped likewise."""
    if stride == 1:
        return conv2d(x, kernel, padding)
    s, (b, h, w, c), (kh, kw, _, f) = stride, x.shape, kernel.shape
    (top, bottom), (left, right) = padding
    oh, ow = (h + top + bottom - kh) // s + 1, (w + left + right - kw) // s + 1
    qh, qw = -(-kh // s), -(-kw // s)  # kernel size in blocks of s x s
    hp, wp = (oh + qh - 1) * s, (ow + qw - 1) * s  # the padded input the output reads
    xp = jax.lax.pad(x, jnp.zeros((), x.dtype),
                     ((0, 0, 0), (top, hp - h - top, 0), (left, wp - w - left, 0), (0, 0, 0)))
    xs = xp.reshape(b, hp // s, s, wp // s, s, c).transpose(0, 1, 3, 2, 4, 5)
    ks = jnp.pad(kernel, ((0, qh * s - kh), (0, qw * s - kw), (0, 0), (0, 0)))
    ks = ks.reshape(qh, s, qw, s, c, f).transpose(0, 2, 1, 3, 4, 5)
    return conv2d(xs.reshape(b, hp // s, wp // s, s * s * c), ks.reshape(qh, qw, s * s * c, f),
                  ((0, 0), (0, 0)))


def _kernel_and_bias(module: nn.Module, x: jax.Array, kh: int, kw: int):
    """Declares nn.Conv's parameters (same names, shapes and initialisers) in `module`."""
    kernel = module.param("kernel", nn.initializers.lecun_normal(),
                          (kh, kw, x.shape[-1], module.features), x.dtype)
    bias = module.param("bias", nn.initializers.zeros, (module.features,), x.dtype)
    return kernel, bias


class Conv(nn.Module):
    """nn.Conv's parameters and outputs (square strides; padding "SAME", "VALID" or
    ((top, bottom), (left, right))), through conv2d. x (B, H, W, C) -> (B, H', W', features)."""

    features: int
    kernel_size: Tuple[int, int]
    strides: int = 1
    padding: Any = "SAME"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = self.kernel_size
        kernel, bias = _kernel_and_bias(self, x, kh, kw)
        if isinstance(self.padding, str):
            pads = jax.lax.padtype_to_pads(x.shape[1:3], (kh, kw), (self.strides,) * 2,
                                           self.padding)
        else:
            pads = self.padding
        pads = tuple((int(lo), int(hi)) for lo, hi in pads)
        if pads == ((0, 0), (0, 0)) and (kh, kw) == x.shape[-3:-1]:
            # The kernel covers the whole input (the encoder's last layer): a matmul, which
            # XLA:CPU runs several times faster than the same conv.
            y = x.reshape(x.shape[0], -1) @ kernel.reshape(-1, self.features)
            return y.reshape(x.shape[0], 1, 1, self.features) + bias
        return strided_conv2d(x, kernel, self.strides, pads) + bias


def _deconv_taps(n: int, k: int, s: int,
                 padding: str) -> Tuple[np.ndarray, int, int, Tuple[int, int]]:
    """One spatial axis of a transposed conv (lax.conv_transpose's conventions) as s phases of
    an ordinary conv at input resolution.

    The transposed conv is y[o] = sum_t x[(o + t - pad_a) / s] W[t] over the t where the index is
    a whole number in range; with o = s*m + a this is sum_off x[m + off] W[s*off + pad_a - a].
    Returns taps (offsets, s): the kernel index of each (offset, phase), k where there is none;
    the phase count P (outputs m per phase), the output size, and the conv's (low, high) padding.
    """
    if padding == "SAME":
        pad_len = k + s - 2
        pad_a = k - 1 if s > k - 1 else -(-pad_len // 2)
    elif padding == "VALID":
        pad_len = k + s - 2 + max(k - s, 0)
        pad_a = k - 1
    else:
        raise ValueError(f"Deconv padding must be 'SAME' or 'VALID', got {padding!r}")
    out = (n - 1) * s + pad_len - k + 2
    phases = -(-out // s)
    lo, hi = -(pad_a // s), (k + s - 2 - pad_a) // s
    t = s * np.arange(lo, hi + 1)[:, None] + pad_a - np.arange(s)[None, :]
    taps = np.where((t >= 0) & (t < k), t, k)
    return taps, phases, out, (int(-lo), int(phases - 1 + hi - (n - 1)))


class Deconv(nn.Module):
    """Transposed conv with nn.ConvTranspose's parameters and outputs (padding "SAME":
    out = in * strides; "VALID": out = in * strides + max(kernel - strides, 0)), computed as an
    ordinary conv2d at input resolution with strides**2 * features outputs (one per phase) and a
    pixel shuffle. x (B, H, W, C) -> (B, H', W', features)."""

    features: int
    kernel_size: Tuple[int, int]
    strides: int = 1
    padding: str = "SAME"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        (kh, kw), s = self.kernel_size, self.strides
        kernel, bias = _kernel_and_bias(self, x, kh, kw)
        if x.shape[-3:-1] == (1, 1) and self.padding == "VALID" and s == 1:
            # From a 1x1 map (the decoder's first layer), each output pixel is x times one
            # (flipped) tap: a matmul rather than a conv of a mostly zero padded input.
            taps = jnp.flip(kernel, (0, 1)).transpose(2, 0, 1, 3).reshape(x.shape[-1], -1)
            y = x.reshape(x.shape[0], -1) @ taps
            return y.reshape(x.shape[0], kh, kw, self.features) + bias
        (th, ph, oh, pad_h), (tw, pw, ow, pad_w) = (
            _deconv_taps(x.shape[-3], kh, s, self.padding),
            _deconv_taps(x.shape[-2], kw, s, self.padding))
        padded = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))  # index k: a zero tap
        w = padded[th[:, None, :, None], tw[None, :, None, :]]  # (Kh, Kw, s, s, C, F)
        w = w.transpose(0, 1, 4, 2, 3, 5).reshape(w.shape[:2] + (x.shape[-1], -1))
        y = conv2d(x, w, (pad_h, pad_w))
        b = x.shape[0]
        y = y.reshape(b, ph, pw, s, s, self.features).transpose(0, 1, 3, 2, 4, 5)
        return y.reshape(b, ph * s, pw * s, self.features)[:, :oh, :ow] + bias
