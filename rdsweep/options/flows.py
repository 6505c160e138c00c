"""Mean-only (volume-preserving) Gaussian autoregressive flows: the IAF encoder "+" and the MAF
marginal "+" of "Fixing a Broken ELBO" (4 steps, each a MADE with 3 hidden layers of 640 ReLUs).

One building block serves both. A step is the autoregressive shift

    y = x + mu(x),   mu_i depending only on x_{<i}   (mu: a MADE),

whose Jacobian is unit triangular, so log|det| = 0 (all log-densities below are in nats).
The shift is parallel in the direction x -> y (one MADE pass) and sequential in y -> x: the fixed
point x <- y - mu(x) is exact after D iterations (lax.fori_loop), since iteration k fixes x_k.
The order of the D dimensions is reversed between steps (odd steps are autoregressive in the
reversed order), so every dimension gets conditioned on every other; since the reversal is undone
inside each odd step, no net permutation is left and a fresh flow is exactly the identity.

- IAF (encoder): z = f(eps), eps ~ N(loc, scale); sampling is the parallel direction, so samples
  and their log-densities (= base log-density of eps) are cheap; log_prob of an arbitrary z needs
  the sequential inverse.
- MAF (marginal): the density direction is parallel, u = z - mu(z) per step, log m(z) =
  log N(u; 0, I); sampling is sequential.

Shapes: latents are (..., D), contexts (..., C); log-densities drop the last axis.
Size presets (PRESETS): `size="paper"` gives MADEs with 3 x 640 hidden units, `size="small"` 3 x 64;
`hidden=(...)` overrides the preset. Every MADE's output layer is zero-initialised, so every flow
starts as the identity.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Dict, List, Optional, Sequence, Tuple

import numpy as np
import jax
import jax.numpy as jnp
import flax.linen as nn
from flax import struct

from omegaconf import MISSING

from rdsweep.config import SIZE, EncoderConfig, MarginalConfig
from rdsweep.distributions import DiagGaussian, Distribution
from rdsweep.option import Option, at_least, check_size, preset, widths

PRESETS = {"small": {"hidden": (64, 64, 64)}, "paper": {"hidden": (640, 640, 640)}}

Params = Dict[str, jax.Array]


# ---------------------------------------------------------------------------------------------
# MADE


@functools.lru_cache(maxsize=None)
def made_masks(dim: int, hidden: Tuple[int, ...]) -> Tuple[np.ndarray, ...]:
    """The MADE degree masks (Germain et al. 2015), one (fan_in, fan_out) 0/1 array per layer.

    Input i has degree i + 1; hidden units get degrees 1..D-1 cyclically (deterministic, so the
    masks are the same in every run); a hidden unit of degree m sees inputs of degree <= m, and
    output i sees hidden units of degree < i + 1. So mu_i depends on z_{<i} only and mu_0 on none.
    """
    deg_in = np.arange(1, dim + 1)
    degs = [deg_in]
    for width in hidden:
        degs.append(np.arange(width) % max(dim - 1, 1) + 1)
    masks = [(d_out[None, :] >= d_in[:, None]) for d_in, d_out in zip(degs[:-1], degs[1:])]
    masks.append(deg_in[None, :] > degs[-1][:, None])  # strict: output i never sees z_i
    return tuple(m.astype(np.float32) for m in masks)


def _masked_init(mask: np.ndarray) -> Callable:
    """LeCun-normal over each unit's *unmasked* fan-in (the full fan-in would shrink the init)."""
    def init(key, shape, dtype=jnp.float32):
        fan_in = np.maximum(mask.sum(0, keepdims=True), 1.0)
        return (jax.random.normal(key, shape, dtype) * mask / np.sqrt(fan_in)).astype(dtype)
    return init


