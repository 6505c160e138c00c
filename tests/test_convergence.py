"""The convergence measures: the drift of the training ELBO over the last tenth of the steps, and
the test ELBO gained since the newest earlier evaluated checkpoint."""

import math

import numpy as np
import pytest
from scipy import stats

from rdsweep.outputs import write_train_log
from rdsweep.report.convergence import elbo_drift, elbo_gain, run_drift


def test_drift_of_a_line_is_its_rise_over_the_tail():
    steps = np.arange(250, 10001, 250)
    elbo = -100.0 + 2e-4 * steps  # rises 0.2 nats per 1,000 steps
    assert elbo_drift(steps, elbo) == pytest.approx(2e-4 * 1000.0)  # tail: 9,000-10,000


def test_drift_matches_scipy_regression_on_noisy_curves():
    rng = np.random.default_rng(0)
    steps = np.arange(100, 2401, 100)
    elbo = -90 + 5 * np.exp(-steps / 500) + rng.normal(0, 0.3, steps.shape)
    tail = steps >= 2400 * 0.8
    expected = stats.linregress(steps[tail], elbo[tail]).slope * 2400 * 0.2
    assert elbo_drift(steps, elbo, tail=0.2) == pytest.approx(expected, rel=1e-9)


def test_too_few_rows_in_the_tail_give_nan():
    assert math.isnan(elbo_drift(np.array([500, 1000]), np.array([-95.0, -94.0])))


def test_run_drift_reads_the_run_folders_log(tmp_path):
    rows = [{"step": s, "loss": 0.0, "rate": 0.0, "distortion": 0.0, "elbo": -100 + s / 1000,
             "images_per_s": 1.0, "seconds": 1.0} for s in range(100, 2001, 100)]
    write_train_log(str(tmp_path), rows)
    assert run_drift(str(tmp_path)) == pytest.approx(0.2)
    assert run_drift(str(tmp_path / "no_such_run")) is None


def test_gain_is_measured_from_the_newest_evaluation_before_the_last_step():
    earlier = [(1000, -99.0), (2000, -97.5), (2344, -96.0), (3000, -90.0)]
    gain, since = elbo_gain(2344, -97.25, earlier)  # 2344 and 3000 are not before the end
    assert (since, gain) == (2000, pytest.approx(0.25))
    assert elbo_gain(1000, -97.0, earlier)[1] is None
    assert math.isnan(elbo_gain(1000, -97.0, earlier)[0])
