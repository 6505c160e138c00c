"""Evaluation: rate, distortion, ELBO and the IWAE_k bound of a whole split, in nats per example.

Each batch of examples is evaluated inside one jitted call: one encoder pass (and one marginal)
gives e(z|x) and m(z) as distributions, its k samples of z are then decoded in groups (`lax.map`
with a batch size) so that memory stays bounded for large k. D and the Monte Carlo rate average
over the same k samples that the IWAE bound uses. A model whose encoder has a finite support
evaluates all of it (exact, whatever k).
"""

from __future__ import annotations

import functools
from typing import Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from rdsweep import cpu_tuning
from rdsweep.bounds import rate_distortion, rate_estimator
from rdsweep.data import prepare_batch
from rdsweep.distributions import kl_divergence
from rdsweep.models import VAE, LogTerms

QUANTITIES = ("rate", "rate_mc", "distortion", "elbo", "iwae")
MAX_DECODES = 2048  # decoder inputs per lax.map step: bounds memory at large k, stays in cache
STATIC_ARGNUMS = (0, 4, 5, 6)  # eval_batch's apply_fn, k, max_decodes and binarization


def log_terms(apply_fn, params, x: jax.Array, key: jax.Array, k: int,
              max_decodes: int) -> LogTerms:
    """k samples z ~ e(z|x) per example of x (B, *image), one key each (as training's
    `VAE.__call__` draws one), from one encoder pass; at most ~max_decodes decoder inputs at a
    time. An encoder with a finite support: all its values, weighted (k unused)."""
    variables = {"params": params}
    e, m = apply_fn(variables, x, method=VAE.latent_distributions)
    decode = lambda z: apply_fn(variables, z, x, method=VAE.decoder_log_prob)
    support = e.enumerate_support()
    if support is not None:
        z, log_e = support
        return LogTerms(log_d=decode(z), log_e=log_e, log_m=m.log_prob(z),
                        kl=kl_divergence(e, m), weights=jnp.exp(log_e))

    def one_sample(kk: jax.Array) -> Tuple[jax.Array, jax.Array, jax.Array]:
        z, log_e = e.sample_and_log_prob(kk, 1)  # (1, B, L), (1, B)
        return decode(z)[0], log_e[0], m.log_prob(z)[0]

    group = max(1, min(k, max_decodes // x.shape[0]))
    log_d, log_e, log_m = jax.lax.map(one_sample, jax.random.split(key, k), batch_size=group)
    return LogTerms(log_d=log_d, log_e=log_e, log_m=log_m, kl=kl_divergence(e, m))


def eval_batch(apply_fn, params, images: jax.Array, key: jax.Array, k: int, max_decodes: int,
               binarization: str) -> Dict[str, jax.Array]:
    """The per-example bounds (B,) of one batch of uint8 images (B, *image), k samples each."""
    k_bin, k_z = jax.random.split(key)
    x = prepare_batch(images, k_bin, binarization)
    return rate_distortion(log_terms(apply_fn, params, x, k_z, k, max_decodes))


@functools.cache
def compiled_eval_batch():
    """eval_batch jitted with rdsweep.cpu_tuning's XLA options (decided at the first call, when
    the backend and XLA_FLAGS are settled)."""
    return jax.jit(eval_batch, static_argnums=STATIC_ARGNUMS,
                   compiler_options=cpu_tuning.eval_options())


def evaluate_examples(apply_fn, params, images: np.ndarray, key: jax.Array, k: int,
                      batch_size: int, binarization: str, max_decodes: int = MAX_DECODES
                      ) -> Dict[str, np.ndarray]:
    """The bounds of each example of `images` (N, *image) uint8: QUANTITIES, each (N,) float64
    nats."""
    n = len(images)
    batch_size = min(batch_size, n)  # a larger batch would only pad
    # The last batch is padded (with repeats, then cut off) to keep one compiled shape.
    padded = np.take(images, np.arange(n + (-n) % batch_size) % n, axis=0)
    batch_fn = compiled_eval_batch()
    outs = [batch_fn(apply_fn, params, jnp.asarray(padded[start:start + batch_size]),
                     jax.random.fold_in(key, i), k, max_decodes, binarization)
            for i, start in enumerate(range(0, len(padded), batch_size))]
    return {q: np.concatenate([np.asarray(o[q], np.float64) for o in outs])[:n]
            for q in QUANTITIES}


def evaluate(apply_fn, params, images: np.ndarray, key: jax.Array, k: int, batch_size: int,
             binarization: str, max_decodes: int = MAX_DECODES,
             weights: Optional[np.ndarray] = None) -> Tuple[Dict[str, float], str]:
    """(means over all examples of `images` (N, *image) uint8, weighted by `weights` (N,) if
    given (data given as a distribution: then exact expectations), how the rate was computed:
    "analytic" or "monte_carlo")."""
    n = len(images)
    weights = np.ones(n) if weights is None else np.asarray(weights, np.float64)
    values = evaluate_examples(apply_fn, params, images, key, k, batch_size, binarization,
                               max_decodes)
    result = {q: float((values[q] * weights).sum() / weights.sum()) for q in QUANTITIES}
    probe = jax.eval_shape(lambda: apply_fn({"params": params}, jnp.asarray(images[:1], jnp.float32),
                                            key))
    result.update(examples=n, iwae_samples=k)
    return result, rate_estimator(probe)
