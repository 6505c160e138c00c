"""Evaluation: rate, distortion, ELBO and the IWAE_k bound of a whole split, in nats per example.

Each batch of examples is evaluated inside one jitted call; its k samples of z are drawn in
groups (`lax.map` with a batch size) so that memory stays bounded for large k. D and the Monte
Carlo rate average over the same k samples that the IWAE bound uses. A model whose encoder has a
finite support evaluates all of it at each of the k draws (exact: k = 1 suffices).
"""

from __future__ import annotations

import functools
from typing import Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from rdsweep.bounds import rate_distortion, rate_estimator
from rdsweep.data import prepare_batch
from rdsweep.models import LogTerms

QUANTITIES = ("rate", "rate_mc", "distortion", "elbo", "iwae")


def log_terms(apply_fn, params, x: jax.Array, key: jax.Array, k: int,
              max_decodes: int) -> LogTerms:
    """k samples per example of x (B, *image), at most ~max_decodes decoder inputs at a time."""
    group = max(1, min(k, max_decodes // x.shape[0]))
    terms = jax.lax.map(lambda kk: apply_fn({"params": params}, x, kk),
                        jax.random.split(key, k), batch_size=group)
    # Each map step gave S latents (1 sample, or an enumerated support): (k, S, B) -> (k*S, B).
    fold = lambda a: None if a is None else a.reshape((-1,) + a.shape[2:])
    return terms.replace(log_d=fold(terms.log_d), log_e=fold(terms.log_e),
                         log_m=fold(terms.log_m), weights=fold(terms.weights),
                         kl=None if terms.kl is None else terms.kl[0])


@functools.partial(jax.jit, static_argnums=(0, 4, 5, 6))
def eval_batch(apply_fn, params, images: jax.Array, key: jax.Array, k: int, max_decodes: int,
               binarization: str) -> Dict[str, jax.Array]:
    """The per-example bounds (B,) of one batch of uint8 images (B, *image), k samples each."""
    k_bin, k_z = jax.random.split(key)
    x = prepare_batch(images, k_bin, binarization)
    return rate_distortion(log_terms(apply_fn, params, x, k_z, k, max_decodes))


def evaluate(apply_fn, params, images: np.ndarray, key: jax.Array, k: int, batch_size: int,
             binarization: str, max_decodes: int = 16384,
             weights: Optional[np.ndarray] = None) -> Tuple[Dict[str, float], str]:
    """(means over all examples of `images` (N, *image) uint8, weighted by `weights` (N,) if
    given (data given as a distribution: then exact expectations), how the rate was computed:
    "analytic" or "monte_carlo")."""
    n = len(images)
    batch_size = min(batch_size, n)  # a larger batch would only pad
    weights = np.ones(n) if weights is None else np.asarray(weights, np.float64)
    # The last batch is padded (with repeats, then masked out) to keep one compiled shape.
    padded = np.take(images, np.arange(n + (-n) % batch_size) % n, axis=0)
    sums = {q: 0.0 for q in QUANTITIES}
    for i, start in enumerate(range(0, len(padded), batch_size)):
        out = eval_batch(apply_fn, params, jnp.asarray(padded[start:start + batch_size]),
                          jax.random.fold_in(key, i), k, max_decodes, binarization)
        valid = min(batch_size, n - start)
        w = weights[start:start + valid]
        for q in QUANTITIES:
            sums[q] += float((np.asarray(out[q][:valid], np.float64) * w).sum())
    result = {q: sums[q] / weights.sum() for q in QUANTITIES}
    probe = jax.eval_shape(lambda: apply_fn({"params": params}, jnp.asarray(images[:1], jnp.float32),
                                            key))
    result.update(examples=n, iwae_samples=k)
    return result, rate_estimator(probe)
