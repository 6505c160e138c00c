"""The evaluation decodes the k samples in groups (at most max_decodes decoder inputs at a time):
the groups bound memory and cache use, and leave every example's bounds as they are."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hydra.utils import instantiate

from helpers import SMALL_MODEL
from rdsweep.evaluate import QUANTITIES, evaluate_examples
from rdsweep.experiment import build_model
from rdsweep.train import create_state, make_optimizer


@pytest.mark.parametrize("max_decodes", [7, 40, 64])  # groups of 1, 4 (13 = 4+4+4+1), 6 (6+6+1)
def test_decoding_in_groups_leaves_the_bounds(make_cfg, max_decodes):
    cfg = make_cfg(*SMALL_MODEL)
    train, test = instantiate(cfg.data).load()
    model = build_model(cfg)
    example = jnp.zeros((1,) + train.images.shape[1:], jnp.float32)
    state = create_state(model, make_optimizer(cfg.train, len(train.images)),
                         instantiate(cfg.objective), example, jax.random.PRNGKey(0))
    images = test.images[:20]
    evaluate = lambda md: evaluate_examples(state.apply_fn, state.params, images,
                                            jax.random.PRNGKey(1), 13, 10, "static", md)
    at_once, grouped = evaluate(13 * 10), evaluate(max_decodes)
    for q in QUANTITIES:  # float32 sums of 144 pixels' terms, in another order at most
        np.testing.assert_allclose(grouped[q], at_once[q], rtol=1e-5, atol=1e-4, err_msg=q)