def made_apply(params: Params, z: jax.Array, context: Optional[jax.Array] = None) -> jax.Array:
    """The MADE of `params` (as made by `MADE`), as a pure function.

    z: (..., D); context: (..., C) with the same leading axes, or None (then the context weights,
    if any, are unused). Returns mu: (..., D), mu_i a function of z_{<i} (and the context).
    """
    n_hidden = sum(1 for k in params if k.startswith("kernel_"))
    hidden = tuple(params[f"kernel_{l}"].shape[1] for l in range(n_hidden))
    masks = made_masks(z.shape[-1], hidden)
    h = z
    for l in range(n_hidden):
        h = h @ (params[f"kernel_{l}"] * masks[l]) + params[f"bias_{l}"]
        if context is not None:
            h = h + context @ params[f"context_kernel_{l}"]  # unmasked: context is not z
        h = nn.relu(h)
    mu = h @ (params["out_kernel"] * masks[-1]) + params["out_bias"]
    if context is not None:
        mu = mu + context @ params["context_out_kernel"]  # lets mu_0 depend on the context too
    return mu


class MADE(nn.Module):
    """Masked autoregressive network: z (..., D) [, context (..., C)] -> shift mu (..., D).

    mu_i depends only on z_j, j < i (and on the whole context). Hidden layers: `hidden` widths (or
    the `size` preset), ReLU; the context enters every hidden layer, and the output, through an
    unmasked linear map. The output layer starts at zero, so mu = 0 at initialisation.
    D and C are read from the inputs at initialisation.
    """

    hidden: Optional[Sequence[int]] = None
    size: str = "small"
    PRESETS: ClassVar[Dict[str, Dict[str, Tuple[int, ...]]]] = PRESETS

    @nn.compact
    def make_params(self, dim: int, context_dim: int = 0, dtype: Any = jnp.float32) -> Params:
        """Declares (at init) and returns this MADE's parameters, a flat dict for `made_apply`."""
        widths = tuple(preset(self, "hidden"))
        masks = made_masks(dim, widths)
        params: Params = {}
        fan_in = dim
        for l, width in enumerate(widths):
            params[f"kernel_{l}"] = self.param(f"kernel_{l}", _masked_init(masks[l]),
                                               (fan_in, width), dtype)
            params[f"bias_{l}"] = self.param(f"bias_{l}", nn.initializers.zeros, (width,), dtype)
            if context_dim:
                params[f"context_kernel_{l}"] = self.param(
                    f"context_kernel_{l}", nn.initializers.lecun_normal(), (context_dim, width),
                    dtype)
            fan_in = width
        # zero output layer: every flow step starts as the identity (stable start)
        params["out_kernel"] = self.param("out_kernel", nn.initializers.zeros, (fan_in, dim), dtype)
        params["out_bias"] = self.param("out_bias", nn.initializers.zeros, (dim,), dtype)
        if context_dim:
            params["context_out_kernel"] = self.param(
                "context_out_kernel", nn.initializers.zeros, (context_dim, dim), dtype)
        return params

    def __call__(self, z: jax.Array, context: Optional[jax.Array] = None) -> jax.Array:
        c = 0 if context is None else context.shape[-1]
        params = self.make_params(z.shape[-1], c, z.dtype)
        if context is not None:
            batch = jnp.broadcast_shapes(z.shape[:-1], context.shape[:-1])
            z = jnp.broadcast_to(z, batch + z.shape[-1:])
            context = jnp.broadcast_to(context, batch + context.shape[-1:])
        return made_apply(params, z, context)


# ---------------------------------------------------------------------------------------------
# The shared mean-only autoregressive shift


