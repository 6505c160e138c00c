"""Runs end to end: config -> data -> model -> objective -> training -> evaluation -> outputs.

A single run is a grid of one: K >= 1 runs that differ only in grid scalars train side by side
as one compiled program (rdsweep.train), and each writes its own run folder."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
from typing import Any, Dict, List, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rdsweep import config as config_lib
from rdsweep import early_stopping, identity, preemption, registry
from rdsweep.checkpoints import RunCheckpoints, WithBest
from rdsweep.cpu_tuning import compile_options, grid_batching
from rdsweep.data import DataSource, Split, prepare_batch
from rdsweep.evaluate import evaluate
from rdsweep.images import save_images
from rdsweep.console import error_line
from rdsweep.status import Status
from rdsweep.models import VAE
from rdsweep.option import ConfigError
from rdsweep.outputs import IMAGES, VALID_ELBO, RunLog, write_metrics, write_train_log
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


@dataclasses.dataclass
class _Run:
    """One run of a grid, as the training loop keeps it."""

    cfg: DictConfig
    run_dir: str
    tracker: Any
    checkpoints: RunCheckpoints
    eval_key: jax.Array
    rows: List[Dict[str, Any]] = dataclasses.field(default_factory=list)  # its log so far
    log: Optional[RunLog] = None
    best: Any = None  # early stopping: the params of the best validation check
    diverged: Optional[Dict[str, Any]] = None  # its outcome, once its loss is not finite
    stopped_at: Optional[int] = None  # early stopping: the step it stopped at

    @property
    def training(self) -> bool:
        return self.diverged is None and self.stopped_at is None


def _saved(state: Any, best: Any, stopping: bool) -> Any:
    """What a run's checkpoint holds: its state, and with early stopping its best params."""
    return WithBest(state, best) if stopping else state


def _restore(runs: List[_Run], states: List[Any], stopping: bool) -> List[Any]:
    """Each run's newest checkpoint at or below the newest step that all runs have (a kill
    during the runs' saves can leave some one checkpoint behind); if they still disagree, all
    start again from step 0. Sets each run's rows (and best params); returns the states."""
    newest = [run.checkpoints.latest() for run in runs]
    limit = None if None in newest else min(newest)
    fresh = [_saved(s, s.params, stopping) for s in states]
    restored = [run.checkpoints.restore(saved, max_step=limit if limit is not None else -1)
                for run, saved in zip(runs, fresh)]
    state_of = lambda saved: saved.state if stopping else saved
    if len({int(state_of(saved).step) for saved, _ in restored}) > 1:
        log.warning("the grid's runs have no common checkpoint step: training again from step 0")
        restored = [(saved, []) for saved in fresh]
    for run, (saved, rows) in zip(runs, restored):
        run.rows = rows
        run.best = saved.best if stopping else None
    return [state_of(saved) for saved, _ in restored]


