"""The PixelCNN++-style decoder: causality (by gradients), log_prob against numpy, sampling inside
jit, and the sequential sampler against the parallel pass."""

import re

import numpy as np
import jax
import jax.numpy as jnp
import pytest
from scipy import special

from rdsweep.options.pixelcnn import PixelCNNBernoulli, PixelCNNDecoder
from helpers import random_variables

IMAGE = (28, 28, 1)
PIXELS = 28 * 28
LATENT, BATCH = 3, 2
TINY = PixelCNNDecoder(IMAGE, depth=4, resnets_per_block=1)


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    z = jnp.asarray(rng.normal(size=(BATCH, LATENT)), jnp.float32)
    x = jnp.asarray(rng.integers(0, 2, (BATCH,) + IMAGE), jnp.float32)
    return random_variables(TINY, z, seed=1), z, x


@jax.jit
def _logits(variables, z, x):
    return TINY.apply(variables, z).logits(x)


@jax.jit
def _sample(variables, z, key):
    """Two samples per z, their sequential log-probabilities, and log_prob's parallel pass."""
    d = TINY.apply(variables, z)
    x, log_p = d.sample_and_log_prob(key, 2)
    return x, log_p, d.log_prob(x)


def test_each_logit_depends_only_on_earlier_pixels(setup):
    variables, z, x = setup
    logits = lambda image: _logits(variables, z[:1], image[None])[0].reshape(PIXELS)
    jac = np.asarray(jax.jit(jax.jacrev(logits))(x[0])).reshape(PIXELS, PIXELS)
    # jac[i, j] = d logit_i / d x_j, raster order: zero on and above the diagonal.
    later = np.triu(np.ones((PIXELS, PIXELS), bool))
    assert np.all(jac[later] == 0.0), np.argwhere((jac != 0) & later)[:5]
    # ... and not trivially: every pixel but the first sees its left neighbour (same row) and
    # the pixel above it, and the last pixel sees most of the image.
    i = np.arange(PIXELS)
    row, col = i // 28, i % 28
    assert np.all(jac[i[col > 0], i[col > 0] - 1] != 0)
    assert np.all(jac[i[row > 0], i[row > 0] - 28] != 0)
    assert np.mean(jac[-1, :-1] != 0) > 0.9


def test_z_reaches_every_pixel_even_the_first(setup):
    variables, z, x = setup
    grad = jax.jit(jax.jacrev(lambda zz: _logits(variables, zz, x[:1])[0, :, :, 0]))(z[:1])
    assert np.all(np.abs(np.asarray(grad)).sum(axis=(-2, -1)) > 0)  # (28, 28): each pixel


def test_log_prob_equals_numpy_bernoulli(setup):
    variables, z, x = setup
    d = jax.jit(TINY.apply)(variables, z)
    assert isinstance(d, PixelCNNBernoulli)
    logits = np.asarray(_logits(variables, z, x), np.float64)
    xs = np.asarray(x, np.float64)
    p = special.expit(logits)
    expected = (xs * np.log(p) + (1 - xs) * np.log1p(-p)).sum(axis=(1, 2, 3))
    got = jax.jit(lambda v, zz, xx: TINY.apply(v, zz).log_prob(xx))(variables, z, x)
    assert got.shape == (BATCH,)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)
    # (n, B) inputs broadcast against the batch, as samples do.
    stacked = jnp.stack([x, x[::-1]])
    got2 = jax.jit(lambda v, zz, xx: TINY.apply(v, zz).log_prob(xx))(variables, z, stacked)
    assert got2.shape == (2, BATCH)
    np.testing.assert_allclose(np.asarray(got2[0]), expected, rtol=1e-5)


def _forced(variables, bias):
    """The same decoder with its output 1x1 conv set to a constant logit `bias`."""
    out = variables["params"]["net"]["logits"]
    forced = {"kernel": jnp.zeros_like(out["kernel"]), "bias": jnp.full_like(out["bias"], bias)}
    net = dict(variables["params"]["net"], logits=forced)
    return {"params": dict(variables["params"], net=net)}


@pytest.mark.parametrize("prob", [0.2, 1.0, 0.0])
def test_samples_follow_forced_logits(setup, prob):
    variables, z, _ = setup
    logit = {1.0: 30.0, 0.0: -30.0}.get(prob, float(special.logit(prob)))
    x, log_p, _ = _sample(_forced(variables, logit), z, jax.random.PRNGKey(4))
    x = np.asarray(x)
    if prob in (0.0, 1.0):
        assert np.all(x == prob)
    else:  # 4 * 784 draws: the mean is within ~6 standard errors of 0.2
        assert abs(x.mean() - prob) < 0.04, x.mean()
    ones = x.sum(axis=(2, 3, 4))
    expected = ones * special.log_expit(logit) + (PIXELS - ones) * special.log_expit(-logit)
    np.testing.assert_allclose(np.asarray(log_p), expected, rtol=1e-4)


def test_presets_and_validation():
    z = jnp.zeros((1, 5))

    def blocks(decoder):
        """(depth, u-stream resnet layers per block: up 0-2, then down 0-2)."""
        params = jax.eval_shape(decoder.init, jax.random.PRNGKey(0), z)["params"]["net"]
        count = lambda prefix: sum(re.fullmatch(prefix + r"_u\d+", n) is not None for n in params)
        layers = [count(f"up{b}") for b in range(3)] + [count(f"down{b}") for b in range(3)]
        return params["logits"]["kernel"].shape[0], layers

    # Two resnet layers per up-pass block; the down pass has one more after its first block
    # (PixelCNN++'s layout, so that every up-pass output has a shortcut).
    assert blocks(PixelCNNDecoder(IMAGE, size="paper")) == (64, [2, 2, 2, 2, 3, 3])
    assert blocks(PixelCNNDecoder(IMAGE, size="small")) == (32, [1, 1, 1, 1, 2, 2])
    assert blocks(PixelCNNDecoder(IMAGE, size="small", depth=8, resnets_per_block=3)) == (
        8, [3, 3, 3, 3, 4, 4])
    with pytest.raises(ValueError, match="multiples of 4"):
        jax.eval_shape(PixelCNNDecoder((28, 28, 3)).init, jax.random.PRNGKey(0), z)
