"""tracker=mlflow against a real local MLflow store (sqlite), read back through MLflow's client
and checked against the runs' own records (train_log.csv, metrics.json, the command line);
tracker=none, a failing store, bad input, and the tracker outside a run's identity."""

import csv
import logging
import os
import subprocess
import sys

import mlflow  # the test extra installs rdsweep[mlflow]
import mlflow.artifacts
import pytest
from hydra.errors import ConfigCompositionException

from helpers import SMALL_MODEL, rdsweep, read
from rdsweep import identity
from rdsweep import experiment
from rdsweep.console import BAD_INPUT
from rdsweep.validation import validate
from rdsweep.options.trackers import MlflowTracker
from rdsweep.outputs import RunLog

QUICK = ["train.steps=40", "train.log_every=20", "eval.iwae_samples=2",
         "eval.train_examples=0", "eval.batch_size=100", "eval.image_examples=2"]
RUN_FILES = {"checkpoints", "images.png", "metrics.json", "tensorboard", "train_log.csv"}


def _store(tmp_path):
    return [f"tracker.uri=sqlite:///{tmp_path / 'mlflow.db'}",
            f"tracker.artifact_location={tmp_path / 'artifacts'}"]


def _pairs(args):
    return dict(a.partition("=")[::2] for a in args)


@pytest.mark.slow  # a sweep in a subprocess, with MLflow
def test_a_grid_sweep_logs_one_child_run_per_job(tmp_path):
    sweep = tmp_path / "sweep"
    common = [*SMALL_MODEL, *QUICK]
    p = rdsweep("-m", "seed=0,1", *common, "hydra/launcher=grid", "tracker=mlflow",
                *_store(tmp_path), f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("rdsweep").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {r.info.run_name: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert len(parents) == 1 and parents[0].data.tags["rdsweep.sweep"] == str(sweep)
    subdirs = sorted(d for d in os.listdir(sweep) if os.path.isdir(sweep / d / ".hydra"))
    assert sorted(children) == subdirs and len(subdirs) == 2
    assert not any("tracker" in d for d in subdirs)  # where results go does not name a run

    for subdir, run in children.items():
        run_dir = sweep / subdir
        metrics = read(run_dir / "metrics.json")
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert run.data.tags["rdsweep.run_dir"] == str(run_dir) and run.info.status == "FINISHED"
        assert run.data.params == _pairs(common + [f"seed={metrics['config']['seed']}"])
        with open(run_dir / "train_log.csv") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 2
        for key in ("rate", "distortion", "elbo"):
            history = client.get_metric_history(run.info.run_id, f"train/{key}")
            assert sorted((m.step, m.value) for m in history) == [
                (int(row["step"]), float(row[key])) for row in rows]
        for key in ("rate", "distortion", "elbo", "iwae"):
            assert run.data.metrics[f"test/{key}"] == metrics["test"][key]
        assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"images.png",
                                                                            "metrics.json"}
        copy = mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path="metrics.json", dst_path=str(tmp_path / subdir),
            tracking_uri=client.tracking_uri)
        assert read(copy) == metrics


def test_a_resumed_run_logs_its_whole_learning_curve(tmp_path):
    """A single run (no sweep, no Hydra record) resumed at step 20: its new MLflow run gets the
    rows restored from the checkpoint first, then the new ones."""
    rows = [{"step": s, "loss": 9.0 - s / 10, "rate": s / 10, "distortion": 9.0,
             "elbo": s / 10 - 9.0, "images_per_s": 100.0 + s} for s in (10, 20, 30)]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(str(run_dir), uri, "resumed", str(tmp_path / "artifacts"))
    with RunLog(str(run_dir), steps=30, start_step=20, tensorboard=False, tracker=tracker,
                rows=rows[:2]) as log:
        log.train(rows[2])
    tracker.finish({"status": "diverged"})
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("resumed").experiment_id])
    for key in ("loss", "rate", "distortion", "elbo", "images_per_s"):
        history = client.get_metric_history(run.info.run_id, f"train/{key}")
        assert sorted((m.step, m.value) for m in history) == [(r["step"], r[key]) for r in rows]
    assert run.info.run_name == "run" and run.data.params == {}
    assert "mlflow.parentRunId" not in run.data.tags
    assert run.info.status == "FAILED" and run.data.tags["rdsweep.status"] == "diverged"


@pytest.fixture(scope="module")
def quick_run(make_cfg, tmp_path_factory):
    """run(tracker overrides) -> (run folder, metrics), a tiny run in a fresh working directory."""
    def run(*tracker):
        work = tmp_path_factory.mktemp("work")
        cfg = make_cfg(*SMALL_MODEL, *QUICK, *tracker)
        validate(cfg)
        cwd = os.getcwd()
        os.chdir(work)
        try:
            return work, experiment.run(cfg, str(work / "run"))
        finally:
            os.chdir(cwd)

    return run


def test_tracker_none_writes_nothing_else(quick_run):
    work, metrics = quick_run()
    assert metrics["status"] == "completed"
    assert os.listdir(work) == ["run"] and set(os.listdir(work / "run")) == RUN_FILES


def test_an_unreachable_store_costs_the_run_nothing_but_one_warning(quick_run, monkeypatch,
                                                                    caplog):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail at once, not in minutes
    with caplog.at_level(logging.WARNING, logger="rdsweep.options.trackers"):
        work, metrics = quick_run("tracker=mlflow", "tracker.uri=http://127.0.0.1:9")
    assert metrics["status"] == "completed" and read(work / "run" / "metrics.json") == metrics
    warnings = [r.getMessage() for r in caplog.records if r.name == "rdsweep.options.trackers"]
    assert len(warnings) == 1 and "tracker=mlflow failed, the run goes on without it" in (
        warnings[0]) and "\n" not in warnings[0], warnings


def test_unknown_tracker_lists_the_valid_ones(make_cfg):
    with pytest.raises(ConfigCompositionException, match="Available options in 'tracker'"):
        make_cfg("tracker=wandb")


def test_a_missing_uri_is_named_in_one_line(make_cfg):
    with pytest.raises(BAD_INPUT, match=r"^tracker.uri=None is invalid: tracker=mlflow "
                                                  r"needs a tracking store, e.g. "
                                                  r"tracker.uri=sqlite:///mlflow.db$"):
        validate(make_cfg("data=synthetic", "tracker=mlflow"))


def test_mlflow_absent_fails_at_start_with_one_line(tmp_path):
    out = tmp_path / "out"
    p = subprocess.run(  # the rdsweep command where `import mlflow` finds nothing
        [sys.executable, "-c", "import sys; sys.modules['mlflow'] = None; "
         "from rdsweep.main import main; main()", "data=synthetic", "tracker=mlflow",
         "tracker.uri=sqlite:///mlflow.db", f"hydra.run.dir={out}"],
        cwd=tmp_path, text=True, capture_output=True, timeout=300)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "rdsweep: error: tracker=mlflow needs pip install 'rdsweep[mlflow]'"], p.stderr
    assert os.listdir(tmp_path) == []  # nothing written, not even Hydra's folder


@pytest.mark.parametrize("overrides", [[], ["data=synthetic", "beta=0.5"], ["family=-+v"]],
                         ids=lambda o: " ".join(o) or "default")
def test_the_tracker_is_outside_a_runs_identity(overrides, make_cfg):
    plain = identity.config_hash(make_cfg(*overrides))
    assert identity.config_hash(make_cfg(*overrides, "tracker=mlflow", "tracker.uri=x",
                                         "tracker.experiment=y")) == plain
