"""One run, end to end: config -> data -> model -> objective -> training -> evaluation -> outputs."""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any, Dict

import jax
import jax.numpy as jnp
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rdsweep import config as config_lib
from rdsweep.checkpoints import RunCheckpoints
from rdsweep.config import ConfigError
from rdsweep.evaluate import evaluate
from rdsweep.images import save_images
from rdsweep.input_pipeline import load_split, prepare_batch
from rdsweep.models import VAE
from rdsweep.outputs import IMAGES, RunLog, write_metrics, write_train_log
from rdsweep.train import create_state, make_optimizer, make_train_step, total_steps, train

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
    start = time.perf_counter()
    metrics: Dict[str, Any] = {"config_hash": config_lib.config_hash(cfg),
                               "config": OmegaConf.to_container(config_lib.job_config(cfg))}
    try:
        metrics.update(_train_and_evaluate(cfg, run_dir, metrics["config_hash"]))
    except ConfigError:
        raise  # the folder belongs to another config: write nothing into it
    except Exception as e:
        metrics.update(status="failed", error=f"{type(e).__name__}: {e}".splitlines()[0])
        raise
    finally:
        if "status" in metrics:
            metrics["seconds"] = time.perf_counter() - start
            write_metrics(run_dir, metrics)
    return metrics


def _train_and_evaluate(cfg: DictConfig, run_dir: str, config_hash: str) -> Dict[str, Any]:
    """The body of `run`: returns the metrics to add to metrics.json."""
    start = time.perf_counter()
    data = cfg.data
    train_images = load_split(data.train_split, data)
    test_images = load_split(data.test_split, data)

    init_key, eval_key = jax.random.split(jax.random.PRNGKey(cfg.seed))
    model = build_model(cfg)
    objective = instantiate(cfg.objective)
    example = jnp.zeros((1,) + train_images.shape[1:], jnp.float32)
    n_train = len(train_images)
    state = create_state(model, make_optimizer(cfg.train, n_train), example, init_key)
    step = make_train_step(objective, cfg.train.batch_size, data.binarization)
    steps = total_steps(cfg.train, n_train)

    checkpoints = RunCheckpoints(run_dir, config_hash, cfg.train.checkpoint_every,
                                 cfg.train.keep_checkpoints)
    state, rows = checkpoints.restore(state)
    resumed_from = int(state.step)
    with RunLog(run_dir, steps, resumed_from, cfg.train.tensorboard) as run_log:
        for state, row in train(state, step, jax.device_put(train_images), steps,
                                cfg.train.log_every, cfg.train.batch_size):
            rows.append(row)
            write_train_log(run_dir, rows)
            run_log.train(row)
            if not math.isfinite(row["loss"]):
                log.error("loss is %s at step %d: stopping", row["loss"], row["step"])
                checkpoints.close()
                return {"status": "diverged", "steps": row["step"], "resumed_from": resumed_from}
            checkpoints.save(state, rows, final=row["step"] == steps)
        checkpoints.close()
        train_seconds = time.perf_counter() - start

        ev = lambda images, key: evaluate(state.apply_fn, state.params, images, key,
                                          cfg.eval.iwae_samples, cfg.eval.batch_size,
                                          data.binarization)
        test = ev(test_images, jax.random.fold_in(eval_key, 0))
        train_eval = (ev(train_images[:cfg.eval.train_examples], jax.random.fold_in(eval_key, 1))
                      if cfg.eval.train_examples else None)
        estimator = test.pop("rate_estimator")
        if train_eval:
            train_eval.pop("rate_estimator")
        run_log.test(test, steps)
    if cfg.eval.image_examples:
        n = cfg.eval.image_examples
        x = prepare_batch(jnp.asarray(test_images[:n]), jax.random.fold_in(eval_key, 2),
                          data.binarization)
        save_images(os.path.join(run_dir, IMAGES), state.apply_fn, state.params, x,
                    jax.random.fold_in(eval_key, 3))
    log.info("test: R %.2f  D %.2f  ELBO %.2f  IWAE(k=%d) %.2f nats  (rate: %s)", test["rate"],
             test["distortion"], test["elbo"], cfg.eval.iwae_samples, test["iwae"], estimator)
    return {"status": "completed", "steps": int(state.step), "resumed_from": resumed_from,
            "rate_estimator": estimator, "test": test, "train": train_eval,
            "train_seconds": train_seconds, "images_per_s": rows[-1]["images_per_s"]}