def shift_forward(mu: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
    """y = x + mu(x): the parallel direction, one pass of the autoregressive `mu`."""
    return x + mu(x)


def shift_inverse(mu: Callable[[jax.Array], jax.Array], y: jax.Array) -> jax.Array:
    """The x with x + mu(x) = y: the fixed point x <- y - mu(x), exact after D iterations
    (mu_i sees x_{<i} only, so iteration k makes x_k exact; likewise for any fixed order, e.g.
    the reversed one). Shapes (..., D)."""
    return jax.lax.fori_loop(0, y.shape[-1], lambda _, x: y - mu(x), y)


class MeanOnlyARFlow(struct.PyTreeNode):
    """A stack of mean-only autoregressive shifts, as data (a pytree): usable outside `apply`.

    Step k maps x -> x + sign * mu_k(x), mu_k = `made_apply(params[k], ., context)` for even k
    and the same applied in the reversed order of dimensions for odd k (reverse, MADE, reverse
    back), so consecutive steps condition in opposite orders. `forward` (x -> y) is parallel,
    `inverse` (y -> x) sequential (D MADE passes per step). log|det J| = 0 in both directions.

    params: one MADE parameter dict per step; dim: D; context: (*batch, C) or None (then the
    bijection is the same for every batch element); sign: +1 (IAF) or -1 (MAF, u = z - mu(z)).
    """

    params: Tuple[Params, ...]
    dim: int = struct.field(pytree_node=False)
    context: Optional[jax.Array] = None
    sign: float = struct.field(pytree_node=False, default=1.0)

    def _prepare(self, x: jax.Array) -> Tuple[jax.Array, Optional[jax.Array]]:
        # A conditional flow differs per batch element: broadcast x and the context together.
        if self.context is None:
            return x, None
        batch = jnp.broadcast_shapes(x.shape[:-1], self.context.shape[:-1])
        return (jnp.broadcast_to(x, batch + x.shape[-1:]),
                jnp.broadcast_to(self.context, batch + self.context.shape[-1:]))

    def _mu(self, k: int, ctx: Optional[jax.Array]) -> Callable[[jax.Array], jax.Array]:
        mu = lambda x: self.sign * made_apply(self.params[k], x, ctx)
        if k % 2 == 0:
            return mu
        # Reverse in and back out (rather than leaving the order permuted between steps), so a
        # fresh flow is the identity whatever the number of steps; mu_i then sees x_{>i}.
        return lambda x: mu(x[..., ::-1])[..., ::-1]

    def forward(self, x: jax.Array) -> jax.Array:
        """x (..., D) -> y (broadcast batch, D), parallel."""
        x, ctx = self._prepare(x)
        for k in range(len(self.params)):
            x = shift_forward(self._mu(k, ctx), x)
        return x

    def inverse(self, y: jax.Array) -> jax.Array:
        """y (..., D) -> x (broadcast batch, D), sequential: forward(inverse(y)) == y."""
        y, ctx = self._prepare(y)
        for k in reversed(range(len(self.params))):
            y = shift_inverse(self._mu(k, ctx), y)
        return y


def _declare_steps(module: nn.Module, context_dim: int) -> Tuple[Params, ...]:
    """The MADE parameters of a flow module's `steps` steps (its `hidden` widths or `size`
    preset). Called inside a compact method: the MADEs become children made_0 ... made_{k-1}."""
    if module.steps < 1:
        raise ValueError(f"steps must be >= 1, got {module.steps}")
    widths = tuple(preset(module, "hidden"))
    return tuple(MADE(hidden=widths, name=f"made_{k}").make_params(module.latent_dim, context_dim)
                 for k in range(module.steps))


class IAFFlow(nn.Module):
    """The bijection of an IAF posterior: `steps` mean-only shifts, each a MADE of `hidden`
    widths (or the `size` preset). __call__(context=None) -> MeanOnlyARFlow (sign +1);
    context: (B, C) encoder features to condition every MADE on, or None (unconditional)."""

    latent_dim: int
    steps: int = 4
    hidden: Optional[Sequence[int]] = None
    size: str = "small"
    PRESETS: ClassVar[Dict[str, Dict[str, Tuple[int, ...]]]] = PRESETS

    @nn.compact
    def __call__(self, context: Optional[jax.Array] = None) -> MeanOnlyARFlow:
        params = _declare_steps(self, 0 if context is None else context.shape[-1])
        return MeanOnlyARFlow(params=params, dim=self.latent_dim, context=context, sign=1.0)


# ---------------------------------------------------------------------------------------------
# IAF posterior (encoder "+")


class IAFPosterior(Distribution):
    """q(z|x): a DiagGaussian(loc, scale) base, batch (*batch,), pushed through `flow`.

    Design: by default the flow is UNCONDITIONAL (its MADEs take no context), so the bijection is
    shared across inputs x and only the base depends on x. Then log_prob(z) needs one sequential
    inverse per z, whatever the number of components it is evaluated against: a VampPrior over K
    pseudo-inputs evaluates z (S, B, 1, D) against batch (K,) with S*B inverses, not S*B*K. With
    a context (flow.context: (*batch, C)) the MADEs condition on encoder features: more flexible,
    but log_prob then inverts once per (z, component) pair.

    Units: nats. The flow is volume preserving, so log q(z) = log N(f^{-1}(z); loc, scale).
    """

    loc: jax.Array
    scale: jax.Array
    flow: MeanOnlyARFlow

    @property
    def base(self) -> DiagGaussian:
        return DiagGaussian(self.loc, self.scale)

    def log_prob(self, value: jax.Array) -> jax.Array:
        """value (..., D), broadcasting against the batch -> (broadcast batch,), nats."""
        return self.base.log_prob(self.flow.inverse(value))

    def log_prob_each(self, value: jax.Array) -> jax.Array:
        """value (..., D) under each of a batch (K,) -> (..., K), nats. Unconditional: one
        inverse per value, then the base's log_prob_each (its fast gradient)."""
        if self.flow.context is None:
            return self.base.log_prob_each(self.flow.inverse(value))
        return super().log_prob_each(value)

    def sample_and_log_prob(self, key: jax.Array, n: int) -> Tuple[jax.Array, jax.Array]:
        """n samples (n, *batch, D) and their log q (n, *batch): parallel passes only."""
        eps, log_q = self.base.sample_and_log_prob(key, n)
        return self.flow.forward(eps), log_q


class IAFEncoder(nn.Module):
    """Wraps an encoder with a DiagGaussian output into an IAF encoder (family "+").

    base: a module with __call__(x) -> DiagGaussian (batch (B,), event latent_dim), or ->
    (DiagGaussian, h) with features h (B, C). context=False: unconditional flow (see
    IAFPosterior; the default, and the cheap one under a VampPrior); context=True: the MADEs
    condition on features h (B, C), taken from, in this order: the base's (dist, h) output,
    `base.features(x)` if the base has that method (e.g. rdsweep.options.conv.ConvEncoder), else
    concat(loc, scale) (B, 2D). __call__(x: (B, H, W, C)) -> IAFPosterior with batch (B,).
    Paper: steps=4, size="paper".
    """

    base: nn.Module
    latent_dim: int
    steps: int = 4
    hidden: Optional[Sequence[int]] = None
    size: str = "small"
    context: bool = False
    PRESETS: ClassVar[Dict[str, Dict[str, Tuple[int, ...]]]] = PRESETS

    @nn.compact
    def __call__(self, x: jax.Array) -> IAFPosterior:
        out = self.base(x)
        q, h = out if isinstance(out, tuple) else (out, None)
        if q.loc.shape[-1] != self.latent_dim:
            raise ValueError(f"base encoder gives {q.loc.shape[-1]} latents, "
                             f"latent_dim is {self.latent_dim}")
        if self.context and h is None:
            features = getattr(self.base, "features", None)
            h = features(x) if callable(features) else jnp.concatenate([q.loc, q.scale], -1)
        flow = IAFFlow(self.latent_dim, self.steps, self.hidden, self.size,
                       name="flow")(h if self.context else None)
        return IAFPosterior(q.loc, q.scale, flow)


# ---------------------------------------------------------------------------------------------
# MAF marginal (marginal "+")


class MAFDistribution(Distribution):
    """m(z): N(0, I) in D dims pushed through a mean-only MAF; batch (), event (D,).

    flow (sign -1) maps z to the base: u = z - mu(z) per step, in parallel, so
    log m(z) = log N(u; 0, I) (nats; volume preserving); sampling inverts it sequentially.
    """

    flow: MeanOnlyARFlow

    def log_prob(self, value: jax.Array) -> jax.Array:
        """value (..., D) -> (...,), nats."""
        u = self.flow.forward(value)
        return jax.scipy.stats.norm.logpdf(u).sum(-1)

    def sample_and_log_prob(self, key: jax.Array, n: int) -> Tuple[jax.Array, jax.Array]:
        """n samples (n, D) and their log m (n,)."""
        dtype = jnp.result_type(self.flow.params[0]["out_bias"])
        u = jax.random.normal(key, (n, self.flow.dim), dtype)
        return self.flow.inverse(u), jax.scipy.stats.norm.logpdf(u).sum(-1)


class MAFMarginal(nn.Module):
    """The learned marginal m(z) of family "+": `steps` mean-only MAF steps over N(0, I), each a
    MADE of `hidden` widths (or the `size` preset; paper: size="paper").
    __call__(encoder=None) -> MAFDistribution (batch (), event (latent_dim,))."""

    latent_dim: int
    steps: int = 4
    hidden: Optional[Sequence[int]] = None
    size: str = "small"
    PRESETS: ClassVar[Dict[str, Dict[str, Tuple[int, ...]]]] = PRESETS

    @nn.compact
    def __call__(self, encoder: Optional[nn.Module] = None) -> MAFDistribution:
        params = _declare_steps(self, 0)
        return MAFDistribution(MeanOnlyARFlow(params=params, dim=self.latent_dim, sign=-1.0))


def _check_flow(key: str, size: str, steps: int, hidden: Optional[List[int]]) -> None:
    check_size(f"{key}.size", size, PRESETS)
    at_least(f"{key}.steps", steps, 1)
    widths(f"{key}.hidden", hidden)


# The encoders an IAF can wrap (encoder=iaf encoder/base=mlp): those with a DiagGaussian output.
IAF_BASES = ("conv", "mlp")


@dataclass
class IAFEncoderConfig(EncoderConfig):
    _target_: str = f"{__name__}.IAFEncoder"
    # _self_ first: the base merges into this node's `base` field
    defaults: List[Any] = field(default_factory=lambda: ["_self_", {"base": "conv"}])
    base: Any = MISSING  # the base encoder, a group of its own: encoder/base=mlp
    size: str = SIZE
    steps: int = 4
    hidden: Optional[List[int]] = None  # MADE widths; overrides the size preset
    context: bool = False  # condition the flow on x (costly with a VampPrior)
    PRESETS: ClassVar = PRESETS

    def check(self, key: str) -> None:
        self.base.check(f"{key}.base")
        _check_flow(key, self.size, self.steps, self.hidden)


@dataclass
class MAFMarginalConfig(MarginalConfig):
    _target_: str = f"{__name__}.MAFMarginal"
    size: str = SIZE
    steps: int = 4
    hidden: Optional[List[int]] = None  # MADE widths; overrides the size preset
    PRESETS: ClassVar = PRESETS

    def check(self, key: str) -> None:
        _check_flow(key, self.size, self.steps, self.hidden)


OPTIONS = [
    Option("encoder", "iaf", IAFEncoderConfig, "a base encoder (encoder/base=conv or mlp) "
           "followed by 4 mean-only IAF steps", code="+", subgroups={"base": IAF_BASES}),
    Option("marginal", "maf", MAFMarginalConfig, "N(0, I) through 4 mean-only MAF steps",
           code="+"),
]
