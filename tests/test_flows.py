"""Mean-only autoregressive flows: MADE masks, the shared shift, IAF posterior, MAF marginal.

Fresh flows are the identity (zero output layers), so most tests fill every parameter with random
values (`random_variables`) to make the flows non-trivial. Random values and inputs come from
numpy and everything runs jitted: compiling JAX's RNG and eager ops would dominate the test time.
"""

import functools

import numpy as np
import jax
import jax.numpy as jnp
import flax.linen as nn
import pytest
from scipy import stats

from rdsweep.distributions import DiagGaussian
from rdsweep.options.flows import (IAFEncoder, IAFFlow, IAFPosterior, MADE, MAFMarginal,
                           shift_forward, shift_inverse)
from rdsweep.models import VAE
from rdsweep.option import preset
from rdsweep.options.mlp import MLPDecoder, MLPEncoder

D = 5

log_prob = jax.jit(lambda dist, z: dist.log_prob(z))
forward = jax.jit(lambda flow, x: flow.forward(x))
inverse = jax.jit(lambda flow, y: flow.inverse(y))
jac_forward = jax.jit(lambda flow, x: jax.jacfwd(flow.forward)(x))
jac_inverse = jax.jit(lambda flow, y: jax.jacfwd(flow.inverse)(y))
grad_log_prob = jax.jit(lambda dist, z: jax.grad(dist.log_prob)(z))  # z: one point (D,)


def normal(seed, *shape, scale=1.0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape) * scale, jnp.float32)


def images(seed, b):
    return jnp.asarray(np.random.default_rng(seed).random((b, 28, 28, 1)) < 0.3, jnp.float32)


def random_variables(module, *args, seed=0, flow_gain=1.5, zero_outputs=False):
    """`module`'s variables filled with random numbers: kernels N(0, gain^2 / fan_in), other
    leaves N(0, (0.1 gain)^2); gain = flow_gain inside flows (so they are far from the identity),
    1 elsewhere. zero_outputs: MADE output layers zero, as at initialisation."""
    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), *args)
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = jax.tree_util.keystr(path)
        if zero_outputs and "out_" in name:
            return jnp.zeros(leaf.shape, leaf.dtype)
        gain = flow_gain if ("flow" in name or "made" in name) else 1.0
        std = gain / np.sqrt(leaf.shape[0]) if len(leaf.shape) == 2 else 0.1 * gain
        return jnp.asarray(rng.normal(size=leaf.shape) * std, leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def apply(module, variables, *args):
    return jax.jit(module.apply)(variables, *args)


def iaf_encoder(context, steps=3):
    return IAFEncoder(MLPEncoder(latent_dim=D, hidden=(32,)), latent_dim=D, steps=steps,
                      hidden=(32, 32), context=context)


@functools.lru_cache(maxsize=None)
def iaf_posterior(context, b, seed=0):
    """A random IAFPosterior with batch (b,)."""
    enc = iaf_encoder(context)
    x = images(seed, b)
    return apply(enc, random_variables(enc, x, seed=seed), x)


@functools.lru_cache(maxsize=None)
def maf_distribution(dim=D, hidden=(32, 32), flow_gain=1.5):
    m = MAFMarginal(dim, steps=3, hidden=hidden)
    return apply(m, random_variables(m, seed=3, flow_gain=flow_gain))


def component(q: IAFPosterior, n: int) -> IAFPosterior:
    """Component n of q's batch (the flow's parameters are shared, only loc/scale/context split)."""
    ctx = q.flow.context
    return IAFPosterior(q.loc[n], q.scale[n],
                        q.flow.replace(context=None if ctx is None else ctx[n]))


# --- MADE ------------------------------------------------------------------------------------


def test_made_is_autoregressive():
    made = MADE(hidden=(32, 32))
    params = random_variables(made, jnp.zeros((1, D)), jnp.zeros((1, 3)))
    zs, ctx = normal(1, 4, D), normal(2, 3)
    jacobians = jax.jit(jax.vmap(jax.jacfwd(lambda z, c: made.apply(params, z, c), (0, 1)),
                                 (0, None)))
    jac_z, jac_c = (np.asarray(j) for j in jacobians(zs, ctx))  # (4, D, D), (4, D, 3)
    upper = np.triu(np.ones((D, D), bool))  # j >= i
    assert np.all(jac_z[:, upper] == 0.0), "mu_i depends on z_j for some j >= i"
    # and mu_i really does depend on its past: each row i >= 1 has a nonzero below the diagonal
    for i in range(1, D):
        assert np.any(jac_z[:, i, :i] != 0.0), f"mu_{i} ignores z_<{i}"
    assert np.all(np.abs(jac_c).sum(axis=(0, 2)) > 0), "some mu_i ignores the context"
    # the context enters the hidden layers, so its effect depends on z (not just a linear term)
    assert np.abs(jac_c - jac_c[:1]).max() > 1e-4


def test_fresh_flows_are_the_identity():
    z = normal(0, 3, D)
    made = MADE(hidden=(8,))
    assert np.all(np.asarray(apply(made, jax.jit(made.init)(jax.random.PRNGKey(1), z), z)) == 0.0)

    h = normal(1, 4, 3)
    flow_module = IAFFlow(D, steps=2, hidden=(8,))
    flow = apply(flow_module, jax.jit(flow_module.init)(jax.random.PRNGKey(2), h), h)
    np.testing.assert_array_equal(forward(flow, z[:, None]), jnp.broadcast_to(z[:, None],
                                                                              (3, 4, D)))

    m = MAFMarginal(D, steps=2, hidden=(8,))
    np.testing.assert_allclose(log_prob(apply(m, jax.jit(m.init)(jax.random.PRNGKey(4))), z),
                               stats.norm.logpdf(np.asarray(z)).sum(-1), rtol=1e-6)


def test_size_presets_and_paper_made_parameter_count():
    assert preset(MADE(size="paper"), "hidden") == (640, 640, 640)
    assert preset(MADE(size="small"), "hidden") == (64, 64, 64)
    assert preset(MADE(size="paper", hidden=(7, 9)), "hidden") == (7, 9)
    shapes = jax.eval_shape(MADE(size="paper").init, jax.random.PRNGKey(0), jnp.zeros((1, 64)))
    n = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes))
    assert n == (64 * 640 + 640) + 2 * (640 * 640 + 640) + (640 * 64 + 64) == 903_104
    enc = IAFEncoder(MLPEncoder(latent_dim=2, hidden=(4,)), latent_dim=2, size="paper")
    shapes = jax.eval_shape(enc.init, jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))
    assert set(shapes["params"]["flow"]) == {f"made_{k}" for k in range(4)}
    assert shapes["params"]["flow"]["made_0"]["kernel_2"].shape == (640, 640)
    shapes = jax.eval_shape(MAFMarginal(2, hidden=(3,)).init, jax.random.PRNGKey(0))
    assert shapes["params"]["made_3"]["kernel_0"].shape == (2, 3)


