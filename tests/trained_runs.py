"""Tiny trained runs shared by the tests of load_run, rdsweep-eval and rdsweep-sample."""

import fcntl
import os
import shutil

import numpy as np
from scipy.special import logsumexp

from rdsweep import experiment

# 4x4 bars with noise and a 2-d latent: log p(x) is a 2-d integral that quadrature computes.
PLANE_MODEL = ["data=synthetic", "data.image_shape=[4,4,1]", "data.noise=0.05",
               "data.train_examples=500", "data.test_examples=40", "latent_dim=2",
               "encoder.hidden=[16]", "decoder.hidden=[16]", "train.steps=400",
               "train.log_every=200", "train.checkpoint_every=200",  # kept: steps 200 and 400
               "eval.iwae_samples=8", "eval.batch_size=16",
               "eval.train_examples=24", "eval.image_examples=0",
               "train.tensorboard=false"]


def trained(make_cfg, folder, *overrides):
    """The folder of a run of PLANE_MODEL (+ overrides) trained once per test session under
    folder (later calls reuse it). xdist workers that ask for the same folder at once wait for
    the one that trains it (a lock file beside it)."""
    with open(folder + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.isfile(os.path.join(folder, "metrics.json")):
            shutil.rmtree(folder, ignore_errors=True)
            experiment.run(make_cfg(*PLANE_MODEL, *overrides), folder)
    return folder


def copy_run(run_dir, tmp_path):
    """A copy of a run folder that a test may write into."""
    return shutil.copytree(run_dir, os.path.join(tmp_path, os.path.basename(run_dir)))


def exact_log_likelihood(run, x, step=0.02):
    """log p(x) (B,) of a run with a 2-d latent, m = N(0, I) and Bernoulli pixels, by
    quadrature over [-6, 6]^2 in numpy: log sum_grid m(z) d(x|z) step^2."""
    grid = np.arange(-6, 6, step) + step / 2
    z = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    logits = np.asarray(run.decode(z).logits, np.float64).reshape(len(z), -1)
    xf = np.asarray(x, np.float64).reshape(len(x), -1)
    log_d = xf @ logits.T - np.logaddexp(0, logits).sum(-1)
    log_m = -0.5 * (z ** 2).sum(-1) - np.log(2 * np.pi)
    return logsumexp(log_d + log_m, axis=1) + 2 * np.log(step)
