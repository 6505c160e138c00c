"""A non-editable install (a wheel) carries the configs, not the benchmark: the command composes
its config."""

import os
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow  # builds and installs a wheel
def test_wheel_ships_configs_and_runs(tmp_path):
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    built = subprocess.run([*pip, "wheel", "--no-deps", "-w", str(tmp_path / "dist"), ROOT],
                           capture_output=True, text=True, check=True)
    # setuptools warns (a screenful at every install) about a conf/ folder pyproject.toml omits
    assert "absent from the `packages` configuration" not in built.stderr, built.stderr
    (wheel,) = (tmp_path / "dist").iterdir()
    names = zipfile.ZipFile(wheel).namelist()
    configs = [os.path.relpath(os.path.join(d, f), ROOT)
               for d, _, files in os.walk(os.path.join(ROOT, "conf")) for f in files
               if f.endswith(".yaml")]
    for shipped in ("rdsweep/options/mlp.py", "rdsweep/report/cli.py",
                    *("rdsweep/" + c for c in configs)):
        assert shipped in names, (shipped, names)
    assert not [n for n in names if n.startswith("benchmarks/")]  # run from a checkout only
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "rdsweep = rdsweep.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()

    target = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run([sys.executable, "-c", "import rdsweep; print(rdsweep.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.startswith(str(target)), where.stdout  # the wheel, not the checkout
    p = subprocess.run([sys.executable, "-m", "rdsweep", "--cfg", "job", "encoder.hidden=[7]"],
                       cwd=tmp_path, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "  name: binarized_mnist" in p.stdout and "- 7\n" in p.stdout
