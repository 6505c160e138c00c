"""Sweeps through Hydra's launchers: parallel jobs, re-launch after an interruption, failure
isolation, and the report at the sweep's end."""

import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from helpers import SMALL_MODEL, TINY, rdsweep, read
from rdsweep import sweep

SMALL = [*SMALL_MODEL, *TINY, "train.steps=100", "train.log_every=50",
         "train.checkpoint_every=50"]


def _runs(sweep_dir):
    return sorted(d for d in os.listdir(sweep_dir) if os.path.isdir(sweep_dir / d)
                  and d != "report" and not d.startswith("."))


def _table_matches_runs(sweep_dir, expected_runs):
    """report/results.csv has one row per run, each with that run's own numbers."""
    table = pd.read_csv(sweep_dir / "report" / "results.csv").set_index("run")
    assert sorted(table.index) == sorted(expected_runs)
    for run in expected_runs:
        metrics = read(sweep_dir / run / "metrics.json")
        assert table.loc[run, "status"] == metrics["status"]
        if metrics["status"] == "completed":
            for key in ("rate", "distortion", "elbo", "iwae"):
                assert table.loc[run, key] == pytest.approx(metrics["test"][key], rel=1e-12)
            assert table.loc[run, "beta"] == metrics["config"]["beta"]
    for png in ("rd_plane.png", "skew.png"):
        assert (sweep_dir / "report" / png).stat().st_size > 1000


@pytest.mark.slow  # real launchers, 4 processes each
@pytest.mark.parametrize("launcher", [
    ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"],
], ids=["joblib", "submitit_local"])
def test_parallel_launchers_run_every_job_and_report(launcher, tmp_path):
    sweep_dir = tmp_path / "sweep"
    p = rdsweep("-m", *launcher, "beta=0.3,3", "seed=0,1", f"hydra.sweep.dir={sweep_dir}",
                *SMALL, cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    runs = [job["subdir"] for job in sweep.read_plan(str(sweep_dir))]
    assert len(runs) == 4 and set(_runs(sweep_dir)) == set(runs)
    assert all(read(sweep_dir / r / "metrics.json")["status"] == "completed" for r in runs)
    _table_matches_runs(sweep_dir, runs)
    by_beta = {read(sweep_dir / r / "metrics.json")["config"]["beta"]: r for r in runs}
    low, high = (read(sweep_dir / by_beta[b] / "metrics.json")["test"] for b in (0.3, 3))
    assert low["rate"] > high["rate"]  # each folder holds its own job's result


@pytest.mark.slow  # two 4-job sweeps
def test_relaunch_runs_only_the_unfinished_jobs(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["-m", "beta=0.5,2", "train.lr=0.001,1e30", f"hydra.sweep.dir={sweep_dir}",
            *SMALL]
    first = rdsweep(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    runs = _runs(sweep_dir)
    assert len(runs) == 4
    status = {r: read(sweep_dir / r / "metrics.json")["status"] for r in runs}
    diverged = [r for r in runs if read(sweep_dir / r / "metrics.json")["config"]["train"]["lr"] > 1]
    assert {status[r] for r in diverged} == {"diverged"}  # lr 1e30: NaN within a few steps
    assert all(read(sweep_dir / r / "metrics.json")["steps"] <= 50 for r in diverged)
    assert {status[r] for r in runs if r not in diverged} == {"completed"}
    _table_matches_runs(sweep_dir, runs)

    # An interrupted job: killed after its first checkpoint, before metrics.json.
    killed = next(r for r in runs if r not in diverged)
    expected = read(sweep_dir / killed / "metrics.json")
    os.remove(sweep_dir / killed / "metrics.json")
    shutil.rmtree(sweep_dir / killed / "checkpoints" / "100")
    kept = {r: (sweep_dir / r / "metrics.json").read_bytes() for r in runs if r != killed}

    again = rdsweep(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    log = again.stdout + again.stderr
    assert log.count("finished: skipped") == 3 and "resuming from the checkpoint at step 50" in log
    assert {r: (sweep_dir / r / "metrics.json").read_bytes() for r in kept} == kept
    resumed = read(sweep_dir / killed / "metrics.json")
    assert resumed["resumed_from"] == 50
    assert resumed["test"] == expected["test"]
    assert "4/4 runs finished (2 completed, 2 diverged)" in log


# The rdsweep command with a fault injected into the run of beta = 2.
FLAKY = """
import sys
from rdsweep import experiment, main
real = experiment._train_and_evaluate
def flaky(cfgs, *rest):
    if cfgs[0].beta == 2:
        raise RuntimeError("injected fault")
    return real(cfgs, *rest)
experiment._train_and_evaluate = flaky
main.main()
"""


@pytest.mark.slow  # a 2-job sweep
def test_an_exception_in_one_run_does_not_stop_the_sweep(tmp_path):
    """The other job still runs, the failed one says so in its metrics.json and the report,
    and the sweep exits 1."""
    sweep_dir = tmp_path / "sweep"
    p = subprocess.run([sys.executable, "-c", FLAKY, "-m", "beta=2,0.5",
                        f"hydra.sweep.dir={sweep_dir}", *SMALL],
                       cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert p.returncode == 1, p.stderr[-3000:]
    assert p.stderr.strip().splitlines()[-1].startswith(
        "rdsweep: error: 1 of 2 runs did not finish"), p.stderr[-3000:]
    runs = _runs(sweep_dir)
    metrics = {r.split(",")[0]: read(sweep_dir / r / "metrics.json") for r in runs}
    assert metrics["beta=2"]["status"] == "failed"
    assert metrics["beta=2"]["error"] == "RuntimeError: injected fault"
    assert metrics["beta=0.5"]["status"] == "completed"
    _table_matches_runs(sweep_dir, runs)


@pytest.mark.parametrize("cores,n_jobs,single_threaded", [
    (2, 2, True), (2, -1, True), (8, 2, False), (2, 1, False)])
def test_parallel_jobs_get_single_threaded_xla_when_cores_are_scarce(cores, n_jobs,
                                                                      single_threaded,
                                                                      monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
    flags = sweep.xla_flags(n_jobs)
    assert flags.startswith("--xla_dump_to=/tmp/x")  # the user's flags are kept
    assert ("--xla_cpu_multi_thread_eigen=false" in flags) == single_threaded
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true")
    assert sweep.xla_flags(n_jobs) == "--xla_cpu_multi_thread_eigen=true"  # the user's choice
