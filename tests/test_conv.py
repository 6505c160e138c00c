"""The conv encoder and decoder of appendix F: shapes, parameter counts, spatial sizes, the gated
layer, and the conv layers (same outputs and gradients as flax's, computed differently)."""

import functools

import numpy as np
import jax
import jax.numpy as jnp
import flax.linen as nn
import pytest
from scipy import special

from rdsweep.layers import Conv, Deconv, Gated, strided_conv2d
from rdsweep.options.conv import ConvDecoder, ConvEncoder
from rdsweep.distributions import DiagGaussian
from helpers import random_variables

IMAGE = (28, 28, 1)
TINY_ENC = (2, 2, 3, 3, 4)  # channels overrides: tiny and fast
TINY_DEC = (3, 3, 3, 2, 2, 2)


def _images(b, seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(0, 2, (b,) + IMAGE), jnp.float32)


def _count(variables):
    return sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(variables))


def _gated_conv(k, c_in, c_out):  # (W1, b1) and (W2, b2), each k*k*c_in*c_out + c_out
    return 2 * (k * k * c_in * c_out + c_out)


def test_encoder_shapes_and_features():
    enc = ConvEncoder(latent_dim=5, channels=TINY_ENC)
    x = _images(3)
    v = random_variables(enc, x)
    e = jax.jit(enc.apply)(v, x)
    assert isinstance(e, DiagGaussian)
    assert e.loc.shape == (3, 5) and e.scale.shape == (3, 5)
    assert bool(jnp.all(e.scale > 0))
    z, log_e = e.sample_and_log_prob(jax.random.PRNGKey(1), 2)
    assert z.shape == (2, 3, 5) and log_e.shape == (2, 3)
    # features(x) is the vector the Gaussian's heads read: loc = Dense(features).
    h = jax.jit(lambda v, x: enc.apply(v, x, method="features"))(v, x)
    assert h.shape == (3, TINY_ENC[-1])
    loc, scale = v["params"]["loc"], v["params"]["scale"]
    np.testing.assert_allclose(np.asarray(h @ loc["kernel"] + loc["bias"]), np.asarray(e.loc),
                               rtol=1e-5, atol=1e-6)
    softplus = np.logaddexp(0.0, np.asarray(h @ scale["kernel"] + scale["bias"], np.float64))
    np.testing.assert_allclose(np.asarray(e.scale), softplus, rtol=1e-5, atol=1e-6)


def test_encoder_sees_inputs_rescaled_to_plus_minus_one():
    # First layer set to pass its input through its centre tap (linear half) with a gate of
    # sigmoid(0) = 1/2: its output is then half the rescaled image, 2x - 1 in {-1, 1}.
    enc = ConvEncoder(latent_dim=4, channels=TINY_ENC)
    x = _images(2)
    v = random_variables(enc, x)
    kernel = np.zeros((5, 5, 1, 2 * TINY_ENC[0]), np.float32)
    kernel[2, 2, 0, 0] = 1.0
    first = {"kernel": jnp.asarray(kernel), "bias": jnp.zeros(2 * TINY_ENC[0])}
    body = dict(v["params"]["body"], conv0={"Conv_0": first})
    v = {"params": dict(v["params"], body=body)}
    _, state = jax.jit(functools.partial(enc.apply, capture_intermediates=True,
                                         mutable=["intermediates"]))(v, x)
    out = np.asarray(state["intermediates"]["body"]["conv0"]["__call__"][0])
    np.testing.assert_allclose(out[..., 0], 0.5 * (2.0 * np.asarray(x)[..., 0] - 1.0), atol=1e-6)


