"""The SLURM tier: sweeps through hydra/launcher=slurm_cpu on a real cluster, the local one of
scripts/slurm_cluster.sh (.ci/run starts it). Skipped, with one line, where none is up.

Two sweeps run at once, each beside an undisturbed twin run by the basic launcher:
- A, 4 jobs: one left alone; one requeued by `scontrol requeue`; one sent the preemption signal
  (USR2); one cancelled. Run under SBATCH_EXPORT=NONE, as on a site that exports nothing.
- B, 1 job whose time limit is cut, once it trains, to end a minute or two later, so that SLURM
  itself signals the time-out (signal_delay_s=120 before the end: at once, that is at SLURM's
  next time-limit check, which comes every 30 s).
Every run that was not cancelled must end completed with metrics bitwise equal to its twin's.
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import time

import pandas as pd
import pytest

from helpers import SMALL_MODEL, read
from rdsweep import sweep

pytestmark = [pytest.mark.slurm, pytest.mark.slow]  # slow: minutes of real jobs


def _cluster_up() -> bool:
    if shutil.which("scontrol") is None:
        return False
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    return ping.returncode == 0 and "UP" in ping.stdout


if not _cluster_up():
    pytest.skip("no SLURM cluster is up: start the local one with `bash scripts/slurm_cluster.sh "
                "start` (root, Debian; .ci/run does)", allow_module_level=True)

RUN = [*SMALL_MODEL, "eval.iwae_samples=2", "eval.train_examples=0", "eval.image_examples=0"]
# Long enough that a requeued job still trains when SLURM kills it (KillWait, 2 s here) after
# its first checkpoint.
A = [*RUN, "train.steps=12000", "train.log_every=250", "train.checkpoint_every=1000",
     "seed=1,2,3,4"]
# Long enough to be still training when the signal comes (up to 30 s after the limit is cut,
# more on a loaded machine): about 100 s of training on an idle core (80000 steps, 14 s, could
# end first). No periodic checkpoint: the one it resumes from is the signal's.
B = [*RUN, "train.steps=600000", "train.log_every=10000", "train.checkpoint_every=0", "seed=5"]
SLURM = ["hydra/launcher=slurm_cpu", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1"]
PLAIN, REQUEUED, PREEMPTED, CANCELLED = 0, 1, 2, 3  # array tasks of A (seed = task + 1)
DEADLINE_S = 900


def _start(root, name, overrides, env=None):
    with open(root / f"{name}.log", "w") as out:  # the child keeps its own copy
        return subprocess.Popen([sys.executable, "-m", "rdsweep", "-m", *overrides,
                                 f"hydra.sweep.dir={root / name}"], cwd=root, text=True,
                                stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})


def _jobs(sweep_dir):
    """{task: SLURM job id} of the jobs submitit has filed: "7_2" for task 2 of an array, "6"
    for a sweep of one job (not an array)."""
    ids = [os.path.basename(p)[:-len("_submitted.pkl")]
           for p in glob.glob(f"{sweep_dir}/.submitit/*/*_submitted.pkl")]
    return {int(i.split("_")[1]) if "_" in i else 0: i for i in ids}


def _run_dir(sweep_dir, seed):
    """The folder of the sweep's job with this seed (the plan names it; it may not exist yet)."""
    return next(os.path.join(sweep_dir, job["subdir"]) for job in sweep.read_plan(sweep_dir)
                if f"seed={seed}" in job["overrides"])


def _checkpoints(run_dir):
    folder = os.path.join(run_dir or "", "checkpoints")
    return sorted(int(d) for d in (os.listdir(folder) if os.path.isdir(folder) else [])
                  if d.isdigit())


def _job_info(job):
    """(restarts, seconds run) of a job, from scontrol."""
    shown = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True,
                           text=True).stdout
    h, m, s = map(int, re.search(r"RunTime=(\d+):(\d+):(\d+)", shown).groups())
    return int(re.search(r"Restarts=(\d+)", shown).group(1)), 3600 * h + 60 * m + s


