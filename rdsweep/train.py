"""The training loop: a pure `train_step`, many steps per compiled call under `lax.scan`.

The training images stay on the device as uint8; each step draws its batch there (uniformly,
with replacement) with a key folded from the run's key and the step number, so a run's
randomness depends only on (seed, step) and not on how steps are grouped into calls.
Without a batch size (full-batch mode) every step uses all training examples, in order.

Batch means are plain means, or, for data given as a distribution (the toy problem: every
support point with its probability), means weighted by the examples' weights, which then are
exact expectations over the data.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

from rdsweep.bounds import rate_distortion, weighted_mean
from rdsweep.data import prepare_batch

log = logging.getLogger(__name__)

Metrics = Dict[str, jax.Array]


class TrainState(train_state.TrainState):
    key: jax.Array  # the run's base key; step keys are folded from it
    objective: Any  # the objective, a pytree of its weights (beta or sigma)


def examples_per_step(train_cfg, train_examples: int) -> int:
    """Examples per step: train.batch_size, or all of them (train.batch_size null: full batch)."""
    return train_cfg.batch_size or train_examples


def total_steps(train_cfg, train_examples: int) -> int:
    """train.steps, or train.epochs converted to steps of `examples_per_step`."""
    if train_cfg.epochs is None:
        return train_cfg.steps
    return max(1, math.ceil(train_cfg.epochs * train_examples
                            / examples_per_step(train_cfg, train_examples)))


def _per_tensor_norm() -> optax.GradientTransformation:
    """g / (||g|| + 1e-7) for each parameter array g (the VampPrior code's AdamNormGrad)."""
    return optax.stateless(lambda updates, params: jax.tree_util.tree_map(
        lambda g: g / (jnp.linalg.norm(g) + 1e-7), updates))


_NORMALIZE = {"global": optax.normalize_by_update_norm, "per_tensor": _per_tensor_norm}


def make_optimizer(train_cfg, train_examples: int) -> optax.GradientTransformation:
    """Adam, optionally on normalized gradients g / ||g|| (train.gradient_norm: over all
    parameters or per parameter array), with the learning rate
    held for lr_hold_steps (or lr_hold_epochs) and then decayed linearly to 0 at the last step.

    The learning rate is a hyperparameter in the optimiser state (optax.inject_hyperparams), so
    models that differ only in it share one optimiser and can be vmapped together.
    """
    steps = total_steps(train_cfg, train_examples)
    hold = train_cfg.lr_hold_steps
    if train_cfg.lr_hold_epochs is not None:
        hold = round(train_cfg.lr_hold_epochs * train_examples
                     / examples_per_step(train_cfg, train_examples))
    decay = hold is not None and hold < steps
    relative = optax.join_schedules(  # 1 while held, then linearly to 0
        [optax.constant_schedule(1.0), optax.linear_schedule(1.0, 0.0, steps - hold)],
        [hold]) if decay else None

    def adam(learning_rate):
        lr = (lambda count: learning_rate * relative(count)) if decay else learning_rate
        parts = ([_NORMALIZE[train_cfg.gradient_norm]()] if train_cfg.normalize_gradients
                 else [])
        return optax.chain(*parts, optax.adam(lr))

    return optax.inject_hyperparams(adam)(learning_rate=train_cfg.lr)


def create_state(model, optimizer: optax.GradientTransformation, objective, example: jax.Array,
                 key: jax.Array) -> TrainState:
    """Initialises parameters from one example batch, shape (B, *image)."""
    init_key, run_key = jax.random.split(key)
    # One compiled program, not one per initializer op (~100 small compilations, seconds).
    params = jax.jit(model.init)(init_key, example, init_key)["params"]
    objective = jax.tree_util.tree_map(lambda w: jnp.asarray(w, jnp.float32), objective)
    return TrainState.create(apply_fn=model.apply, params=params, tx=optimizer, key=run_key,
                             objective=objective)


def make_train_step(batch_size: Optional[int], binarization: str) -> Callable[
        [TrainState, jax.Array, Optional[jax.Array]], Tuple[TrainState, Metrics]]:
    """Returns the pure step (state, train_images (N, *image), weights (N,) or None) ->
    (state, batch-mean metrics in nats). batch_size None: the full batch, every step."""

    def train_step(state: TrainState, images: jax.Array,
                   weights: Optional[jax.Array] = None) -> Tuple[TrainState, Metrics]:
        k_idx, k_bin, k_z = jax.random.split(jax.random.fold_in(state.key, state.step), 3)
        if batch_size is not None:
            idx = jax.random.randint(k_idx, (batch_size,), 0, images.shape[0])
            images = images[idx]
            weights = None if weights is None else weights[idx]
        x = prepare_batch(images, k_bin, binarization)
        mean = lambda v: weighted_mean(v, weights)

        def loss_fn(params):
            bounds = rate_distortion(state.apply_fn({"params": params}, x, k_z))
            loss = state.objective(mean(bounds["rate"]), mean(bounds["distortion"]), state.step)
            return loss, bounds

        (loss, bounds), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        metrics = {"loss": loss,
                   **{name: mean(bounds[name]) for name in ("rate", "distortion", "elbo")}}
        return state.apply_gradients(grads=grads), metrics

    return train_step


def make_train_chunk(train_step: Callable, batching: str,
                     compiler_options: Optional[Dict[str, str]] = None) -> Callable:
    """Jits `n` steps of a stack of K >= 1 models' states (leading axis K; one run is K = 1)
    sharing the training images and, if given, their weights (N,); the state's buffers are
    donated (updated in place). Metrics: (n, K) per name.

    batching: "vmap" (one batched step: fast for matmuls and on GPUs) or "map" (lax.map over the
    models of each model's n-step scan: the K models train one after another inside the
    program, each at the speed of a single run, since XLA:CPU runs vmapped convolutions as slow
    grouped convolutions). compiler_options: XLA's, for the jit (rdsweep.cpu_tuning).
    """
    def scan(state, images, n, weights):
        return jax.lax.scan(lambda s, _: train_step(s, images, weights), state, None, length=n)

    @functools.partial(jax.jit, static_argnums=2, donate_argnums=0,
                       compiler_options=compiler_options)
    def train_chunk(states: TrainState, images: jax.Array, n: int,
                    weights: Optional[jax.Array] = None) -> Tuple[TrainState, Metrics]:
        if batching == "vmap":
            batched = jax.vmap(train_step, in_axes=(0, None, None))
            return jax.lax.scan(lambda s, _: batched(s, images, weights), states, None, length=n)
        # map outside the scan: each model's state is sliced out and written back once per
        # call, not once per step (which costs a copy of every parameter and moment per step).
        states, metrics = jax.lax.map(lambda s: scan(s, images, n, weights), states)
        return states, jax.tree_util.tree_map(lambda m: m.swapaxes(0, 1), metrics)

    return train_chunk


def stack(states: List[TrainState]) -> TrainState:
    """K states of one model and optimiser -> one state with a leading axis K."""
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *states)


