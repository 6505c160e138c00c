import os

import numpy as np
import jax
import pytest
from omegaconf import OmegaConf

from rdsweep import input_pipeline
from rdsweep.input_pipeline import DataError, check_binarization, load_split, prepare_batch


def _data_cfg(tfds_dir, cache, **kw):
    base = dict(name="binarized_mnist", binarization="static", dir=tfds_dir, download=False,
                cache_dir=str(cache), train_split="train", test_split="test")
    return OmegaConf.create({**base, **kw})


def test_binarized_mnist_test_split_is_static_binary(tfds_dir, tmp_path):
    images = load_split("binarized_mnist", "test", _data_cfg(tfds_dir, tmp_path))
    assert images.shape == (10000, 28, 28, 1) and images.dtype == np.uint8
    assert set(np.unique(images)) == {0, 1}
    assert 0.1 < images.mean() < 0.2  # MNIST digits cover about 13% of the pixels


def test_second_load_reads_the_cache_not_tfds(tfds_dir, tmp_path, monkeypatch):
    cfg = _data_cfg(tfds_dir, tmp_path)
    first = load_split("binarized_mnist", "validation", cfg)
    assert os.listdir(tmp_path) == ["binarized_mnist-1.0.0-validation.npy"]

    def no_decode(_):
        raise AssertionError("decoded again")

    monkeypatch.setattr(input_pipeline, "_decode", no_decode)
    np.testing.assert_array_equal(load_split("binarized_mnist", "validation", cfg), first)


def test_unprepared_data_offline_names_dataset_and_dir(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"dataset 'binarized_mnist' is not prepared in data_dir "
                                        + str(empty)):
        load_split("binarized_mnist", "test", _data_cfg(str(empty), tmp_path / "cache"))
    assert os.listdir(empty) == []  # nothing written into the data_dir


def test_grey_mnist_needs_dynamic_binarization(tfds_dir, tmp_path):
    grey = load_split("mnist", "test", _data_cfg(tfds_dir, tmp_path, name="mnist"))
    assert grey.max() == 255
    with pytest.raises(DataError, match="data.binarization=dynamic"):
        check_binarization(grey, "mnist", "static")
    check_binarization(grey, "mnist", "dynamic")


def test_dynamic_binarization_draws_fresh_bernoulli_samples():
    grey = jax.numpy.asarray(np.full((2000, 4, 4, 1), 64, np.uint8))
    a = np.asarray(prepare_batch(grey, jax.random.PRNGKey(0), "dynamic"))
    b = np.asarray(prepare_batch(grey, jax.random.PRNGKey(1), "dynamic"))
    assert set(np.unique(a)) == {0.0, 1.0}
    assert abs(a.mean() - 64 / 255) < 0.01  # Bernoulli(x / 255)
    assert (a != b).mean() > 0.2  # a fresh draw per key
    static = np.asarray(prepare_batch(grey // 64, jax.random.PRNGKey(0), "static"))
    np.testing.assert_array_equal(static, np.ones((2000, 4, 4, 1), np.float32))
