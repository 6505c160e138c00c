"""rdsweep-report on a fake sweep folder of known metrics: every run a row with the right status,
the values as written, the H estimate, the plots, the comparison with the paper, the errors."""

import contextlib
import io
import json
import math
import os
import shutil

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from PIL import Image

from rdsweep import report
from rdsweep.report.runs import describe_config, entropy_estimate
from rdsweep.outputs import read_train_log, write_train_log
from rdsweep.report.plots import choose_image_runs, curves_figure
from rdsweep.report.tables import (compare_with, load_reference, reference_names,
                                   reference_source)
from rdsweep.sweep import PLAN

PAPER_MD = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "paper",
                        "broken-elbo.md")
# Paper code of each part -> its class, written out here independently of rdsweep.registry.
TARGETS = {
    "encoder": {"-": "rdsweep.options.conv.ConvEncoder", "+": "rdsweep.options.flows.IAFEncoder"},
    "decoder": {"-": "rdsweep.options.conv.ConvDecoder", "+": "rdsweep.options.pixelcnn.PixelCNNDecoder"},
    "marginal": {"-": "rdsweep.options.marginals.StandardGaussianMarginal",
                 "+": "rdsweep.options.flows.MAFMarginal", "v": "rdsweep.options.marginals.VampPrior"},
}
MLP_MIXTURE = {"encoder": "rdsweep.options.mlp.MLPEncoder", "decoder": "rdsweep.options.mlp.MLPDecoder",
               "marginal": "rdsweep.options.marginals.MixtureMarginal"}


def config(family, beta=None, sigma=None, seed=0):
    """A run config like metrics.json's "config": beta or target-rate objective."""
    parts = (MLP_MIXTURE if family == "mlp" else
             {group: TARGETS[group][code] for group, code in zip(TARGETS, family)})
    objective = ({"_target_": "rdsweep.options.objectives.BetaObjective", "beta": beta,
                  "warmup_steps": 0} if sigma is None else
                 {"_target_": "rdsweep.options.objectives.TargetRateObjective", "sigma": sigma,
                  "warmup_steps": 0})
    return {"beta": 1.0 if beta is None else beta, "sigma": 10.0 if sigma is None else sigma,
            "seed": seed, "latent_dim": 64,
            **{group: {"_target_": target} for group, target in parts.items()},
            "objective": objective}


def completed(cfg, rate, distortion, iwae, steps=100, seconds=12.5, images_per_s=250.0):
    return {"status": "completed", "steps": steps, "seconds": seconds,
            "images_per_s": images_per_s, "config": cfg,
            "test": {"rate": rate, "distortion": distortion, "elbo": -(rate + distortion),
                     "iwae": iwae, "iwae_samples": 10, "examples": 1000, "rate_mc": rate}}


# subdir -> metrics.json of the completed runs (values chosen by hand)
COMPLETED = {
    "beta=1,family=---": completed(config("---", beta=1.0), 27.0, 61.0, -85.5),
    "beta=1,family=---,seed=1": completed(config("---", beta=1.0, seed=1), 29.0, 59.5, -86.0,
                                          steps=90, seconds=11.0, images_per_s=260.0),
    "beta=0.3,family=---": completed(config("---", beta=0.3), 40.0, 50.0, -87.0),
    "beta=1,family=-+v": completed(config("-+v", beta=1.0), 0.5, 80.0, -80.25),
    "family=--+,objective=target_rate,sigma=5": completed(config("--+", sigma=5.0), 5.125,
                                                          78.0, -82.0),
}
EXTRA = "unplanned_mlp_run"  # a run folder the plan does not name
EXTRA_METRICS = completed(config("mlp", beta=1.0), 10.0, 90.0, -99.0)
WITH_IMAGES = ["beta=1,family=---", "beta=0.3,family=---", "beta=1,family=-+v",
               "family=--+,objective=target_rate,sigma=5"]
