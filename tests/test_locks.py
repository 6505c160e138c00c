"""One process per run folder: concurrent launches on one folder are refused in one line and
write nothing; a killed holder never blocks; a refused relaunch leaves the folder's record."""

import os
import shutil
import subprocess
import sys

import pytest

from faults import kill, launch, snapshot
from helpers import SMALL_MODEL, rdsweep_here, read
from rdsweep import run_folder

RUN = [*SMALL_MODEL, "train.steps=300", "train.log_every=100", "train.checkpoint_every=100",
       "eval.iwae_samples=2", "eval.train_examples=0", "eval.image_examples=2"]


def _outcomes(processes):
    """(return code, stderr) of each finished process."""
    return [(p.returncode, p.communicate()[1]) for p in processes]


def _refused(stderr, folder):
    lines = stderr.strip().splitlines()
    return len(lines) == 1 and lines[0].startswith(f"rdsweep: error: {folder} is in use by pid ")


@pytest.mark.slow  # four processes
def test_four_launches_at_once_one_trains_three_are_refused(tmp_path):
    out = tmp_path / "run"
    jobs = [launch(f"hydra.run.dir={out}", *RUN, cwd=tmp_path) for _ in range(4)]
    for job in jobs:
        job.wait(timeout=600)
    outcomes = _outcomes(jobs)
    assert sorted(code for code, _ in outcomes) == [0, 2, 2, 2], outcomes
    assert all(_refused(err, out) for code, err in outcomes if code == 2), outcomes
    rows = (out / "train_log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows] == ["step", "100", "200", "300"]  # trained once
    assert read(out / "metrics.json")["status"] == "completed"


def test_two_configs_on_one_folder_keep_one_consistent_run(tmp_path):
    """Of beta=1 and beta=0.5 launched on one folder, one trains; the folder's record,
    metrics and checkpoints are all that one's."""
    out = tmp_path / "run"
    jobs = [launch(f"hydra.run.dir={out}", *RUN, f"beta={beta}", cwd=tmp_path)
            for beta in (1, 0.5)]
    for job in jobs:
        job.wait(timeout=600)
    codes = sorted(code for code, _ in _outcomes(jobs))
    assert codes == [0, 2], codes
    beta = read(out / "metrics.json")["config"]["beta"]
    assert f"beta={beta:g}" in (out / ".hydra" / "overrides.yaml").read_text()
    assert f"beta: {beta}" in (out / ".hydra" / "config.yaml").read_text()


HOLD = """
import sys, time
from rdsweep import run_folder
run_folder.claim(sys.argv[1])
print("held", flush=True)
time.sleep(600)
"""


def test_the_lock_of_a_killed_process_never_blocks(tmp_path):
    folder = str(tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, folder], stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    assert holder.stdout.readline() == "held\n"
    with pytest.raises(run_folder.FolderBusy, match=f"in use by pid {holder.pid} on "):
        run_folder.claim(folder)
    kill(holder)  # SIGKILL: the OS drops its lock, the lock file stays
    assert os.path.exists(os.path.join(folder, run_folder.LOCK))
    run_folder.claim(folder)
    run_folder.release(folder)


def test_a_refused_relaunch_keeps_the_folders_record(tmp_path):
    """A killed beta=1 run (checkpoints, no metrics.json) relaunched with beta=0.5 is refused
    and every file of the folder stays as it was, .hydra/ included."""
    out = tmp_path / "run"
    first = rdsweep_here(f"hydra.run.dir={out}", *RUN, "beta=1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    os.remove(out / "metrics.json")
    shutil.rmtree(out / "checkpoints" / "300")
    before = snapshot(out)
    again = rdsweep_here(f"hydra.run.dir={out}", *RUN, "beta=0.5", cwd=tmp_path)
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        f"rdsweep: error: hydra.run.dir={out} holds a run of another config (its "
        ".hydra/config.yaml); choose another folder (runs are never mixed)"]
    assert snapshot(out) == before
