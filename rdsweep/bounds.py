"""Rate, distortion and bounds from a model's log-densities.

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