EXPECTED_STATUS = {
    **{run: "completed" for run in COMPLETED}, EXTRA: "completed",
    "beta=3,family=+--": "diverged", "beta=1,family=++v": "failed",
    "beta=0.3,family=-+v": "corrupt", "beta=3,family=--v": "incomplete",
    "beta=10,family=+++": "missing",
}
INCOMPLETE_YAML = """\
encoder:
  _target_: rdsweep.options.conv.ConvEncoder
decoder:
  _target_: rdsweep.options.conv.ConvDecoder
marginal:
  _target_: rdsweep.options.marginals.VampPrior
objective:
  _target_: rdsweep.options.objectives.BetaObjective
  beta: ${beta}
  warmup_steps: 0
seed: 2
beta: 3.0
"""


def overrides(subdir):
    return subdir.split(",") if "=" in subdir else []


def write_json(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f)


def tiny_png(path, seed):
    """3 rows of six 28x28 tiles, like a run's images.png."""
    pixels = np.random.default_rng(seed).integers(0, 256, (3 * 30 + 2, 6 * 30 + 2), np.uint8)
    Image.fromarray(pixels).save(path)


def make_sweep(root):
    """A sweep folder holding one run of every status, and its plan."""
    jobs = [run for run in EXPECTED_STATUS if run != EXTRA]
    write_json(root / PLAN, {"jobs": [{"subdir": run, "overrides": overrides(run)}
                                      for run in jobs]})
    for run, metrics in [*COMPLETED.items(), (EXTRA, EXTRA_METRICS)]:
        write_json(root / run / "metrics.json", metrics)
    for seed, run in enumerate(WITH_IMAGES):
        tiny_png(root / run / "images.png", seed)
    write_json(root / "beta=3,family=+--" / "metrics.json",
               {"status": "diverged", "steps": 37, "config": config("+--", beta=3.0)})
    write_json(root / "beta=1,family=++v" / "metrics.json",
               {"status": "failed", "error": "ValueError: boom", "config": config("++v", 1.0)})
    text = json.dumps(completed(config("-+v", beta=0.3), 1.0, 2.0, -3.0))
    (root / "beta=0.3,family=-+v").mkdir()
    (root / "beta=0.3,family=-+v" / "metrics.json").write_text(text[:len(text) // 2])
    for step in (10, 20):
        (root / "beta=3,family=--v" / "checkpoints" / str(step)).mkdir(parents=True)
    (root / "beta=3,family=--v" / ".hydra").mkdir()
    (root / "beta=3,family=--v" / ".hydra" / "config.yaml").write_text(INCOMPLETE_YAML)


def run_main(argv):
    """main(argv) -> (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            report.main(argv)
            code = 0
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """(sweep folder, exit code, stdout, stderr) of one `rdsweep-report --compare paper_mnist`."""
    root = tmp_path_factory.mktemp("sweep")
    make_sweep(root)
    return (root, *run_main([str(root), "--compare", "paper_mnist"]))


@pytest.fixture(scope="module")
def results(sweep):
    return pd.read_csv(sweep[0] / "report" / "results.csv").set_index("run")


def test_every_run_is_a_row_with_its_status(sweep, results):
    _, code, _, err = sweep
    assert code == 0
    assert results.status.to_dict() == EXPECTED_STATUS
    assert results.loc["beta=3,family=--v", "detail"] == "checkpoint at step 20"
    assert results.loc["beta=3,family=--v", "steps"] == 20
    assert results.loc["beta=3,family=+--", "steps"] == 37
    assert results.loc["beta=1,family=++v", "detail"] == "ValueError: boom"
    assert results.loc["beta=0.3,family=-+v", "detail"].startswith("metrics.json unreadable:")
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "beta=0.3,family=-+v" in warnings[0]


def test_values_are_the_metrics_written(results):
    for run, metrics in [*COMPLETED.items(), (EXTRA, EXTRA_METRICS)]:
        row = results.loc[run]
        for key in ("rate", "distortion", "elbo", "iwae", "iwae_samples"):
            assert row[key] == metrics["test"][key], (run, key)
        for key in ("steps", "seconds", "images_per_s"):
            assert row[key] == metrics[key], (run, key)
        objective = metrics["config"]["objective"]
        assert row.seed == metrics["config"]["seed"]
        for key in ("beta", "sigma"):
            assert row[key] == objective[key] if key in objective else math.isnan(row[key])
    assert results.loc[EXTRA, "family"] == "mlp/mlp/mixture"
    assert results.loc["beta=1,family=-+v", "family"] == "-+v"
    assert results.loc["family=--+,objective=target_rate,sigma=5", "objective"] == "target_rate"
    # without metrics.json: from .hydra/config.yaml (interpolated), or the plan's overrides
    assert results.loc["beta=3,family=--v", ["family", "beta", "seed"]].tolist() == ["--v", 3, 2]
    assert results.loc["beta=10,family=+++", ["family", "beta"]].tolist() == ["+++", 10]
    assert results.loc["beta=0.3,family=-+v", ["family", "beta"]].tolist() == ["-+v", 0.3]


def test_rows_are_sorted_by_family_then_beta(sweep):
    """Family in the paper's order, then each curve's runs by beta (a run whose config is lost,
    known by its overrides only, ends its family's rows)."""
    table = pd.read_csv(sweep[0] / "report" / "results.csv")
    paper_order = str.maketrans("-+v", "abc")  # the paper's: "-" before "+" before "v"
    keys = [(family.translate(paper_order), status in ("missing", "corrupt"), beta)
            for family, status, beta in zip(table.family, table.status,
                                            table.beta.fillna(np.inf))]
    assert keys == sorted(keys)
    assert table.family.iloc[0] == "---"


def test_family_table_has_a_cell_per_family_and_setting(sweep):
    text = (sweep[0] / "report" / "families.md").read_text()
    lines = text.split("Settings with several runs")[0].splitlines()  # the first table
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines if line[:1] == "|"]
    header = rows[0]
    assert header == ["family, settings", "beta=0.3", "beta=1", "beta=3", "beta=10", "sigma=5"]
    # a row per family and parts (the mlp run's encoder is not the conv one of the same code)
    cells = {row[0]: dict(zip(header[1:], row[1:])) for row in rows[2:]}
    assert cells["--- (beta) decoder=conv encoder=conv marginal=gaussian"] == {
        "beta=0.3": "40.0 / 50.0 / -90.0",
        "beta=1": "28.0 / 60.2 / -88.2 (2 runs)",  # means of the two seeds
        "beta=3": "", "beta=10": "", "sigma=5": ""}
    by_family = {}
    for label, row in cells.items():
        by_family.setdefault(label.split()[0], row)
    assert by_family["+--"]["beta=3"] == "diverged" and by_family["+++"]["beta=10"] == "missing"
    assert by_family["--+"]["sigma=5"] == "5.1 / 78.0 / -83.1"
    assert by_family["-+v"]["beta=1"] == "0.5 / 80.0 / -80.5"
    # the corrupt -+v run's parts are unknown: a row of its own, by its overrides
    assert cells["-+v (beta) decoder=? encoder=? marginal=?"]["beta=0.3"] == "corrupt"
    assert [label.split()[0] for label in cells] == [
        "---", "--+", "--v", "-+v", "-+v", "+--", "+++", "++v", "mlp/mlp/mixture"]


def test_settings_with_several_seeds_show_their_spread(sweep):
    text = (sweep[0] / "report" / "families.md").read_text()
    spread = text.split("Settings with several runs")[1]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in spread.splitlines()
            if line[:1] == "|"]
    assert rows[0] == ["setting", "runs", "rate", "distortion", "elbo", "iwae"]
    assert rows[2:] == [["--- (beta) decoder=conv encoder=conv marginal=gaussian beta=1", "2",
                         "28.00 (27.00 to 29.00)", "60.25 (59.50 to 61.00)",
                         "-88.25 (-88.50 to -88.00)", "-85.75 (-86.00 to -85.50)"]]


def test_parquet_equals_csv(sweep):
    folder = sweep[0] / "report"
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "results.parquet"),
                                  pd.read_csv(folder / "results.csv"), check_dtype=False)


