"""Data: tensorflow-datasets splits decoded once into uint8 arrays, cached, and binarized on device.

A split is read with `tfds.data_source` (random access, no TensorFlow needed), decoded into one
(N, H, W, C) uint8 array and cached as .npy under `data.cache_dir`, keyed by the dataset's tfds
name, version and split, so that later runs skip decoding. Batches are drawn and binarized on the
device by `prepare_batch`.
"""

from __future__ import annotations

import logging
import os
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

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
    return np.concatenate(chunks).astype(np.uint8)


def load_split(name: str, split: str, data_cfg) -> np.ndarray:
    """All images of one split, (N, H, W, C) uint8, from the cache or decoded from tfds."""
    check_available(data_cfg)  # first: tfds' own message misleads here
    directory = data_dir(data_cfg.dir)
    source = _open(name, split, directory, data_cfg.download)
    version = source.dataset_info.version
    path = os.path.join(os.path.expanduser(data_cfg.cache_dir), f"{name}-{version}-{split}.npy")
    if os.path.exists(path):
        return np.load(path)
    log.info("decoding %s/%s split %s from %s (once; cached at %s)", name, version, split,
             directory, path)
    images = _decode(source)
    atomic_write(path, lambda f: np.save(f, images), binary=True)
    return images


def check_binarization(images: np.ndarray, name: str, binarization: str) -> None:
    """Static binarization needs data that is already 0/1."""
    if binarization == "static" and images.max() > 1:
        raise DataError(f"data.binarization=static needs 0/1 images, but '{name}' has grey "
                        "levels up to 255: use data.binarization=dynamic")


def prepare_batch(images: jax.Array, key: jax.Array, binarization: str) -> jax.Array:
    """uint8 images -> float32 in {0, 1}: as stored (static) or a fresh Bernoulli draw (dynamic)."""
    if binarization == "dynamic":
        return jax.random.bernoulli(key, images.astype(jnp.float32) / 255.0).astype(jnp.float32)
    return images.astype(jnp.float32)


def check_available(data_cfg) -> None:
    """Raises DataError early if the data cannot be there: offline and not prepared."""
    directory = data_dir(data_cfg.dir)
    if not data_cfg.download and not os.path.isdir(os.path.join(directory, data_cfg.name)):
        raise _not_prepared(data_cfg.name, directory)
