"""XLA:CPU tuning (rdsweep.cpu_tuning): which programs get single-dot fusions, that the user's
XLA_FLAGS win, that the choice changes the speed, not the numbers, and how auto batches a
grid."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hydra.utils import instantiate

from rdsweep import cpu_tuning
from rdsweep.identity import config_hash
from rdsweep.option import ConfigError
from rdsweep.registry import check
from rdsweep.train import make_train_chunk, make_train_step, stack

from helpers import TINY, initial_state

# Written out, not taken from the module: the options the training and evaluation are compiled
# with are part of what a run does.
SINGLE_DOT = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}
CONV = ["data=synthetic", "data.image_shape=[12,12,1]", "data.train_examples=200",
        "latent_dim=4", "encoder=conv", "encoder.channels=[4,4,4,4,8]",
        "decoder=conv", "decoder.channels=[4,4,4,4,4,4]"]


@pytest.mark.parametrize("flags, expected", [
    ("", SINGLE_DOT),
    ("--xla_cpu_experimental_ynn_fusion_type=-reduce", None)])  # the user's choice wins
def test_single_dot_yields_to_the_users_flags(monkeypatch, flags, expected):
    monkeypatch.setenv("XLA_FLAGS", flags)
    assert cpu_tuning.single_dot() == expected
    assert cpu_tuning.eval_options() == expected  # the evaluation's, whatever the model


@pytest.mark.parametrize("overrides, expected", [
    ([], None),  # the default mlp: XLA's defaults (its numbers stay as they were)
    (["decoder=conv"], SINGLE_DOT),
    (["family=---"], SINGLE_DOT),  # the conv decoder
    (["family=--v"], SINGLE_DOT),
    (["family=+-+"], SINGLE_DOT),
    (["encoder=conv"], None),  # the decoder decides: here the mlp's
    (["family=-+-"], None),  # the PixelCNN decoder
    (["mlp_family=-+-"], None),
    (["decoder=conv", "train.fusions=xla"], None),
    (["mlp_family=-+-", "train.fusions=single_dot"], SINGLE_DOT),
    (["train.fusions=single_dot"], SINGLE_DOT)])
def test_auto_chooses_single_dot_fusions_for_conv_decoders(
        make_cfg, monkeypatch, overrides, expected):
    monkeypatch.setenv("XLA_FLAGS", "")
    assert cpu_tuning.compile_options(make_cfg(*overrides)) == expected


def test_an_unknown_fusion_choice_fails_at_start_up(make_cfg):
    with pytest.raises(ConfigError, match=r"train.fusions=fast is invalid"):
        check(make_cfg("train.fusions=fast"))


@pytest.mark.slow  # two compilations of a conv decoder's training: ~20 s on 2 busy cores
def test_single_dot_fusions_keep_a_conv_models_training_numbers(make_cfg, monkeypatch):
    """Three steps of a small conv-decoder VAE (the decoder that train.fusions=auto compiles
    with single-dot fusions) compiled both ways: the parameters and the per-step bounds agree to
    float32 rounding of sums taken in another order (rtol 1e-4)."""
    monkeypatch.setenv("XLA_FLAGS", "")
    conv_decoder = [o for o in CONV if not o.startswith("encoder")]
    cfg = make_cfg(*conv_decoder, "encoder.hidden=[16]", "train.batch_size=16")
    assert cpu_tuning.compile_options(cfg) == cpu_tuning.single_dot()
    images = jax.device_put(instantiate(cfg.data).load()[0].images)
    state = initial_state(cfg, images)
    step = make_train_step(16, "static")
    runs = [make_train_chunk(step, "map", options)(stack([state]), images, 3)
            for options in (None, cpu_tuning.single_dot())]
    assert runs[1][1]["loss"].shape == (3, 1)
    for name in ("loss", "rate", "distortion"):
        np.testing.assert_allclose(runs[1][1][name], runs[0][1][name], rtol=1e-4, err_msg=name)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5),
                           runs[1][0].params, runs[0][0].params)


def test_the_fusion_choice_is_outside_a_runs_identity(make_cfg):
    """A run started under one choice resumes under another (only the floats' rounding moves,
    as under another jaxlib), and runs recorded before the key existed keep their identity."""
    hashes = {config_hash(make_cfg("family=---", f"train.fusions={choice}"))
              for choice in ("auto", "xla", "single_dot")}
    assert len(hashes) == 1
    assert config_hash(make_cfg("family=---")) != config_hash(make_cfg("family=-+-"))


def _stack_of(make_cfg, k, *overrides):
    """(config, step, stack of k fresh states, images) of a model at MNIST's image size; the
    states' and images' shapes only (nothing initialised)."""
    cfg = make_cfg(*TINY, *overrides)
    images = jax.ShapeDtypeStruct((4, 28, 28, 1), jnp.uint8)
    step = make_train_step(cfg.train.batch_size, cfg.data.binarization)
    states = jax.eval_shape(lambda x: stack([initial_state(cfg, x)] * k), images)
    return cfg, step, states, images


@pytest.mark.parametrize("overrides, k, expected", [
    ([], 1, "map"),  # one model: one plain scan
    ([], 2, "vmap"),  # the mlp: matmuls batch well
    pytest.param(["encoder=conv", "decoder=conv"], 2, "map",  # XLA:CPU's vmapped convs: slow
                 marks=pytest.mark.slow),
    pytest.param(["encoder=iaf", "encoder/base=conv"], 2, "map",  # a conv nested in a part
                 marks=pytest.mark.slow),
    pytest.param(["decoder=pixelcnn", "decoder.size=tiny"], 2, "map", marks=pytest.mark.slow),
    (["train.grid_batching=map"], 2, "map"),  # a choice other than auto is kept
    (["train.grid_batching=vmap"], 1, "vmap"),
])
def test_auto_grid_batching_follows_the_model(make_cfg, overrides, k, expected):
    cfg, step, states, images = _stack_of(make_cfg, k, *overrides)
    assert cpu_tuning.grid_batching(cfg.train.grid_batching, step, states, images) == expected


def test_convolves_finds_a_convolution_anywhere():
    x, w = jnp.ones((1, 4, 4, 1)), jnp.ones((2, 2, 1, 1))
    conv = lambda x: jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
    assert cpu_tuning.convolves(conv, x)
    assert cpu_tuning.convolves(jax.grad(lambda x: conv(x).sum()), x)  # in the gradient
    assert cpu_tuning.convolves(lambda x: jax.lax.scan(lambda c, _: (conv(c), None), x, None,
                                                       length=2)[0], x)  # in a scan's body
    assert not cpu_tuning.convolves(lambda x: (x @ x).sum(), jnp.ones((3, 3)))
