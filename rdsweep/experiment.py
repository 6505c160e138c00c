"""Runs end to end: config -> data -> model -> objective -> training -> evaluation -> outputs.

A single run is a grid of one: K >= 1 runs that differ only in grid scalars train side by side
as one compiled program (rdsweep.train), and each writes its own run folder."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rdsweep import config as config_lib
from rdsweep import fusions, identity, preemption, registry
from rdsweep.checkpoints import RunCheckpoints
from rdsweep.data import DataSource, Split, prepare_batch
from rdsweep.evaluate import evaluate
from rdsweep.images import save_images
from rdsweep.lifecycle import Status, error_line
from rdsweep.models import VAE
from rdsweep.option import ConfigError
from rdsweep.outputs import IMAGES, RunLog, write_metrics, write_train_log
from rdsweep.train import (create_state, examples_per_step, make_optimizer, make_train_step,
                           stack, total_steps, train, unstack)

log = logging.getLogger(__name__)


def build_model(cfg: DictConfig) -> VAE:
    """The VAE of the configured encoder, decoder and marginal options."""
    build = lambda node: instantiate(node, _convert_="all")
    return VAE(encoder=build(cfg.encoder), decoder=build(cfg.decoder),
               marginal=build(cfg.marginal))


def run(cfg: DictConfig, run_dir: str) -> Dict[str, Any]:
    """Trains and evaluates one model; writes train_log.csv, TensorBoard scalars, checkpoints
    and metrics.json into run_dir. Resumes from run_dir's checkpoints if it holds some.

    An exception is recorded as metrics.json status "failed" (with the error) and re-raised.
    """
    return run_grid([cfg], [run_dir])[0]


def describe(cfg: DictConfig) -> Dict[str, Any]:
    """What metrics.json records of a run's identity: its config, hash, family and objective."""
    return {"config_hash": identity.config_hash(cfg),
            "config": OmegaConf.to_container(config_lib.job_config(cfg)),
            "family": registry.family_code(cfg),
            "objective": registry.option_name(cfg, "objective")}


def run_grid(cfgs: Sequence[DictConfig], run_dirs: Sequence[str]) -> List[Dict[str, Any]]:
    """`run` for K >= 1 configs that differ only in grid scalars (`grid_key` equal): the K
    models train side by side as one program; each run folder gets its own outputs. Returns
    each run's metrics."""
    start = time.perf_counter()
    metrics = [describe(cfg) for cfg in cfgs]
    trackers = [instantiate(c.tracker, run_dir=d) for c, d in zip(cfgs, run_dirs)]
    try:
        results = _train_and_evaluate(cfgs, run_dirs, [m["config_hash"] for m in metrics],
                                      trackers)
    except ConfigError:
        raise  # a folder belongs to another config: write nothing into it
    except Exception as e:  # training failed: every run of the grid failed
        results = [_failed(e)] * len(cfgs)
    errors = [r.pop("exception") for r in results if "exception" in r]
    for m, result, run_dir, tracker in zip(metrics, results, run_dirs, trackers):
        m.update(result, seconds=time.perf_counter() - start)
        try:  # one run's full disk must not cost the others their metrics.json
            write_metrics(run_dir, m)
        except OSError as e:
            errors.append(e)
        tracker.finish(m)
    if errors:
        raise errors[0]
    return metrics


def _failed(e: Exception) -> Dict[str, Any]:
    """A failed run's metrics (and the exception, raised once all metrics are written)."""
    return {"status": Status.FAILED, "error": error_line(e),
            "exception": e}


# What may differ between the runs of one grid besides the objective's knob: leaves of the
# train state.
GRID_SCALARS = ("seed", "train.lr")


def grid_key(cfg: DictConfig) -> str:
    """The run's identity without the grid scalars and its objective's knob: runs with equal
    keys can train as one grid."""
    return identity.grid_key(cfg, (*GRID_SCALARS, f"objective.{identity.knob(cfg.objective)}"))


