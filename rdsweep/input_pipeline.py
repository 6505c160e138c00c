"""Data: tensorflow-datasets splits decoded once into uint8 arrays, cached, and binarized on device;
or the toy problem's exact distribution (rdsweep.toy) as weighted examples.

A split is read with `tfds.data_source` (random access, no TensorFlow needed), decoded into one
(N, H, W, C) uint8 array and cached as .npy under `data.cache_dir`, keyed by the dataset's tfds
name, version and split, so that later runs skip decoding. Batches are drawn and binarized on the
device by `prepare_batch`.
"""

from __future__ import annotations

import logging
import os
import zlib
from typing import NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from rdsweep import toy
from rdsweep.fileio import atomic_write

log = logging.getLogger(__name__)

_DECODE_CHUNK = 2000  # examples decoded per tfds call


class DataError(RuntimeError):
    """Data that cannot be read as configured; the message says what to do."""


def data_dir(configured: Optional[str]) -> str:
    """The tfds data_dir used: data.dir, else $TFDS_DATA_DIR, else tfds' default."""
    path = configured or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    return os.path.abspath(os.path.expanduser(path))


def _not_prepared(name: str, directory: str) -> DataError:
    return DataError(
        f"dataset '{name}' is not prepared in data_dir {directory} (data.download=false): "
        "set data.dir (or TFDS_DATA_DIR) to a tfds data_dir that holds it, or prepare it with "
        "data.download=true on a machine with internet and TensorFlow "
        "(pip install 'rdsweep[download]')")


def _open(name: str, split: str, directory: str, download: bool):
    import tensorflow_datasets as tfds

    try:
        return tfds.data_source(name, split=split, data_dir=directory, download=download)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(f"data.name={name}: tensorflow-datasets has no dataset of that name")
    except (NotImplementedError, AssertionError, FileNotFoundError) as e:
        if download:
            raise DataError(f"dataset '{name}' could not be prepared in {directory}: {e}")
        raise _not_prepared(name, directory) from None
    except ValueError as e:  # an unknown split
        raise DataError(f"dataset '{name}': {e}") from None


def _decode(source) -> np.ndarray:
    chunks = []
    for start in range(0, len(source), _DECODE_CHUNK):
        idx = list(range(start, min(start + _DECODE_CHUNK, len(source))))
        chunks.append(np.stack([ex["image"] for ex in source.__getitems__(idx)]))
    return np.concatenate(chunks)


_FILTERS = {"box": "BOX", "bilinear": "BILINEAR", "lanczos": "LANCZOS"}


def preprocess(raw: np.ndarray, data_cfg) -> np.ndarray:
    """Raw tfds images (N, h, w, c), 0/1 or 0..255 -> (N, *data.image_shape) grey levels 0..255.

    Channels are averaged down to the configured count, ink is inverted if data.invert, and the
    image is resized with the PIL filter data.resize (on float grey levels, so a box filter gives
    each output pixel the ink fraction of its cell).
    """
    from PIL import Image

    height, width, channels = data_cfg.image_shape
    x = raw.astype(np.float32) / (255.0 if raw.max() > 1 else 1.0)
    if x.shape[-1] != channels:
        x = x.mean(axis=-1, keepdims=True)
    if data_cfg.invert:
        x = 1.0 - x
    if x.shape[1:3] != (height, width):
        if data_cfg.resize == "none" or channels != 1:
            raise DataError(
                f"data.image_shape={list(data_cfg.image_shape)}: '{data_cfg.name}' images are "
                f"{x.shape[1]}x{x.shape[2]}; set data.resize to box, bilinear or lanczos "
                "(single-channel images only)")
        method = getattr(Image.Resampling, _FILTERS[data_cfg.resize])
        x = np.stack([np.asarray(Image.fromarray(im[..., 0], mode="F").resize(
            (width, height), method)) for im in x])[..., None]
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def load_split(split: str, data_cfg) -> np.ndarray:
    """All images of one split as (N, *image_shape) uint8 grey levels: 0/255 after static
    binarization (one fixed Bernoulli draw, seeded by data.static_seed and the split; data that is
    already binary stays as it is), 0..255 for dynamic binarization.
    """
    directory = data_dir(data_cfg.dir)
    check_available(data_cfg)  # first: tfds' own message misleads here
    name = data_cfg.name
    source = _open(name, split, directory, data_cfg.download)
    version = source.dataset_info.version
    shape = "x".join(map(str, data_cfg.image_shape))
    key = f"{name}-{version}-{split}-{shape}-{data_cfg.resize}{'-inverted' if data_cfg.invert else ''}"
    path = os.path.join(os.path.expanduser(data_cfg.cache_dir), key + ".npy")
    if os.path.exists(path):
        images = np.load(path)
    else:
        log.info("decoding %s/%s split %s from %s (once; cached at %s)", name, version, split,
                 directory, path)
        images = preprocess(_decode(source), data_cfg)
        atomic_write(path, lambda f: np.save(f, images), binary=True)
    if data_cfg.binarization == "static":
        rng = np.random.default_rng([data_cfg.static_seed, zlib.crc32(split.encode())])
        images = np.where(rng.random(images.shape, np.float32) * 255.0 < images, 255, 0)
        images = images.astype(np.uint8)
    return images


class Split(NamedTuple):
    """A split's examples: images (N, *image_shape) uint8, and weights (N,), each example's
    probability when the data is a distribution given exactly, or None for a sample of data
    (every example counts the same)."""

    images: np.ndarray
    weights: Optional[np.ndarray] = None

    def head(self, n: int) -> "Split":
        """The first n examples (weights are normalised where they are used)."""
        return Split(self.images[:n], None if self.weights is None else self.weights[:n])


def load_data(data_cfg) -> Tuple[Split, Split]:
    """(train, test): tfds' data.train_split and data.test_split, or, for the toy data, its
    exact distribution as both."""
    if data_cfg.name == toy.NAME:
        split = Split(*toy.examples(toy.make(data_cfg)))
        return split, split
    return (Split(load_split(data_cfg.train_split, data_cfg)),
            Split(load_split(data_cfg.test_split, data_cfg)))


def prepare_batch(images: jax.Array, key: jax.Array, binarization: str) -> jax.Array:
    """uint8 grey levels -> float32 in {0, 1}: as stored (static, already 0/255) or a fresh
    Bernoulli(x / 255) draw (dynamic)."""
    p = images.astype(jnp.float32) / 255.0
    if binarization == "dynamic":
        return jax.random.bernoulli(key, p).astype(jnp.float32)
    return p


def check_available(data_cfg) -> None:
    """Raises DataError early if the data cannot be there (offline and not prepared) or a split
    is not one of the dataset's. The toy data is always there."""
    if data_cfg.name == toy.NAME:
        return
    directory = data_dir(data_cfg.dir)
    if data_cfg.download:
        return
    if not os.path.isdir(os.path.join(directory, data_cfg.name)):
        raise _not_prepared(data_cfg.name, directory)
    for key in ("train_split", "test_split"):
        try:
            _open(data_cfg.name, data_cfg[key], directory, False)
        except DataError as e:
            raise DataError(f"data.{key}={data_cfg[key]} is invalid: {e}") from None
