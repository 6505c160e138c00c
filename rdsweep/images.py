"""images.png of a run: test inputs, their reconstructions and samples from the model."""

from __future__ import annotations

import functools
import io

import jax
import numpy as np

from rdsweep.fileio import atomic_write
from rdsweep.models import VAE

_PAD = 2  # pixels between images, and around them


def tile(rows) -> np.ndarray:
    """Rows of images, each (n, H, W, 1) in [0, 1] -> one (rows*(H+pad)+pad, ...) uint8 picture."""
    rows = [np.asarray(r, np.float32)[..., 0] for r in rows]
    n, h, w = rows[0].shape
    out = np.full((len(rows) * (h + _PAD) + _PAD, n * (w + _PAD) + _PAD), 128, np.uint8)
    for i, row in enumerate(rows):
        for j, im in enumerate(row):
            top, left = _PAD + i * (h + _PAD), _PAD + j * (w + _PAD)
            out[top:top + h, left:left + w] = np.round(255 * (1 - im))  # ink dark on white
    return out


@functools.partial(jax.jit, static_argnums=0)
def _samples(apply_fn, params, x, key):
    return apply_fn({"params": params}, x, key, method=VAE.reconstruct_and_generate)


def save_images(path: str, apply_fn, params, x: jax.Array, key: jax.Array) -> None:
    """Writes a PNG: row 1 the inputs x (n, *image), row 2 their reconstructions
    (z ~ e(z|x), x' ~ d(x|z)), row 3 n samples (z ~ m(z), x ~ d(x|z)); scaled up 3x."""
    recon, samples = _samples(apply_fn, params, x, key)
    save_picture(path, [x, recon, samples])


def save_picture(path: str, rows) -> None:
    """Writes rows of images (see `tile`) as one PNG, scaled up 3x, atomically."""
    from PIL import Image

    picture = Image.fromarray(tile(rows))
    picture = picture.resize((picture.width * 3, picture.height * 3), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    atomic_write(path, lambda f: f.write(buffer.getvalue()), binary=True)
