"""Data options binarized_mnist, mnist, omniglot: tensorflow-datasets splits decoded once into
uint8 arrays and cached.

A split is read with `tfds.data_source` (random access, no TensorFlow needed), decoded into one
(N, H, W, C) uint8 array and cached as .npy under `data.cache_dir`, so that later runs skip
decoding. A cache entry is keyed by the dataset's tfds name, version, split and preprocessing,
and by the identity of the prepared files it came from (their folder, names, sizes and
modification times): data.dir pointing at another copy, or files prepared again, make a new
entry. Each entry has a sha256 beside it (`<entry>.sha256`), checked before use; a damaged entry
is decoded again, with one warning. The start-up checks decode (or verify) both splits, so
damaged prepared files stop a run with one line before its folder exists. Batches are drawn and
binarized on the device by `rdsweep.data.prepare_batch`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import zlib
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np

from rdsweep.data import DataSource, Split
from rdsweep.fileio import atomic_write
from rdsweep.option import ConfigError, DataError, Option, at_least, one_of, require

log = logging.getLogger(__name__)

_DECODE_CHUNK = 2000  # examples decoded per tfds call


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
    except Exception as e:  # a garbage dataset_info.json, ...: tfds raises many kinds
        raise _damaged(f"dataset '{name}'", directory, e) from None


class DamagedData(DataError):
    """Prepared files that tfds cannot read."""


def _damaged(what: str, where: str, e: Exception) -> DamagedData:
    return DamagedData(
        f"{what} in {where} cannot be read ({type(e).__name__}: "
        f"{(str(e).splitlines() or [''])[0][:160]}): its prepared files are damaged; prepare it "
        "again (data.download=true) or set data.dir to a good copy")


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


def _files_identity(folder: str) -> str:
    """A short hash of a prepared dataset's folder: its path and its files' names, sizes and
    modification times (changed by a new copy or a new preparation, not by reading)."""
    files = sorted(os.listdir(folder))
    stats = [(f, os.stat(os.path.join(folder, f)).st_size,
              os.stat(os.path.join(folder, f)).st_mtime_ns) for f in files]
    return hashlib.sha256(json.dumps([folder, stats]).encode()).hexdigest()[:12]


def _read_cached(path: str) -> Optional[np.ndarray]:
    """The cache entry at path if it matches its recorded sha256; None (with one warning if
    it was damaged) otherwise."""
    if not os.path.exists(path):
        return None
    try:
        with open(path, "rb") as f:
            data = f.read()
        with open(path + ".sha256") as f:
            recorded = f.read().strip()
        if hashlib.sha256(data).hexdigest() != recorded:
            raise ValueError("its bytes do not match its sha256")
        return np.load(io.BytesIO(data))
    except (OSError, ValueError) as e:
        log.warning("the cached array %s is damaged (%s): decoding it again", path, e)
        return None


def _write_cached(path: str, images: np.ndarray) -> None:
    """A cache entry and its sha256 (written last: an entry without one is rebuilt)."""
    buffer = io.BytesIO()
    np.save(buffer, images)
    data = buffer.getvalue()
    atomic_write(path, lambda f: f.write(data), binary=True)
    atomic_write(path + ".sha256", lambda f: f.write(hashlib.sha256(data).hexdigest()))


_decoded: Dict[str, np.ndarray] = {}  # cache entries read (and verified) by this process


def decoded_split(split: str, data_cfg) -> np.ndarray:
    """One split's preprocessed images, (N, *image_shape) uint8 grey levels 0..255: from the
    cache if its entry is good, else decoded from the prepared files (DataError naming the
    dataset and folder if they are damaged) and cached."""
    directory = data_dir(data_cfg.dir)
    name = data_cfg.name
    source = _open(name, split, directory, data_cfg.download)
    version = source.dataset_info.version
    folder = str(source.dataset_info.data_dir)
    shape = "x".join(map(str, data_cfg.image_shape))
    key = (f"{name}-{version}-{split}-{shape}-{data_cfg.resize}"
           f"{'-inverted' if data_cfg.invert else ''}-{_files_identity(folder)}")
    path = os.path.join(os.path.expanduser(data_cfg.cache_dir), key + ".npy")
    if path not in _decoded:
        images = _read_cached(path)
        if images is None:
            log.info("decoding %s/%s split %s from %s (once; cached at %s)", name, version,
                     split, folder, path)
            try:
                raw = _decode(source)
            except Exception as e:  # truncated or flipped record files: many kinds
                raise _damaged(f"dataset '{name}' split '{split}'", folder, e) from None
            images = preprocess(raw, data_cfg)
            _write_cached(path, images)
        _decoded[path] = images
    return _decoded[path]


def load_split(split: str, data_cfg) -> np.ndarray:
    """All images of one split as (N, *image_shape) uint8 grey levels: 0/255 after static
    binarization (one fixed Bernoulli draw, seeded by data.static_seed and the split; data that is
    already binary stays as it is), 0..255 for dynamic binarization.
    """
    _check_prepared(data_cfg)  # first: tfds' own message misleads here
    images = decoded_split(split, data_cfg)
    # A draw leaves 0/255 data as it is (u * 255 < 255 for every float32 u < 1): skip it (~2 s).
    if data_cfg.binarization == "static" and not _binary(images):
        rng = np.random.default_rng([data_cfg.static_seed, zlib.crc32(split.encode())])
        images = np.where(rng.random(images.shape, np.float32) * 255.0 < images, 255, 0)
        images = images.astype(np.uint8)
    return images


def _binary(images: np.ndarray) -> bool:
    """True if every grey level is 0 or 255."""
    return bool(((images == 0) | (images == 255)).all())


def _check_prepared(data_cfg) -> None:
    """DataError if the data cannot be there (offline and not prepared) or a split is not one
    of the dataset's."""
    directory = data_dir(data_cfg.dir)
    if data_cfg.download:
        return
    if not os.path.isdir(os.path.join(directory, data_cfg.name)):
        raise _not_prepared(data_cfg.name, directory)
    for key in ("train_split", "test_split", "validation_split"):
        if getattr(data_cfg, key) is None:
            continue
        try:
            _open(data_cfg.name, getattr(data_cfg, key), directory, False)
        except DamagedData:
            raise
        except DataError as e:
            raise DataError(f"data.{key}={getattr(data_cfg, key)} is invalid: {e}") from None