def test_paper_encoder_parameter_count():
    # Appendix F: gated Conv(32,5,1) - Conv(32,5,2) - Conv(64,5,1) - Conv(64,5,2) - Conv(256,7,1)
    # from 1 input channel, then mean and scale heads Linear(256 -> 64) each.
    expected = (_gated_conv(5, 1, 32) + _gated_conv(5, 32, 32) + _gated_conv(5, 32, 64)
                + _gated_conv(5, 64, 64) + _gated_conv(7, 64, 256)
                + 2 * (256 * 64 + 64))
    assert expected == 1_999_424
    enc = ConvEncoder(latent_dim=64, size="paper")
    shapes = jax.eval_shape(enc.init, jax.random.PRNGKey(0), jnp.zeros((1,) + IMAGE))
    assert _count(shapes) == expected


def test_paper_decoder_parameter_count():
    # From z (1,1,64): gated Deconv(64,7) - Deconv(64,5) - Deconv(64,5,2) - Deconv(32,5) -
    # Deconv(32,5,2) - Deconv(32,4), then the linear Conv(1,5): 5*5*32*1 weights + 1 bias.
    expected = (_gated_conv(7, 64, 64) + _gated_conv(5, 64, 64) + _gated_conv(5, 64, 64)
                + _gated_conv(5, 64, 32) + _gated_conv(5, 32, 32) + _gated_conv(4, 32, 32)
                + (5 * 5 * 32 * 1 + 1))
    assert expected == 998_753
    dec = ConvDecoder(image_shape=IMAGE, size="paper")
    shapes = jax.eval_shape(dec.init, jax.random.PRNGKey(0), jnp.zeros((1, 64)))
    assert _count(shapes) == expected


def test_small_preset_halves_the_paper_widths():
    enc = ConvEncoder(latent_dim=8, size="small")
    shapes = jax.eval_shape(enc.init, jax.random.PRNGKey(0), jnp.zeros((1,) + IMAGE))
    widths = [shapes["params"]["body"][f"conv{i}"]["Conv_0"]["bias"].shape[0] // 2
              for i in range(5)]
    assert widths == [16, 16, 32, 32, 128]
    with pytest.raises(ValueError, match="size"):
        jax.eval_shape(ConvEncoder(latent_dim=8, size="huge").init, jax.random.PRNGKey(0),
                       _images(1))


def _intermediate_sizes(tree, names):
    return [tuple(tree[n]["__call__"][0].shape[1:3]) for n in names]


def test_encoder_spatial_sizes():
    enc = ConvEncoder(latent_dim=4, channels=TINY_ENC)
    x = _images(2)
    v = random_variables(enc, x)
    _, state = jax.eval_shape(functools.partial(enc.apply, capture_intermediates=True,
                                                mutable=["intermediates"]), v, x)
    body = state["intermediates"]["body"]
    sizes = _intermediate_sizes(body, [f"conv{i}" for i in range(5)])
    assert [s[0] for s in sizes] == [28, 14, 14, 7, 1]  # after each layer; the input is 28
    assert all(h == w for h, w in sizes)


def test_decoder_spatial_sizes():
    dec = ConvDecoder(image_shape=IMAGE, channels=TINY_DEC)
    z = jnp.zeros((2, 4))
    v = random_variables(dec, z)
    _, state = jax.eval_shape(functools.partial(dec.apply, capture_intermediates=True,
                                                mutable=["intermediates"]), v, z)
    tree = state["intermediates"]
    sizes = _intermediate_sizes(tree, [f"deconv{i}" for i in range(6)] + ["out"])
    assert [s[0] for s in sizes] == [7, 7, 14, 14, 28, 28, 28]  # the input is 1x1
    assert all(h == w for h, w in sizes)


def test_gated_layer_is_linear_times_sigmoid_gate():
    x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    layer = Gated(nn.Dense, 3)
    v = random_variables(layer, x)
    p = jax.tree_util.tree_map(np.asarray, v["params"]["Dense_0"])
    w, b = p["kernel"], p["bias"]  # (6, 6), (6,): the two layers side by side
    expected = (x @ w[:, :3] + b[:3]) * special.expit(x @ w[:, 3:] + b[3:])
    np.testing.assert_allclose(np.asarray(layer.apply(v, x)), expected, rtol=1e-5, atol=1e-6)


