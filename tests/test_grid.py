"""Grid training (hydra/launcher=grid): K runs that differ only in seed, beta, sigma or lr
train as one program and end as the same runs trained one by one (a single run is a grid of
one)."""

import os
import shutil

import pytest

from helpers import SMALL_MODEL, TINY, rdsweep, read
from rdsweep import experiment

GRID = [*SMALL_MODEL, "train.steps=6", "train.log_every=3", "train.checkpoint_every=3",
        "eval.iwae_samples=4", "eval.train_examples=0", "eval.batch_size=500",
        "eval.image_examples=0"]


def _close(a, b, rel):
    for key in ("rate", "distortion", "elbo", "iwae"):
        assert a[key] == pytest.approx(b[key], rel=rel), (key, a, b)


@pytest.mark.parametrize("varied", [
    pytest.param(["beta=0.5", "beta=2"], id="beta"),
    pytest.param(["seed=0", "seed=3"], id="seed", marks=pytest.mark.slow),
    pytest.param(["train.lr=0.001", "train.lr=0.003"], id="lr", marks=pytest.mark.slow),
    pytest.param(["objective=target_rate sigma=0", "objective=target_rate sigma=1000"],
                 id="sigma", marks=pytest.mark.slow),  # opposite pulls on R
])
def test_grid_and_one_by_one_agree(varied, make_cfg, tmp_path):
    cfgs = [make_cfg(*GRID, *v.split()) for v in varied]
    assert len({experiment.grid_key(c) for c in cfgs}) == 1
    grid_dirs = [str(tmp_path / f"grid{i}") for i in range(2)]
    one_dirs = [str(tmp_path / f"one{i}") for i in range(2)]
    grid = experiment.run_grid(cfgs, grid_dirs)
    single = [experiment.run(c, d) for c, d in zip(cfgs, one_dirs)]
    for g, s in zip(grid, single):
        assert g["status"] == s["status"] == "completed"
        assert g["config_hash"] == s["config_hash"] and g["config"] == s["config"]
        _close(g["test"], s["test"], rel=1e-4)
    # the two runs really differ: the grid did not train one model twice
    assert grid[0]["test"]["elbo"] != grid[1]["test"]["elbo"]
    for d in grid_dirs:  # each run folder has the outputs of a run
        assert sorted(os.listdir(d)) == ["checkpoints", "metrics.json", "tensorboard",
                                         "train_log.csv"]
        assert sorted(os.listdir(os.path.join(d, "checkpoints"))) == ["3", "6"]


def test_grid_key_separates_structures(make_cfg):
    key = lambda *o: experiment.grid_key(make_cfg(*o))
    assert key("beta=0.5", "seed=1", "train.lr=0.01") == key("beta=3")
    assert key("beta=0.5") != key("beta=0.5", "train.steps=10")
    assert key() != key("objective=target_rate")
    assert key() != key("decoder=conv")


@pytest.mark.slow  # three 4-job sweeps
def test_grid_launcher_sweep_matches_the_basic_launcher(tmp_path):
    """The same command line with hydra/launcher=grid: same folders, same results."""
    common = ["-m", "beta=0.5,2", "seed=0,1", *TINY, *GRID]
    grid = rdsweep(*common, "hydra/launcher=grid", f"hydra.sweep.dir={tmp_path / 'grid'}",
                   cwd=tmp_path)
    assert grid.returncode == 0, grid.stderr[-3000:]
    assert "training 4 runs as one grid" in grid.stdout + grid.stderr
    basic = rdsweep(*common, f"hydra.sweep.dir={tmp_path / 'basic'}", cwd=tmp_path)
    assert basic.returncode == 0, basic.stderr[-3000:]
    runs = sorted(r for r in os.listdir(tmp_path / "basic") if r.startswith("beta="))
    assert len(runs) == 4 and runs == sorted(r for r in os.listdir(tmp_path / "grid")
                                              if r.startswith("beta="))
    for run in runs:
        g, b = (read(tmp_path / s / run / "metrics.json") for s in ("grid", "basic"))
        _close(g["test"], b["test"], rel=1e-4)
        assert os.path.exists(tmp_path / "grid" / run / ".hydra" / "config.yaml")
    assert (tmp_path / "grid" / "report" / "results.csv").exists()

    again = rdsweep(*common, "hydra/launcher=grid", f"hydra.sweep.dir={tmp_path / 'grid'}",
                    cwd=tmp_path)  # a finished grid sweep is not trained again
    assert again.returncode == 0
    assert (again.stdout + again.stderr).count("finished: skipped") == 4


@pytest.mark.slow  # two more grids; kill and resume of one run is test_faults.py's
def test_grid_resumes_from_the_newest_common_checkpoint(make_cfg, tmp_path):
    """A grid killed between its runs' saves (one run has a newer checkpoint than the other)
    resumes both from the step they share, and ends as the uninterrupted grid did."""
    cfgs = [make_cfg(*GRID, f"beta={b}") for b in (0.5, 2)]
    dirs = [str(tmp_path / f"run{i}") for i in range(2)]
    first = experiment.run_grid(cfgs, dirs)
    for d in dirs:
        os.remove(os.path.join(d, "metrics.json"))
    shutil.rmtree(os.path.join(dirs[1], "checkpoints", "6"))  # run 1 was killed before saving
    again = experiment.run_grid(cfgs, dirs)
    for a, b in zip(first, again):
        assert b["resumed_from"] == 3
        assert b["test"] == a["test"]
    for d in dirs:  # step 6 saved again by each run, after run 0's old one was discarded
        assert sorted(os.listdir(os.path.join(d, "checkpoints"))) == ["3", "6"]
