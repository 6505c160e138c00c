"""Test helpers shared by several test files."""

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import threading

import jax
import jax.numpy as jnp
import numpy as np
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from rdsweep.experiment import build_model
from rdsweep.train import create_state, make_optimizer

# A cheap run of the default MLP model (on real data in the slow tier).
TINY = ["train.steps=300", "train.log_every=100", "eval.iwae_samples=2",
        "eval.train_examples=0", "eval.batch_size=1000", "eval.image_examples=2"]
# Small synthetic images and a small MLP: a run whose compilation and training take seconds.
SMALL_MODEL = ["data=synthetic", "data.image_shape=[12,12,1]", "data.train_examples=500",
               "data.test_examples=100", "latent_dim=4", "encoder.hidden=[32]",
               "decoder.hidden=[32]"]


def rdsweep(*args, cwd, timeout=600):
    """Runs the rdsweep command in a subprocess; returns the CompletedProcess (text output)."""
    return subprocess.run([sys.executable, "-m", "rdsweep", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout)


def rdsweep_here(*args, cwd):
    """The rdsweep command run in this process, as rdsweep(*args, cwd=cwd) runs it in a new one,
    without the interpreter's start-up: for launches whose test reads the exit code and the
    printed and logged lines, not main.log, exit handlers or anything else of a process's end.
    Hydra leaves pytest's logging alone (its logging configs `none`: its own would close
    pytest's handlers); the log's lines go to stdout, as a process's console prints them.
    Returns a CompletedProcess (exit code, printed text)."""
    from rdsweep import console, main

    out, err, argv, here = io.StringIO(), io.StringIO(), sys.argv, os.getcwd()
    # what the command sets up for its process, given back to pytest afterwards
    kept = threading.excepthook, sys.unraisablehook, logging.raiseExceptions
    root, level = logging.getLogger(), logging.getLogger().level
    log = logging.StreamHandler(out)  # the console's, as conf/config.yaml's job_logging sets it
    log.setFormatter(console.ConsoleFormatter("[%(asctime)s][%(name)s][%(levelname)s] - "
                                              "%(message)s"))
    log.addFilter(console.OwnRecords())
    root.addHandler(log)
    root.setLevel(logging.INFO)
    code = 0
    quiet = ["hydra/job_logging=none", "hydra/hydra_logging=none"]  # beside the other overrides
    sys.argv = ["rdsweep", *((*quiet, *args) if args[0][0] != "-" else (*args, *quiet))]
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main.main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
    finally:
        sys.argv = argv
        os.chdir(here)
        GlobalHydra.instance().clear()
        root.removeHandler(log)
        root.setLevel(level)
        threading.excepthook, sys.unraisablehook, logging.raiseExceptions = kept
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def initial_state(cfg, images):
    """The run's TrainState before step 0 (key 0), its optimizer sized for these train images."""
    return create_state(build_model(cfg), make_optimizer(cfg.train, len(images)),
                        instantiate(cfg.objective), np.zeros((1,) + images.shape[1:], np.float32),
                        jax.random.PRNGKey(0))


def read(path):
    with open(path) as f:
        return json.load(f)


def random_variables(module, *inputs, seed=0):
    """Random variables of the shapes module.init would make (no init to compile: fast); kernels
    scaled by 1/sqrt(fan-in), biases nonzero."""
    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), *inputs)
    rng = np.random.default_rng(seed)

    def draw(leaf):
        fan_in = int(np.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 1
        return jnp.asarray(rng.normal(size=leaf.shape) / np.sqrt(fan_in), leaf.dtype)

    return jax.tree_util.tree_map(draw, shapes)
