"""Marginals m(z) with closed-form densities: the fixed Gaussian, a learned Gaussian mixture, the
VampPrior, and a learned categorical over a discrete latent. (The MAF flow marginal is in
rdsweep.flows.)

Interface: a module built with `latent_dim` whose __call__(encoder) returns a distribution over
z with event (latent_dim,) and batch ().
"""

from __future__ import annotations

from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from rdsweep.distributions import Categorical, DiagGaussian, Mixture


class StandardGaussianMarginal(nn.Module):
    """The fixed marginal m(z) = N(0, I)."""

    latent_dim: int

    def __call__(self, encoder: nn.Module | None = None) -> DiagGaussian:
        return DiagGaussian(jnp.zeros(self.latent_dim), jnp.ones(self.latent_dim))


class MixtureMarginal(nn.Module):
    """A learned mixture of `components` factorized Gaussians with learned weights."""

    latent_dim: int
    components: int = 10

    @nn.compact
    def __call__(self, encoder: nn.Module | None = None) -> Mixture:
        shape = (self.components, self.latent_dim)
        loc = self.param("loc", nn.initializers.normal(1.0), shape)
        # softplus(0.5413) = 1: every component starts as a unit Gaussian.
        raw_scale = self.param("raw_scale", nn.initializers.constant(0.5413), shape)
        logits = self.param("logits", nn.initializers.zeros, (self.components,))
        return Mixture(logits, DiagGaussian(loc, nn.softplus(raw_scale)))


class VampPrior(nn.Module):
    """m(z) = sum_i w_i e(z | u_i): the encoder's posteriors of N learned pseudo-inputs u_i
    (Tomczak & Welling 2018), w = softmax(learned logits). Pseudo-inputs are sigmoid(params), so
    they live in [0, 1] like the data. N: `pseudo_inputs`, else the size preset (paper: 500, the
    VampPrior paper's default, as the Broken-ELBO paper does not say; small: 50).
    """

    latent_dim: int
    image_shape: Sequence[int]
    size: str = "small"
    pseudo_inputs: Optional[int] = None

    @nn.compact
    def __call__(self, encoder: nn.Module) -> Mixture:
        n = self.pseudo_inputs or {"paper": 500, "small": 50}[self.size]
        raw = self.param("pseudo_inputs", nn.initializers.normal(0.1),
                         (n,) + tuple(self.image_shape))
        logits = self.param("logits", nn.initializers.zeros, (n,))
        return Mixture(logits, encoder(jax.nn.sigmoid(raw)))


class CategoricalMarginal(nn.Module):
    """m(z_i) = softmax(learned logits)_i over latent_dim one-hot values (a discrete latent, as
    of rdsweep.toy.ToyEncoder); uniform at initialisation."""

    latent_dim: int

    @nn.compact
    def __call__(self, encoder: nn.Module | None = None) -> Categorical:
        return Categorical(self.param("logits", nn.initializers.zeros, (self.latent_dim,)))
