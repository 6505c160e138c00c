"""The report never averages runs that differ in a key: sweeps over latent_dim, train.lr, the
data source and an objective known only to this module are reported as separate settings;
seeds of one setting are still averaged; --include and --compare keep settings apart. The run
folders are written from composed configs, with metrics chosen by hand."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from flax import struct

from rdsweep import registry, report
from rdsweep.config import ObjectiveConfig, job_config
from rdsweep.option import Option
from rdsweep.report.plots import rd_plane_figure
from rdsweep.report.tables import compare_with, family_table, load_reference, spread_table
from omegaconf import OmegaConf

from test_report import run_main, write_json


def metrics(cfg, rate, distortion):
    """metrics.json of a completed run of the composed config `cfg`."""
    return {"status": "completed", "steps": 10, "seconds": 1.0, "images_per_s": 100.0,
            "config": OmegaConf.to_container(job_config(cfg)),
            "family": registry.family_code(cfg),
            "objective": registry.option_name(cfg, "objective"),
            "test": {"rate": rate, "distortion": distortion, "elbo": -(rate + distortion),
                     "iwae": -(rate + distortion) + 1.0, "iwae_samples": 10, "examples": 100}}


def write_sweep(root, make_cfg, runs):
    """runs: {folder: (overrides, rate, distortion)} -> a sweep folder of completed runs."""
    for folder, (overrides, rate, distortion) in runs.items():
        write_json(root / folder / "metrics.json",
                   metrics(make_cfg("data=synthetic", *overrides), rate, distortion))
    return str(root)


@pytest.mark.parametrize("key,values,column", [
    ("latent_dim", ("2", "16"), "latent_dim"),
    ("train.lr", ("0.001", "0.003"), "train.lr"),
    ("data", ("synthetic", "binarized_mnist"), "data"),
    ("marginal.components", ("3", "10"), "marginal.components"),
])
def test_a_sweep_over_any_key_is_reported_as_separate_settings(key, values, column, make_cfg,
                                                               tmp_path):
    base = ["marginal=mixture"] if key.startswith("marginal.") else []
    runs = {f"{key}={v},seed={s}": ([*base, f"{key}={v}", f"seed={s}"], 10.0 + i, 80.0 + s)
            for i, v in enumerate(values) for s in (0, 1)}
    table = report.collect(write_sweep(tmp_path, make_cfg, runs))
    assert column in table.attrs["settings"]
    assert sorted(table[column].astype(str)) == sorted(v for v in values for _ in (0, 1))
    # two settings, each the mean of its two seeds (rates 10 and 11 are never mixed)
    cells = family_table(table).set_index("family, settings")["beta=1"].to_dict()
    family = lambda v: registry.family_code(make_cfg("data=synthetic", *base, f"{key}={v}"))
    assert cells == {f"{family(v)} {column}={v}": f"{10 + i:.1f} / 80.5 / {-90.5 - i:.1f} (2 runs)"
                     for i, v in enumerate(values)}
    spread = spread_table(table)
    assert list(spread.runs) == [2, 2]


def test_two_seeds_of_one_setting_are_averaged(make_cfg, tmp_path):
    runs = {f"seed={s}": ([f"seed={s}"], 20.0 + s, 70.0) for s in (0, 1)}
    table = report.collect(write_sweep(tmp_path, make_cfg, runs))
    assert table.attrs["settings"] == ["beta"]
    assert family_table(table).iloc[0].tolist() == ["---", "20.5 / 70.0 / -90.5 (2 runs)"]


@struct.dataclass
class GammaObjective:
    """D + gamma R^2: an objective that rdsweep does not have, for this test only."""

    gamma: float

    def __call__(self, rate, distortion, step):
        return distortion + self.gamma * rate ** 2


@dataclasses.dataclass
class GammaObjectiveConfig(ObjectiveConfig):
    KNOB = "gamma"
    _target_: str = f"{__name__}.GammaObjective"
    gamma: float = 1.0


@pytest.fixture
def gamma_objective(monkeypatch):
    """objective=gamma registered for the test (registry.options() is cached: added to it)."""
    monkeypatch.setitem(registry.options()["objective"], "gamma",
                        Option("objective", "gamma", GammaObjectiveConfig, "D + gamma R^2"))


def test_a_new_objectives_knob_needs_no_change_in_the_report(gamma_objective, make_cfg,
                                                              tmp_path):
    base = make_cfg("data=synthetic")
    runs = {}
    for i, gamma in enumerate((0.5, 2.0, 8.0)):
        cfg = OmegaConf.to_container(job_config(base))
        cfg["objective"] = {"_target_": f"{__name__}.GammaObjective", "gamma": gamma,
                            "warmup_steps": 0}
        runs[f"gamma={gamma}"] = {**metrics(base, 30.0 - 10 * i, 60.0 + 10 * i),
                                  "config": cfg, "objective": "gamma"}
    for folder, data in runs.items():
        write_json(tmp_path / folder / "metrics.json", data)
    table = report.collect(str(tmp_path))
    assert table.attrs["knobs"] == ["gamma"] and table.attrs["settings"] == ["gamma"]
    assert list(table.gamma) == [0.5, 2.0, 8.0]
    assert list(family_table(table).columns) == ["family, settings", "gamma=0.5", "gamma=2",
                                                 "gamma=8"]
    line = next(l for l in rd_plane_figure(table).axes[0].lines
                if str(l.get_gid()).startswith("curve:"))
    np.testing.assert_allclose(line.get_data()[0], [30.0, 20.0, 10.0])  # in gamma order


def test_include_of_an_earlier_csv_keeps_settings_apart(make_cfg, tmp_path):
    first = write_sweep(tmp_path / "a", make_cfg, {"latent_dim=2": (["latent_dim=2"], 5., 90.)})
    code, _, err = run_main([first])
    assert code == 0, err
    second = write_sweep(tmp_path / "b", make_cfg,
                         {"latent_dim=16": (["latent_dim=16"], 15.0, 75.0)})
    code, out, err = run_main([second, "--include", f"{first}/report/results.csv"])
    assert code == 0, err
    merged = pd.read_csv(f"{second}/report/results.csv")
    assert sorted(merged.latent_dim) == [2, 16]
    assert len(report.collect(second)) == 1  # the folder alone holds one run
    text = open(f"{second}/report/families.md").read()
    assert "--- latent_dim=2 | 5.0 / 90.0 / -95.0 |" in text
    assert "--- latent_dim=16 | 15.0 / 75.0 / -90.0 |" in text


def test_compare_keeps_settings_apart(make_cfg, tmp_path):
    runs = {f"latent_dim={d}": ([f"latent_dim={d}"], 10.0 + d, 80.0) for d in (2, 16)}
    table = report.collect(write_sweep(tmp_path, make_cfg, runs))
    comparison = compare_with(table, load_reference("paper_mnist")).set_index("family")
    rows = comparison.loc["---"]
    assert list(rows.latent_dim) == [2, 16] and list(rows.runs) == [1, 1]
    np.testing.assert_allclose(rows.rate_ours, [12.0, 26.0])
    np.testing.assert_allclose(rows.rate_diff, [12.0 - 27.1, 26.0 - 27.1])
    assert comparison.loc["-+-", "runs"] == 0


def test_a_rebuilt_report_from_its_csv_equals_the_original(make_cfg, tmp_path):
    runs = {f"beta={b}": ([f"beta={b}"], 30.0 / b, 60.0 + b) for b in (0.5, 1, 2)}
    sweep = write_sweep(tmp_path / "s", make_cfg, runs)
    assert run_main([sweep])[0] == 0
    original = pd.read_csv(f"{sweep}/report/results.csv")
    copy = tmp_path / "copy"
    copy.mkdir()
    original.to_csv(copy / "results.csv", index=False)
    code, out, err = run_main([str(copy / "results.csv")])
    assert code == 0, err
    pd.testing.assert_frame_equal(pd.read_csv(copy / "results.csv"), original)
    page = (copy / "README.md").read_text()
    assert "![Rate-distortion plane](rd_plane.png)" in page and (copy / "rd_plane.png").is_file()
    assert json.loads(original.config[0])["objective.beta"] == 0.5


def test_knob_labels_never_overlap_at_fifty_runs():
    """56 runs of the committed MLP-scale sweep: the knob labels drawn do not overlap, and
    each curve is named once in the legend."""
    table = report.runs.read_results("docs/results/mlp_mnist/results.csv", option="")
    ax = rd_plane_figure(table).axes[0]
    renderer = ax.figure.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts if t.get_gid() == "knob-label"]
    assert len(boxes) >= 20  # most points are labelled
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    names = ax.get_legend_handles_labels()[1]
    assert len(names) == len(set(names)) == 13 + 1  # 13 curves and the H line
