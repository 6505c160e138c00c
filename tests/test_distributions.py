import numpy as np
import jax
import jax.numpy as jnp
from scipy import special, stats

from rdsweep.distributions import Bernoulli, Categorical, DiagGaussian, Mixture, kl_divergence


def test_bernoulli_log_prob_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=4.0, size=(5, 4, 4, 1))
    x = rng.integers(0, 2, size=logits.shape)
    p = special.expit(logits)
    expected = (x * np.log(p) + (1 - x) * np.log1p(-p)).sum(axis=(1, 2, 3))
    got = Bernoulli(jnp.asarray(logits, jnp.float32), event_ndims=3).log_prob(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-4)


def test_bernoulli_log_prob_extreme_logits_stay_finite():
    logits = jnp.array([[100.0, -100.0]])
    got = Bernoulli(logits, event_ndims=1).log_prob(jnp.array([[0.0, 1.0]]))
    np.testing.assert_allclose(np.asarray(got), [-200.0], rtol=1e-6)


def test_diag_gaussian_log_prob_matches_scipy():
    rng = np.random.default_rng(1)
    loc, scale, z = rng.normal(size=(3, 6)), rng.uniform(0.2, 2, (3, 6)), rng.normal(size=(3, 6))
    expected = stats.norm.logpdf(z, loc, scale).sum(-1)
    got = DiagGaussian(jnp.asarray(loc), jnp.asarray(scale)).log_prob(jnp.asarray(z))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)


def test_gaussian_mixture_log_prob_and_gradients_match_numpy_with_small_scales():
    """The mixture's written-out gradient (DiagGaussian.log_prob_each): points drawn near
    components with scales down to 0.02, where expanded squares lose precision in float32;
    the value and every gradient against float64 numpy."""
    rng = np.random.default_rng(2)
    k, d, n = 50, 8, 20
    loc = 2 * rng.normal(size=(k, d))
    scale = np.exp(rng.uniform(np.log(0.02), 0, (k, d)))
    logits = rng.normal(size=k)
    near = rng.integers(0, k, n)
    z = loc[near] + scale[near] * rng.normal(size=(n, d))

    log_w = special.log_softmax(logits)
    parts = stats.norm.logpdf(z[:, None, :], loc, scale).sum(-1)  # (n, k)
    expected = special.logsumexp(log_w + parts, -1)
    resp = np.exp(log_w + parts - expected[:, None])  # (n, k): responsibilities
    diff = z[:, None, :] - loc  # (n, k, d)
    grads = {"z": -(resp[..., None] * diff / scale ** 2).sum(1),
             "loc": (resp[..., None] * diff / scale ** 2).sum(0),
             "scale": (resp[..., None] * (diff ** 2 / scale ** 3 - 1 / scale)).sum(0),
             "logits": resp.sum(0) - n * special.softmax(logits)}

    def total(z, loc, scale, logits):
        return Mixture(logits, DiagGaussian(loc, scale)).log_prob(z).sum()

    f32 = lambda a: jnp.asarray(a, jnp.float32)
    args = tuple(map(f32, (z, loc, scale, logits)))
    got = Mixture(args[3], DiagGaussian(args[1], args[2])).log_prob(args[0])
    np.testing.assert_allclose(np.asarray(got), expected, rtol=0, atol=2e-4)
    got_grads = jax.grad(total, argnums=(0, 1, 2, 3))(*args)
    for (name, want), have in zip(grads.items(), got_grads):
        scale_of = np.abs(want).max()
        np.testing.assert_allclose(np.asarray(have), want, rtol=0, atol=1e-4 * scale_of,
                                   err_msg=name)


