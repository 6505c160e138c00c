import numpy as np
import jax.numpy as jnp
from scipy import special

from rdsweep.bounds import rate_distortion, rate_estimator
from rdsweep.models import LogTerms
from rdsweep.options.objectives import BetaObjective, TargetRateObjective


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


def test_weighted_quantities_match_numpy():
    """Weights over the samples (an enumerated latent: e(z|x)) make weighted means, and the
    IWAE sum a weighted one."""
    t = _terms(None)
    w = np.random.default_rng(1).dirichlet(np.ones(7), size=5).T  # (S, B), columns sum to 1
    q = {k: np.asarray(v) for k, v in rate_distortion(
        t.replace(weights=jnp.asarray(w, jnp.float32))).items()}
    d, e, m = (np.asarray(a, np.float64) for a in (t.log_d, t.log_e, t.log_m))
    np.testing.assert_allclose(q["distortion"], -(w * d).sum(0), rtol=1e-5)
    np.testing.assert_allclose(q["rate"], (w * (e - m)).sum(0), rtol=1e-5)
    np.testing.assert_allclose(q["iwae"], special.logsumexp(d + m - e, 0, b=w), rtol=1e-5)


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


def test_beta_objective_and_its_warmup():
    r, d = jnp.array(4.0), jnp.array(10.0)
    assert float(BetaObjective(0.5)(r, d, 0)) == 12.0
    annealed = BetaObjective(0.5, warmup_steps=100)
    assert [float(annealed(r, d, s)) for s in (0, 50, 100, 500)] == [10.0, 11.0, 12.0, 12.0]


def test_target_rate_objective():
    obj = TargetRateObjective(sigma=5.0)
    assert float(obj(jnp.array(2.0), jnp.array(10.0), 0)) == 13.0
    assert float(obj(jnp.array(8.0), jnp.array(10.0), 0)) == 13.0
    assert float(TargetRateObjective(5.0, warmup_steps=10)(jnp.array(2.0), jnp.array(1.0), 5)) == 2.5