def test_entropy_estimate_is_the_best_iwae_of_completed_runs(sweep):
    root, _, out, _ = sweep
    expected = min(-m["test"]["iwae"] for m in [*COMPLETED.values(), EXTRA_METRICS])
    assert expected == 80.25  # the corrupt run's -3.0 must not count
    assert entropy_estimate(report.collect(str(root))) == expected
    assert f"{expected:.2f} nats" in out


def test_plots_are_valid_pngs(sweep):
    folder = sweep[0] / "report"
    sizes = {}
    for name in ("rd_plane.png", "skew.png", "images.png"):
        with Image.open(folder / name) as picture:
            picture.verify()
            assert picture.format == "PNG"
            sizes[name] = picture.size
    assert sizes["images.png"][1] > 3 * sizes["images.png"][0] / 2  # 4 runs stacked


def test_image_runs_span_the_rates(sweep, results):
    chosen = choose_image_runs(results.reset_index(), str(sweep[0]), count=2)
    rates = results.loc[WITH_IMAGES, "rate"]
    assert chosen == [rates.idxmin(), rates.idxmax()]


def test_images_option_picks_the_runs(sweep, tmp_path):
    root = tmp_path / "sweep"
    shutil.copytree(sweep[0], root)
    code, _, _ = run_main([str(root), "--images", "beta=1,family=-+v"])
    assert code == 0
    with Image.open(root / "report" / "images.png") as picture:
        assert picture.size[1] < picture.size[0]  # one run only
    code, _, err = run_main([str(root), "--images", "no-such-run"])
    assert code == 2 and "no-such-run" in err


