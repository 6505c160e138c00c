"""The toy problem of Alemi et al. 2018, section 4: data given exactly as a distribution over
(30) bins, and the discrete-latent model that the paper fits to it. Units: nats; h in its own
units (cluster_scale 1).

Data (`data=toy`, ToySource): a cluster z* ~ Bernoulli(cluster_prob) (z* = 1 with probability 0.7);
h | z* ~ N(mu_z*, cluster_scale^2) with mu_0 = -s/2, mu_1 = +s/2; x = the bin of h among `bins`
equal bins over data.range = [low, high] (the tails below low and above high fall into the end
bins, so that the bins hold all the mass). The separation s is the one free parameter: it is
solved by bisection so that I(x; z*) = data.information nats. The data is the exact distribution
p(x_j) over the bins, not samples: each x_j is one example (a one-hot vector over the bins,
stored as 0/255 like a binary image) with weight p(x_j).

Model (`encoder=toy decoder=toy marginal=categorical`), with the bins' and the latent's values
on a grid of [-1, 1]: x_j = -1 + 2j/(bins-1) (the bin centres mapped affinely onto [-1, 1]) and
z_i = -1 + 2i/(K-1) (K = latent_dim):
  encoder  e(z_i|x_j) ∝ exp(-(w_i x_j - b_i)^2), w, b: (K,)      (60 parameters for K = 30)
  decoder  d(x_j|z_i) ∝ exp(-(w'_j z_i - b'_j)^2), w', b': (bins,), normalised over the bins:
           every x_j has its own parameters, so one z_i can represent any distribution over x
           (the paper's powerful decoder: the ELBO optimum ignores z)
  marginal m(z_i) = softmax(learned logits)_i                   (rdsweep.options.marginals)
w, b, w', b' start at N(0, 1), the marginal uniform. The encoder's Categorical has a finite support, so the VAE evaluates every z_i with weight
e(z_i|x): rate, distortion, ELBO and IWAE (= log p(x)) are exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rdsweep.config import DecoderConfig, EncoderConfig
from rdsweep.data import DataSource, Split, prepare_batch
from rdsweep.distributions import Categorical
from rdsweep.option import Option, at_least, require


def _sum_p_log_ratio(p: np.ndarray, q: np.ndarray) -> float:
    """sum p log(p / q) over the entries with p > 0, in nats."""
    keep = p > 0
    return float(np.sum(p[keep] * np.log(p[keep] / q[keep])))


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in x])


@dataclass(frozen=True)
class ToyData:
    """The toy data distribution. joint: p(z*, x_j), (2, bins), row c for z* = c."""

    separation: float  # s = mu_1 - mu_0, in units of h
    joint: np.ndarray

    @property
    def p_x(self) -> np.ndarray:
        """p(x_j), (bins,)."""
        return self.joint.sum(0)

    @property
    def information(self) -> float:
        """I(x; z*) in nats."""
        return _sum_p_log_ratio(self.joint, np.outer(self.joint.sum(1), self.p_x))

    @property
    def entropy(self) -> float:
        """H(x) in nats: the distortion of a model that ignores z (R = 0) at best."""
        return -_sum_p_log_ratio(self.p_x, np.ones_like(self.p_x))


def distribution(data_cfg, separation: float) -> ToyData:
    """The data at a given cluster separation s."""
    low, high = data_cfg.range
    edges = np.linspace(low, high, data_cfg.bins + 1)
    edges[0], edges[-1] = -np.inf, np.inf  # the tails fall into the end bins
    p1 = data_cfg.cluster_prob
    joint = np.stack([prior * np.diff(_normal_cdf((edges - mu) / data_cfg.cluster_scale))
                      for prior, mu in ((1 - p1, -separation / 2), (p1, separation / 2))])
    return ToyData(separation, joint)


def widest(data_cfg) -> ToyData:
    """The data with the clusters' means at the ends of data.range: the largest separation
    searched, so data.information must lie below its I(x; z*)."""
    low, high = data_cfg.range
    return distribution(data_cfg, high - low)


def make(data_cfg) -> ToyData:
    """The data whose I(x; z*) is data.information: bisection on the separation in
    [0, high - low] (I grows with s), to float precision."""
    lo, hi = 0.0, data_cfg.range[1] - data_cfg.range[0]
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if distribution(data_cfg, mid).information < data_cfg.information:
            lo = mid
        else:
            hi = mid
    return distribution(data_cfg, 0.5 * (lo + hi))


def examples(data: ToyData) -> Tuple[np.ndarray, np.ndarray]:
    """The data as weighted examples: one-hot bins (bins, bins) uint8 in {0, 255}, and p(x_j)."""
    bins = data.joint.shape[1]
    return np.eye(bins, dtype=np.uint8) * 255, data.p_x


def summary(data: ToyData, encoder_probs: np.ndarray | None) -> Dict[str, Any]:
    """metrics.json's toy extras: the data's I(x; z*), H(x) and separation, and, given the
    encoder's e(z_i|x_j) as (bins, K), how the latent splits the clusters:
    `information_cluster_latent` I(z*; z) (at most I(x; z*)), and `cluster_latent_mass`: the
    aggregate posterior mass q(z) = sum_j p(x_j) e(z|x_j) of the latent values that each cluster
    claims (those whose p(z*|z) favours it), [z* = 1, z* = 0]; a model that ignores z puts all
    of it on the more likely cluster ([1, 0] for cluster_prob > 0.5)."""
    out: Dict[str, Any] = {"information_x_cluster": data.information,
                           "entropy_x": data.entropy, "separation": data.separation}
    if encoder_probs is None:  # a model without an enumerable latent
        return out
    e = np.asarray(encoder_probs, np.float64)
    joint = data.joint @ e  # p(z*, z_i), (2, K)
    q_z = joint.sum(0)
    claims = joint.argmax(0)  # the cluster each latent value favours
    out["information_cluster_latent"] = _sum_p_log_ratio(joint, np.outer(joint.sum(1), q_z))
    out["cluster_latent_mass"] = [float(q_z[claims == c].sum()) for c in (1, 0)]
    return out


class QuadraticLogits(nn.Module):
    """One-hot u (..., n) -> logits -(w_k u - b_k)^2, (..., features), where u stands for its
    position on the grid -1 + 2i/(n-1); w, b: (features,) learned."""

    features: int

    @nn.compact
    def __call__(self, onehot: jax.Array) -> jax.Array:
        u = onehot @ jnp.linspace(-1.0, 1.0, onehot.shape[-1], dtype=onehot.dtype)
        w = self.param("w", nn.initializers.normal(1.0), (self.features,))
        b = self.param("b", nn.initializers.normal(1.0), (self.features,))
        return -jnp.square(w * u[..., None] - b)


class ToyEncoder(nn.Module):
    """One-hot bins x (B, bins) -> Categorical over K = latent_dim one-hot latent values."""

    latent_dim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> Categorical:
        return Categorical(QuadraticLogits(self.latent_dim)(x))


class ToyDecoder(nn.Module):
    """One-hot latents z (..., K) -> Categorical over the bins; image_shape: (bins,)."""

    image_shape: Sequence[int]

    @nn.compact
    def __call__(self, z: jax.Array) -> Categorical:
        return Categorical(QuadraticLogits(self.image_shape[0])(z))


@dataclass
class ToySource(DataSource):
    """The toy data: a distribution over `bins` bins of a two-cluster mixture, given exactly;
    its examples are one-hot bins, each weighted by its probability (train = test)."""

    _target_: str = f"{__name__}.ToySource"
    name: str = "toy"
    bins: int = 30
    cluster_prob: float = 0.7  # P(z* = 1)
    information: float = 0.5  # I(x; z*) in nats; the clusters' separation is solved to give it
    cluster_scale: float = 1.0  # the standard deviation of h in each cluster
    range: List[float] = field(default_factory=lambda: [-5.0, 5.0])  # the bins' span of h
    image_shape: List[int] = field(default_factory=lambda: ["${data.bins}"])  # one-hot bins
    pictures: ClassVar[bool] = False

    def check(self, key: str) -> None:
        super().check(key)
        at_least(f"{key}.bins", self.bins, 2)
        require(0 < self.cluster_prob < 1, f"{key}.cluster_prob", self.cluster_prob,
                "must be in (0, 1)")
        require(self.cluster_scale > 0 and math.isfinite(self.cluster_scale),
                f"{key}.cluster_scale", self.cluster_scale, "must be a finite number > 0")
        require(len(self.range) == 2 and self.range[0] < self.range[1]
                and all(math.isfinite(v) for v in self.range), f"{key}.range",
                self.range, "must be [low, high], finite, with low < high")
        top = widest(self).information
        require(0 < self.information < top, f"{key}.information", self.information,
                f"must be in (0, {top:.4f}) nats, below I(x; z*) at the widest separation (the "
                "clusters' means at the ends of data.range), which is below H(z*)")

    def load(self) -> Tuple[Split, Split]:
        split = Split(*examples(make(self)))
        return split, split

    def extra_metrics(self, apply_fn, params, test: Split, key: jax.Array) -> Dict[str, Any]:
        """metrics.json's "toy": `summary`, with the encoder's e(z|x_j) of every bin where the
        latent is enumerated."""
        x = prepare_batch(jnp.asarray(test.images), key, self.binarization)
        weights = apply_fn({"params": params}, x, key).weights  # e(z_i|x_j), (K, bins)
        return {"toy": summary(make(self), None if weights is None else np.asarray(weights).T)}


@dataclass
class ToyEncoderConfig(EncoderConfig):
    _target_: str = f"{__name__}.ToyEncoder"


@dataclass
class ToyDecoderConfig(DecoderConfig):
    _target_: str = f"{__name__}.ToyDecoder"


OPTIONS = [
    Option("data", "toy", ToySource, "the section-4 toy problem: a distribution over bins, "
           "given exactly"),
    Option("encoder", "toy", ToyEncoderConfig, "e(z_i|x_j) from quadratic logits over a one-hot "
           "latent", requires={"marginal": ("categorical",), "data": ("toy",)}),
    Option("decoder", "toy", ToyDecoderConfig, "d(x_j|z_i) from quadratic logits over the bins",
           requires={"data": ("toy",)}),
]
