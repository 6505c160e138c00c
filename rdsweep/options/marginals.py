"""Marginals m(z) with closed-form densities: the fixed Gaussian, a learned Gaussian mixture, the
VampPrior, and a learned categorical over a discrete latent. (The MAF flow marginal is in
rdsweep.options.flows.)

Interface: a module built with `latent_dim` whose __call__(encoder) returns a distribution over
z with event (latent_dim,) and batch ().
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Dict, List, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from rdsweep.config import IMAGE, SIZE, MarginalConfig
from rdsweep.distributions import Categorical, DiagGaussian, Mixture
from rdsweep.option import Option, at_least, check_size, one_of, preset, require

# VampPrior pseudo-inputs: paper 500 (the VampPrior paper's default, as the Broken-ELBO paper
# does not say), small 50.
VAMP_PRESETS = {"small": {"pseudo_inputs": 50}, "paper": {"pseudo_inputs": 500}}


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
    (Tomczak & Welling 2018). N: `pseudo_inputs`, else the size preset (paper: 500, the
    VampPrior paper's default, as the Broken-ELBO paper does not say; small: 50).

    u = sigmoid(p) (`pseudo_input_map` sigmoid) or clip(p, 0, 1) (hardtanh, the VampPrior
    code's), so that u lies in [0, 1] like the data; p starts at N(mean, std) of
    `pseudo_input_init`. w = softmax(learned logits), or uniform 1/N (`learned_weights` false,
    the VampPrior paper's)."""

    latent_dim: int
    image_shape: Sequence[int]
    size: str = "small"
    pseudo_inputs: Optional[int] = None
    pseudo_input_map: str = "sigmoid"
    pseudo_input_init: Sequence[float] = (0.0, 0.1)
    learned_weights: bool = True
    PRESETS: ClassVar[Dict[str, Dict[str, int]]] = VAMP_PRESETS

    @nn.compact
    def __call__(self, encoder: nn.Module) -> Mixture:
        n = int(preset(self, "pseudo_inputs"))
        mean, std = self.pseudo_input_init
        raw = self.param("pseudo_inputs", lambda k, s: mean + std * jax.random.normal(k, s),
                         (n,) + tuple(self.image_shape))
        u = jax.nn.sigmoid(raw) if self.pseudo_input_map == "sigmoid" else jnp.clip(raw, 0, 1)
        logits = (self.param("logits", nn.initializers.zeros, (n,)) if self.learned_weights
                  else jnp.zeros((n,)))
        return Mixture(logits, encoder(u))


class CategoricalMarginal(nn.Module):
    """m(z_i) = softmax(learned logits)_i over latent_dim one-hot values (a discrete latent, as
    of rdsweep.options.toy.ToyEncoder); uniform at initialisation."""

    latent_dim: int

    @nn.compact
    def __call__(self, encoder: nn.Module | None = None) -> Categorical:
        return Categorical(self.param("logits", nn.initializers.zeros, (self.latent_dim,)))


@dataclass
class GaussianMarginalConfig(MarginalConfig):
    _target_: str = f"{__name__}.StandardGaussianMarginal"


@dataclass
class MixtureMarginalConfig(MarginalConfig):
    _target_: str = f"{__name__}.MixtureMarginal"
    components: int = 10

    def check(self, key: str) -> None:
        at_least(f"{key}.components", self.components, 1)


@dataclass
class VampMarginalConfig(MarginalConfig):
    _target_: str = f"{__name__}.VampPrior"
    image_shape: List[int] = IMAGE  # type: ignore[assignment]
    size: str = SIZE
    pseudo_inputs: Optional[int] = None  # overrides the size preset
    pseudo_input_map: str = "sigmoid"  # sigmoid or hardtanh: parameters -> [0, 1]
    pseudo_input_init: List[float] = field(default_factory=lambda: [0.0, 0.1])  # mean, std
    learned_weights: bool = True  # false: the components weigh 1/N each
    PRESETS: ClassVar = VAMP_PRESETS

    def check(self, key: str) -> None:
        check_size(f"{key}.size", self.size, VAMP_PRESETS)
        at_least(f"{key}.pseudo_inputs", self.pseudo_inputs, 1, optional=True)
        one_of(f"{key}.pseudo_input_map", self.pseudo_input_map, ("sigmoid", "hardtanh"))
        init = list(self.pseudo_input_init)
        require(len(init) == 2 and init[1] > 0, f"{key}.pseudo_input_init", init,
                "must be [mean, std] with std > 0")


@dataclass
class CategoricalMarginalConfig(MarginalConfig):
    _target_: str = f"{__name__}.CategoricalMarginal"


OPTIONS = [
    Option("marginal", "gaussian", GaussianMarginalConfig, "the fixed N(0, I)", code="-"),
    Option("marginal", "mixture", MixtureMarginalConfig,
           "a learned mixture of `components` factorized Gaussians"),
    Option("marginal", "vamp", VampMarginalConfig,
           "VampPrior: the encoder's posteriors of learned pseudo-inputs", code="v"),
    Option("marginal", "categorical", CategoricalMarginalConfig,
           "a learned categorical over a one-hot latent", requires={"encoder": ("toy",)}),
]
