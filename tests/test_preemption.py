"""Saving on SLURM's time-out or preemption signal (rdsweep.preemption), in-process: a recorder
stands in for submitit's handler (requeue, then exit). tests/test_slurm.py runs the real one on
a cluster."""

import os
import signal
import subprocess

import pytest
import submitit  # noqa: F401  the deferral acts only in a process that imported it (a job)

from helpers import SMALL_MODEL, read
from rdsweep import experiment, preemption

RUN = [*SMALL_MODEL, "train.steps=40", "train.log_every=10", "train.checkpoint_every=0",
       "eval.iwae_samples=2", "eval.train_examples=0", "eval.image_examples=0"]


@pytest.fixture
def submitit_handler():
    """submitit's handler of its signal, as a recorder that exits as submitit's does."""
    calls = []

    def handler(signum, frame):
        calls.append(signum)
        raise SystemExit(-1)

    previous = signal.signal(signal.SIGUSR2, handler)
    yield handler, calls
    signal.signal(signal.SIGUSR2, previous)


def test_signal_saves_after_the_chunk_then_hands_over_and_the_run_resumes_identically(
        make_cfg, tmp_path, monkeypatch, submitit_handler):
    handler, calls = submitit_handler
    cfg = make_cfg(*RUN)
    write_train_log = experiment.write_train_log

    def signal_at_step_20(run_dir, rows):
        write_train_log(run_dir, rows)
        if rows[-1]["step"] == 20:
            os.kill(os.getpid(), signal.SIGUSR2)

    monkeypatch.setattr(experiment, "write_train_log", signal_at_step_20)
    with pytest.raises(SystemExit):
        experiment.run(cfg, str(tmp_path / "signalled"))
    assert calls == [signal.SIGUSR2]  # handed over once, after the save
    assert signal.getsignal(signal.SIGUSR2) is handler  # submitit's handler is back
    # checkpoint_every=0 saves only at the end: this one is the signal's
    assert os.listdir(tmp_path / "signalled" / "checkpoints") == ["20"]
    assert not (tmp_path / "signalled" / "metrics.json").exists()

    monkeypatch.setattr(experiment, "write_train_log", write_train_log)
    resumed = experiment.run(cfg, str(tmp_path / "signalled"))
    undisturbed = experiment.run(cfg, str(tmp_path / "undisturbed"))
    assert resumed["resumed_from"] == 20 and undisturbed["resumed_from"] == 0
    assert resumed["test"] == undisturbed["test"]
    assert read(tmp_path / "signalled" / "metrics.json")["status"] == "completed"


@pytest.mark.parametrize("delay_s, warned", [(0, True), (10_000, False)])
def test_a_chunk_longer_than_the_signal_delay_is_named(delay_s, warned, caplog):
    deferral = preemption.Deferral(None, None, chunk_steps=500, delay_s=delay_s)
    for _ in range(3):  # the first chunk compiles: the second is measured, once
        deferral.chunk_done()
    assert caplog.text.count(f"hydra.launcher.signal_delay_s={delay_s}") == int(warned)


@pytest.mark.parametrize("returncode, ends", [(-signal.SIGTERM, SystemExit),
                                              (1, subprocess.CalledProcessError)])
def test_a_requeue_whose_scontrol_slurm_terminates_exits_as_requeued(returncode, ends):
    """SLURM can SIGTERM submitit's `scontrol requeue` as it ends the requeued job: a requeue,
    not a failure. Any other error of the handler stays an error."""
    def handler(signum, frame):
        raise subprocess.CalledProcessError(returncode, ["scontrol", "requeue", "31"])

    previous = signal.getsignal(signal.SIGUSR2)
    try:
        deferral = preemption.Deferral(signal.SIGUSR2, handler, chunk_steps=10, delay_s=None)
        deferral.note(signal.SIGUSR2, None)
        with pytest.raises(ends) as ended:
            deferral.release()
        if ends is SystemExit:
            assert ended.value.code == -1  # as submitit exits after a requeue: no result
    finally:
        signal.signal(signal.SIGUSR2, previous)