def _train_and_evaluate(cfgs: Sequence[DictConfig], run_dirs: Sequence[str],
                        hashes: Sequence[str], trackers: Sequence[Any]) -> List[Dict[str, Any]]:
    """The body of `run_grid`: returns each run's metrics to add to metrics.json (and
    reports each run's scalars to its tracker)."""
    start = time.perf_counter()
    cfg = cfgs[0]  # the shared structure
    source: DataSource = instantiate(cfg.data)
    train_split, test_split = source.load()
    stopping = cfg.train.early_stopping
    valid_split = source.load_validation() if stopping.patience is not None else None
    model = build_model(cfg)
    example = jnp.zeros((1,) + train_split.images.shape[1:], jnp.float32)
    n_train = len(train_split.images)
    steps = total_steps(cfg.train, n_train)

    runs, states = [], []
    for c, run_dir, config_hash, tracker in zip(cfgs, run_dirs, hashes, trackers):
        init_key, eval_key = jax.random.split(jax.random.PRNGKey(c.seed))
        states.append(create_state(model, make_optimizer(c.train, n_train),
                                   instantiate(c.objective), example, init_key))
        runs.append(_Run(c, run_dir, tracker, RunCheckpoints(
            run_dir, config_hash, cfg.train.checkpoint_every, cfg.train.keep_checkpoints),
            eval_key))
    states = _restore(runs, states, valid_split is not None)
    resumed_from = int(states[0].step)
    for run in runs:  # a run that stopped before a kill stays stopped
        if valid_split is not None and early_stopping.stopped(run.rows, stopping.patience,
                                                              stopping.start_step):
            run.stopped_at = run.rows[-1]["step"]
    # The K optimisers differ only in the learning rate, which lives in the state: share one.
    state = stack([s.replace(tx=states[0].tx) for s in states])
    step = make_train_step(cfg.train.batch_size, cfg.data.binarization)
    with contextlib.ExitStack() as exits:
        for run in runs:
            run.log = exits.enter_context(RunLog(run.run_dir, steps, resumed_from,
                                                 cfg.train.tensorboard, run.tracker, run.rows))
        preempted = exits.enter_context(preemption.deferred(cfg.train.log_every))
        images, weights = (jax.device_put(a) for a in (train_split.images, train_split.weights))
        batching = grid_batching(cfg.train.grid_batching, step, state, images, weights)
        chunks = train(state, step, images, steps, cfg.train.log_every,
                       examples_per_step(cfg.train, n_train), batching, weights,
                       compile_options(cfg))
        for state, new_rows in (chunks if any(run.training for run in runs) else ()):
            for i, (run, row) in enumerate(zip(runs, new_rows)):
                if run.training:
                    _chunk_done(run, row, unstack(state, i), steps, valid_split)
            if not any(run.training for run in runs):
                break
            if preempted.requested:  # SLURM's time-out or preemption: save now, then requeue
                for i, run in enumerate(runs):
                    if run.training:
                        run.checkpoints.save(_saved(unstack(state, i), run.best,
                                                    valid_split is not None),
                                             run.rows, final=True)
                break
            preempted.chunk_done()
        for run in runs:
            run.checkpoints.close()
        preempted.release()  # requeues and exits if the signal came (evaluation comes after)
        train_seconds = time.perf_counter() - start

        results = []
        for i, run in enumerate(runs):
            if run.diverged is not None:
                results.append({**run.diverged, "resumed_from": resumed_from})
                continue
            params = run.best if valid_split is not None else unstack(state, i).params
            try:  # one run's failure stays in that run
                result = _evaluate(run.cfg, source, run.run_dir, state.apply_fn, params,
                                   train_split, test_split, run.eval_key)
            except Exception as e:
                log.exception("%s: evaluation failed", run.run_dir)
                results.append(_failed(e))
                continue
            ran = run.stopped_at or steps
            run.log.test(result["test"], ran)
            if valid_split is not None:
                result["early_stopping"] = early_stopping.summary(run.rows, run.stopped_at)
            results.append({**result, "steps": ran, "resumed_from": resumed_from,
                            "train_seconds": train_seconds,
                            "images_per_s": run.rows[-1]["images_per_s"]})
    return results


def _chunk_done(run: _Run, row: Dict[str, Any], state: Any, steps: int,
                valid_split: Optional[Split]) -> None:
    """A training run's new log row: logged, checked (a loss that is not finite ends the run
    as diverged; early stopping checks the validation ELBO), and checkpointed."""
    stopping = run.cfg.train.early_stopping
    if valid_split is not None:
        row[VALID_ELBO] = early_stopping.validation_elbo(
            state.apply_fn, state.params, valid_split, jax.random.fold_in(run.eval_key, 4),
            run.cfg.eval.batch_size, run.cfg.data.binarization)
    run.rows.append(row)
    write_train_log(run.run_dir, run.rows)
    run.log.train(row)
    if not math.isfinite(row["loss"]):
        log.error("%s: loss is %s at step %d: stopping", run.run_dir, row["loss"], row["step"])
        run.diverged = {"status": Status.DIVERGED, "steps": row["step"],
                        "non_finite": [q for q in ("loss", "rate", "distortion")
                                       if not math.isfinite(row[q])]}
        return
    if valid_split is not None:
        if early_stopping.improved(run.rows):
            run.best = state.params
        if early_stopping.stopped(run.rows, stopping.patience, stopping.start_step):
            run.stopped_at = row["step"]
            log.info("%s: validation ELBO has not improved for %d checks: stopping at step %d",
                     run.run_dir, stopping.patience + 1, row["step"])
    run.checkpoints.save(_saved(state, run.best, valid_split is not None), run.rows,
                         final=row["step"] == steps or run.stopped_at is not None)


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
