"""Real binarized MNIST, small budgets: training improves the bound, runs are deterministic,
and the IWAE bound behaves as a bound."""

import jax
import numpy as np
import optax
import pytest
from hydra.utils import instantiate

from helpers import SMALL_MODEL
from rdsweep import experiment
from rdsweep import evaluate as evaluation
from rdsweep.evaluate import evaluate
from rdsweep.options.tfds_images import load_split
from rdsweep.train import create_state, make_train_step, stack, train, unstack

STEPS = 400
IMPROVEMENT = 250.0  # nats of test ELBO gained over the untrained model, at least


@pytest.fixture(scope="module")
def trained(real_cfg, data_cache):
    cfg = real_cfg()
    train_images = load_split("train", cfg.data)
    test_images = load_split("test", cfg.data)[:1000]
    model = experiment.build_model(cfg)
    state = create_state(model, optax.adam(1e-3), instantiate(cfg.objective),
                         np.zeros((1, 28, 28, 1), np.float32), jax.random.PRNGKey(0))
    ev = lambda s, k: evaluate(s.apply_fn, s.params, test_images, jax.random.PRNGKey(1), k,
                               250, "static")[0]
    before = ev(state, 1)
    step = make_train_step(64, "static")
    for state, _ in train(stack([state]), step, jax.device_put(train_images), STEPS, 200, 64):
        pass
    return unstack(state, 0), ev, before


def test_short_training_improves_test_elbo(trained):
    state, ev, before = trained
    after = ev(state, 1)
    # untrained: about -784 log 2 = -543 nats; 400 steps reach about -150
    assert after["elbo"] > before["elbo"] + IMPROVEMENT, (before["elbo"], after["elbo"])
    assert after["rate"] > 1.0  # a factorized decoder at beta = 1 uses z


def test_iwae_is_above_elbo_and_grows_with_k(trained):
    state, ev, _ = trained
    results = {k: ev(state, k) for k in (1, 10, 100)}
    elbo = results[100]["elbo"]
    iwae = [results[k]["iwae"] for k in (1, 10, 100)]
    assert iwae[2] > elbo
    assert iwae[0] < iwae[1] < iwae[2], iwae
    # k = 1: the IWAE bound is the ELBO, estimated with the Monte Carlo rate
    assert abs(iwae[0] - results[1]["elbo"]) < 1.0
    assert abs(results[100]["rate"] - results[100]["rate_mc"]) < 0.3  # analytic vs MC rate


def test_evaluation_xla_options_keep_the_numbers(trained, real_cfg):
    """The evaluation's own XLA options (single-dot YNNPACK fusions) change the speed, not the
    bounds: each example's bounds agree with XLA's default compilation to the rounding of a
    float32 sum of 784 pixels' terms in another order (n eps = 784 x 1.2e-7 ~ 1e-4)."""
    state, _, _ = trained
    images = load_split("test", real_cfg().data)[:250]
    args = (state.apply_fn, state.params, jax.numpy.asarray(images), jax.random.PRNGKey(3), 20,
            16384, "static")
    ours = evaluation.compiled_eval_batch()(*args)
    reference = jax.jit(evaluation.eval_batch, static_argnums=evaluation.STATIC_ARGNUMS)(*args)
    for q in evaluation.QUANTITIES:
        np.testing.assert_allclose(ours[q], reference[q], rtol=1e-4, atol=1e-4, err_msg=q)


def _run(compose, tmp_path, name, *overrides):
    cfg = compose("train.steps=60", "train.log_every=20", "eval.iwae_samples=2",
                   "eval.train_examples=500", *overrides)
    out = tmp_path / name
    out.mkdir()
    metrics = experiment.run(cfg, str(out))
    for key in ("seconds", "train_seconds", "images_per_s"):
        metrics.pop(key)
    return metrics


def test_same_seed_gives_identical_metrics(make_cfg, tmp_path):
    small = [*SMALL_MODEL, "eval.train_examples=0"]
    a = _run(make_cfg, tmp_path, "a", *small, "seed=3")
    b = _run(make_cfg, tmp_path, "b", *small, "seed=3")
    c = _run(make_cfg, tmp_path, "c", *small, "seed=4")
    assert a["status"] == "completed" and a["steps"] == 60
    assert a == b
    assert a["test"] != c["test"]


def test_dynamic_mnist_trains(real_cfg, tmp_path):
    m = _run(real_cfg, tmp_path, "m", "data=mnist")
    assert m["status"] == "completed"
    assert all(np.isfinite(m["test"][q]) for q in ("rate", "distortion", "elbo", "iwae"))


TARGET_BOUND = 1.5  # nats: |test R - sigma| after 1000 steps


def test_target_rate_pins_the_rate(real_cfg, tmp_path):
    """sigma = 30 lies above the rate this model reaches at beta = 1 (about 21 nats), so
    D + |sigma - R| must push the rate up to sigma and hold it there (the learning rate decays
    to 0 over the second half, so the rate settles rather than oscillates about sigma)."""
    cfg = real_cfg("objective=target_rate", "sigma=30", "train.steps=1000", "train.lr_hold_steps=500",
                   "train.log_every=500", "eval.iwae_samples=2", "eval.train_examples=0",
                   "eval.image_examples=0")
    test = experiment.run(cfg, str(tmp_path))["test"]
    assert abs(test["rate"] - 30.0) < TARGET_BOUND, test
