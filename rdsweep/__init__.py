"""rdsweep: rate-distortion sweeps of latent-variable models in JAX."""
