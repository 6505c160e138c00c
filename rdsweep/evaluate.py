"""Evaluation: rate, distortion, ELBO and the IWAE_k bound of a whole split, in nats per example.

Each batch of examples is evaluated inside one jitted call; its k samples of z are drawn in
groups (`lax.map` with a batch size) so that memory stays bounded for large k, `per_pass` samples
per encoder pass (1 in training's own evaluation; re-evaluations at large k draw many per pass,
so the encoder runs about once per example, see `samples_per_pass`). D and the Monte
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


def samples_per_pass(k: int, batch: int, max_decodes: int) -> int:
    """The largest divisor of k with at most ~max_decodes decoder inputs per encoder pass over
    a batch of `batch` examples (at least 1)."""
    most = max(1, max_decodes // batch)
    return max(d for d in range(1, min(k, most) + 1) if k % d == 0)


def log_terms(apply_fn, params, x: jax.Array, key: jax.Array, k: int,
              max_decodes: int, per_pass: int = 1) -> LogTerms:
    """k samples per example of x (B, *image), per_pass (a divisor of k) from each encoder
    pass, at most ~max_decodes decoder inputs at a time."""
    group = max(1, min(k // per_pass, max_decodes // (x.shape[0] * per_pass)))
    terms = jax.lax.map(lambda kk: apply_fn({"params": params}, x, kk, per_pass),
                        jax.random.split(key, k // per_pass), batch_size=group)
    # Each map step gave S latents (per_pass samples, or an enumerated support):
    # (k / per_pass, S, B) -> (k / per_pass * S, B).
    fold = lambda a: None if a is None else a.reshape((-1,) + a.shape[2:])
    return terms.replace(log_d=fold(terms.log_d), log_e=fold(terms.log_e),
                         log_m=fold(terms.log_m), weights=fold(terms.weights),
                         kl=None if terms.kl is None else terms.kl[0])


@functools.partial(jax.jit, static_argnums=(0, 4, 5, 6, 7))
def eval_batch(apply_fn, params, images: jax.Array, key: jax.Array, k: int, max_decodes: int,
               binarization: str, per_pass: int = 1) -> Dict[str, jax.Array]:
    """The per-example bounds (B,) of one batch of uint8 images (B, *image), k samples each."""
    k_bin, k_z = jax.random.split(key)
    x = prepare_batch(images, k_bin, binarization)
    return rate_distortion(log_terms(apply_fn, params, x, k_z, k, max_decodes, per_pass))


def evaluate_examples(apply_fn, params, images: np.ndarray, key: jax.Array, k: int,
                      batch_size: int, binarization: str, max_decodes: int = 16384,
                      per_pass: Optional[int] = 1) -> Dict[str, np.ndarray]:
    """The bounds of each example of `images` (N, *image) uint8: QUANTITIES, each (N,) float64
    nats. per_pass: samples per encoder pass (a divisor of k); None: `samples_per_pass`."""
    n = len(images)
    batch_size = min(batch_size, n)  # a larger batch would only pad
    per_pass = per_pass or samples_per_pass(k, batch_size, max_decodes)
    # The last batch is padded (with repeats, then cut off) to keep one compiled shape.
    padded = np.take(images, np.arange(n + (-n) % batch_size) % n, axis=0)
    outs = [eval_batch(apply_fn, params, jnp.asarray(padded[start:start + batch_size]),
                       jax.random.fold_in(key, i), k, max_decodes, binarization, per_pass)
            for i, start in enumerate(range(0, len(padded), batch_size))]
    return {q: np.concatenate([np.asarray(o[q], np.float64) for o in outs])[:n]
            for q in QUANTITIES}


def evaluate(apply_fn, params, images: np.ndarray, key: jax.Array, k: int, batch_size: int,
             binarization: str, max_decodes: int = 16384,
             weights: Optional[np.ndarray] = None,
             per_pass: Optional[int] = 1) -> Tuple[Dict[str, float], str]:
    """(means over all examples of `images` (N, *image) uint8, weighted by `weights` (N,) if
    given (data given as a distribution: then exact expectations), how the rate was computed:
    "analytic" or "monte_carlo"). per_pass: see `evaluate_examples`."""
    n = len(images)
    weights = np.ones(n) if weights is None else np.asarray(weights, np.float64)
    values = evaluate_examples(apply_fn, params, images, key, k, batch_size, binarization,
                               max_decodes, per_pass)
    result = {q: float((values[q] * weights).sum() / weights.sum()) for q in QUANTITIES}
    probe = jax.eval_shape(lambda: apply_fn({"params": params}, jnp.asarray(images[:1], jnp.float32),
                                            key))
    result.update(examples=n, iwae_samples=k)
    return result, rate_estimator(probe)
