"""Early stopping (train.early_stopping): the stopping rule against hand-worked sequences, and a
small synthetic run that stops, reports its best check's model, and resumes bitwise from an
earlier checkpoint to the same result."""

import os
import shutil

import jax
import pytest
from hydra.utils import instantiate

import rdsweep
from helpers import SMALL_MODEL
from rdsweep import early_stopping, experiment
from rdsweep.option import ConfigError
from rdsweep import registry
from rdsweep.outputs import VALID_ELBO


def rows(values, start=1):
    return [{"step": step, VALID_ELBO: v} for step, v in enumerate(values, start)]


@pytest.mark.parametrize("values,patience,start_step,stops", [
    ([1, 2, 3, 4], 0, 0, False),  # always improving
    ([1, 2, 2], 0, 0, True),  # one check without improvement is more than 0
    ([1, 2, 1, 1], 1, 0, True),
    ([1, 2, 1, 3, 1], 1, 0, False),  # an improvement starts the count again
    ([1, 0, 0, 0, 0], 1, 5, False),  # checks before start_step do not count
    ([1, 0, 0, 0, 0, 0], 1, 5, True),  # steps 5 and 6 count: 2 > 1
])
def test_the_stopping_rule(values, patience, start_step, stops):
    assert early_stopping.stopped(rows(values), patience, start_step) == stops


def test_improved_and_summary():
    assert early_stopping.improved(rows([1, 3]))
    assert not early_stopping.improved(rows([3, 3]))  # a tie is no improvement
    assert not early_stopping.improved(rows([3, 1]))
    assert early_stopping.summary(rows([1, 3, 3, 2]), 4) == {
        "best_step": 2, "best_valid_elbo": 3, "stopped_at": 4}  # the first of the best


SETUP = [*SMALL_MODEL, "data.validation_examples=200", "train.steps=400",
         "train.log_every=10", "train.lr=0.03", "train.checkpoint_every=10",
         "train.keep_checkpoints=100", "train.early_stopping.patience=2",
         "train.early_stopping.start_step=50", "eval.iwae_samples=2", "eval.train_examples=0",
         "eval.image_examples=0", "train.tensorboard=false"]


def test_early_stopping_needs_a_validation_split(make_cfg):
    cfg = make_cfg(*SETUP, "data.validation_examples=0")
    with pytest.raises(ConfigError, match="train.early_stopping.patience=2 is invalid: "
                                          "needs a validation split"):
        registry.check(cfg)


@pytest.fixture(scope="module")
def stopped_run(make_cfg, tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("stopped") / "run")
    cfg = make_cfg(*SETUP)
    return cfg, run_dir, experiment.run(cfg, run_dir)


def test_a_run_stops_and_reports_its_best_check(stopped_run):
    cfg, run_dir, metrics = stopped_run
    log = [r for r in _read_log(run_dir)]
    summary = metrics["early_stopping"]
    assert summary["stopped_at"] is not None and summary["stopped_at"] < 400
    assert metrics["steps"] == summary["stopped_at"] == log[-1]["step"]
    assert early_stopping.stopped(log, 2, 50)
    assert not early_stopping.stopped(log[:-1], 2, 50)  # it stopped at the first chance
    best = max(log, key=lambda r: r[VALID_ELBO])
    assert (summary["best_step"], summary["best_valid_elbo"]) == (best["step"],
                                                                  best[VALID_ELBO])
    assert summary["best_step"] < summary["stopped_at"]


def test_load_run_gives_the_best_checks_model(stopped_run):
    """The loaded model is the best check's, not the last step's: its validation ELBO, on the
    checks' split and key, is the best check's."""
    cfg, run_dir, metrics = stopped_run
    run = rdsweep.load_run(run_dir)
    source = instantiate(cfg.data)
    eval_key = jax.random.split(jax.random.PRNGKey(cfg.seed))[1]
    elbo = early_stopping.validation_elbo(run.apply_fn, run.params, source.load_validation(),
                                          jax.random.fold_in(eval_key, 4), cfg.eval.batch_size,
                                          cfg.data.binarization)
    assert elbo == pytest.approx(metrics["early_stopping"]["best_valid_elbo"], abs=1e-4)
    last = _read_log(run_dir)[-1][VALID_ELBO]
    assert abs(elbo - last) > 1e-3  # the last check was not the best


def test_a_resumed_run_stops_at_the_same_step_with_the_same_result(stopped_run, tmp_path):
    cfg, run_dir, metrics = stopped_run
    resumed = str(tmp_path / "run")
    shutil.copytree(run_dir, resumed)
    cut = metrics["early_stopping"]["best_step"] - 10  # before the best check
    for name in os.listdir(os.path.join(resumed, "checkpoints")):
        if name.isdigit() and int(name) > cut:
            shutil.rmtree(os.path.join(resumed, "checkpoints", name))
    for name in ("metrics.json", "train_log.csv"):
        os.remove(os.path.join(resumed, name))
    again = experiment.run(cfg, resumed)
    assert again["resumed_from"] == cut
    assert again["early_stopping"] == metrics["early_stopping"]
    assert again["test"] == metrics["test"]  # bitwise


def _read_log(run_dir):
    import csv
    with open(os.path.join(run_dir, "train_log.csv")) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