# --- the shared shift and whole flows --------------------------------------------------------


def test_shift_inverse_inverts_shift_forward():
    made = MADE(hidden=(32, 32))
    params = random_variables(made, jnp.zeros((1, D)), flow_gain=2.0)
    mu = lambda x: made.apply(params, x)
    fwd, inv = jax.jit(lambda x: shift_forward(mu, x)), jax.jit(lambda y: shift_inverse(mu, y))
    x = normal(2, 7, D)
    y = fwd(x)
    assert np.abs(np.asarray(y - x)).max() > 0.1  # the shift is far from the identity
    np.testing.assert_allclose(inv(y), x, atol=1e-5)
    np.testing.assert_allclose(fwd(inv(x)), x, atol=1e-5)


def assert_mixes_all_dimensions(flow, z):
    """With the order reversed between steps the whole Jacobian is not triangular: every
    dimension ends up conditioned on the others (without reversal it stays lower-triangular)."""
    jac = np.asarray(jac_forward(flow, z))
    assert np.any(np.triu(jac, 1) != 0) and np.any(np.tril(jac, -1) != 0)


@pytest.mark.parametrize("context", [False, True])
def test_iaf_flow_inverse_and_forward_are_inverses(context):
    q = iaf_posterior(context, b=6)
    z = normal(5, 3, 6, D)
    assert np.abs(np.asarray(forward(q.flow, z) - z)).max() > 0.1
    np.testing.assert_allclose(inverse(q.flow, forward(q.flow, z)), z, atol=1e-5)
    np.testing.assert_allclose(forward(q.flow, inverse(q.flow, z)), z, atol=1e-5)
    assert_mixes_all_dimensions(component(q, 0).flow, z[0, 0])


def test_iaf_flow_module_is_conditional_only_with_a_context():
    flow_module = IAFFlow(D, steps=2, hidden=(16,))
    h = normal(0, 2, 3)
    flow = apply(flow_module, random_variables(flow_module, h), h)
    z = jnp.broadcast_to(normal(3, D), (2, D))
    y = np.asarray(forward(flow, z))
    assert np.abs(y[0] - y[1]).max() > 1e-3  # same z, different contexts -> different maps
    flow0 = apply(flow_module, random_variables(flow_module))
    y0 = np.asarray(forward(flow0, z))
    np.testing.assert_array_equal(y0[0], y0[1])