def _value_and_grads(layer, variables, x):
    """sum(sin(layer(x))) and its gradients with respect to the variables and x."""
    fn = lambda v, x: jnp.sin(layer.apply(v, x)).sum()
    return jax.jit(jax.value_and_grad(fn, (0, 1)))(variables, x)


def _assert_same_layer(ours, flax_layer, x):
    """Same variables in, same outputs and gradients out (inside jit, as training uses them)."""
    v = random_variables(flax_layer, x)
    expected = jax.jit(flax_layer.apply)(v, x)
    got = jax.jit(ours.apply)(v, x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-4, atol=1e-4)
    for a, b in zip(jax.tree_util.tree_leaves(_value_and_grads(ours, v, x)),
                    jax.tree_util.tree_leaves(_value_and_grads(flax_layer, v, x))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n, kernel, stride, padding", [
    (8, (5, 5), 1, "SAME"),
    (8, (5, 5), 2, "SAME"),    # the encoder's downsampling
    (7, (7, 7), 1, "VALID"),
    (7, (7, 8), 1, "VALID"),   # the encoder's last layer, whole input -> 1x1 (a matmul)
    (6, (2, 3), 1, ((1, 0), (1, 1))),  # the PixelCNN's shifted convs
    (6, (2, 2), 2, ((1, 0), (1, 0))),
    (5, (3, 3), 3, ((2, 0), (0, 1))),
])
def test_conv_equals_flax_conv(n, kernel, stride, padding):
    x = jax.random.normal(jax.random.PRNGKey(0), (2, n, n + 1, 3))
    _assert_same_layer(Conv(4, kernel, stride, padding),
                       nn.Conv(4, kernel, strides=stride, padding=padding), x)


@pytest.mark.parametrize("n, kernel, stride, padding", [
    (1, (7, 7), 1, "VALID"),   # the decoder's first layer, 1 -> 7
    (7, (5, 5), 1, "SAME"),
    (7, (5, 5), 2, "SAME"),    # 7 -> 14
    (14, (4, 4), 1, "SAME"),
    (5, (2, 3), 2, "SAME"),    # the PixelCNN's upsampling layers
    (5, (2, 2), 2, "SAME"),
    (4, (3, 3), 2, "VALID"),
])
def test_deconv_equals_flax_conv_transpose(n, kernel, stride, padding):
    x = jax.random.normal(jax.random.PRNGKey(0), (2, n, n + 1, 3))
    _assert_same_layer(Deconv(4, kernel, stride, padding),
                       nn.ConvTranspose(4, kernel, strides=(stride, stride), padding=padding), x)


@pytest.mark.parametrize("kernel", [(7, 7), (3, 5)])
def test_deconv_from_one_pixel_equals_flax_conv_transpose(kernel):
    """The decoder's first layer: a 1x1 map, computed as a matmul."""
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 1, 1, 3))
    _assert_same_layer(Deconv(4, kernel, 1, "VALID"),
                       nn.ConvTranspose(4, kernel, padding="VALID"), x)


@pytest.mark.parametrize("kernel, stride, padding", [
    ((4, 4), 1, ((2, 1), (2, 1))),   # stride 1: conv2d and its hand-written gradient
    ((5, 5), 2, ((1, 2), (1, 2))),   # stride > 1: conv2d of the space-to-depth input
    ((3, 2), 3, ((2, -1), (0, 1))),  # a negative padding crops
])
def test_strided_conv2d_equals_lax_conv(kernel, stride, padding):
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 8, 3))
    w = jax.random.normal(jax.random.PRNGKey(1), kernel + (3, 5))

    def reference(x, w, stride, padding):
        return jax.lax.conv_general_dilated(x, w, (stride, stride), padding,
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def loss(conv):
        return jax.jit(jax.value_and_grad(
            lambda x, w: jnp.sin(conv(x, w, stride, padding)).sum(), (0, 1)))(x, w)

    for a, b in zip(jax.tree_util.tree_leaves(loss(strided_conv2d)),
                    jax.tree_util.tree_leaves(loss(reference))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-4)
