"""The few distributions rdsweep needs, with the interface of distrax/TFP.

Every distribution has a batch shape (leading axes) and an event shape (trailing axes);
`log_prob` sums over the event and returns the batch shape, in nats.
`sample_and_log_prob(key, n)` returns n reparameterised samples, shape (n, *batch, *event), and
their log-densities, shape (n, *batch): flows (IAF) give both cheaply, so the rate never needs
log_prob of an arbitrary point under the encoder.

`enumerate_support()` gives every value of a distribution with finite support, with its
log-probability, so that expectations under it are exact sums; other distributions return None.

`kl_divergence(q, p)` is the closed form where one is registered, else None; the caller then
uses the Monte Carlo estimate from samples.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple, Type

import jax
import jax.numpy as jnp
import optax
from flax import struct


class Distribution(struct.PyTreeNode):
    """Base class; subclasses define log_prob and sample_and_log_prob."""

    def log_prob(self, value: jax.Array) -> jax.Array:
        raise NotImplementedError

    def sample_and_log_prob(self, key: jax.Array, n: int) -> Tuple[jax.Array, jax.Array]:
        raise NotImplementedError

    def sample(self, key: jax.Array, n: int) -> jax.Array:
        return self.sample_and_log_prob(key, n)[0]

    def log_prob_each(self, value: jax.Array) -> jax.Array:
        """log-density of value (..., d) under each of a batch (K,) of distributions over
        (d,): (..., K)."""
        return self.log_prob(value[..., None, :])

    def enumerate_support(self) -> Optional[Tuple[jax.Array, jax.Array]]:
        """(values (K, *batch, *event), log-probs (K, *batch)) of all K values of a finite
        support; None: the support is not finite, expectations need samples."""
        return None


def _sum_event(x: jax.Array, event_ndims: int) -> jax.Array:
    return x.sum(axis=tuple(range(x.ndim - event_ndims, x.ndim))) if event_ndims else x


@jax.custom_vjp
def _scaled_sq_distances(value: jax.Array, loc: jax.Array, inv_scale: jax.Array) -> jax.Array:
    """sum_d ((value_nd - loc_kd) * inv_scale_kd)^2 from each row of value (n, d) to each row of
    loc and inv_scale (K, d): (n, K).

    One dimension at a time, on (n, K) arrays: XLA:CPU runs the broadcast (n, K, d) array, and
    autodiff's reductions of it over n, several times slower (docs/benchmarks.md, "Priors"). In
    the written-out gradient, those of value and loc are linear in the differences and expand
    into matmuls; that of inv_scale keeps the differences (an expanded square lost up to
    0.14 nats to cancellation in float32 at scales of 0.01).
    """
    def add_dimension(total, column):
        v, l, i = column
        return total + jnp.square((v[:, None] - l) * i), None

    zero = jnp.zeros(value.shape[:1] + loc.shape[:1], value.dtype)
    return jax.lax.scan(add_dimension, zero, (value.T, loc.T, inv_scale.T))[0]


def _scaled_sq_distances_fwd(value, loc, inv_scale):
    return _scaled_sq_distances(value, loc, inv_scale), (value, loc, inv_scale)


def _scaled_sq_distances_bwd(residuals, g):  # g: (n, K)
    value, loc, inv_scale = residuals
    p = jnp.square(inv_scale)
    d_value = 2 * (value * (g @ p) - g @ (loc * p))
    d_loc = -2 * p * (g.T @ value - loc * g.sum(0)[:, None])

    def weighted_squares(_, column):  # sum_n g_nk (value_n - loc_k)^2 of one dimension: (K,)
        v, l = column
        return None, jnp.sum(g * jnp.square(v[:, None] - l), 0)

    squares = jax.lax.scan(weighted_squares, None, (value.T, loc.T))[1]  # (d, K)
    return d_value, d_loc, 2 * inv_scale * squares.T


_scaled_sq_distances.defvjp(_scaled_sq_distances_fwd, _scaled_sq_distances_bwd)


class DiagGaussian(Distribution):
    """Fully factored Gaussian over the last axis; loc, scale: (*batch, d)."""

    loc: jax.Array
    scale: jax.Array

    def log_prob(self, value: jax.Array) -> jax.Array:
        return _sum_event(jax.scipy.stats.norm.logpdf(value, self.loc, self.scale), 1)

    def log_prob_each(self, value: jax.Array) -> jax.Array:
        d = self.loc.shape[-1]
        sq = _scaled_sq_distances(value.reshape(-1, d), self.loc, 1.0 / self.scale)
        log_norm = jnp.sum(jnp.log(self.scale), -1) + 0.5 * d * jnp.log(2 * jnp.pi)
        return -0.5 * sq.reshape(value.shape[:-1] + sq.shape[-1:]) - log_norm

    def sample_and_log_prob(self, key, n):
        eps = jax.random.normal(key, (n,) + jnp.shape(self.loc), jnp.result_type(self.loc))
        z = self.loc + self.scale * eps
        return z, self.log_prob(z)


class Bernoulli(Distribution):
    """Independent Bernoulli pixels on logits; logits: (*batch, *event)."""

    logits: jax.Array
    event_ndims: int = struct.field(pytree_node=False, default=3)

    def log_prob(self, value: jax.Array) -> jax.Array:
        # On one flat event axis: XLA:CPU runs this fused sum over (28, 28, 1) ~4x slower.
        flat = lambda a: a.reshape(a.shape[:a.ndim - self.event_ndims] + (-1,))
        nll = optax.sigmoid_binary_cross_entropy(flat(self.logits),
                                                 flat(value.astype(self.logits.dtype)))
        return -nll.sum(axis=-1)

    def sample_and_log_prob(self, key, n):
        x = jax.random.bernoulli(key, jax.nn.sigmoid(self.logits), (n,) + self.logits.shape)
        x = x.astype(self.logits.dtype)
        return x, self.log_prob(x)

    def mode(self) -> jax.Array:
        return (self.logits > 0).astype(self.logits.dtype)


class Categorical(Distribution):
    """Categorical over K values, given as one-hot vectors (like distrax's OneHotCategorical):
    logits (*batch, K), event shape (K,). Samples are not reparameterised (no gradient flows
    through them): training uses `enumerate_support`, which is exact."""

    logits: jax.Array

    def log_prob(self, value: jax.Array) -> jax.Array:
        return jnp.sum(value * jax.nn.log_softmax(self.logits), axis=-1)

    def sample_and_log_prob(self, key, n):
        k = self.logits.shape[-1]
        idx = jax.random.categorical(key, self.logits, shape=(n,) + self.logits.shape[:-1])
        z = jax.nn.one_hot(idx, k, dtype=self.logits.dtype)
        return z, self.log_prob(z)

    def enumerate_support(self):
        k, batch = self.logits.shape[-1], self.logits.shape[:-1]
        eye = jnp.eye(k, dtype=self.logits.dtype).reshape((k,) + (1,) * len(batch) + (k,))
        values = jnp.broadcast_to(eye, (k,) + batch + (k,))
        return values, jnp.moveaxis(jax.nn.log_softmax(self.logits), -1, 0)


def _kl_diag_gaussians(q: DiagGaussian, p: DiagGaussian) -> jax.Array:
    ratio = (q.scale / p.scale) ** 2
    terms = 0.5 * (ratio + ((q.loc - p.loc) / p.scale) ** 2 - 1.0 - jnp.log(ratio))
    return terms.sum(-1)


def _kl_categoricals(q: Categorical, p: Categorical) -> jax.Array:
    log_q, log_p = jax.nn.log_softmax(q.logits), jax.nn.log_softmax(p.logits)
    return jnp.sum(jnp.exp(log_q) * (log_q - log_p), axis=-1)


_KL: Dict[Tuple[Type, Type], Callable] = {(DiagGaussian, DiagGaussian): _kl_diag_gaussians,
                                          (Categorical, Categorical): _kl_categoricals}


def kl_divergence(q: Distribution, p: Distribution) -> Optional[jax.Array]:
    """KL(q || p) in nats, shape q's batch shape, or None without a closed form."""
    fn = _KL.get((type(q), type(p)))
    return None if fn is None else fn(q, p)


class Mixture(Distribution):
    """sum_k softmax(logits)_k components_k(z); components: any distribution with batch (K,).

    log_prob scores value (..., D) against the K components at once (their log_prob_each):
    (...,).
    """

    logits: jax.Array  # (K,)
    components: Distribution

    def log_prob(self, value: jax.Array) -> jax.Array:
        log_w = jax.nn.log_softmax(self.logits)
        return jax.nn.logsumexp(log_w + self.components.log_prob_each(value), axis=-1)

    def sample_and_log_prob(self, key, n):
        k_comp, k_z = jax.random.split(key)
        which = jax.random.categorical(k_comp, self.logits, shape=(n,))
        every = self.components.sample(k_z, n)  # (n, K, D): one draw from each component
        z = jnp.take_along_axis(every, which[:, None, None], axis=1)[:, 0]
        return z, self.log_prob(z)