def paper_table():
    """{family: (R, D, ELBO)} parsed from the paper notes' markdown table."""
    if not os.path.isfile(PAPER_MD):
        pytest.skip(f"{PAPER_MD} is absent")
    with open(PAPER_MD) as f:
        text = f.read().split("## Reference numbers, MNIST, beta = 1")[1]
    values = {}
    for line in text.splitlines()[1:]:
        if not line.startswith("|"):
            if values:
                break
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        for start in (0, 5):
            family, *numbers = cells[start:start + 4]
            try:
                values[family] = tuple(float(n) for n in numbers)
            except ValueError:  # the header and the separator row
                continue
    return values


def test_comparison_with_the_paper(sweep):
    root, _, out, _ = sweep
    paper = paper_table()
    assert len(paper) == 12
    comparison = pd.read_csv(root / "report" / "compare_paper_mnist.csv",
                             dtype={"family": str}).set_index("family")
    assert sorted(comparison.index) == sorted(paper)
    ours = {"---": (28.0, 60.25, -88.25), "-+v": (0.5, 80.0, -80.5)}  # by hand: beta = 1 runs
    for family, (rate, distortion, elbo) in paper.items():
        row = comparison.loc[family]
        assert (row.rate_paper, row.distortion_paper, row.elbo_paper) == (rate, distortion, elbo)
        if family in ours:
            diffs = np.subtract(ours[family], (rate, distortion, elbo))
            np.testing.assert_allclose([row.rate_diff, row.distortion_diff, row.elbo_diff], diffs)
        else:  # ++v failed; --+ ran with the target-rate objective
            assert row.runs == 0 and np.isnan(row.rate_ours) and np.isnan(row.elbo_diff)
    assert comparison.loc["---", "runs"] == 2
    assert "| ++v | beta | 1 | 0 | 0.00 | missing |" in out
    page = (root / "report" / "README.md").read_text()
    assert "> Alemi et al. 2018, \"Fixing a Broken ELBO\" (ICML" in page  # the source, quoted


