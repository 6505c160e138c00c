import os

import numpy as np
import jax
import pytest

from rdsweep.data import prepare_batch
from rdsweep.option import DataError
from rdsweep.options import tfds_images
from rdsweep.options.tfds_images import load_split


@pytest.fixture
def data_cfg(real_cfg, tmp_path):
    """The data config of a data option, with a fresh cache folder."""

    def make(option="binarized_mnist", *overrides):
        return real_cfg(f"data={option}", f"data.cache_dir={tmp_path / 'cache'}", *overrides).data

    return make


def test_binarized_mnist_test_split_is_static_binary(data_cfg):
    images = load_split("test", data_cfg())
    assert images.shape == (10000, 28, 28, 1) and images.dtype == np.uint8
    assert set(np.unique(images)) == {0, 255}
    assert 0.1 < images.mean() / 255 < 0.2  # MNIST digits cover about 13% of the pixels


def test_static_binarization_keeps_binary_data_without_a_draw(data_cfg, monkeypatch):
    cfg = data_cfg()
    draw = np.random.default_rng(0).random(cfg.image_shape, np.float32)  # a draw, made by hand
    one = tfds_images.decoded_split("test", cfg)[:1]
    assert set(np.unique(one)) == {0, 255}
    np.testing.assert_array_equal(np.where(draw * 255.0 < one[0], 255, 0), one[0])
    assert np.nextafter(np.float32(1), np.float32(0)) * np.float32(255) < 255  # the largest u

    def no_draw(*_):
        raise AssertionError("drew for binary data")

    monkeypatch.setattr(np.random, "default_rng", no_draw)
    np.testing.assert_array_equal(load_split("test", cfg), tfds_images.decoded_split("test", cfg))


def test_second_load_reads_the_cache_not_tfds(data_cfg, tmp_path, monkeypatch):
    cfg = data_cfg()
    first = load_split("validation", cfg)
    entry, digest = sorted(os.listdir(tmp_path / "cache"))
    assert entry.startswith("binarized_mnist-1.0.0-validation-28x28x1-none-")
    assert entry.endswith(".npy") and digest == entry + ".sha256"
    tfds_images._decoded.clear()  # read it from disk, as a new process would

    def no_decode(_):
        raise AssertionError("decoded again")

    monkeypatch.setattr(tfds_images, "_decode", no_decode)
    np.testing.assert_array_equal(load_split("validation", cfg), first)


def test_unprepared_data_offline_names_dataset_and_dir(data_cfg, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"dataset 'binarized_mnist' is not prepared in data_dir "
                                        + str(empty)):
        load_split("test", data_cfg("binarized_mnist", f"data.dir={empty}"))
    assert os.listdir(empty) == []  # nothing written into the data_dir


def test_static_binarization_of_grey_mnist_is_one_fixed_draw(data_cfg):
    grey = load_split("test", data_cfg("mnist"))
    assert grey.max() == 255 and len(np.unique(grey)) > 100  # dynamic: grey levels kept
    a = load_split("test", data_cfg("mnist", "data.binarization=static"))
    b = load_split("test", data_cfg("mnist", "data.binarization=static"))
    c = load_split("test", data_cfg("mnist", "data.binarization=static", "data.static_seed=1"))
    assert set(np.unique(a)) == {0, 255}
    np.testing.assert_array_equal(a, b)
    assert (a != c).mean() > 0.005
    assert abs(a.mean() - grey.mean()) < 0.5  # E[Bernoulli(x/255)] * 255 = x


def test_omniglot_is_inverted_and_box_resized(data_cfg, tfds_dir):
    import tensorflow_datasets as tfds

    images = load_split("small1", data_cfg("omniglot", "data.train_split=small1"))
    raw = tfds.data_source("omniglot", split="small1", data_dir=tfds_dir, download=False)
    ink = np.stack([1 - raw[i]["image"][..., 0] for i in range(50)]).astype(np.float64)
    assert images.shape == (2720, 28, 28, 1)
    # a box filter keeps each image's ink mass: mean ink per image matches the 105x105 original
    np.testing.assert_allclose(images[:50].mean(axis=(1, 2, 3)) / 255, ink.mean(axis=(1, 2)),
                               atol=0.01)
    assert 0.02 < images.mean() / 255 < 0.3  # strokes, not background, are ink


def test_wrong_image_shape_without_resize_is_refused(data_cfg):
    with pytest.raises(DataError, match=r"data.image_shape=\[28, 28, 1\]: 'omniglot' images are "
                                        r"105x105; set data.resize"):
        load_split("small1", data_cfg("omniglot", "data.resize=none"))


def test_dynamic_binarization_draws_fresh_bernoulli_samples():
    grey = jax.numpy.asarray(np.full((2000, 4, 4, 1), 64, np.uint8))
    a = np.asarray(prepare_batch(grey, jax.random.PRNGKey(0), "dynamic"))
    b = np.asarray(prepare_batch(grey, jax.random.PRNGKey(1), "dynamic"))
    assert set(np.unique(a)) == {0.0, 1.0}
    assert abs(a.mean() - 64 / 255) < 0.01  # Bernoulli(x / 255)
    assert (a != b).mean() > 0.2  # a fresh draw per key
    static = np.asarray(prepare_batch(grey * 0 + 255, jax.random.PRNGKey(0), "static"))
    np.testing.assert_array_equal(static, np.ones((2000, 4, 4, 1), np.float32))
