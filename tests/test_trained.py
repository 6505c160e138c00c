"""rdsweep.load_run: the restored model reproduces what training recorded, its log-likelihood
matches log p(x) by quadrature, and folders it cannot load each give one line."""

import json
import os
import shutil

import jax
import numpy as np
import pytest
from hydra.utils import instantiate

import rdsweep
from rdsweep.evaluate import evaluate
from rdsweep.option import DataError
from trained_runs import copy_run, exact_log_likelihood, trained


@pytest.fixture(scope="module")
def run_dir(make_cfg, data_cache):
    return trained(make_cfg, os.path.join(data_cache, "plane_run"))


@pytest.fixture(scope="module")
def run(run_dir):
    return rdsweep.load_run(run_dir)


def test_restored_params_reproduce_the_recorded_metrics(run):
    """Training's own evaluation, repeated with the loaded parameters and training's keys,
    gives metrics.json's numbers."""
    cfg = run.config
    train, test = instantiate(cfg.data).load()
    for split, i, recorded in ((test, 0, run.metrics["test"]),
                               (train.head(cfg.eval.train_examples), 1, run.metrics["train"])):
        again, _ = evaluate(run.apply_fn, run.params, split.images,
                            jax.random.fold_in(run.eval_key, i), cfg.eval.iwae_samples,
                            cfg.eval.batch_size, cfg.data.binarization)
        for q in ("rate", "rate_mc", "distortion", "elbo", "iwae"):
            assert again[q] == pytest.approx(recorded[q], rel=1e-9, abs=1e-9), q
    assert run.step == cfg.train.steps


def test_encode_and_decode_give_the_recorded_rate_and_distortion(run):
    """numpy from encode/decode: the closed-form KL to N(0, I) is the recorded (analytic)
    rate; a Monte Carlo distortion agrees with the recorded one within its error."""
    x = np.asarray(run.test_images(), np.float64)
    e = run.encode(x)
    mu, sigma = np.asarray(e.loc, np.float64), np.asarray(e.scale, np.float64)
    kl = 0.5 * (mu ** 2 + sigma ** 2 - 1 - 2 * np.log(sigma)).sum(-1)
    assert run.metrics["rate_estimator"] == "analytic"
    assert kl.mean() == pytest.approx(run.metrics["test"]["rate"], abs=1e-4)

    eps = np.random.default_rng(0).normal(size=(500,) + mu.shape)
    logits = np.asarray(run.decode(mu + sigma * eps).logits, np.float64)  # (500, B, 4, 4, 1)
    log_d = (x * logits - np.logaddexp(0, logits)).sum(axis=(2, 3, 4))
    recorded = run.metrics["test"]
    error = log_d.std() / np.sqrt(recorded["iwae_samples"] * recorded["examples"])
    assert -log_d.mean() == pytest.approx(recorded["distortion"], abs=5 * error)


def test_log_likelihood_matches_quadrature(run):
    """IWAE_k in blocks of samples approaches log p(x) (2-d quadrature in numpy) as k grows;
    at k = 5000 within a few hundredths of a nat."""
    x = run.test_images(12)
    exact = exact_log_likelihood(run, x)

    key = jax.random.PRNGKey(1)
    error = {k: np.abs(run.log_likelihood(x, k, key) - exact) for k in (1, 5000)}
    assert error[5000].mean() < 0.05 and error[5000].max() < 0.15, error[5000]
    assert error[1].mean() > 3 * error[5000].mean()


def test_samples_come_from_the_marginal_through_the_decoder(run):
    """The pixel means of sample(n) match E_{z ~ N(0, I)} sigmoid(logits(z)) (numpy), and
    reconstructions are binary images of x's shape."""
    samples = np.asarray(run.sample(4000, jax.random.PRNGKey(2)))
    z = np.random.default_rng(1).normal(size=(4000, 2))
    expected = (1 / (1 + np.exp(-np.asarray(run.decode(z).logits, np.float64)))).mean(0)
    assert samples.shape == (4000, 4, 4, 1)
    np.testing.assert_allclose(samples.mean(0), expected, atol=0.04)
    x = run.test_images(5)
    recon = np.asarray(run.reconstruct(x, jax.random.PRNGKey(3)))
    assert recon.shape == x.shape and set(np.unique(recon)) <= {0.0, 1.0}


def _snapshot(folder):
    return {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns
            for d, _, files in os.walk(folder) for f in files}


def _rewrite_metrics(run_dir, **changes):
    path = os.path.join(run_dir, "metrics.json")
    with open(path) as f:
        metrics = json.load(f)
    metrics.update(changes)
    with open(path, "w") as f:
        json.dump(metrics, f)


def _broken(case, run_dir, tmp_path):
    """A folder that load_run cannot load, and a word its message must have."""
    folder = os.path.join(tmp_path, case)
    if case == "missing":
        return folder, "no such folder"
    if case == "empty":
        os.makedirs(folder)
        return folder, "not a run folder"
    if case == "unfinished":
        os.makedirs(os.path.join(folder, ".hydra"))
        return folder, "unfinished"
    folder = copy_run(run_dir, tmp_path)
    if case == "failed":
        _rewrite_metrics(folder, status="failed", error="RuntimeError: boom")
        return folder, "failed"
    if case == "no_checkpoint":
        shutil.rmtree(os.path.join(folder, "checkpoints", "400"))
        return folder, "no finished checkpoint"
    if case == "damaged":
        state = os.path.join(folder, "checkpoints", "400", "state")
        path = max((os.path.join(d, f) for d, _, files in os.walk(state) for f in files),
                   key=os.path.getsize)
        data = bytearray(open(path, "rb").read())
        data[len(data) // 2] ^= 0xFF
        open(path, "wb").write(bytes(data))
        return folder, "damaged"
    _rewrite_metrics(folder, config_hash="0123456789abcdef")  # "another_config"
    return folder, "another config"


@pytest.mark.parametrize("case", ["missing", "empty", "unfinished", "failed", "no_checkpoint",
                                  "damaged", "another_config"])
def test_folders_that_cannot_be_loaded_give_one_line(case, run_dir, tmp_path):
    folder, word = _broken(case, run_dir, tmp_path)
    before = _snapshot(tmp_path)
    with pytest.raises(DataError) as error:
        rdsweep.load_run(folder)
    message = str(error.value)
    assert "\n" not in message and folder in message and word in message, message
    assert _snapshot(tmp_path) == before  # nothing written


def test_a_kept_checkpoint_loads_by_step_and_a_missing_one_names_the_kept(run, run_dir):
    again = rdsweep.load_run(run_dir, step=run.step)
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, again.params, run.params))
    with pytest.raises(DataError, match=f"no checkpoint at step 7; the kept ones are at steps "
                                        f"200, {run.step}$"):  # PLANE_MODEL keeps 200 and 400
        rdsweep.load_run(run_dir, step=7)