def test_a_reference_compares_only_the_quantities_it_has(sweep):
    """A reference of test log-likelihoods per marginal (like vampprior_mnist.csv): IWAE
    compared, R / D / ELBO not; a row without a number still lists our runs."""
    reference = pd.DataFrame({"marginal": ["vamp", "gaussian", "mixture", "none_of_ours"],
                              "iwae": [-80.0, -85.0, np.nan, -90.0]})
    comparison = compare_with(report.collect(str(sweep[0])), reference)
    assert not [c for c in comparison.columns if c.startswith(("rate", "distortion", "elbo"))]
    rows = {(r["marginal"], r["family"], r["beta"]): (r["runs"], r["iwae_ours"], r["iwae_diff"])
            for r in comparison.to_dict("records")}
    # by hand from COMPLETED and EXTRA_METRICS: completed runs per marginal and setting
    assert rows[("vamp", "-+v", 1.0)] == (1, -80.25, pytest.approx(-0.25))
    assert rows[("gaussian", "---", 1.0)] == (2, -85.75, pytest.approx(-0.75))
    assert rows[("gaussian", "---", 0.3)] == (1, -87.0, pytest.approx(-2.0))
    runs, ours, diff = rows[("mixture", "mlp/mlp/mixture", 1.0)]
    assert (runs, ours) == (1, -99.0) and math.isnan(diff)
    unmatched = comparison[comparison.marginal == "none_of_ours"].iloc[0]
    assert unmatched.runs == 0 and math.isnan(unmatched.iwae_ours)
    alone = compare_with(report.collect(str(sweep[0])), reference.tail(1))  # no run matches
    assert alone[["marginal", "runs"]].values.tolist() == [["none_of_ours", 0]]


def test_a_reference_key_the_family_code_names_is_read_from_the_configs(tmp_path):
    """With only coded marginals (N(0, I) "-" and VampPrior "v") the report shows no marginal
    column; vampprior_mnist.csv's rows match by it all the same, at k = 5000 only."""
    runs = {"standard": completed(config("---"), 20.0, 75.0, -88.0),
            "vamp": completed(config("--v"), 22.0, 70.0, -86.0),
            "vamp_k100": completed(config("--v", seed=1), 22.0, 70.0, -86.5)}
    for name, metrics in runs.items():
        metrics["test"]["iwae_samples"] = 100 if name == "vamp_k100" else 5000
        write_json(tmp_path / name / "metrics.json", metrics)
    table = report.collect(str(tmp_path))
    assert "marginal" not in table.columns  # the family code names it
    comparison = compare_with(table, load_reference("vampprior_mnist")).set_index("marginal")
    assert comparison.loc["gaussian", ["runs", "iwae_ours"]].tolist() == [1, -88.0]
    assert comparison.loc["gaussian", "iwae_diff"] == pytest.approx(-88.0 + 88.56)
    assert comparison.loc["vamp", ["runs", "iwae_ours"]].tolist() == [1, -86.0]  # not k = 100
    assert comparison.loc["mixture", "runs"] == 0
    one = compare_with(report.collect(str(tmp_path / "vamp")),  # a run folder
                       load_reference("vampprior_mnist")).set_index("marginal")
    assert one.loc["vamp", "runs"] == 1 and one.loc["gaussian", "runs"] == 0


def test_the_packaged_references_name_their_source_and_compare_known_quantities():
    for name in reference_names():
        reference = load_reference(name)
        assert set(reference.columns) & {"rate", "distortion", "elbo", "iwae"}, name
        assert len(reference_source(name)) > 80, name  # a sentence, not a stub


