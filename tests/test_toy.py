"""The toy problem (experiment=toy, Alemi et al. 2018 section 4): the data's I(x; z*), exact
rate and distortion against a brute-force evaluation, the ELBO's collapse and the target rate's
fix, the command line, and bad toy options."""

import math
import os

import jax
import numpy as np
import optax
import pytest
from hydra import compose, initialize_config_module
from scipy import special, stats

from helpers import random_variables, rdsweep, rdsweep_here, read
from rdsweep import experiment, registry, resolvers
from rdsweep.evaluate import evaluate
from rdsweep.option import ConfigError
from rdsweep.options import toy
from rdsweep.options.objectives import BetaObjective
from rdsweep.train import create_state, make_train_step
from rdsweep.validation import validate


@pytest.fixture(scope="module")
def toy_cfg():
    """compose(overrides) of experiment=toy, as the rdsweep command would build it."""
    registry.register()
    resolvers.register()

    def make(*overrides):
        with initialize_config_module(config_module="rdsweep.conf", version_base="1.3"):
            return compose("config", overrides=["experiment=toy", *overrides])

    return make


def _reference_joint(bins, cluster_prob, scale, low, high, separation):
    """p(z*, x_j), (2, bins), from scipy's normal cdf; the outer bins take the tails."""
    edges = np.linspace(low, high, bins + 1)
    cdf = [stats.norm.cdf(edges[1:-1], mu, scale) for mu in (-separation / 2, separation / 2)]
    cells = [np.diff(np.concatenate([[0.0], c, [1.0]])) for c in cdf]
    return np.stack([(1 - cluster_prob) * cells[0], cluster_prob * cells[1]])


@pytest.mark.parametrize("overrides,target", [
    ([], 0.5),  # the paper's
    (["data.information=0.3", "data.cluster_prob=0.4", "data.bins=12", "data.range=[-3,4]"], 0.3),
])
def test_data_has_the_asked_mutual_information(overrides, target, toy_cfg):
    data_cfg = toy_cfg(*overrides).data
    data = toy.make(data_cfg)
    low, high = data_cfg.range
    joint = _reference_joint(data_cfg.bins, data_cfg.cluster_prob, data_cfg.cluster_scale, low,
                             high, data.separation)
    p_x, p_c = joint.sum(0), joint.sum(1)
    information = np.sum(joint * np.log(joint / np.outer(p_c, p_x)))
    assert abs(information - target) < 1e-9, information
    assert abs(data.information - target) < 1e-9
    np.testing.assert_allclose(data.joint, joint, rtol=1e-9, atol=1e-15)
    assert data.entropy == pytest.approx(-np.sum(p_x * np.log(p_x)), rel=1e-12)
    images, weights = toy.examples(data)  # every bin once, one-hot, weighted by p(x_j)
    assert images.shape == (data_cfg.bins, data_cfg.bins) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, 255 * np.eye(data_cfg.bins))
    np.testing.assert_allclose(weights, p_x, rtol=1e-9)


def _brute_force(params, p_x):
    """R, D, ELBO and E_x log p(x) of the toy model, in nats, by loops over x and z in numpy
    (float64), from the model's parameters and the formulas of the paper's section 4."""
    enc, dec = params["encoder"]["QuadraticLogits_0"], params["decoder"]["QuadraticLogits_0"]
    we, be, wd, bd = (np.asarray(a, np.float64) for a in (enc["w"], enc["b"], dec["w"], dec["b"]))
    m = special.softmax(np.asarray(params["marginal"]["logits"], np.float64))
    bins, k = len(wd), len(we)
    xs, zs = np.linspace(-1, 1, bins), np.linspace(-1, 1, k)
    rate = distortion = log_px = 0.0
    for j in range(bins):
        e = special.softmax([-(we[i] * xs[j] - be[i]) ** 2 for i in range(k)])
        px_model = 0.0
        for i in range(k):
            d = special.softmax([-(wd[jj] * zs[i] - bd[jj]) ** 2 for jj in range(bins)])
            rate += p_x[j] * e[i] * math.log(e[i] / m[i])
            distortion -= p_x[j] * e[i] * math.log(d[j])
            px_model += m[i] * d[j]
        log_px += p_x[j] * math.log(px_model)
    return {"rate": rate, "distortion": distortion, "elbo": -(rate + distortion), "iwae": log_px}


@pytest.mark.parametrize("k", [1, 3])
def test_exact_rate_and_distortion_match_brute_force(k, toy_cfg):
    """Random parameters; the evaluation in batches of 7 (padded, weighted) of the 30 bins."""
    cfg = toy_cfg()
    images, p_x = toy.examples(toy.make(cfg.data))
    model = experiment.build_model(cfg)
    key = jax.random.PRNGKey(0)
    params = random_variables(model, images[:1].astype(np.float32), key, seed=k)["params"]
    params["encoder"]["QuadraticLogits_0"]["w"] *= 3.0  # an encoder far from uniform
    got, _ = evaluate(model.apply, params, images, key, k, 7, "static", weights=p_x)
    want = _brute_force(params, p_x)
    assert want["rate"] > 0.3  # the parameters make a model that uses z
    for q in ("rate", "distortion", "elbo", "iwae"):
        assert got[q] == pytest.approx(want[q], rel=2e-5, abs=2e-6), q
    assert got["rate_mc"] == pytest.approx(want["rate"], rel=2e-5)  # enumerated: exact too


