"""rdsweep-sample: samples, reconstructions and interpolations of a run, in a new folder."""

import os

import numpy as np
import pytest
from hydra.utils import instantiate
from PIL import Image

import rdsweep
from rdsweep.sample_cli import main
from trained_runs import copy_run, trained

PIXELS = 3 * (4 + 2)  # a 4x4 image and its padding, scaled up 3x


@pytest.fixture(scope="module")
def run_dir(make_cfg, data_cache):
    return trained(make_cfg, os.path.join(data_cache, "plane_run"))


def _snapshot(folder):
    return {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns
            for d, _, files in os.walk(folder) for f in files}


def _tile(picture, row, column):
    """The 4x4 image at (row, column) of a PNG written by rdsweep.images, in {0, 1} (ink 1)."""
    top, left = 3 * 2 + row * PIXELS, 3 * 2 + column * PIXELS
    return 1 - np.asarray(picture)[top:top + 12:3, left:left + 12:3] / 255


def test_pictures_show_the_test_examples_and_go_to_new_folders(run_dir, tmp_path, capsys):
    run = copy_run(run_dir, tmp_path)
    before = _snapshot(run)
    args = [run, "--samples", "5", "--reconstruct", "3", "--interpolate", "0,1", "2,3",
            "--steps", "4", "--seed", "7"]
    main(args)
    folder = os.path.join(run, "samples")
    names = sorted(os.listdir(folder))
    assert names == ["interpolation.png", "reconstructions.png", "samples.png"]
    assert len(capsys.readouterr().out.splitlines()) == 3

    config = rdsweep.load_run(run).config
    x = instantiate(config.data).load()[1].images[..., 0] / 255  # the test split, independently
    pictures = {name: Image.open(os.path.join(folder, name)) for name in names}
    assert pictures["samples.png"].size == (3 * PIXELS + 6, 2 * PIXELS + 6)  # 5 in rows of 3
    assert pictures["reconstructions.png"].size == (3 * PIXELS + 6, 2 * PIXELS + 6)
    assert pictures["interpolation.png"].size == (6 * PIXELS + 6, 2 * PIXELS + 6)
    for i in range(3):
        np.testing.assert_array_equal(_tile(pictures["reconstructions.png"], 0, i), x[i])
    for row, (i, j) in enumerate([(0, 1), (2, 3)]):
        np.testing.assert_array_equal(_tile(pictures["interpolation.png"], row, 0), x[i])
        np.testing.assert_array_equal(_tile(pictures["interpolation.png"], row, 5), x[j])

    main(args)  # again: a new folder, the same pictures (the same seed), the first kept
    again = os.path.join(run, "samples-2")
    for name in names:
        assert open(os.path.join(again, name), "rb").read() == \
            open(os.path.join(folder, name), "rb").read()
    assert {p: t for p, t in _snapshot(run).items() if "samples" not in p} == before


@pytest.mark.parametrize("options, words", [
    (["--interpolate", "0,40"], ["--interpolate 0,40", "0..39"]),
    (["--steps", "1"], ["--steps 1", ">= 2"]),
    (["--reconstruct", "41"], ["--reconstruct 41", "40 examples"]),
    (["--out", "EXISTING"], ["--out", "exists"]),
])
def test_bad_options_give_one_line_and_write_nothing(options, words, run_dir, tmp_path, capsys):
    run = copy_run(run_dir, tmp_path)
    options = [str(tmp_path) if o == "EXISTING" else o for o in options]
    before = _snapshot(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main([run, *options])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "\n" not in err and all(w in err for w in words), err
    assert _snapshot(tmp_path) == before