def test_missing_folder_exits_2_and_writes_nothing(tmp_path):
    missing = tmp_path / "no-sweep"
    code, out, err = run_main([str(missing)])
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("rdsweep-report: error:") and str(missing) in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_main([str(empty)])
    assert code == 2 and str(empty) in err
    assert not missing.exists() and os.listdir(empty) == []


def test_unknown_comparison_exits_2_listing_the_names(tmp_path):
    root = tmp_path / "sweep"
    write_json(root / "run" / "metrics.json", COMPLETED["beta=1,family=---"])
    code, _, err = run_main([str(root), "--compare", "paper_cifar"])
    assert code == 2 and err.count("\n") == 1 and "paper_mnist" in err
    assert not (root / "report").exists()


def test_family_and_objective_of_a_config_without_them():
    """Runs older than metrics.json's "family" and "objective": named from the config's parts."""
    old = describe_config(OmegaConf.create(config("+-v", beta=0.3)), {})
    assert (old["family"], old["objective"]) == ("+-v", "beta")
    assert json.loads(old["config"])["objective.beta"] == 0.3
    assert describe_config(OmegaConf.create(config("mlp", sigma=5.0)), {})["family"] == (
        "mlp/mlp/mixture")  # the mixture marginal has no paper code
    mlp = {"encoder": {"_target_": "rdsweep.options.mlp.MLPEncoder"},
           "decoder": {"_target_": "rdsweep.options.mlp.MLPDecoder"},
           "marginal": {"_target_": "rdsweep.options.marginals.StandardGaussianMarginal"},
           "objective": {"_target_": "rdsweep.options.objectives.TargetRateObjective",
                         "sigma": 5.0}}
    new = describe_config(OmegaConf.create(mlp), {})
    assert (new["family"], new["objective"]) == ("---", "target_rate")
    assert json.loads(new["config"])["objective.sigma"] == 5.0


def test_family_and_objective_recorded_in_metrics_are_used(tmp_path):
    cfg = config("---", beta=0.3)
    cfg["objective"]["_target_"] = "rdsweep.legacy.OldBetaObjective"  # not in the registry
    write_json(tmp_path / "run" / "metrics.json",
               {**completed(cfg, 1.0, 2.0, -3.0), "family": "-+v", "objective": "beta"})
    row = report.collect(str(tmp_path)).iloc[0]
    assert (row.family, row.objective, row.beta, row.status) == ("-+v", "beta", 0.3, "completed")


def test_a_run_folder_is_reported_as_that_run(tmp_path):
    run = tmp_path / "beta=1,family=-+v"
    write_json(run / "metrics.json", COMPLETED["beta=1,family=-+v"])
    tiny_png(run / "images.png", 0)
    code, out, err = run_main([str(run)])
    assert code == 0 and err == "" and out.startswith(f"1 runs in {run}: 1 completed")
    table = pd.read_csv(run / "report" / "results.csv")
    assert table[["run", "family", "status", "rate"]].values.tolist() == [
        [".", "-+v", "completed", 0.5]]
    assert (run / "report" / "images.png").is_file()
    started = tmp_path / "started"  # no metrics.json yet: its .hydra/ makes it a run folder
    (started / ".hydra").mkdir(parents=True)
    (started / ".hydra" / "config.yaml").write_text(INCOMPLETE_YAML)
    row = report.collect(str(started)).iloc[0]
    assert (row.run, row.status, row.family, row.detail) == (".", "incomplete", "--v",
                                                             "no checkpoint")


def train_log(steps, elbo, valid=None):
    """Rows of a train_log.csv (validation ELBOs only if given)."""
    return [{"step": s, "loss": -e, "rate": 20.0, "distortion": -e - 20.0, "elbo": e,
             "images_per_s": 1000.0, "seconds": 0.5 * i,
             **({} if valid is None else {"valid_elbo": valid[i]})}
            for i, (s, e) in enumerate(zip(steps, elbo))]


