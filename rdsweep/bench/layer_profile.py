"""The benchmark's `layers` section: forward and forward + backward time of each conv layer of
`conv_small` in rdsweep and in PyTorch, against one training step of the whole model."""

from __future__ import annotations

import functools
from typing import List, Tuple

import jax
import jax.numpy as jnp

from rdsweep import fusions
from rdsweep.bench.measure import (affordable_steps, compose_config, median_seconds,
                                   model_overrides, note, torch_available, training_rate)
from rdsweep.bench.sections import Plan, Row
from rdsweep.layers import Conv, Deconv, Gated
from rdsweep.options.conv import DECODER_PRESETS, ENCODER_PRESETS

# (name, input side, c_in, c_out, kernel, stride, kind, padding)
LayerSpec = Tuple[str, int, int, int, int, int, str, str]


def conv_small_layers() -> List[LayerSpec]:
    """conv_small's layers, in order, as rdsweep.options.conv builds them at the small presets'
    widths; c_out counts a gated layer's outputs (it computes twice as many)."""
    e = ENCODER_PRESETS["small"]["channels"]
    d = DECODER_PRESETS["small"]["channels"]
    latent = compose_config([]).latent_dim
    return [("encoder conv0", 28, 1, e[0], 5, 1, "conv", "SAME"),
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


def jax_layer_seconds(spec: LayerSpec, batch: int, repeats: int, backward: bool = True,
                      steps: int = 20) -> float:
    """Seconds of one forward + backward (parameter and input gradients), or of one forward
    alone, of an rdsweep layer, from a compiled scan of `steps` of them."""
    _, side, c_in, c_out, k, stride, kind, padding = spec
    make = functools.partial(Deconv if kind == "deconv" else Conv, kernel_size=(k, k),
                             strides=stride, padding=padding)
    layer = make(c_out) if kind == "out" else Gated(make, c_out)
    x = jax.random.normal(jax.random.PRNGKey(0), (batch, side, side, c_in))
    params = layer.init(jax.random.PRNGKey(1), x)
    grad = jax.grad(lambda p, x: jnp.sum(layer.apply(p, x) ** 2), argnums=(0, 1))

    @functools.partial(jax.jit, compiler_options=fusions.single_dot())  # as conv_small trains
    def many(params, x):
        # x moves every step too: with a constant x, XLA lifts the work that depends on x alone
        # (e.g. an input's patches for the kernel gradient) out of the loop, and it goes untimed.
        def body(carry, _):
            p, x = carry
            if not backward:
                return (p, x - 1e-6 * jnp.mean(layer.apply(p, x))), None
            dp, dx = grad(p, x)
            return (jax.tree_util.tree_map(lambda a, b: a - 1e-6 * b, p, dp), x - 1e-6 * dx), None
        return jax.lax.scan(body, (params, x), None, length=steps)[0]

    return median_seconds(lambda: jax.block_until_ready(many(params, x)), repeats) / steps


def torch_layer_seconds(spec: LayerSpec, batch: int, repeats: int, backward: bool = True,
                        steps: int = 20) -> float:
    """The same layer as torch_reference builds it, forward + backward or forward alone."""
    import torch
    from torch import nn

    from rdsweep.bench.torch_reference import gated

    _, side, c_in, c_out, k, stride, kind, padding = spec
    if kind == "deconv" and padding == "VALID":
        layer = gated(nn.ConvTranspose2d, c_in, c_out, k)
    elif kind == "deconv" and stride == 2:
        layer = gated(nn.ConvTranspose2d, c_in, c_out, k, stride, padding=k // 2,
                      output_padding=1)
    elif k % 2 == 0:  # even kernel, "same": padded 2 before and 1 after, as flax does
        layer = nn.Sequential(nn.ZeroPad2d((k // 2, k // 2 - 1) * 2), gated(nn.Conv2d, c_in,
                                                                             c_out, k))
    elif kind == "out":
        layer = nn.Conv2d(c_in, c_out, k, padding=k // 2)
    else:
        layer = gated(nn.Conv2d, c_in, c_out, k, stride, padding=k // 2 if padding == "SAME"
                      else 0)
    x = torch.randn(batch, c_in, side, side, requires_grad=backward)

    def run():
        for _ in range(steps):
            if not backward:
                with torch.no_grad():
                    layer(x)
                continue
            layer.zero_grad()
            (layer(x) ** 2).sum().backward()

    return median_seconds(run, repeats) / steps


def layer_rows(device_images: jax.Array, plan: Plan) -> List[Row]:
    b = plan.batch_size
    has_torch = torch_available()
    rows, total, torch_total = [], 0.0, 0.0
    for spec in conv_small_layers():
        name, side, c_in, c_out, k, stride, kind, padding = spec
        note(f"layers {name}")
        t = jax_layer_seconds(spec, b, plan.repeats)
        f = jax_layer_seconds(spec, b, plan.repeats, backward=False)
        total += t
        label = (f"`conv_small` {name}: {side}x{side}x{c_in} -> {c_out}"
                 f"{' (x2, gated)' if kind != 'out' else ''}, {k}x{k}, stride {stride}, "
                 f"{padding.lower()}, batch {b}: forward + backward (forward alone)")
        value = f"rdsweep {t * 1e3:.2f} ms ({f * 1e3:.2f})"
        if has_torch:
            ref = torch_layer_seconds(spec, b, plan.repeats)
            ref_f = torch_layer_seconds(spec, b, plan.repeats, backward=False)
            torch_total += ref
            value += (f", PyTorch {ref * 1e3:.2f} ms ({ref_f * 1e3:.2f}); rdsweep speed / "
                      f"PyTorch's: {ref / t:.2f}x ({ref_f / f:.2f}x)")
        rows.append(Row("layers", label, value))
    cfg = compose_config([*model_overrides().get("conv_small", ["family=---"]),
                          f"train.batch_size={b}"])
    steps = affordable_steps(cfg, device_images, plan.steps, plan.call_seconds)
    step = b / training_rate(cfg, device_images, steps, plan.repeats)
    value = f"rdsweep {total * 1e3:.1f} ms"
    if has_torch:
        value += (f", PyTorch {torch_total * 1e3:.1f} ms (rdsweep speed / PyTorch's: "
                  f"{torch_total / total:.2f}x)")
    rows += [Row("layers", "`conv_small`: the layers above, summed", value),
             Row("layers", f"`conv_small`: one rdsweep training step (batch {b}), whole model",
                 f"{step * 1e3:.1f} ms: the conv layers are {total / step:.0%} of it")]
    return rows