def _run(*command):
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    """Runs both SLURM sweeps and their basic-launcher twins; disturbs A's and B's jobs on the
    way. Returns the root folder, the drivers' exit codes and what was done when."""
    root = tmp_path_factory.mktemp("slurm")
    # B first: its long job then starts first, while A's jobs queue. submitit calls a signal a
    # time-out if the job has run at least min(80% of timeout_min, timeout_min - 10 min):
    # always at 10 min, and a preemption in A's first 20 min at 30.
    drivers = {"b": _start(root, "b", [*B, *SLURM, "hydra.launcher.timeout_min=10"]),
               "a": _start(root, "a", [*A, *SLURM, "hydra.launcher.timeout_min=30"],
                           env={"SBATCH_EXPORT": "NONE"})}
    twins = [_start(root, "twin_a", A), _start(root, "twin_b", B)]
    done = {}
    start = time.monotonic()
    while any(p.poll() is None for p in drivers.values()):
        assert time.monotonic() - start < DEADLINE_S, f"the SLURM sweeps ran past {DEADLINE_S} s"
        a, b = _jobs(root / "a"), _jobs(root / "b")
        if len(a) == 4:
            runs = {task: _run_dir(root / "a", task + 1) for task in a}
            if "requeue" not in done and _checkpoints(runs[REQUEUED]):
                _run("scontrol", "requeue", a[REQUEUED])
                done["requeue"] = _checkpoints(runs[REQUEUED])[-1]
            if "preempt" not in done and _checkpoints(runs[PREEMPTED]):
                _run("scancel", "--signal=USR2", a[PREEMPTED])
                done["preempt"] = _checkpoints(runs[PREEMPTED])[-1]
            if "cancel" not in done and os.path.isdir(runs[CANCELLED]):
                _run("scancel", a[CANCELLED])
                done["cancel"] = True
        if b and "cut" not in done and os.path.exists(os.path.join(_run_dir(root / "b", 5),
                                                                     "train_log.csv")):
            # a limit in whole minutes, ending 60-120 s from now
            minutes = _job_info(b[0])[1] // 60 + 2
            _run("scontrol", "update", f"JobId={b[0]}", f"TimeLimit={minutes}")
            done["cut"] = True
        if "cut" in done and "timeout" not in done and _job_info(b[0])[0]:
            # requeued: the next submission gets the time to finish
            _run("scontrol", "update", f"JobId={b[0]}", "TimeLimit=10")
            done["timeout"] = True
        time.sleep(0.25)
    for name, twin in zip(("twin_a", "twin_b"), twins):
        assert twin.wait(timeout=DEADLINE_S) == 0, (root / f"{name}.log").read_text()[-3000:]
    return root, {name: p.returncode for name, p in drivers.items()}, done


def _metrics(root, name, seed):
    return read(os.path.join(_run_dir(root / name, seed), "metrics.json"))


def _assert_as_undisturbed(root, name, seed):
    """Completed, with the test metrics of the basic launcher's twin, bit for bit."""
    metrics, twin = _metrics(root, name, seed), _metrics(root, f"twin_{name}", seed)
    assert metrics["status"] == "completed", metrics
    assert metrics["test"] == twin["test"]
    return metrics


def _job_log(root, name, task):
    job = _jobs(root / name)[task]
    return "".join(open(p).read() for p in glob.glob(f"{root / name}/.submitit/{job}/*.out"))


def test_sweep_matches_basic_launcher_and_shows_progress(sweeps):
    root, _, _ = sweeps
    metrics = _assert_as_undisturbed(root, "a", PLAIN + 1)
    assert metrics["resumed_from"] == 0
    console = (root / "a.log").read_text()
    assert re.search(r"sweep .*: 0/4 runs finished", console)
    assert re.search(r"sweep .*: 3/4 runs finished \(3 completed\), 1 failed", console)
    # the data and cache locations reach the jobs in their scripts, not through the environment
    script = glob.glob(f"{root / 'a'}/.submitit/*/*_submission.sh")[0]
    assert f"export RDSWEEP_CACHE={os.environ['RDSWEEP_CACHE']}" in open(script).read()


def test_requeue_resumes_from_checkpoint(sweeps):
    root, _, done = sweeps
    metrics = _assert_as_undisturbed(root, "a", REQUEUED + 1)
    assert metrics["resumed_from"] >= done["requeue"] > 0


def test_preemption_signal_saves_then_resumes(sweeps):
    root, _, done = sweeps
    metrics = _assert_as_undisturbed(root, "a", PREEMPTED + 1)
    first_attempt, preempted, _ = _job_log(root, "a", PREEMPTED).partition("this job is preempted")
    assert preempted
    # saved when the signal came, after the chunk it came in: no logged step is trained twice
    # (a periodic checkpoint, every 1000 steps, would lose up to 750 of them)
    logged = [int(s) for s in re.findall(r"\] - step (\d+) ", first_attempt)]
    assert metrics["resumed_from"] == logged[-1] > done["preempt"]


def test_timeout_saves_then_resumes(sweeps):
    root, _, done = sweeps
    metrics = _assert_as_undisturbed(root, "b", 5)
    assert "timeout" in done, f"B's job ended before SLURM signalled its time-out; B's log: " \
        f"{open(os.path.join(_run_dir(root / 'b', 5), 'train_log.csv')).read()[-600:]}"
    assert "this job is timed-out" in _job_log(root, "b", 0)
    assert metrics["resumed_from"] > 0  # from the checkpoint saved at the signal


def test_cancelled_job_fails_alone(sweeps):
    root, codes, _ = sweeps
    metrics = _metrics(root, "a", CANCELLED + 1)
    assert metrics["status"] == "failed" and "CANCELLED" in metrics["error"]
    table = pd.read_csv(root / "a" / "report" / "results.csv").set_index("run")
    assert list(table.status).count("completed") == 3
    assert table.loc[os.path.basename(_run_dir(root / "a", CANCELLED + 1)), "status"] == "failed"
    assert codes == {"a": 1, "b": 0}
    errors = [line for line in (root / "a.log").read_text().splitlines()
              if line.startswith("rdsweep: error:")]
    assert len(errors) == 1 and os.path.basename(_run_dir(root / "a", CANCELLED + 1)) in errors[0]
