"""Faults: a run killed with SIGKILL resumes to the same result, damaged checkpoints are
skipped, a full disk never damages metrics.json, an exception is recorded as a failed run."""

import errno
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from helpers import SMALL_MODEL, TINY, rdsweep, read
from rdsweep import experiment
from rdsweep.outputs import write_metrics

# Long enough to be killed between checkpoints; every 100 steps a checkpoint.
RESUMABLE = [*SMALL_MODEL, *TINY, "train.steps=600", "train.checkpoint_every=100",
             "train.keep_checkpoints=3"]


def _same_results(a, b):
    """metrics.json of two runs: identical results (timings and resume step aside)."""
    for m in (a, b):
        for key in ("seconds", "train_seconds", "images_per_s", "resumed_from"):
            m.pop(key)
    assert a == b


def _curve(run_dir):
    """train_log.csv without its timing columns."""
    lines = (run_dir / "train_log.csv").read_text().splitlines()
    return [",".join(line.split(",")[:5]) for line in lines]  # step, loss, rate, distortion, elbo


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run."""
    out = tmp_path_factory.mktemp("reference") / "run"
    p = rdsweep(f"hydra.run.dir={out}", *RESUMABLE, cwd=out.parent)
    assert p.returncode == 0, p.stderr
    return out


def test_sigkill_then_resume_gives_identical_metrics(reference, tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "rdsweep", f"hydra.run.dir={out}",
            *RESUMABLE]
    job = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (out / "checkpoints" / "200").exists():  # a finished checkpoint, mid-run
        assert job.poll() is None and time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    job.send_signal(signal.SIGKILL)
    job.wait()
    assert not (out / "metrics.json").exists()  # killed before the end

    again = rdsweep(f"hydra.run.dir={out}", *RESUMABLE, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    resumed = read(out / "metrics.json")
    assert 200 <= resumed["resumed_from"] < 600
    _same_results(resumed, read(reference / "metrics.json"))
    assert _curve(out) == _curve(reference)


def _damage(checkpoint):
    """Truncates every array file of a checkpoint (as a disk fault or a torn copy would)."""
    files = [os.path.join(d, f) for d, _, fs in os.walk(checkpoint / "state") for f in fs]
    for path in files:
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)


@pytest.mark.slow  # two more runs
@pytest.mark.parametrize("damaged,resumed_from", [(1, 400), (2, 0)], ids=["newest", "all"])
def test_damaged_checkpoints_are_skipped_with_a_warning(damaged, resumed_from, reference,
                                                         tmp_path):
    """A run stopped after its step-500 checkpoint, whose newest (or every) checkpoint is
    damaged, resumes from the previous good one (or from scratch, with a warning) and still
    ends exactly as the uninterrupted run."""
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    os.remove(out / "metrics.json")
    shutil.rmtree(out / "checkpoints" / "600")
    for step in (400, 500)[-damaged:]:
        _damage(out / "checkpoints" / str(step))

    again = rdsweep(f"hydra.run.dir={out}", *RESUMABLE, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    logged = again.stdout + again.stderr
    assert logged.count("is unreadable") == damaged, logged
    assert ("no readable checkpoint left" in logged) == (resumed_from == 0)
    resumed = read(out / "metrics.json")
    assert resumed["resumed_from"] == resumed_from
    _same_results(resumed, read(reference / "metrics.json"))
    assert _curve(out) == _curve(reference)


def test_checkpoints_of_another_config_are_refused(reference, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    os.remove(out / "metrics.json")
    p = rdsweep(f"hydra.run.dir={out}", *RESUMABLE, "beta=2",
                cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines()[-1].startswith("rdsweep: error: hydra.run.dir=")
    assert "holds checkpoints of another config" in p.stderr
    assert not (out / "metrics.json").exists()


def test_full_disk_while_writing_metrics_keeps_the_old_file(tmp_path, monkeypatch):
    write_metrics(str(tmp_path), {"status": "completed", "test": {"elbo": -90.0}})
    before = (tmp_path / "metrics.json").read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError):
        write_metrics(str(tmp_path), {"status": "completed", "test": {"elbo": -80.0}})
    assert (tmp_path / "metrics.json").read_bytes() == before
    assert os.listdir(tmp_path) == ["metrics.json"]  # no temporary file left behind


def test_an_exception_is_recorded_as_a_failed_run(make_cfg, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("evaluation broke\nsecond line")

    monkeypatch.setattr(experiment, "evaluate", broken)
    cfg = make_cfg(*SMALL_MODEL, "train.steps=20", "train.log_every=10",
                   "train.checkpoint_every=0")
    with pytest.raises(RuntimeError):
        experiment.run(cfg, str(tmp_path))
    metrics = read(tmp_path / "metrics.json")
    assert metrics["status"] == "failed"
    assert metrics["error"] == "RuntimeError: evaluation broke"
    assert os.listdir(tmp_path / "checkpoints") == ["20"]  # the final state is kept
