"""decoder=linear: its log-density against scipy's Bernoulli, and a run."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from helpers import SMALL_MODEL, read
from rdsweep import experiment
from rdsweep.options.linear import LinearDecoder


def test_log_prob_is_the_bernoulli_of_linear_logits():
    z = jax.random.normal(jax.random.PRNGKey(0), (3, 2))
    x = jax.random.bernoulli(jax.random.PRNGKey(1), 0.3, (3, 4, 5, 1)).astype(jnp.float32)
    decoder = LinearDecoder(image_shape=(4, 5, 1))
    params = decoder.init(jax.random.PRNGKey(2), z)
    kernel, bias = (np.asarray(params["params"]["Dense_0"][k]) for k in ("kernel", "bias"))
    p = 1 / (1 + np.exp(-(np.asarray(z) @ kernel + bias)))  # (3, 20)
    want = stats.bernoulli.logpmf(np.asarray(x).reshape(3, -1), p).sum(-1)
    np.testing.assert_allclose(decoder.apply(params, z).log_prob(x), want, rtol=1e-5)


def test_decoder_linear_trains_in_a_run(make_cfg, tmp_path):
    small = [o for o in SMALL_MODEL if not o.startswith("decoder.")]  # linear has no hidden
    cfg = make_cfg(*small, "decoder=linear", "train.steps=200", "train.log_every=100",
                   "eval.train_examples=0", "eval.image_examples=0")
    experiment.run(cfg, str(tmp_path))
    metrics = read(tmp_path / "metrics.json")
    assert metrics["status"] == "completed" and metrics["family"] == "mlp/linear/gaussian"
    assert np.isfinite(metrics["test"]["elbo"])