def test_maf_sampling_inverts_the_density_direction():
    m = maf_distribution()
    z = normal(0, 8, D)
    assert np.abs(np.asarray(forward(m.flow, z) - z)).max() > 0.1
    np.testing.assert_allclose(inverse(m.flow, forward(m.flow, z)), z, atol=1e-5)
    np.testing.assert_allclose(forward(m.flow, inverse(m.flow, z)), z, atol=1e-5)
    assert_mixes_all_dimensions(m.flow, z[0])
    samples, log_m = jax.jit(lambda m, key: m.sample_and_log_prob(key, 16))(
        m, jax.random.PRNGKey(1))
    assert samples.shape == (16, D) and log_m.shape == (16,)
    np.testing.assert_allclose(log_prob(m, samples), log_m, rtol=1e-5, atol=1e-4)


# --- densities against brute-force change of variables ---------------------------------------


def log_det(jac):
    sign, logdet = np.linalg.slogdet(np.asarray(jac, np.float64))
    assert sign != 0
    return logdet


@pytest.mark.parametrize("context", [False, True])
def test_iaf_log_prob_matches_change_of_variables(context):
    b = 4
    q = iaf_posterior(context, b)
    z = normal(6, b, D, scale=1.5)
    got = np.asarray(log_prob(q, z))
    for n in range(b):
        qn = component(q, n)
        # f^{-1}: z (D,) -> eps (D,); no volume preservation assumed below
        eps = np.asarray(inverse(qn.flow, z[n]), np.float64)
        jac = np.asarray(jac_inverse(qn.flow, z[n]), np.float64)
        expected = (stats.norm.logpdf(eps, np.asarray(qn.loc), np.asarray(qn.scale)).sum()
                    + log_det(jac))
        np.testing.assert_allclose(got[n], expected, rtol=1e-5, atol=1e-4)
        # reverse mode through the sequential inverse (a VampPrior of IAF encoders needs it)
        expected_grad = jac.T @ (-(eps - np.asarray(qn.loc)) / np.asarray(qn.scale) ** 2)
        np.testing.assert_allclose(grad_log_prob(qn, z[n]), expected_grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("context", [False, True])
def test_iaf_log_prob_of_own_samples_equals_sample_log_prob(context):
    q = iaf_posterior(context, b=4)
    z, log_q = jax.jit(lambda q, key: q.sample_and_log_prob(key, 3))(q, jax.random.PRNGKey(7))
    assert z.shape == (3, 4, D) and log_q.shape == (3, 4)
    assert np.abs(np.asarray(log_prob(q, z) - log_prob(q.base, z))).max() > 1e-2  # non-trivial
    np.testing.assert_allclose(log_prob(q, z), log_q, rtol=1e-5, atol=1e-4)


def test_maf_log_prob_matches_change_of_variables():
    m = maf_distribution()
    z = normal(8, 4, D, scale=1.5)
    got = np.asarray(log_prob(m, z))
    for n in range(4):
        # f^{-1} is the density direction z -> u
        u = np.asarray(forward(m.flow, z[n]), np.float64)
        expected = stats.norm.logpdf(u).sum() + log_det(jac_forward(m.flow, z[n]))
        np.testing.assert_allclose(got[n], expected, rtol=1e-5, atol=1e-4)


def test_maf_density_integrates_to_one():
    m = maf_distribution(dim=2, hidden=(16, 16), flow_gain=1.0)  # larger: mass leaves the grid
    step = 0.05
    grid = np.arange(-12.0, 12.0 + step / 2, step)
    zz = jnp.asarray(np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2),
                     jnp.float32)
    log_m = np.asarray(log_prob(m, zz), np.float64)
    assert np.abs(np.asarray(forward(m.flow, zz) - zz)).max() > 0.5  # the flow moves mass
    assert abs(np.exp(log_m).sum() * step**2 - 1.0) < 1e-2


# --- broadcasting (how a VampPrior evaluates all components at once) ------------------------