def test_curves_draw_each_runs_log_and_its_best_validation_check(tmp_path):
    early, plain, diverged = "beta=1,family=---", "beta=0.3,family=---", "beta=3,family=+--"
    for run in (early, plain):
        write_json(tmp_path / run / "metrics.json", COMPLETED[run])
    write_json(tmp_path / diverged / "metrics.json",
               {"status": "diverged", "steps": 37, "config": config("+--", beta=3.0)})
    write_json(tmp_path / "beta=1,family=++v" / "metrics.json",  # failed before its first log
               {"status": "failed", "error": "ValueError: boom", "config": config("++v", 1.0)})
    steps = [500, 1000, 1500, 2000, 2500]
    valid = [-120.0, -101.5, -99.0, -99.0, -100.25]  # the best, first reached at step 1500
    write_train_log(str(tmp_path / early), train_log(steps, [v + 3 for v in valid], valid))
    write_train_log(str(tmp_path / plain), train_log(steps, [-130.0, -110, -105, -104, -103.5]))
    write_train_log(str(tmp_path / diverged), train_log(steps[:3], [-150.0, -2e9, float("nan")]))
    code, _, err = run_main([str(tmp_path)])
    assert code == 0 and err == ""
    assert (tmp_path / "report" / "curves.png").is_file()
    assert "![Training curves](curves.png)" in (tmp_path / "report" / "README.md").read_text()

    table = report.collect(str(tmp_path))
    figure = curves_figure(table, str(tmp_path))
    lines = {line.get_gid(): line for line in figure.axes[0].lines}
    assert lines[f"valid:{early}"].get_xydata().tolist() == [list(p) for p in zip(steps, valid)]
    assert lines[f"best:{early}"].get_xydata().tolist() == [[1500, -99.0]]
    assert lines[f"train:{plain}"].get_ydata().tolist() == [-130.0, -110, -105, -104, -103.5]
    assert f"valid:{plain}" not in lines and f"best:{plain}" not in lines
    assert lines[f"train:{diverged}"].get_xdata().tolist() == steps[:3]
    assert figure.texts[-1].get_text() == "no readable train_log.csv: 1 failed"
    # from step 1000 in view; the first checks below, and the diverged run's -2e9 left out
    low, high = figure.axes[0].get_ylim()
    assert -120 < low < -110 and high > -96
    legend = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert legend[-2:] == ["training (chunk means)", "validation (dot: best check)"]
    unchecked = curves_figure(table[table.run == plain], str(tmp_path))
    assert "validation (dot: best check)" not in [
        text.get_text() for text in unchecked.axes[0].get_legend().get_texts()]


def test_a_train_log_without_a_numeric_step_is_unreadable(tmp_path):
    (tmp_path / "train_log.csv").write_text("step,elbo\nabc,-90.0\n")
    assert read_train_log(str(tmp_path)) is None
    (tmp_path / "train_log.csv").write_text("step,elbo\n500,-90.0\n1000,oops\n")
    log = read_train_log(str(tmp_path))
    assert log["step"].tolist() == [500, 1000] and log["elbo"][0] == -90.0
    assert math.isnan(log["elbo"][1])


def test_a_sweep_without_train_logs_has_no_curves(sweep):
    assert not (sweep[0] / "report" / "curves.png").exists()
    assert "Training curves" not in (sweep[0] / "report" / "README.md").read_text()


def test_completed_with_test_values_not_numbers_is_corrupt(tmp_path, capsys):
    metrics = completed(config("---", beta=1.0), 27.0, 61.0, -85.5)
    metrics["test"].update(rate="27.0", elbo=None)
    write_json(tmp_path / "run" / "metrics.json", metrics)
    row = report.collect(str(tmp_path)).iloc[0]
    assert row.status == "corrupt" and math.isnan(row.rate)
    assert row.detail == ("metrics.json is completed with test values that are not numbers: "
                          "rate, elbo")
    assert "warning" in capsys.readouterr().err


