"""images.png: inputs, reconstructions from e(z|x) and samples from m(z), in that row order."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from rdsweep.distributions import Bernoulli, DiagGaussian
from rdsweep.images import save_images
from rdsweep.models import VAE


class PointEncoder(nn.Module):
    """e(z|x): a near-point mass at z = +5 for every x."""

    def __call__(self, x):
        return DiagGaussian(jnp.full((x.shape[0], 1), 5.0), jnp.full((x.shape[0], 1), 1e-3))


class PointMarginal(nn.Module):
    """m(z): a near-point mass at z = -5."""

    def __call__(self, encoder=None):
        return DiagGaussian(jnp.full((1,), -5.0), jnp.full((1,), 1e-3))


class SignDecoder(nn.Module):
    """d(x|z): every pixel is 1 where z > 0 and 0 where z < 0 (logits +-50)."""

    def __call__(self, z):
        return Bernoulli(jnp.broadcast_to(10.0 * z[:, None, None, :], (z.shape[0], 4, 4, 1)),
                         event_ndims=3)


def test_rows_are_inputs_then_reconstructions_then_samples(tmp_path):
    model = VAE(PointEncoder(), SignDecoder(), PointMarginal())
    x = jnp.asarray(np.random.default_rng(0).integers(0, 2, (3, 4, 4, 1)), jnp.float32)
    path = str(tmp_path / "images.png")
    save_images(path, model.apply, {}, x, jax.random.PRNGKey(0))
    with Image.open(path) as picture:
        pixels = np.asarray(picture)[::3, ::3]  # undo the 3x nearest-neighbour scaling
    ink = lambda row: 1 - pixels[2 + 6 * row:6 + 6 * row, 2:-2] / 255  # 4 + 2 padding per tile
    tiles = lambda row: np.stack([ink(row)[:, 6 * j:6 * j + 4] for j in range(3)])
    np.testing.assert_array_equal(tiles(0), np.asarray(x)[..., 0])
    np.testing.assert_array_equal(tiles(1), 1)  # z ~ e(z|x) = +5
    np.testing.assert_array_equal(tiles(2), 0)  # z ~ m(z) = -5
