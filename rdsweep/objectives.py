"""Rate, distortion and bounds from a model's log-densities, and the training objectives.

All quantities are per example, in nats. From S samples z_s ~ e(z|x):
  distortion D = -mean_s log d(x|z_s)
  rate R       = KL(e(z|x) || m(z)) in closed form where the pair has one, else
                 mean_s [log e(z_s|x) - log m(z_s)]  (Monte Carlo)
  ELBO         = -(R + D)
  IWAE_S       = logsumexp_s [log d(x|z_s) + log m(z_s) - log e(z_s|x)] - log S
For a finite latent enumerated with weights e(z_s|x) (LogTerms.weights), mean_s is the weighted
mean and the IWAE sum is weighted: all are exact, and IWAE is log p(x).
"""

from __future__ import annotations

from typing import Dict, Optional

import jax
import jax.numpy as jnp
from flax import struct

from rdsweep.models import LogTerms


def rate_estimator(terms: LogTerms) -> str:
    """'analytic' or 'monte_carlo': how `rate_distortion` computes the rate of these terms."""
    return "monte_carlo" if terms.kl is None else "analytic"


def weighted_mean(values: jax.Array, weights: Optional[jax.Array]) -> jax.Array:
    """Mean over axis 0 of values (N, ...), each weighted by weights (N, ...; any positive
    scale, normalised here); weights None: the plain mean."""
    if weights is None:
        return jnp.mean(values, axis=0)
    return jnp.sum(weights * values, axis=0) / jnp.sum(weights, axis=0)


def rate_distortion(terms: LogTerms) -> Dict[str, jax.Array]:
    """Per-example rate, its Monte Carlo (or enumerated) estimate, distortion, ELBO and IWAE;
    each (B,)."""
    rate_mc = weighted_mean(terms.log_e - terms.log_m, terms.weights)
    rate = rate_mc if terms.kl is None else terms.kl
    distortion = -weighted_mean(terms.log_d, terms.weights)
    log_w = terms.log_d + terms.log_m - terms.log_e
    if terms.weights is None:
        iwae = jax.nn.logsumexp(log_w, axis=0) - jnp.log(log_w.shape[0])
    else:
        iwae = (jax.nn.logsumexp(log_w, axis=0, b=terms.weights)
                - jnp.log(jnp.sum(terms.weights, axis=0)))
    return {"rate": rate, "rate_mc": rate_mc, "distortion": distortion,
            "elbo": -(rate + distortion), "iwae": iwae}


def warmup(step: jax.Array, warmup_steps: int) -> jax.Array:
    """KL annealing weight: rises linearly from 0 at step 0 to 1 at `warmup_steps` (0: always 1)."""
    if warmup_steps <= 0:
        return jnp.ones((), jnp.float32)
    return jnp.minimum(1.0, step / warmup_steps).astype(jnp.float32)


# Objectives are pytrees whose weights (beta, sigma) are leaves: they live in the train state,
# so a grid of models that differ only in them trains as one vmapped program.
@struct.dataclass
class BetaObjective:
    """D + beta * R (beta = 1: the negative ELBO); beta is annealed over `warmup_steps`."""

    beta: float
    warmup_steps: int = struct.field(pytree_node=False, default=0)

    def __call__(self, rate: jax.Array, distortion: jax.Array, step: jax.Array) -> jax.Array:
        """rate, distortion: batch means (nats); step: the optimiser step. Returns the loss."""
        return distortion + self.beta * warmup(step, self.warmup_steps) * rate


@struct.dataclass
class TargetRateObjective:
    """D + |sigma - R|: pins the (batch-mean) rate at sigma nats; the penalty is annealed."""

    sigma: float
    warmup_steps: int = struct.field(pytree_node=False, default=0)

    def __call__(self, rate: jax.Array, distortion: jax.Array, step: jax.Array) -> jax.Array:
        return distortion + warmup(step, self.warmup_steps) * jnp.abs(self.sigma - rate)
