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
from rdsweep.evaluate import evaluate
from rdsweep.images import save_images
from rdsweep.input_pipeline import load_split, prepare_batch
from rdsweep.models import VAE
from rdsweep.outputs import IMAGES, write_metrics, write_train_log
from rdsweep.train import create_state, make_optimizer, make_train_step, total_steps, train

log = logging.getLogger(__name__)


def build_model(cfg: DictConfig) -> VAE:
    """The VAE of the configured encoder, decoder and marginal options."""
    build = lambda node: instantiate(node, _convert_="all")
    return VAE(encoder=build(cfg.encoder), decoder=build(cfg.decoder),
               marginal=build(cfg.marginal))


def run(cfg: DictConfig, run_dir: str) -> Dict[str, Any]:
    """Trains and evaluates one model; writes train_log.csv and metrics.json into run_dir."""
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

    metrics: Dict[str, Any] = {"config_hash": config_lib.config_hash(cfg),
                               "config": OmegaConf.to_container(config_lib.job_config(cfg))}
    rows = []
    for state, row in train(state, step, jax.device_put(train_images),
                            total_steps(cfg.train, n_train),
                            cfg.train.log_every, cfg.train.batch_size):
        rows.append(row)
        write_train_log(run_dir, rows)
        if not math.isfinite(row["loss"]):
            log.error("loss is %s at step %d: stopping", row["loss"], row["step"])
            metrics.update(status="diverged", steps=row["step"],
                           seconds=time.perf_counter() - start)
            write_metrics(run_dir, metrics)
            return metrics
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
    if cfg.eval.image_examples:
        n = cfg.eval.image_examples
        x = prepare_batch(jnp.asarray(test_images[:n]), jax.random.fold_in(eval_key, 2),
                          data.binarization)
        save_images(os.path.join(run_dir, IMAGES), state.apply_fn, state.params, x,
                    jax.random.fold_in(eval_key, 3))
    metrics.update(status="completed", steps=int(state.step), rate_estimator=estimator,
                   test=test, train=train_eval, train_seconds=train_seconds,
                   seconds=time.perf_counter() - start,
                   images_per_s=rows[-1]["images_per_s"])
    write_metrics(run_dir, metrics)
    log.info("test: R %.2f  D %.2f  ELBO %.2f  IWAE(k=%d) %.2f nats  (rate: %s)", test["rate"],
             test["distortion"], test["elbo"], cfg.eval.iwae_samples, test["iwae"], estimator)
    return metrics
