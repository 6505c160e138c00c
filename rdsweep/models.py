"""The VAE that composes an encoder, a decoder and a marginal (Flax modules that return
distributions; the options of rdsweep.options), the log-densities it gives, and the images it
draws: samples (z ~ m(z), x ~ d(x|z)) and reconstructions (z ~ e(z|x), x' ~ d(x|z)).

Interfaces, which every option of a model group implements:
- encoder:  __call__(x: (B, *image)) -> distribution over z, batch (B,), event (latent_dim,)
- decoder:  __call__(z: (B, latent_dim)) -> distribution over x, batch (B,), event image shape
- marginal: __call__(encoder) -> distribution over z, event (latent_dim,); it gets the encoder so
  that a VampPrior can push its pseudo-inputs through it.
Images are float32 in {0, 1}, shape (B, H, W, C); the toy data's inputs are one-hot bins (B, bins)
(rdsweep.options.toy). An encoder whose distribution has a finite support (`enumerate_support`, e.g.
Categorical) is evaluated at every latent value instead of sampled: exact terms.
"""

from __future__ import annotations

import functools
from typing import Tuple

import jax
import jax.numpy as jnp
import flax.linen as nn
from flax import struct

from rdsweep.distributions import kl_divergence


class LogTerms(struct.PyTreeNode):
    """Per-latent log-densities (nats) of S latent values z_s for B inputs.

    The z_s are S samples z ~ e(z|x) (weights None: each counts 1/S), or, for an encoder with a
    finite support, all S = K values with weights e(z_s|x): then every mean over S is an exact
    expectation (rate, distortion, ELBO) and the IWAE sum is exactly log p(x).
    log_d: log d(x|z), (S, B); log_e: log e(z|x), (S, B); log_m: log m(z), (S, B);
    kl: closed-form KL(e(z|x) || m(z)), (B,), or None where the pair has none;
    weights: None, or e(z_s|x), (S, B).
    """

    log_d: jax.Array
    log_e: jax.Array
    log_m: jax.Array
    kl: jax.Array | None
    weights: jax.Array | None = None


class VAE(nn.Module):
    """Composes encoder, decoder and marginal; knows nothing of their kinds."""

    encoder: nn.Module
    decoder: nn.Module
    marginal: nn.Module

    def __call__(self, x: jax.Array, key: jax.Array, num_samples: int = 1) -> LogTerms:
        """num_samples z ~ e(z|x) per input; an encoder with a finite support is instead
        evaluated at all its values, weighted by e(z|x) (exact; key and num_samples unused)."""
        e, m = self.latent_distributions(x)
        support = e.enumerate_support()
        if support is None:
            z, log_e = e.sample_and_log_prob(key, num_samples)  # (S, B, L), (S, B)
            weights = None
        else:
            z, log_e = support
            weights = jnp.exp(log_e)
        return LogTerms(log_d=self.decoder_log_prob(z, x), log_e=log_e, log_m=m.log_prob(z),
                        kl=kl_divergence(e, m), weights=weights)

    def latent_distributions(self, x: jax.Array):
        """(e(z|x), batch (B,); m(z)): pytrees, so that evaluation draws many z per encoder
        pass outside the module (rdsweep.evaluate)."""
        return self.encoder(x), self.marginal(self.encoder)

    def decoder_log_prob(self, z: jax.Array, x: jax.Array) -> jax.Array:
        """log d(x|z) in nats, (S, B), of latents z (S, B, L) and inputs x (B, *image): the
        decoder sees the S*B latents at once, x repeated to match."""
        s, b = z.shape[:2]
        x_rep = jnp.broadcast_to(x, (s,) + x.shape).reshape((s * b,) + x.shape[1:])
        return self.decoder(z.reshape((s * b,) + z.shape[2:])).log_prob(x_rep).reshape(s, b)

    def reconstruct_and_generate(self, x: jax.Array, key: jax.Array) -> Tuple[jax.Array, jax.Array]:
        """Reconstructions (z ~ e(z|x), x' ~ d(x|z)) of x (B, *image) and B samples
        (z ~ m(z), x ~ d(x|z)), both (B, *image) in {0, 1}. Both latents go through one decoder
        draw, so an autoregressive decoder makes one pixel-by-pixel pass, not two."""
        k_rec, k_gen, k_x = jax.random.split(key, 3)
        b = x.shape[0]
        z = jnp.concatenate([self.encoder(x).sample(k_rec, 1)[0],
                             self.marginal(self.encoder).sample(k_gen, b)])
        images = self.decoder(z).sample(k_x, 1)[0]
        return images[:b], images[b:]


@functools.partial(jax.jit, static_argnums=(0, 3))
def sample(apply_fn, params, key: jax.Array, n: int) -> jax.Array:
    """n images (n, *image) in {0, 1} of the VAE `apply_fn` with `params`: z ~ m(z),
    x ~ d(x|z)."""
    def draw(vae: VAE) -> jax.Array:
        k_z, k_x = jax.random.split(key)
        return vae.decoder(vae.marginal(vae.encoder).sample(k_z, n)).sample(k_x, 1)[0]

    return apply_fn({"params": params}, method=draw)


@functools.partial(jax.jit, static_argnums=0)
def reconstruct(apply_fn, params, x: jax.Array, key: jax.Array) -> jax.Array:
    """Reconstructions (B, *image) in {0, 1} of x (B, *image) by the VAE `apply_fn` with
    `params`: z ~ e(z|x), x' ~ d(x|z)."""
    def draw(vae: VAE) -> jax.Array:
        k_z, k_x = jax.random.split(key)
        return vae.decoder(vae.encoder(x).sample(k_z, 1)[0]).sample(k_x, 1)[0]

    return apply_fn({"params": params}, method=draw)