def test_each_familys_beta_runs_are_joined_in_beta_order(sweep):
    """The RD plane draws one line per family through its beta runs' (R, D), in beta order, with
    the seeds of a beta averaged; target-rate runs are points only."""
    from rdsweep.report.plots import rd_plane_figure

    table = report.collect(str(sweep[0]))
    lines = {line.get_gid().split()[0][len("curve:"):]: line
             for line in rd_plane_figure(table).axes[0].lines
             if str(line.get_gid()).startswith("curve:")}
    done = table[(table.status == "completed") & (table.objective == "beta")]
    for family, group in done.groupby("family"):
        means = group.groupby("beta")[["rate", "distortion"]].mean().sort_index()
        if len(means) < 2:
            assert family not in lines
            continue
        x, y = lines[family].get_data()
        np.testing.assert_allclose(x, means.rate)
        np.testing.assert_allclose(y, means.distortion)
    assert lines  # the fake sweep has a family with several betas


def continued_sweep(root):
    """A new sweep folder continuing the `sweep` fixture's: a third seed of --- at beta 1, the
    failed ++v run again (now completed), and --- beta 1 seed 0 started again (unfinished)."""
    write_json(root / "beta=1,family=---,seed=2" / "metrics.json",
               completed(config("---", beta=1.0, seed=2), 31.0, 60.25, -86.5))
    write_json(root / "beta=1,family=++v" / "metrics.json",
               completed(config("++v", beta=1.0), 0.25, 85.0, -85.125))
    unfinished = root / "beta=1,family=---"
    (unfinished / "checkpoints" / "10").mkdir(parents=True)
    write_json(unfinished / ".hydra" / "config.yaml", config("---", beta=1.0))  # JSON is YAML


def test_include_adds_an_earlier_reports_runs(sweep, results, tmp_path):
    root = tmp_path / "continued"
    continued_sweep(root)
    earlier = sweep[0] / "report" / "results.csv"
    code, out, err = run_main([str(root), "--include", str(earlier)])
    assert code == 0, err
    merged = pd.read_csv(root / "report" / "results.csv").set_index("run")
    assert sorted(merged.index) == sorted({*results.index, "beta=1,family=---,seed=2"})
    # the earlier completed --- run is kept, not replaced by the unfinished one of that name
    assert merged.loc["beta=1,family=---", ["status", "rate", "distortion"]].tolist() == [
        "completed", 27.0, 61.0]
    # the earlier failed ++v is replaced by the completed one
    assert merged.loc["beta=1,family=++v", ["status", "rate"]].tolist() == ["completed", 0.25]
    others = [run for run in results.index if run not in ("beta=1,family=++v",)]
    pd.testing.assert_frame_equal(merged.loc[others, results.columns], results.loc[others])
    spread = (root / "report" / "families.md").read_text().split("Settings with several runs")[1]
    assert ("| --- (beta) decoder=conv encoder=conv marginal=gaussian beta=1 | 3 | "
            "29.00 (27.00 to 31.00) |") in spread  # seeds 0 and 1 from the CSV
    assert out.startswith(f"{len(merged)} runs in {root} + {earlier}: ")


def test_include_of_a_file_that_is_not_a_report_exits_2(sweep, tmp_path):
    root = tmp_path / "continued"
    continued_sweep(root)
    not_a_report = tmp_path / "other.csv"
    not_a_report.write_text("run,rate\nx,1.0\n")
    for argv in ([str(root), "--include", str(not_a_report)],
                 [str(root), "--include", str(tmp_path / "missing.csv")],
                 [str(root), "--include", str(sweep[0] / "report" / "results.csv"),
                  "--eval", "previous"]):
        code, out, err = run_main(argv)
        assert code == 2 and out == "" and err.count("\n") == 1, (argv, err)
        assert err.startswith("rdsweep-report: error: --include")
    assert not (root / "report").exists()
