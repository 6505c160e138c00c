"""Test helpers shared by several test files."""

import jax
import jax.numpy as jnp
import numpy as np


def random_variables(module, *inputs, seed=0):
    """Random variables of the shapes module.init would make (no init to compile: fast); kernels
    scaled by 1/sqrt(fan-in), biases nonzero."""
    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), *inputs)
    rng = np.random.default_rng(seed)

    def draw(leaf):
        fan_in = int(np.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 1
        return jnp.asarray(rng.normal(size=leaf.shape) / np.sqrt(fan_in), leaf.dtype)

    return jax.tree_util.tree_map(draw, shapes)
