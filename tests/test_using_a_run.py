"""docs/using_a_run.md's example runs as written: its bash block (rdsweep in a subprocess, the
other commands in-process) and then its Python block."""

import contextlib
import glob
import io
import os
import re
import shlex
import subprocess
import sys

import pytest

from rdsweep.eval_cli import main as eval_main
from rdsweep.report import main as report_main
from rdsweep.sample_cli import main as sample_main

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                   "using_a_run.md")
IN_PROCESS = {"rdsweep-eval": eval_main, "rdsweep-report": report_main,
              "rdsweep-sample": sample_main}


def blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", open(DOC).read(), re.S)


def run_command(line):
    """One line of the bash block; globs expanded as the shell would."""
    words = [match for word in shlex.split(line)
             for match in (sorted(glob.glob(word)) if "*" in word else [word])]
    if words[0] == "rdsweep":
        done = subprocess.run([sys.executable, "-m", "rdsweep", *words[1:]], text=True,
                              capture_output=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    else:
        IN_PROCESS[words[0]](words[1:])


@pytest.mark.slow  # a sweep in a subprocess, then three commands
def test_the_worked_example_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (bash,) = blocks("bash")
    for line in bash.replace("\\\n", " ").strip().splitlines():
        run_command(line)
    printed = io.StringIO()
    namespace = {}
    with contextlib.redirect_stdout(printed):
        for code in blocks("python"):
            exec(compile(code, DOC, "exec"), namespace)

    low, high = namespace["runs"]
    assert (low.config.beta, high.config.beta) == (0.1, 3.0)
    rates = [r.rate_distortion(namespace["x"], namespace["key"])["rate"].mean()
             for r in (low, high)]
    assert rates[0] > rates[1] + 5  # what the page says: beta = 0.1 keeps far more in z
    assert len(printed.getvalue().splitlines()) == 2
    for run in (low, high):
        assert os.path.isfile(os.path.join(run.run_dir, "eval", "eval.iwae_samples=1000.json"))
    assert os.path.isfile("outputs/two_betas/report/eval=eval.iwae_samples=1000/results.csv")
    assert sorted(os.listdir(os.path.join(high.run_dir, "samples"))) == [
        "interpolation.png", "reconstructions.png", "samples.png"]
