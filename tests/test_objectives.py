import numpy as np
import jax
import jax.numpy as jnp
from scipy import special

from rdsweep.models import LogTerms
from rdsweep.objectives import BetaObjective, rate_distortion, rate_estimator


def _terms(kl):
    rng = np.random.default_rng(0)
    s, b = 7, 5
    return LogTerms(log_d=jnp.asarray(rng.normal(-90, 5, (s, b)), jnp.float32),
                    log_e=jnp.asarray(rng.normal(10, 2, (s, b)), jnp.float32),
                    log_m=jnp.asarray(rng.normal(-15, 2, (s, b)), jnp.float32),
                    kl=None if kl is None else jnp.asarray(kl, jnp.float32))


def test_monte_carlo_quantities_match_numpy():
    t = _terms(None)
    q = {k: np.asarray(v) for k, v in rate_distortion(t).items()}
    d, e, m = (np.asarray(a, np.float64) for a in (t.log_d, t.log_e, t.log_m))
    np.testing.assert_allclose(q["distortion"], -d.mean(0), rtol=1e-6)
    np.testing.assert_allclose(q["rate"], (e - m).mean(0), rtol=1e-5)
    np.testing.assert_allclose(q["iwae"], special.logsumexp(d + m - e, 0) - np.log(7), rtol=1e-6)
    assert rate_estimator(t) == "monte_carlo"


def test_analytic_rate_is_used_when_given():
    kl = np.arange(5.0) + 3.0
    t = _terms(kl)
    q = rate_distortion(t)
    np.testing.assert_array_equal(np.asarray(q["rate"]), kl)
    assert rate_estimator(t) == "analytic"


def test_elbo_is_exactly_minus_rate_plus_distortion():
    for kl in (None, np.arange(5.0)):
        q = rate_distortion(_terms(kl))
        np.testing.assert_array_equal(np.asarray(q["elbo"]),
                                      np.asarray(-(q["rate"] + q["distortion"])))


def test_beta_objective():
    r, d = jnp.array([2.0, 4.0]), jnp.array([10.0, 1.0])
    np.testing.assert_allclose(np.asarray(BetaObjective(0.5)(r, d)), [11.0, 3.0])
