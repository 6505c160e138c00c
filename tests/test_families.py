"""Every option composes and trains: the paper's 12 family codes at both scales (family=,
mlp_family=) each trace into a train step with the state's shapes; at the MLP scale a pairwise
set of them (every two parts together at least once), the mixture marginal and the MLP networks
each take a few training steps on tiny shapes (synthetic images) and give finite R, D, ELBO,
IWAE. The conv-scale parts each train in tests/test_contract.py."""

import itertools

import jax
import numpy as np
import pytest
from rdsweep.evaluate import evaluate
from rdsweep.options.synthetic import SyntheticBars
from rdsweep.train import make_train_step, stack, train, unstack

from helpers import initial_state

CODES = ["".join(c) for c in itertools.product("-+", "-+", "-+v")]
# Trained at each scale: every pair of parts (encoder-decoder, encoder-marginal, decoder-marginal)
# occurs in one of these; compiling all 24 trainings is most of CI's time.
PAIRWISE = ["---", "++-", "-++", "+-+", "--v", "++v"]

# Tiny networks: the point is that every combination composes and runs, not its quality.
TINY = {
    "conv": ["encoder.channels=[4,4,4,4,8]"],
    "iaf_conv": ["encoder.base.channels=[4,4,4,4,8]", "encoder.hidden=[8,8,8]"],
    "conv_dec": ["decoder.channels=[4,4,4,4,4,4]"],
    "mlp": ["encoder.hidden=[16]"],
    "iaf_mlp": ["encoder.base.hidden=[16]", "encoder.hidden=[8,8,8]"],
    "mlp_dec": ["decoder.hidden=[16]"],
    "pixelcnn": ["decoder.depth=4", "decoder.resnets_per_block=1"],
    "maf": ["marginal.hidden=[8,8,8]"],
    "vamp": ["marginal.pseudo_inputs=3"],
    "mixture": ["marginal.components=3"],
}
SCALE = {"family": ("conv", "conv_dec"), "mlp_family": ("mlp", "mlp_dec")}


def tiny_overrides(group, code):
    enc, dec, mar = code
    plain_enc, plain_dec = SCALE[group]
    return ([f"{group}={code}", *TINY[plain_enc if enc == "-" else f"iaf_{plain_enc}"],
             *TINY[plain_dec if dec == "-" else "pixelcnn"],
             *{"-": [], "+": TINY["maf"], "v": TINY["vamp"]}[mar]])


def train_briefly(cfg, images):
    step = make_train_step(cfg.train.batch_size, "static")
    for state, rows in train(stack([initial_state(cfg, images)]), step, jax.device_put(images),
                             2, 2, cfg.train.batch_size):
        pass
    return unstack(state, 0), rows[0]


SHAPE = (12, 12, 1)  # small images: the parts' shapes scale with them (sides multiples of 4)


@pytest.fixture(scope="module")
def images():
    return SyntheticBars(image_shape=list(SHAPE), test_examples=64).load()[1].images


# The fast tier trains MLP-scale families with factorized decoders (the conv and PixelCNN parts'
# are tests/test_conv.py's and tests/test_pixelcnn.py's there); the slow tier traces every family
# and trains the pairwise set.
FAST = {"mlp_family=---", "mlp_family=+-+"}


def _case(group, code):
    marks = [] if f"{group}={code}" in FAST else [pytest.mark.slow]
    return pytest.param(tiny_overrides(group, code), id=f"{group}={code}", marks=marks)


def tiny_cfg(make_cfg, *overrides):
    return make_cfg("latent_dim=4", "train.batch_size=8", "data=synthetic",
                    f"data.image_shape={list(SHAPE)}", *overrides)


def test_the_trained_codes_cover_every_pair_of_parts():
    for i, j in itertools.combinations(range(3), 2):
        wanted = set(itertools.product("-+", "-+v" if j == 2 else "-+"))
        assert {(code[i], code[j]) for code in PAIRWISE} == wanted, (i, j)


@pytest.mark.parametrize("overrides", [pytest.param(tiny_overrides(g, c), id=f"{g}={c}",
                                                    marks=[pytest.mark.slow])
                                       for g in SCALE for c in CODES])
def test_every_family_traces_into_a_train_step(overrides, make_cfg, images):
    cfg = tiny_cfg(make_cfg, *overrides)
    state = jax.eval_shape(lambda: initial_state(cfg, images))  # shapes only: nothing compiled
    new_state, metrics = jax.eval_shape(make_train_step(cfg.train.batch_size, "static"), state,
                                        images)
    shapes = lambda tree: jax.tree_util.tree_map(lambda leaf: (leaf.shape, leaf.dtype), tree)
    assert shapes(new_state.params) == shapes(state.params)
    assert {name: m.shape for name, m in metrics.items()} == {
        name: () for name in ("loss", "rate", "distortion", "elbo")}


@pytest.mark.parametrize("overrides", [_case("mlp_family", c) for c in PAIRWISE]
                         + [pytest.param(["marginal=mixture", *TINY["mixture"]], id="mixture",
                                         marks=[pytest.mark.slow]),
                            pytest.param(["encoder=iaf", "decoder=mlp", "marginal=maf",
                                          *TINY["iaf_conv"], *TINY["maf"], *TINY["mlp_dec"]],
                                         id="iaf+mlp+maf", marks=[pytest.mark.slow])])
def test_option_trains_and_gives_finite_bounds(overrides, make_cfg, images):
    cfg = tiny_cfg(make_cfg, *overrides)
    state, row = train_briefly(cfg, images)
    assert int(state.step) == 2 and np.isfinite(row["loss"])
    result, estimator = evaluate(state.apply_fn, state.params, images[:8],
                                 jax.random.PRNGKey(1), 2, 8, "static")
    for q in ("rate", "distortion", "elbo", "iwae"):
        assert np.isfinite(result[q]), (q, result)
    assert result["distortion"] > 0
    flows = cfg.encoder._target_.endswith("IAFEncoder") or cfg.marginal._target_.endswith(
        ("MAFMarginal", "VampPrior", "MixtureMarginal"))
    assert estimator == ("monte_carlo" if flows else "analytic")


def test_mlp_family_uses_the_mlp_scale_parts(make_cfg):
    cfg = make_cfg("mlp_family=++v")
    assert cfg.encoder._target_.endswith("IAFEncoder")
    assert cfg.encoder.base._target_.endswith("MLPEncoder")
    assert cfg.decoder._target_.endswith("PixelCNNDecoder") and cfg.decoder.size == "tiny"
    assert cfg.marginal._target_.endswith("VampPrior")
    paper = make_cfg("family=++v")
    assert paper.encoder.base._target_.endswith("ConvEncoder") and paper.decoder.size == "small"