@pytest.mark.parametrize("context", [False, True])
def test_iaf_log_prob_broadcasts_over_components(context):
    n_comp, s, b = 3, 2, 4
    q = iaf_posterior(context, n_comp)
    z = normal(9, s, b, 1, D)
    got = np.asarray(log_prob(q, z))
    assert got.shape == (s, b, n_comp)
    for n in range(n_comp):
        np.testing.assert_allclose(got[..., n], log_prob(component(q, n), z[:, :, 0]),
                                   rtol=1e-5, atol=1e-4)
    # value (S, B, D) against batch (B,) -> (S, B)
    q_b = iaf_posterior(context, b)
    z2 = z[:, :, 0]
    got2 = np.asarray(log_prob(q_b, z2))
    assert got2.shape == (s, b)
    for n in range(b):
        np.testing.assert_allclose(got2[:, n], log_prob(component(q_b, n), z2[:, n]),
                                   rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("context", [False, True])
def test_iaf_log_prob_each_scores_every_component_as_broadcasting_does(context):
    """log_prob_each (a mixture's path) against log_prob broadcast over the components: the
    values, and the gradients through loc and scale (autodiff of the broadcast)."""
    q = iaf_posterior(context, 3)
    z = normal(10, 2, 4, D)
    each = lambda loc, scale: q.replace(loc=loc, scale=scale).log_prob_each(z)
    broadcast = lambda loc, scale: q.replace(loc=loc, scale=scale).log_prob(z[..., None, :])
    np.testing.assert_allclose(each(q.loc, q.scale), broadcast(q.loc, q.scale),
                               rtol=1e-5, atol=1e-4)
    total = lambda f: jax.grad(lambda l, s: f(l, s).sum(), argnums=(0, 1))(q.loc, q.scale)
    for got, want in zip(total(each), total(broadcast)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


class _BaseWithFeatures(nn.Module):
    """A base encoder that also returns features h (B, 7) for a conditional flow."""

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Dense(7)(x.reshape(x.shape[0], -1)))
        return DiagGaussian(nn.Dense(D)(h), nn.softplus(nn.Dense(D)(h))), h


class _BaseWithFeaturesMethod(nn.Module):
    """A base encoder with a `features(x)` method (as rdsweep.conv.ConvEncoder has), (B, 6)."""

    def setup(self):
        self.body, self.loc, self.scale = nn.Dense(6), nn.Dense(D), nn.Dense(D)

    def features(self, x):
        return nn.relu(self.body(x.reshape(x.shape[0], -1)))

    def __call__(self, x):
        h = self.features(x)
        return DiagGaussian(self.loc(h), nn.softplus(self.scale(h)))


@pytest.mark.parametrize("base, c", [(_BaseWithFeatures(), 7), (_BaseWithFeaturesMethod(), 6),
                                     (MLPEncoder(latent_dim=D, hidden=(4,)), 2 * D)])
def test_conditional_iaf_uses_the_base_features(base, c):
    enc = IAFEncoder(base, latent_dim=D, steps=2, hidden=(8,), context=True)
    x = images(0, 2)
    v = random_variables(enc, x)
    assert v["params"]["flow"]["made_0"]["context_kernel_0"].shape == (c, 8)
    q = apply(enc, v, x)
    assert q.flow.context.shape == (2, c)
    with pytest.raises(ValueError, match="latent_dim"):
        jax.eval_shape(IAFEncoder(MLPEncoder(latent_dim=3, hidden=(4,)), latent_dim=D).init,
                       jax.random.PRNGKey(0), x)


# --- inside a VAE: jit-able and trainable ---------------------------------------------------


@pytest.mark.parametrize("context", [False, True])
def test_gradients_reach_every_flow_step_in_a_vae(context):
    vae = VAE(encoder=iaf_encoder(context, steps=2), marginal=MAFMarginal(D, steps=2, hidden=(16,)),
              decoder=MLPDecoder((28, 28, 1), hidden=(16,)))
    x = images(0, 4)
    key = jax.random.PRNGKey(1)
    variables = random_variables(vae, x, key, zero_outputs=True)  # flows start as the identity

    @jax.jit
    def loss_and_grad(variables):
        def neg_elbo(v):
            t = vae.apply(v, x, key, num_samples=2)
            assert t.kl is None  # no closed form: the rate is Monte Carlo
            return -jnp.mean(t.log_d + t.log_m - t.log_e)
        return jax.value_and_grad(neg_elbo)(variables)

    loss, grads = loss_and_grad(variables)
    assert np.isfinite(float(loss))
    g = grads["params"]
    for k in range(2):  # zero output layers still get a gradient at the start, in every step
        assert np.abs(np.asarray(g["encoder"]["flow"][f"made_{k}"]["out_kernel"])).max() > 0
        assert np.abs(np.asarray(g["marginal"][f"made_{k}"]["out_kernel"])).max() > 0
