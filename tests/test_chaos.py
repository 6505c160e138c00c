"""Chaos: a 6-run sweep trained by 2 worker processes on one sweep folder (the per-run locks
share the jobs out), its workers SIGKILLed at random moments and one checkpoint corrupted,
relaunched until it completes, ends with every run's test metrics bitwise equal to an
undisturbed sweep's."""

import contextlib
import fcntl
import os
import random
import time

import pytest

from faults import flip_bytes, kill, largest_file, launch
from helpers import SMALL_MODEL, rdsweep, read
from rdsweep.checkpoints import DIGEST

# Enough steps that training, not start-up or evaluation, is most of a job's time: a kill then
# mostly lands in a run that has a checkpoint to resume from.
SWEEP = [*SMALL_MODEL, "train.steps=3000", "train.log_every=200", "train.checkpoint_every=200",
         "eval.iwae_samples=2", "eval.train_examples=0", "eval.image_examples=0",
         "train.tensorboard=false", "beta=0.5,1,2", "seed=0,1"]
KILLS = 4
DEADLINE = 600  # seconds; the test took 3.5 minutes on 2 busy cores


def _status(sweep, run):
    path = sweep / run / "metrics.json"
    return read(path).get("status") if path.exists() else None


def _corrupt_one_checkpoint(sweep, runs):
    """Flips bytes of the newest checkpoint of an unfinished run no worker holds: True if
    there was one. The test holds the run's lock meanwhile, so that no worker restores that
    checkpoint while it is being damaged (a worker that tries skips the run for now)."""
    for run in runs:
        folder = sweep / run / "checkpoints"
        if _status(sweep, run) is None and folder.exists():
            with _locked(sweep / run) as mine:
                steps = mine and sorted(int(p.name) for p in folder.iterdir()
                                        if (p / DIGEST).exists())
                if steps:
                    flip_bytes(largest_file(folder / str(steps[-1]) / "state" / "d"))
                    return True
    return False


@contextlib.contextmanager
def _locked(run_dir):
    """Takes run_dir's lock as a worker would, without waiting: yields whether it got it."""
    fd = os.open(run_dir / ".rdsweep.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        yield False
        return
    try:
        yield True
    finally:
        os.close(fd)  # releases the lock


@pytest.mark.slow  # two sweeps and several relaunches: 1.5-3.5 minutes
@pytest.mark.chaos  # not in the README's test command; .ci/run runs it
def test_killed_workers_and_a_corrupted_checkpoint_end_as_an_undisturbed_sweep(tmp_path):
    reference = tmp_path / "reference"
    p = rdsweep("-m", *SWEEP, f"hydra.sweep.dir={reference}", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    runs = [job["subdir"] for job in read(reference / "sweep_plan.json")["jobs"]]
    assert len(runs) == 6

    sweep = tmp_path / "chaos"
    rng = random.Random(0)
    workers, outputs, kills, corrupted, seen = [], [], 0, False, set()
    start = time.monotonic()
    while not all(_status(sweep, run) == "completed" for run in runs):
        assert time.monotonic() - start < DEADLINE, outputs
        for worker in [w for w in workers if w.poll() is not None]:
            outputs.append(worker.communicate())
            workers.remove(worker)
        while len(workers) < 2:
            workers.append(launch("-m", *SWEEP, f"hydra.sweep.dir={sweep}", cwd=tmp_path))
        # Kill at random moments while the workers train: soon after a random new checkpoint.
        new = set(sweep.glob(f"*/checkpoints/*/{DIGEST}")) - seen
        seen |= new
        # Until a checkpoint is corrupted, kill on: a victim may hold a run without one yet.
        if (kills < KILLS or not corrupted) and new and rng.random() < 0.5:
            time.sleep(rng.uniform(0, 0.5))
            victim = rng.choice(workers)
            outputs.append(kill(victim))  # it may be the worker that found the corruption
            workers.remove(victim)
            kills += 1
        if kills and not corrupted:  # the victim's run stays free until a relaunch takes it
            corrupted = _corrupt_one_checkpoint(sweep, runs)
        time.sleep(0.05)
    for worker in workers:
        outputs.append(worker.communicate())
    logged = "".join(out + err for out, err in outputs)

    assert kills >= KILLS and corrupted
    assert "do not match their sha256" in logged  # the corrupted checkpoint was skipped
    assert any(read(sweep / run / "metrics.json")["resumed_from"] > 0 for run in runs)
    for run in runs:
        got, want = read(sweep / run / "metrics.json"), read(reference / run / "metrics.json")
        assert got["status"] == "completed", (run, got)
        assert got["test"] == want["test"], run  # bitwise: JSON keeps every float's digits