def _check_available(data_cfg) -> None:
    """_check_prepared, then both splits decoded (or their cache entries verified): damaged
    prepared files are a DataError here, at start-up."""
    _check_prepared(data_cfg)
    if not data_cfg.download:
        for split in (data_cfg.train_split, data_cfg.test_split, data_cfg.validation_split):
            if split is not None:
                decoded_split(split, data_cfg)


@dataclass
class TFDSImages(DataSource):
    """A tensorflow-datasets dataset of images."""

    _target_: str = "rdsweep.options.tfds_images.TFDSImages"
    static_seed: int = 0  # the fixed draw of static binarization of grey data
    train_split: str = "train"
    test_split: str = "test"  # e.g. validation (binarized_mnist has one)
    validation_split: Optional[str] = None  # what early stopping watches, e.g. validation
    invert: bool = False  # ink = 1 - value (Omniglot stores ink as 0)
    resize: str = "none"  # PIL filter to reach image_shape: none, box, bilinear, lanczos
    dir: Optional[str] = None  # tfds data_dir; null -> $TFDS_DATA_DIR or tfds' default
    download: bool = False  # let tfds download and prepare (needs internet and TensorFlow)
    # Decoded arrays are cached here so that later runs start fast.
    cache_dir: str = "${oc.env:RDSWEEP_CACHE,${oc.env:HOME,.}/.cache/rdsweep}"

    def check(self, key: str) -> None:
        super().check(key)
        one_of(f"{key}.resize", self.resize, ("none", *_FILTERS))
        at_least(f"{key}.static_seed", self.static_seed, 0)
        require(len(self.image_shape) == 3 and min(self.image_shape) >= 1,
                f"{key}.image_shape", self.image_shape, "must be [height, width, channels] >= 1")
        if self.dir is not None and not os.path.isdir(self.dir):
            raise ConfigError(
                f"{key}.dir={self.dir} is invalid: no such directory (give a tensorflow-datasets "
                "data_dir holding prepared data, or leave data.dir unset to use $TFDS_DATA_DIR)")

    def check_available(self) -> None:
        _check_available(self)

    def load(self) -> Tuple[Split, Split]:
        return (Split(load_split(self.train_split, self)),
                Split(load_split(self.test_split, self)))

    def has_validation(self) -> bool:
        return self.validation_split is not None

    def load_validation(self) -> Optional[Split]:
        return Split(load_split(self.validation_split, self)) if self.has_validation() else None


OPTIONS = [
    Option("data", "binarized_mnist", TFDSImages(name="binarized_mnist"),
           "MNIST, binarized once by Larochelle's draw (tfds binarized_mnist), 28x28"),
    Option("data", "mnist", TFDSImages(name="mnist", binarization="dynamic"),
           "MNIST grey levels, a fresh Bernoulli draw per use (dynamic binarization)"),
    # 105x105, ink 0 -> 28x28, ink 1: PIL's box filter averages each 3.75-pixel cell.
    Option("data", "omniglot", TFDSImages(name="omniglot", binarization="dynamic", invert=True,
                                          resize="box"),
           "Omniglot (tfds), 105x105 box-filtered to 28x28, dynamic binarization"),
]
