"""The benchmark's `layers` section: forward and forward + backward time of each conv layer of
`conv_small`, and of each kind of layer of `pixelcnn_small`'s network, in rdsweep and in
PyTorch, against one training step of the whole model."""

from __future__ import annotations

import functools
from typing import Any, Callable, List, NamedTuple, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from benchmarks.measure import (affordable_steps, compose_config, model_overrides, note,
                                side_by_side, torch_available, training_rate)
from benchmarks.sections import Plan, Row
from rdsweep import cpu_tuning
from rdsweep.layers import Conv, Deconv, Gated
from rdsweep.options import pixelcnn
from rdsweep.options.conv import DECODER_PRESETS, ENCODER_PRESETS


class Layer(NamedTuple):
    """One timed layer, run `count` times per training step of its model."""
    label: str
    flax: nn.Module  # rdsweep's layer, unbound
    torch: Callable[[Any], Any]  # benchmarks.torch_reference -> the PyTorch twin
    shapes: Tuple[Tuple[int, int, int], ...]  # (H, W, C) of each input, batch excluded
    count: int = 1


def _conv_torch(side: int, c_in: int, c_out: int, k: int, stride: int, kind: str,
                padding: str, t: Any) -> Any:
    """conv_small's layer as torch_reference (module t) builds it."""
    from torch import nn as tnn

    if kind == "deconv" and padding == "VALID":
        return t.gated(tnn.ConvTranspose2d, c_in, c_out, k)
    if kind == "deconv" and stride == 2:
        return t.gated(tnn.ConvTranspose2d, c_in, c_out, k, stride, padding=k // 2,
                       output_padding=1)
    if k % 2 == 0:  # even kernel, "same": padded 2 before and 1 after, as flax does
        return tnn.Sequential(tnn.ZeroPad2d((k // 2, k // 2 - 1) * 2),
                              t.gated(tnn.Conv2d, c_in, c_out, k))
    if kind == "out":
        return tnn.Conv2d(c_in, c_out, k, padding=k // 2)
    return t.gated(tnn.Conv2d, c_in, c_out, k, stride,
                   padding=k // 2 if padding == "SAME" else 0)


def conv_small_layers() -> List[Layer]:
    """conv_small's conv layers, in order, as rdsweep.options.conv builds them at the small
    presets' widths; c_out counts a gated layer's outputs (it computes twice as many)."""
    e = ENCODER_PRESETS["small"]["channels"]
    d = DECODER_PRESETS["small"]["channels"]
    latent = compose_config([]).latent_dim
    specs = [("encoder conv0", 28, 1, e[0], 5, 1, "conv", "SAME"),
             ("encoder conv1", 28, e[0], e[1], 5, 2, "conv", "SAME"),
             ("encoder conv2", 14, e[1], e[2], 5, 1, "conv", "SAME"),
             ("encoder conv3", 14, e[2], e[3], 5, 2, "conv", "SAME"),
             ("encoder conv4", 7, e[3], e[4], 7, 1, "conv", "VALID"),
             ("decoder deconv0", 1, latent, d[0], 7, 1, "deconv", "VALID"),
             ("decoder deconv1", 7, d[0], d[1], 5, 1, "deconv", "SAME"),
             ("decoder deconv2", 7, d[1], d[2], 5, 2, "deconv", "SAME"),
             ("decoder deconv3", 14, d[2], d[3], 5, 1, "deconv", "SAME"),
             ("decoder deconv4", 14, d[3], d[4], 5, 2, "deconv", "SAME"),
             ("decoder deconv5", 28, d[4], d[5], 4, 1, "deconv", "SAME"),
             ("decoder out (linear)", 28, d[5], 1, 5, 1, "out", "SAME")]
    layers = []
    for name, side, c_in, c_out, k, stride, kind, padding in specs:
        make = functools.partial(Deconv if kind == "deconv" else Conv, kernel_size=(k, k),
                                 strides=stride, padding=padding)
        label = (f"{name}: {side}x{side}x{c_in} -> {c_out}"
                 f"{' (x2, gated)' if kind != 'out' else ''}, {k}x{k}, stride {stride}, "
                 f"{padding.lower()}")
        layers.append(Layer(label, make(c_out) if kind == "out" else Gated(make, c_out),
                            functools.partial(_conv_torch, side, c_in, c_out, k, stride, kind,
                                              padding), ((side, side, c_in),)))
    return layers


def pixelcnn_layers(size: str = "small") -> List[Layer]:
    """The layers of rdsweep.options.pixelcnn.PixelCNNNet at `size`, one per kind and side, each
    with how often the network runs it; all of them but the first layer (on the image and the
    context) and the 1x1 output. Labels name the stream (u: down-shifted 2x3 convs, ul:
    down-right-shifted 2x2) and a resnet's aux input."""
    p = pixelcnn
    d, n = p.PRESETS[size]["depth"], p.PRESETS[size]["resnets_per_block"]
    layers = []
    for side in (28, 14, 7):
        x = (side, side, d)
        down_pass = n + (side != 7)  # down-pass blocks after the first have one layer more
        layers += [
            Layer(f"{side}x{side}: u gated resnet, up pass", p.GatedResnet(p.U_CONV),
                  lambda t: t.GatedResnet(t.U_CONV, d), (x,), n),
            Layer(f"{side}x{side}: ul gated resnet, up pass (aux: u)", p.GatedResnet(p.UL_CONV),
                  lambda t: t.GatedResnet(t.UL_CONV, d, d), (x, x), n),
            Layer(f"{side}x{side}: u gated resnet, down pass (aux: up-pass u)",
                  p.GatedResnet(p.U_CONV), lambda t: t.GatedResnet(t.U_CONV, d, d), (x, x),
                  down_pass),
            Layer(f"{side}x{side}: ul gated resnet, down pass (aux: u, up-pass ul)",
                  p.GatedResnet(p.UL_CONV), lambda t: t.GatedResnet(t.UL_CONV, d, 2 * d),
                  (x, (side, side, 2 * d)), down_pass)]
        if side != 7:  # the resamplings between side and side / 2
            half = (side // 2, side // 2, d)
            layers += [
                Layer(f"{side}x{side} -> {side // 2}: u gated stride-2 conv", Gated(p.U_DOWN, d),
                      lambda t: t.gated(t.U_DOWN, d, d), (x,)),
                Layer(f"{side}x{side} -> {side // 2}: ul gated stride-2 conv",
                      Gated(p.UL_DOWN, d), lambda t: t.gated(t.UL_DOWN, d, d), (x,)),
                Layer(f"{side // 2}x{side // 2} -> {side}: u gated stride-2 transposed conv",
                      Gated(p.U_UP, d), lambda t: t.gated(t.U_UP, d, d), (half,)),
                Layer(f"{side // 2}x{side // 2} -> {side}: ul gated stride-2 transposed conv",
                      Gated(p.UL_UP, d), lambda t: t.gated(t.UL_UP, d, d), (half,))]
    return layers


def _inputs(layer: Layer, batch: int) -> Tuple[jax.Array, ...]:
    keys = jax.random.split(jax.random.PRNGKey(0), len(layer.shapes))
    return tuple(jax.random.normal(k, (batch, *s)) for k, s in zip(keys, layer.shapes))


STEPS = 20  # layer passes per timed call


def jax_layer_call(layer: Layer, batch: int, options: Optional[dict],
                   backward: bool = True) -> Callable[[], object]:
    """One blocking call of STEPS forward + backward passes (parameter and input gradients), or
    forward passes alone, of an rdsweep layer: a scan compiled with XLA `options` (its model's
    train.fusions choice)."""
    xs = _inputs(layer, batch)
    params = layer.flax.init(jax.random.PRNGKey(1), *xs)
    grad = jax.grad(lambda p, xs: jnp.sum(layer.flax.apply(p, *xs) ** 2), argnums=(0, 1))

    @functools.partial(jax.jit, compiler_options=options)
    def many(params, xs):
        # The inputs move every step too: with constant inputs, XLA lifts the work that depends
        # on them alone (e.g. an input's patches for the kernel gradient) out of the loop, and it
        # goes untimed.
        def body(carry, _):
            p, xs = carry
            if not backward:
                shift = 1e-6 * jnp.mean(layer.flax.apply(p, *xs))
                return (p, tuple(x - shift for x in xs)), None
            return jax.tree_util.tree_map(lambda a, b: a - 1e-6 * b, carry, grad(p, xs)), None
        return jax.lax.scan(body, (params, xs), None, length=STEPS)[0]

    return lambda: jax.block_until_ready(many(params, xs))


# The layers' PyTorch reference, named in every ratio: not the training rows' picked variant.
TORCH_LAYERS = "PyTorch eager NCHW"


def torch_layer_call(layer: Layer, batch: int, backward: bool = True) -> Callable[[], None]:
    """The same for the layer's PyTorch twin (NCHW inputs), eager."""
    import torch

    from benchmarks import torch_reference

    module = layer.torch(torch_reference)
    xs = [torch.randn(batch, c, h, w, requires_grad=backward) for h, w, c in layer.shapes]

    def run():
        for _ in range(STEPS):
            if not backward:
                with torch.no_grad():
                    module(*xs)
                continue
            module.zero_grad()
            (module(*xs) ** 2).sum().backward()

    return run


def model_layer_rows(model: str, fallback: Sequence[str], layers: Sequence[Layer],
                     device_images: jax.Array, plan: Plan) -> List[Row]:
    """Rows of each of `model`'s layers, their sum (count times each) and one training step of
    the whole model (its rdsweep overrides; `fallback` without torch, which holds them)."""
    b = plan.batch_size
    cfg = compose_config([*model_overrides().get(model, fallback), f"train.batch_size={b}"])
    options = cpu_tuning.compile_options(cfg)  # as the model trains
    has_torch = torch_available()
    rows, total, torch_total = [], 0.0, 0.0  # ms
    for layer in layers:
        note(f"layers {model} {layer.label}")
        calls = {"t": jax_layer_call(layer, b, options),
                 "f": jax_layer_call(layer, b, options, backward=False)}
        if has_torch:
            calls.update(ref=torch_layer_call(layer, b), ref_f=torch_layer_call(layer, b, False))
        ms = {k: seconds / STEPS * 1e3 for k, seconds in side_by_side(calls, plan.repeats).items()}
        total += layer.count * ms["t"]
        times = f" (x{layer.count} per step)" if layer.count > 1 else ""
        label = f"`{model}` {layer.label}, batch {b}{times}: forward + backward (forward alone)"
        value = f"rdsweep {ms['t']:.2f} ms ({ms['f']:.2f})"
        if has_torch:
            torch_total += layer.count * ms["ref"]
            value += (f", PyTorch {ms['ref']:.2f} ms ({ms['ref_f']:.2f}); rdsweep speed / "
                      f"{TORCH_LAYERS}'s: {ms['ref'] / ms['t']:.2f}x "
                      f"({ms['ref_f'] / ms['f']:.2f}x)")
        rows.append(Row("layers", label, value))
    steps = affordable_steps(cfg, device_images, plan.steps, plan.call_seconds)
    step = b / training_rate(cfg, device_images, steps, plan.repeats) * 1e3
    value = f"rdsweep {total:.1f} ms"
    if has_torch:
        value += (f", PyTorch {torch_total:.1f} ms (rdsweep speed / {TORCH_LAYERS}'s: "
                  f"{torch_total / total:.2f}x)")
    return rows + [
        Row("layers", f"`{model}`: the layers above, summed (times their count)", value),
        Row("layers", f"`{model}`: one rdsweep training step (batch {b}), whole model",
            f"{step:.1f} ms: the layers above are {total / step:.0%} of it")]


def layer_rows(device_images: jax.Array, plan: Plan) -> List[Row]:
    return (model_layer_rows("conv_small", ["family=---", "size=small"], conv_small_layers(),
                             device_images, plan)
            + model_layer_rows("pixelcnn_small", ["family=-+-", "size=small"],
                               pixelcnn_layers("small"), device_images, plan))
