"""data=synthetic: bars images, checked against the factors they are drawn from."""

import numpy as np
import pytest

from rdsweep.options.synthetic import SyntheticBars, bars


def _factors(images):
    """Which of the H//4 row bars and W//4 column bars each image shows, read back from its
    pixels: a row bar is the only way to ink a whole row (column bars cover half the columns
    at most)."""
    ink = images[..., 0] > 0
    rows = ink[:, 1::4][:, : ink.shape[1] // 4].all(axis=2)
    cols = ink[:, :, 1::4][:, :, : ink.shape[2] // 4].all(axis=1)
    return rows, cols


def test_images_are_unions_of_independent_bars():
    rng = np.random.default_rng(0)
    images = bars(20000, (28, 28, 1), 0.15, 0.0, rng)
    assert images.shape == (20000, 28, 28, 1) and images.dtype == np.uint8
    assert set(np.unique(images)) == {0, 255}
    rows, cols = _factors(images)
    # the picture is exactly the union of the bars it shows
    redraw = np.zeros(images.shape[:3], bool)
    for i in range(7):
        for offset in (1, 2):
            redraw[:, 4 * i + offset, :] |= rows[:, i, None]
            redraw[:, :, 4 * i + offset] |= cols[:, i, None]
    np.testing.assert_array_equal(redraw, images[..., 0] > 0)
    factors = np.concatenate([rows, cols], axis=1).astype(float)
    # each bar present with probability 0.15 (binomial s.d. 0.0025), independent of the others
    np.testing.assert_allclose(factors.mean(0), 0.15, atol=0.012)
    corr = np.corrcoef(factors.T)[~np.eye(14, dtype=bool)]
    assert np.abs(corr).max() < 0.05


def test_noise_flips_pixels_at_its_rate():
    clean = bars(2000, (8, 8, 1), 0.5, 0.0, np.random.default_rng(1))
    noisy = bars(2000, (8, 8, 1), 0.5, 0.1, np.random.default_rng(1))
    assert abs((clean != noisy).mean() - 0.1) < 0.01


def test_splits_are_deterministic_and_differ():
    train, test = SyntheticBars(train_examples=300, test_examples=100).load()
    again = SyntheticBars(train_examples=300, test_examples=100).load()
    np.testing.assert_array_equal(train.images, again[0].images)
    assert test.images.shape == (100, 28, 28, 1) and train.weights is None
    assert (train.images[:100] != test.images).any()
    other = SyntheticBars(train_examples=300, seed=1).load()[0]
    assert (other.images != train.images).any()


@pytest.mark.parametrize("field,value,message", [
    ("bar_prob", 1.5, "data.bar_prob=1.5 is invalid: must be in [0, 1]"),
    ("image_shape", [3, 28, 1], "data.image_shape=[3, 28, 1] is invalid"),
    ("train_examples", 0, "data.train_examples=0 is invalid: must be an integer >= 1"),
])
def test_bad_values_are_named(field, value, message):
    from rdsweep.option import ConfigError

    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        SyntheticBars(**{field: value}).check("data")
