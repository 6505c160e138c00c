"""Faults: a run killed with SIGKILL resumes to the same result, damaged checkpoints (truncated,
or flipped bytes of the same size) are skipped with one warning each, a full disk never damages
metrics.json and ends in one line, an exception is recorded as a failed run, a diverged run
says why, damaged data and caches are named or healed; each as one line, never a traceback."""

import errno
import os
import shutil

import pytest

import numpy as np

from faults import flip_bytes, full_disk, kill, largest_file, launch, truncate, wait_for
from helpers import SMALL_MODEL, TINY, rdsweep, rdsweep_here, read
from rdsweep import experiment
from rdsweep.checkpoints import DIGEST
from rdsweep.option import DataError
from rdsweep.options import tfds_images
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
    p = rdsweep_here(f"hydra.run.dir={out}", *RESUMABLE, cwd=out.parent)
    assert p.returncode == 0, p.stderr
    return out


@pytest.mark.slow  # a launch killed, then another (the fast tier resumes in test_preemption.py)
def test_sigkill_then_resume_gives_identical_metrics(reference, tmp_path):
    out = tmp_path / "run"
    job = launch(f"hydra.run.dir={out}", *RESUMABLE, cwd=tmp_path)
    wait_for(out / "checkpoints" / "200" / DIGEST, job)  # a finished checkpoint, mid-run
    kill(job)
    assert not (out / "metrics.json").exists()  # killed before the end
    assert (out / ".rdsweep.lock").exists()  # its lock file stays; its lock went with it

    again = rdsweep(f"hydra.run.dir={out}", *RESUMABLE, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    resumed = read(out / "metrics.json")
    assert 200 <= resumed["resumed_from"] < 600
    _same_results(resumed, read(reference / "metrics.json"))
    assert _curve(out) == _curve(reference)


def _truncate_arrays(checkpoint):
    """Truncates every array file of a checkpoint (as a disk fault or a torn copy would)."""
    for d, _, names in os.walk(checkpoint / "state" / "d"):
        for name in names:
            truncate(os.path.join(d, name))


def _flip_arrays(checkpoint):
    """Flips bytes of the largest array file of a checkpoint, its size unchanged (bit rot)."""
    flip_bytes(largest_file(checkpoint / "state" / "d"))


def _unhashed(checkpoint):
    """Removes the newest checkpoint's recorded hash, as a kill between orbax's save and the
    hash leaves it."""
    os.remove(checkpoint / DIGEST)


DAMAGES = [  # (damage, checkpoints damaged (of 400, 500), resumed_from, warnings)
    pytest.param(_flip_arrays, 1, 400, 1, id="flipped-newest"),
    pytest.param(_truncate_arrays, 1, 400, 1, id="truncated-newest", marks=pytest.mark.slow),
    pytest.param(_truncate_arrays, 2, 0, 2, id="truncated-all", marks=pytest.mark.slow),
    pytest.param(_unhashed, 1, 400, 1, id="interrupted-hash", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("damage,damaged,resumed_from,warnings", DAMAGES)
def test_damaged_checkpoints_are_skipped_with_a_warning(damage, damaged, resumed_from, warnings,
                                                         reference, tmp_path):
    """A run stopped after its step-500 checkpoint, whose newest (or every) checkpoint is
    damaged, resumes from the previous good one (or from scratch, with a warning), one line per
    damaged checkpoint and no traceback, and still ends exactly as the uninterrupted run. The
    newest alone without a recorded hash (a save cut short) counts as damaged."""
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    os.remove(out / "metrics.json")
    shutil.rmtree(out / "checkpoints" / "600")
    for step in (400, 500)[-damaged:]:
        damage(out / "checkpoints" / str(step))

    again = rdsweep_here(f"hydra.run.dir={out}", *RESUMABLE, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    logged = again.stdout + again.stderr
    assert logged.count("is unreadable") == warnings, logged
    assert ("no readable checkpoint left" in logged) == (resumed_from == 0)
    assert "Traceback" not in logged and again.stderr == "", logged
    resumed = read(out / "metrics.json")
    assert resumed["resumed_from"] == resumed_from
    _same_results(resumed, read(reference / "metrics.json"))
    assert _curve(out) == _curve(reference)


def test_checkpoints_without_any_hash_are_refused_and_kept(reference, tmp_path):
    """A folder none of whose checkpoints has a recorded hash (an rdsweep older than the
    hashes): nothing vouches for them, so the run is refused in one line and they stay."""
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    os.remove(out / "metrics.json")
    for checkpoint in (out / "checkpoints").iterdir():
        os.remove(checkpoint / DIGEST)
    before = sorted(p.name for p in (out / "checkpoints").iterdir())
    p = rdsweep_here(f"hydra.run.dir={out}", *RESUMABLE, cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        f"rdsweep: error: hydra.run.dir={out} holds checkpoints without their sha256 "
        f"({DIGEST}: an older rdsweep's), which cannot be vouched for; choose another folder, "
        "or move its checkpoints away to train it from step 0"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before
    assert not (out / "metrics.json").exists()


def test_checkpoints_of_another_config_are_refused(reference, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    os.remove(out / "metrics.json")
    shutil.rmtree(out / ".hydra")  # without the folder's record, its checkpoints still guard it
    p = rdsweep_here(f"hydra.run.dir={out}", *RESUMABLE, "beta=2", cwd=tmp_path)
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


def test_a_full_disk_ends_in_one_line(tmp_path):
    with full_disk(tmp_path) as disk:
        out = os.path.join(disk, "run")
        p = rdsweep(f"hydra.run.dir={out}", *RESUMABLE, cwd=tmp_path)
    assert p.returncode == 1
    errors = [line for line in p.stderr.splitlines() if line.startswith("rdsweep: error: ")]
    assert len(errors) == 1 and errors[0].startswith("rdsweep: error: the run failed (")
    assert "No space left on device" in errors[0] or "RESOURCE_EXHAUSTED" in errors[0]
    assert errors[0].endswith(f"the traceback is in {out}/main.log")
    assert "Traceback" not in p.stdout  # rdsweep's own log: one line per event
    # Nothing else: libraries' threads and exit handlers (orbax, tensorstore, tensorboardX)
    # report their own failures to main.log only.
    assert p.stderr.strip().splitlines() == errors, p.stderr


def test_an_unwritable_run_folder_is_one_line_and_writes_nothing(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    p = rdsweep_here(f"hydra.run.dir={blocker}/run", *RESUMABLE, cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        f"rdsweep: error: {blocker}/run cannot be written (Not a directory): choose a run folder "
        "you can write, on a disk with space (hydra.run.dir, or hydra.sweep.dir)"]
    assert sorted(os.listdir(tmp_path)) == ["a-file"]


def test_a_diverged_run_says_why_and_exits_non_zero(tmp_path):
    out = tmp_path / "run"
    args = [f"hydra.run.dir={out}", *SMALL_MODEL, "train.steps=40", "train.log_every=10",
            "train.lr=1e30"]
    p = rdsweep_here(*args, cwd=tmp_path)
    assert p.returncode == 1
    metrics = read(out / "metrics.json")
    assert metrics["status"] == "diverged" and metrics["steps"] == 10
    assert "loss" in metrics["non_finite"]
    assert p.stderr.strip().splitlines() == [
        f"rdsweep: error: the run diverged at step 10 ({', '.join(metrics['non_finite'])} not "
        f"finite; see {out}/metrics.json): try a lower train.lr"]
    again = rdsweep_here(*args, cwd=tmp_path)  # finished: not run again, and still not a success
    assert again.returncode == 1 and "holds this run, diverged" in again.stderr


def test_a_completed_metrics_json_with_non_numbers_is_evaluated_again(reference, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    metrics = read(out / "metrics.json")
    metrics["test"]["elbo"] = "oops"
    write_metrics(str(out), metrics)
    again = rdsweep_here(f"hydra.run.dir={out}", *RESUMABLE, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    resumed = read(out / "metrics.json")
    assert resumed["resumed_from"] == 600  # the final checkpoint: evaluated, not trained
    _same_results(resumed, read(reference / "metrics.json"))


def test_a_typo_in_a_sweep_writes_nothing_and_a_correct_launch_completes(tmp_path):
    out = tmp_path / "sweep"
    args = [*SMALL_MODEL, "train.steps=20", "train.log_every=10", "train.checkpoint_every=0",
            f"hydra.sweep.dir={out}"]
    p = rdsweep_here("-m", *args, "encoder=mlp,mlpp", cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "rdsweep: error: In 'config': Could not find 'encoder/mlpp'; valid: conv, gated_mlp, "
        "iaf, mlp, toy"]
    assert not out.exists()
    ok = rdsweep_here("-m", *args, "encoder=mlp", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr


@pytest.fixture
def small_data(real_cfg, tmp_path):
    """make(data_dir) -> a binarized_mnist data config of small splits and its own cache."""
    return lambda data_dir: real_cfg(
        f"data.dir={data_dir}", f"data.cache_dir={tmp_path / 'cache'}",
        "data.train_split='train[:300]'", "data.test_split='test[:200]'").data


def _copy_data(tfds_dir, tmp_path):
    copy = tmp_path / "tfds"
    shutil.copytree(os.path.join(tfds_dir, "binarized_mnist"), copy / "binarized_mnist")
    for d, _, names in os.walk(copy):
        os.chmod(d, 0o755)
        for name in names:
            os.chmod(os.path.join(d, name), 0o644)
    return copy


def test_a_damaged_cache_entry_is_rebuilt_with_one_warning(small_data, tfds_dir, caplog):
    cfg = small_data(tfds_dir)
    first = tfds_images.load_split("train[:300]", cfg)
    entry = [p for p in os.listdir(cfg.cache_dir) if p.endswith(".npy") and "train" in p][0]
    truncate(os.path.join(cfg.cache_dir, entry))
    tfds_images._decoded.clear()  # as a new process
    again = tfds_images.load_split("train[:300]", cfg)
    np.testing.assert_array_equal(again, first)
    assert [r.message for r in caplog.records if r.name.startswith("rdsweep")
            and r.levelname == "WARNING"] == [
        f"the cached array {os.path.join(cfg.cache_dir, entry)} is damaged (its bytes do not "
        "match its sha256): decoding it again"]


DATA_FAULTS = {  # how a prepared copy is damaged, and the file the error names
    "garbage-info": lambda folder: (folder / "dataset_info.json").write_text("garbage{"),
    "truncated-record": lambda folder: truncate(
        folder / "binarized_mnist-train.array_record-00000-of-00001", 0.3),
    "flipped-record": lambda folder: flip_bytes(  # among the first records, those read
        folder / "binarized_mnist-train.array_record-00000-of-00001", 64, at=0.001),
}


@pytest.mark.parametrize("fault", DATA_FAULTS)
def test_damaged_prepared_data_is_one_line_at_start_and_no_old_cache(fault, small_data, tfds_dir,
                                                                    tmp_path):
    """Damaged tfds files stop a run at start-up with one line naming the dataset's folder, not
    silently from the cache of the good copy, and no run folder is made."""
    tfds_images.load_split("train[:300]", small_data(tfds_dir))  # the good copy, cached
    copy = _copy_data(tfds_dir, tmp_path)
    DATA_FAULTS[fault](copy / "binarized_mnist" / "1.0.0")
    with pytest.raises(DataError, match="its prepared files are damaged; prepare it again"):
        tfds_images._check_available(small_data(copy))
    out = tmp_path / "run"
    p = rdsweep_here(f"data.dir={copy}", "data.train_split='train[:300]'",
                "data.test_split='test[:200]'", f"hydra.run.dir={out}", *TINY, cwd=tmp_path)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and str(copy) in lines[0] and "damaged" in lines[0], p.stderr
    assert not out.exists()