def test_analytic_kl_matches_monte_carlo_rate():
    """Closed-form Gaussian KL against mean(log q - log p) over many samples of q."""
    rng = np.random.default_rng(2)
    q = DiagGaussian(jnp.asarray(rng.normal(size=(4, 8)), jnp.float32),
                     jnp.asarray(rng.uniform(0.3, 1.5, (4, 8)), jnp.float32))
    p = DiagGaussian(jnp.asarray(rng.normal(scale=0.5, size=8), jnp.float32),
                     jnp.asarray(rng.uniform(0.5, 2.0, 8), jnp.float32))
    z, log_q = q.sample_and_log_prob(jax.random.PRNGKey(0), 200_000)
    samples = np.asarray(log_q - p.log_prob(z), np.float64)
    mc, stderr = samples.mean(0), samples.std(0) / np.sqrt(len(samples))
    kl = np.asarray(kl_divergence(q, p))
    assert np.all(np.abs(kl - mc) < 4 * stderr + 1e-3), (kl, mc, stderr)
    # and against the textbook formula, independently written in numpy
    ql, qs, pl, ps = (np.asarray(a, np.float64) for a in (q.loc, q.scale, p.loc, p.scale))
    ref = (np.log(ps / qs) + (qs**2 + (ql - pl) ** 2) / (2 * ps**2) - 0.5).sum(-1)
    np.testing.assert_allclose(kl, ref, rtol=1e-4)


def test_kl_without_closed_form_is_none():
    q = DiagGaussian(jnp.zeros(3), jnp.ones(3))
    assert kl_divergence(q, Bernoulli(jnp.zeros(3), event_ndims=1)) is None


def test_samples_have_the_right_moments():
    d = DiagGaussian(jnp.array([1.0, -2.0]), jnp.array([0.5, 3.0]))
    z = np.asarray(d.sample(jax.random.PRNGKey(3), 100_000))
    assert z.shape == (100_000, 2)
    np.testing.assert_allclose(z.mean(0), [1.0, -2.0], atol=0.05)
    np.testing.assert_allclose(z.std(0), [0.5, 3.0], rtol=0.02)


def _categorical(seed=4, batch=(3,), k=5):
    logits = np.random.default_rng(seed).normal(scale=2.0, size=batch + (k,))
    return logits, special.softmax(logits, axis=-1), Categorical(jnp.asarray(logits, jnp.float32))


def test_categorical_log_prob_of_one_hot_values():
    logits, p, d = _categorical()
    idx = np.array([4, 0, 2])
    got = d.log_prob(jnp.asarray(np.eye(5)[idx], jnp.float32))
    np.testing.assert_allclose(np.asarray(got), np.log(p[np.arange(3), idx]), rtol=1e-5)


def test_categorical_samples_are_one_hot_with_the_right_frequencies():
    _, p, d = _categorical()
    z, log_p = d.sample_and_log_prob(jax.random.PRNGKey(5), 100_000)
    z = np.asarray(z)
    assert z.shape == (100_000, 3, 5) and np.all(z.sum(-1) == 1) and set(np.unique(z)) == {0, 1}
    np.testing.assert_allclose(z.mean(0), p, atol=0.01)
    np.testing.assert_allclose(np.asarray(log_p), np.log((z * p).sum(-1)), rtol=1e-5)


def test_categorical_enumerates_its_support():
    _, p, d = _categorical()
    values, log_p = d.enumerate_support()
    assert values.shape == (5, 3, 5) and log_p.shape == (5, 3)
    np.testing.assert_array_equal(np.asarray(values),
                                  np.broadcast_to(np.eye(5)[:, None], (5, 3, 5)))
    np.testing.assert_allclose(np.exp(np.asarray(log_p)), p.T, rtol=1e-5)
    assert DiagGaussian(jnp.zeros(2), jnp.ones(2)).enumerate_support() is None


def test_categorical_kl_matches_numpy():
    _, q, dq = _categorical(seed=6)
    _, p, dp = _categorical(seed=7, batch=())
    want = (q * np.log(q / p)).sum(-1)
    np.testing.assert_allclose(np.asarray(kl_divergence(dq, dp)), want, rtol=1e-5)