def convolves(fn: Callable, *args: Any) -> bool:
    """Whether fn(*args) runs a convolution: lax.conv_general_dilated anywhere in its jaxpr,
    nested jaxprs (scans, custom VJPs, ...) included. Traced, not run."""
    def walk(jaxpr) -> bool:
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "conv_general_dilated":
                return True
            for param in eqn.params.values():
                for sub in param if isinstance(param, (tuple, list)) else (param,):
                    inner = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr's Jaxpr
                    if hasattr(inner, "eqns") and walk(inner):
                        return True
        return False
    return walk(jax.make_jaxpr(fn)(*args).jaxpr)


def grid_batching(option: str, step: Callable, states: Any, images: jax.Array,
                  weights: Optional[jax.Array] = None) -> str:
    """train.grid_batching for `step` of a stack of K states (leading axis K). auto: lax.map
    for one model (K = 1: one plain scan) and, on the CPU, for a step that convolves (XLA:CPU
    runs vmapped convolutions as slow grouped convolutions); vmap otherwise (rdsweep-bench's
    scaling rows: mlp grids of K = 2-8 train as fast or faster vmapped)."""
    if option != "auto":
        return option
    if len(jax.tree_util.tree_leaves(states)[0]) == 1:
        return "map"
    if jax.default_backend() != "cpu":
        return "vmap"
    return "map" if convolves(step, unstack(states, 0), images, weights) else "vmap"


def _restore(checkpoints: List[RunCheckpoints], states: List[Any]) -> Tuple[List[Any], List]:
    """Each run's newest checkpoint at or below the newest step that all runs have (a kill
    during the runs' saves can leave some one checkpoint behind); if they still disagree, all
    start again from step 0."""
    newest = [c.latest() for c in checkpoints]
    limit = None if None in newest else min(newest)
    restored = [c.restore(s, max_step=limit if limit is not None else -1)
                for c, s in zip(checkpoints, states)]
    if len({int(state.step) for state, _ in restored}) > 1:
        log.warning("the grid's runs have no common checkpoint step: training again from step 0")
        return states, [[] for _ in states]
    return [state for state, _ in restored], [rows for _, rows in restored]


