"""rdsweep-eval: a re-evaluation goes into a new file (metrics.json untouched), over a run or a
sweep folder; the report shows it; bad overrides give one line, exit 2 and write nothing."""

import json
import os
import shutil

import numpy as np
import pytest

import rdsweep
from rdsweep.eval_cli import main
from rdsweep.report import build_report
from trained_runs import copy_run, exact_log_likelihood, trained


@pytest.fixture(scope="module")
def run_dir(make_cfg, data_cache):
    return trained(make_cfg, os.path.join(data_cache, "plane_run"))


def _read(path):
    with open(path) as f:
        return json.load(f)


def _snapshot(folder):
    return {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns
            for d, _, files in os.walk(folder) for f in files}


def _assert_one_line_and_nothing_written(argv, words, tmp_path, capsys):
    """rdsweep-eval argv exits 2 with one error line holding `words`; tmp_path is unchanged."""
    before = _snapshot(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "\n" not in err and err.startswith("rdsweep-eval: error:")
    assert all(w in err for w in words), err
    assert _snapshot(tmp_path) == before


def test_reevaluation_is_a_new_file_beside_the_untouched_metrics(run_dir, tmp_path, capsys):
    run = copy_run(run_dir, tmp_path)
    metrics = open(os.path.join(run, "metrics.json")).read()
    main([run, "eval.iwae_samples=1000", "eval.train_examples=0"])
    path = os.path.join(run, "eval", "eval.iwae_samples=1000,eval.train_examples=0.json")
    result = _read(path)
    assert open(os.path.join(run, "metrics.json")).read() == metrics
    assert path in capsys.readouterr().out

    test, recorded = result["test"], _read(os.path.join(run, "metrics.json"))["test"]
    assert (test["iwae_samples"], test["examples"], result["train"]) == (1000, 40, None)
    assert test["rate"] == pytest.approx(recorded["rate"], abs=1e-6)  # analytic: no sampling
    loaded = rdsweep.load_run(run)
    exact = exact_log_likelihood(loaded, loaded.test_images()).mean()
    assert test["iwae"] == pytest.approx(exact, abs=0.03)  # IWAE_1000 of the 40 examples
    assert abs(recorded["iwae"] - exact) > abs(test["iwae"] - exact)  # k = 8: looser

    before = _snapshot(run)
    main([run, "eval.train_examples=0", "eval.iwae_samples=1000"])  # the same evaluation
    assert "exists" in capsys.readouterr().out and _snapshot(run) == before


def test_a_sweep_folder_evaluates_its_completed_runs_and_skips_the_others(run_dir, tmp_path,
                                                                            capsys):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    done = copy_run(run_dir, sweep)
    (sweep / "unfinished" / ".hydra").mkdir(parents=True)
    main([str(sweep), "eval.iwae_samples=16"])
    out = capsys.readouterr().out.splitlines()
    result = _read(os.path.join(done, "eval", "eval.iwae_samples=16.json"))
    assert result["test"]["iwae_samples"] == 16 and result["train"]["examples"] == 24
    assert [line for line in out if line.startswith("skipped:")] == [
        line for line in out if "unfinished" in line]
    assert not (sweep / "unfinished" / "eval").exists()

    table, _, paths = build_report(str(sweep), eval_name="eval.iwae_samples=16")
    row = table.set_index("run").loc[os.path.basename(done)]
    assert (row.iwae, row.iwae_samples) == (result["test"]["iwae"], 16)
    assert all("eval=eval.iwae_samples=16" in p for p in paths.values())
    missing, _, _ = build_report(str(sweep), eval_name="eval.iwae_samples=7")
    row = missing.set_index("run").loc[os.path.basename(done)]
    assert np.isnan(row.iwae) and row.detail == "no eval/eval.iwae_samples=7.json"


def test_step_previous_evaluates_the_checkpoint_before_the_last(run_dir, tmp_path):
    run = copy_run(run_dir, tmp_path)  # checkpoints at steps 200 and 400 (the last)
    main([run, "--step", "previous", "eval.iwae_samples=1000", "eval.train_examples=0"])
    result = _read(os.path.join(run, "eval",
                                "eval.iwae_samples=1000,eval.train_examples=0,step=200.json"))
    early, final = rdsweep.load_run(run, step=200), rdsweep.load_run(run)
    exact_early = exact_log_likelihood(early, early.test_images()).mean()
    exact_final = exact_log_likelihood(final, final.test_images()).mean()
    assert result["step"] == 200 and abs(exact_final - exact_early) > 0.1
    assert result["test"]["iwae"] == pytest.approx(exact_early, abs=0.03)

    main([run, "--step", "400", "eval.iwae_samples=16"])  # the last step: the plain name
    assert _read(os.path.join(run, "eval", "eval.iwae_samples=16.json"))["step"] == 400

    table, _, _ = build_report(run)
    row, recorded = table.iloc[0], _read(os.path.join(run, "metrics.json"))["test"]
    assert row.gain_since_step == 200
    assert row.test_elbo_gain == pytest.approx(recorded["elbo"] - result["test"]["elbo"])


@pytest.mark.parametrize("step, words", [("abc", ["--step abc", "previous"]),
                                         ("0", ["--step 0", "positive"]),
                                         ("previous", ["no checkpoint is kept before the last"]),
                                         ("300", ["no checkpoint at step 300", "400"])])
def test_bad_steps_give_one_line_and_write_nothing(step, words, run_dir, tmp_path, capsys):
    run = copy_run(run_dir, tmp_path)
    shutil.rmtree(os.path.join(run, "checkpoints", "200"))  # only the last is kept
    _assert_one_line_and_nothing_written([run, "--step", step], words, tmp_path, capsys)


@pytest.mark.parametrize("override, words", [
    ("beta=2", ["beta", "would change the trained model"]),
    ("train.steps=5", ["train.steps", "would change the trained model"]),
    ("eval.iwae_sample=3", ["eval.iwae_sample ", "not a config key", "eval.iwae_samples"]),
    ("eval.iwae_samples=abc", ["eval.iwae_samples=abc", "Integer"]),
    ("eval.iwae_samples=0", ["eval.iwae_samples=0", ">= 1"]),
    ("data.test_split=validation", ["data.test_split", "data=synthetic"]),
    ("+eval.x=1", ["+eval.x=1", "KEY=VALUE"]),
])
def test_bad_overrides_give_one_line_and_write_nothing(override, words, run_dir, tmp_path,
                                                       capsys):
    run = copy_run(run_dir, tmp_path)
    _assert_one_line_and_nothing_written([run, "eval.iwae_samples=16", override], words,
                                         tmp_path, capsys)


def test_a_folder_without_runs_gives_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / "nowhere")])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and err.count("\n") == 0 and "no such folder" in err