def unstack(state: TrainState, k: int) -> TrainState:
    """Model k's state out of a stacked one."""
    return jax.tree_util.tree_map(lambda leaf: leaf[k], state)


def train(state: TrainState, train_step: Callable, images: jax.Array, steps: int,
          chunk: int, batch_size: int, batching: str = "map",
          weights: Optional[jax.Array] = None,
          compiler_options: Optional[Dict[str, str]] = None
          ) -> Iterator[Tuple[TrainState, List[Dict[str, float]]]]:
    """Runs `steps` steps of a stack of K models (see make_train_chunk) in calls of `chunk`
    steps; yields the state and log rows per call, one row per model.
    batch_size: examples per step (for images/s); weights: the examples' weights (N,), or None;
    compiler_options: XLA's (rdsweep.cpu_tuning).

    A row holds the step reached, the chunk's mean loss/rate/distortion/elbo and images/s (of
    that model; a grid processes K times as many in all).
    """
    train_chunk = make_train_chunk(train_step, batching, compiler_options)
    start = time.perf_counter()
    done = int(np.min(state.step))
    while done < steps:
        n = min(chunk, steps - done)
        t0 = time.perf_counter()
        state, metrics = train_chunk(state, images, n, weights)
        means = {k: np.asarray(v).mean(axis=0) for k, v in jax.device_get(metrics).items()}
        done += n
        dt = time.perf_counter() - t0
        rows = [{"step": done, **{k: float(v[i]) for k, v in means.items()},
                 "images_per_s": n * batch_size / dt, "seconds": time.perf_counter() - start}
                for i in range(len(means["loss"]))]
        for i, row in enumerate(rows):
            log.info("%sstep %d  loss %.2f  R %.2f  D %.2f  ELBO %.2f  %.0f images/s",
                     f"[{i}] " if len(rows) > 1 else "", done, row["loss"], row["rate"],
                     row["distortion"], row["elbo"], row["images_per_s"])
        yield state, rows