def test_full_batch_training_step_sees_the_exact_quantities(toy_cfg):
    """train_step without a batch size, weighted by p(x_j): its metrics (of the parameters
    before the update) are the exact ones."""
    cfg = toy_cfg()
    images, p_x = toy.examples(toy.make(cfg.data))
    state = create_state(experiment.build_model(cfg), optax.adam(0.01), BetaObjective(1.0),
                         images[:1].astype(np.float32), jax.random.PRNGKey(0))
    want = _brute_force(state.params, p_x)
    after, metrics = jax.jit(make_train_step(None, "static"))(state, images, p_x)
    for q in ("rate", "distortion", "elbo"):
        assert float(metrics[q]) == pytest.approx(want[q], rel=2e-5), q
    assert float(metrics["loss"]) == pytest.approx(-want["elbo"], rel=2e-5)
    assert int(after.step) == 1


@pytest.fixture(scope="module")
def trained(toy_cfg, tmp_path_factory):
    """The preset's two models (seed 0), as `rdsweep -m experiment=toy` trains them."""
    out = tmp_path_factory.mktemp("toy")
    return {objective: experiment.run(toy_cfg(f"objective={objective}", "train.tensorboard=false"),
                                      str(out / objective))
            for objective in ("beta", "target_rate")}


def test_elbo_collapses_to_zero_rate(trained):
    m = trained["beta"]
    assert m["status"] == "completed"
    entropy = m["toy"]["entropy_x"]
    assert m["test"]["rate"] < 0.01, m["test"]  # the paper: 0.0002
    assert m["test"]["elbo"] == pytest.approx(-entropy, abs=1e-3)  # the best ELBO there is
    assert m["toy"]["information_cluster_latent"] < 0.01  # z says nothing about the cluster
    assert m["toy"]["cluster_latent_mass"][0] > 0.99


def test_target_rate_recovers_the_clusters(trained):
    m = trained["target_rate"]
    test, extras = m["test"], m["toy"]
    assert abs(test["rate"] - 0.5) < 0.01, test  # the paper: 0.4999
    # as good an ELBO as the collapsed model's, on the line D = H - R
    assert test["elbo"] == pytest.approx(trained["beta"]["test"]["elbo"], abs=1e-3)
    assert test["distortion"] == pytest.approx(extras["entropy_x"] - test["rate"], abs=1e-3)
    mass = extras["cluster_latent_mass"]
    assert abs(mass[0] - 0.7) < 0.1 and abs(mass[1] - 0.3) < 0.1, mass  # about 70% / 30%
    assert extras["information_cluster_latent"] > 0.2, extras


@pytest.mark.slow  # a 2-job sweep in a subprocess
def test_cli_sweep_runs_both_models(tmp_path):
    sweep = tmp_path / "sweep"
    p = rdsweep("-m", "experiment=toy", "train.steps=200", "train.lr_hold_steps=100",
                "train.log_every=100", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    runs = sorted(r for r in os.listdir(sweep) if r.startswith("experiment=toy"))
    assert [r.split(",")[1] for r in runs] == ["objective=beta", "objective=target_rate"], runs
    for run in runs:
        m = read(sweep / run / "metrics.json")
        assert m["status"] == "completed" and m["steps"] == 200
        assert m["test"]["examples"] == 30 and m["rate_estimator"] == "analytic"
        assert abs(m["toy"]["information_x_cluster"] - 0.5) < 1e-9
        assert len(m["toy"]["cluster_latent_mass"]) == 2
    assert read(sweep / runs[1] / "metrics.json")["config"]["objective"]["sigma"] == 0.5
    assert (sweep / "report" / "results.csv").exists()


def test_plain_preset_is_the_elbo(toy_cfg):
    cfg = toy_cfg()
    assert cfg.objective._target_.endswith("BetaObjective") and cfg.beta == 1.0


BAD = [
    (["data.bins=1"], "data.bins=1 is invalid: must be an integer >= 2"),
    (["data.cluster_prob=1.5"], "data.cluster_prob=1.5 is invalid: must be in (0, 1)"),
    (["data.cluster_scale=0"], "data.cluster_scale=0.0 is invalid: must be a finite number > 0"),
    (["data.range=[5,-5]"],
     "data.range=[5.0, -5.0] is invalid: must be [low, high], finite, with low < high"),
    (["data.information=0.62"], "data.information=0.62 is invalid: must be in (0, 0.6109) nats"),
    (["eval.image_examples=3"], "eval.image_examples=3 is invalid: must be 0 for data=toy"),
    (["marginal=gaussian"], "marginal=gaussian is invalid with encoder=toy: encoder=toy needs "
     "marginal=categorical"),
    (["encoder=mlp"], "encoder=mlp is invalid with marginal=categorical: marginal=categorical "
     "needs encoder=toy"),
    (["data=binarized_mnist", "encoder=mlp", "marginal=gaussian"],
     "data=binarized_mnist is invalid with decoder=toy: decoder=toy needs data=toy"),
    (["train.batch_size=0"], "train.batch_size=0 is invalid: must be an integer >= 1, or null"),
]


@pytest.mark.parametrize("overrides,message", BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_toy_option_is_named(overrides, message, toy_cfg):
    with pytest.raises(ConfigError) as error:
        validate(toy_cfg(*overrides))
    assert str(error.value).startswith(message), str(error.value)


def test_bad_toy_option_fails_at_start_with_one_line(tmp_path):
    out = tmp_path / "out"
    p = rdsweep_here("experiment=toy", "data.bins=1", f"hydra.run.dir={out}", cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().splitlines() == [
        "rdsweep: error: data.bins=1 is invalid: must be an integer >= 2"]
    assert not out.exists()