def _train_and_evaluate(cfgs: Sequence[DictConfig], run_dirs: Sequence[str],
                        hashes: Sequence[str], trackers: Sequence[Any]) -> List[Dict[str, Any]]:
    """The body of `run_grid`: returns each run's metrics to add to metrics.json (and
    reports each run's scalars to its tracker)."""
    start = time.perf_counter()
    cfg = cfgs[0]  # the shared structure
    source: DataSource = instantiate(cfg.data)
    train_split, test_split = source.load()
    model = build_model(cfg)
    example = jnp.zeros((1,) + train_split.images.shape[1:], jnp.float32)
    n_train = len(train_split.images)
    steps = total_steps(cfg.train, n_train)

    keys = [jax.random.split(jax.random.PRNGKey(c.seed)) for c in cfgs]  # (init, eval) per run
    states = [create_state(model, make_optimizer(c.train, n_train), instantiate(c.objective),
                           example, init_key) for c, (init_key, _) in zip(cfgs, keys)]
    checkpoints = [RunCheckpoints(d, h, cfg.train.checkpoint_every, cfg.train.keep_checkpoints)
                   for d, h in zip(run_dirs, hashes)]
    states, rows = _restore(checkpoints, states)
    resumed_from = int(states[0].step)
    # The K optimisers differ only in the learning rate, which lives in the state: share one.
    state = stack([s.replace(tx=states[0].tx) for s in states])
    step = make_train_step(cfg.train.batch_size, cfg.data.binarization)
    diverged: List[Optional[Dict[str, Any]]] = [None] * len(cfgs)
    with contextlib.ExitStack() as exits:
        run_logs = [exits.enter_context(RunLog(d, steps, resumed_from, cfg.train.tensorboard,
                                               tracker, restored))
                    for d, tracker, restored in zip(run_dirs, trackers, rows)]
        preempted = exits.enter_context(preemption.deferred(cfg.train.log_every))
        images, weights = (jax.device_put(a) for a in (train_split.images, train_split.weights))
        batching = grid_batching(cfg.train.grid_batching, step, state, images, weights)
        for state, new_rows in train(state, step, images, steps, cfg.train.log_every,
                                     examples_per_step(cfg.train, n_train), batching, weights,
                                     fusions.options_of(cfg)):
            for i, row in enumerate(new_rows):
                if diverged[i] is not None:
                    continue
                rows[i].append(row)
                write_train_log(run_dirs[i], rows[i])
                run_logs[i].train(row)
                if not math.isfinite(row["loss"]):
                    log.error("%s: loss is %s at step %d: stopping", run_dirs[i], row["loss"],
                              row["step"])
                    diverged[i] = {"status": Status.DIVERGED, "steps": row["step"],
                                   "non_finite": [q for q in ("loss", "rate", "distortion")
                                                  if not math.isfinite(row[q])]}
                    continue
                checkpoints[i].save(unstack(state, i), rows[i], final=row["step"] == steps)
            if None not in diverged:
                break
            if preempted.requested:  # SLURM's time-out or preemption: save now, then requeue
                for i, c in enumerate(checkpoints):
                    if diverged[i] is None:
                        c.save(unstack(state, i), rows[i], final=True)
                break
            preempted.chunk_done()
        for c in checkpoints:
            c.close()
        preempted.release()  # requeues and exits if the signal came (evaluation comes after)
        train_seconds = time.perf_counter() - start

        results = []
        for i, c in enumerate(cfgs):
            if diverged[i] is not None:
                results.append({**diverged[i], "resumed_from": resumed_from})
                continue
            try:  # one run's failure stays in that run
                result = _evaluate(c, source, run_dirs[i], state.apply_fn,
                                   unstack(state, i).params, train_split, test_split, keys[i][1])
            except Exception as e:
                log.exception("%s: evaluation failed", run_dirs[i])
                results.append(_failed(e))
                continue
            run_logs[i].test(result["test"], steps)
            results.append({**result, "steps": steps, "resumed_from": resumed_from,
                            "train_seconds": train_seconds,
                            "images_per_s": rows[i][-1]["images_per_s"]})
    return results


def _evaluate(cfg: DictConfig, source: DataSource, run_dir: str, apply_fn, params,
              train_split: Split, test_split: Split, eval_key) -> Dict[str, Any]:
    """Test (and train) bounds, images.png, and the data's extra metrics of one trained model."""
    binarization = cfg.data.binarization
    ev = lambda split, key: evaluate(apply_fn, params, split.images, key, cfg.eval.iwae_samples,
                                     cfg.eval.batch_size, binarization, weights=split.weights)
    test, estimator = ev(test_split, jax.random.fold_in(eval_key, 0))
    train_eval = (ev(train_split.head(cfg.eval.train_examples), jax.random.fold_in(eval_key, 1))[0]
                  if cfg.eval.train_examples else None)
    if cfg.eval.image_examples:
        n = cfg.eval.image_examples
        x = prepare_batch(jnp.asarray(test_split.images[:n]), jax.random.fold_in(eval_key, 2),
                          binarization)
        save_images(os.path.join(run_dir, IMAGES), apply_fn, params, x,
                    jax.random.fold_in(eval_key, 3))
    log.info("%s: test R %.2f  D %.2f  ELBO %.2f  IWAE(k=%d) %.2f nats  (rate: %s)", run_dir,
             test["rate"], test["distortion"], test["elbo"], cfg.eval.iwae_samples, test["iwae"],
             estimator)
    extra = source.extra_metrics(apply_fn, params, test_split, eval_key)
    for name, values in extra.items():
        log.info("%s: %s", name, "  ".join(f"{k} {np.round(v, 4)}" for k, v in values.items()))
    return {"status": Status.COMPLETED, "rate_estimator": estimator, "test": test,
            "train": train_eval, **extra}
