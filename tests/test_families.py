"""Every option composes and trains: the paper's 12 family codes, the mixture marginal and the
MLP networks each take a few training steps on tiny shapes and give finite R, D, ELBO, IWAE."""

import itertools

import jax
import numpy as np
import pytest
from hydra.utils import instantiate

from rdsweep.evaluate import evaluate
from rdsweep.experiment import build_model
from rdsweep.input_pipeline import load_split
from rdsweep.train import create_state, make_optimizer, make_train_step, train

CODES = ["".join(c) for c in itertools.product("-+", "-+", "-+v")]

# Tiny networks: the point is that every combination composes and runs, not its quality.
TINY = {
    "conv": ["encoder.channels=[4,4,4,4,8]"],
    "conv_iaf": ["encoder.base.channels=[4,4,4,4,8]", "encoder.hidden=[8,8,8]"],
    "conv_dec": ["decoder.channels=[4,4,4,4,4,4]"],
    "pixelcnn": ["decoder.depth=4", "decoder.resnets_per_block=1"],
    "maf": ["marginal.hidden=[8,8,8]"],
    "vamp": ["marginal.pseudo_inputs=3"],
    "mixture": ["marginal.components=3"],
}


def tiny_overrides(code):
    enc, dec, mar = code
    return ([*TINY["conv" if enc == "-" else "conv_iaf"],
             *TINY["conv_dec" if dec == "-" else "pixelcnn"],
             *{"-": [], "+": TINY["maf"], "v": TINY["vamp"]}[mar]])


def train_briefly(cfg, images):
    model = build_model(cfg)
    state = create_state(model, make_optimizer(cfg.train, len(images)),
                         instantiate(cfg.objective), np.zeros((1, 28, 28, 1), np.float32),
                         jax.random.PRNGKey(0))
    step = make_train_step(cfg.train.batch_size, "static")
    for state, rows in train(state, step, jax.device_put(images), 2, 2, cfg.train.batch_size):
        pass
    return state, rows[0]


@pytest.fixture(scope="module")
def images(make_cfg):
    return load_split("test", make_cfg().data)[:64]


@pytest.mark.parametrize("overrides", [[f"family={c}", *tiny_overrides(c)] for c in CODES]
                         + [["marginal=mixture", *TINY["mixture"]],
                            ["encoder=mlp", "decoder=pixelcnn", "marginal=vamp",
                             "encoder.hidden=[16]", *TINY["pixelcnn"], *TINY["vamp"]],
                            ["encoder=conv_iaf", "decoder=mlp", "marginal=maf",
                             *TINY["conv_iaf"], *TINY["maf"], "decoder.hidden=[16]"]],
                         ids=CODES + ["mixture", "mlp+pixelcnn+vamp", "iaf+mlp+maf"])
def test_option_trains_and_gives_finite_bounds(overrides, make_cfg, images):
    cfg = make_cfg("latent_dim=4", "train.batch_size=8", *overrides)
    state, row = train_briefly(cfg, images)
    assert int(state.step) == 2 and np.isfinite(row["loss"])
    result = evaluate(state.apply_fn, state.params, images[:8], jax.random.PRNGKey(1), 2, 8,
                      "static")
    for q in ("rate", "distortion", "elbo", "iwae"):
        assert np.isfinite(result[q]), (q, result)
    assert result["distortion"] > 0
    flows = cfg.encoder._target_.endswith("IAFEncoder") or cfg.marginal._target_.endswith(
        ("MAFMarginal", "VampPrior", "MixtureMarginal"))
    assert result["rate_estimator"] == ("monte_carlo" if flows else "analytic")
