"""The rdsweep command in a subprocess: sweeps, bad input, and finished runs left alone."""

import os
import subprocess
import sys

import pytest

from helpers import SMALL_MODEL, TINY, rdsweep, rdsweep_here, read
from rdsweep.console import BAD_INPUT
from rdsweep.validation import validate


def test_multirun_writes_one_completed_result_per_beta(tfds_dir, tmp_path):
    sweep = tmp_path / "sweep"
    p = rdsweep("-m", "beta=0.1,3", f"hydra.sweep.dir={sweep}", f"data.dir={tfds_dir}", *TINY,
                "data.test_split='test[:1000]'", "latent_dim=8", "encoder.hidden=[64]",
                "decoder.hidden=[64]", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    # one folder per job, named by its overrides; the plan and the report beside them
    entries = sorted(os.listdir(sweep))
    assert entries[2:] == ["multirun.yaml", "report", "sweep_plan.json"], entries
    runs = entries[:2]
    assert runs[0].startswith("beta=0.1,") and runs[1].startswith("beta=3,"), runs
    low, high = (read(sweep / r / "metrics.json") for r in runs[:2])
    assert low["status"] == high["status"] == "completed"
    assert low["config"]["beta"] == 0.1 and high["config"]["beta"] == 3
    assert low["test"]["rate"] > high["test"]["rate"] + 5.0, (low["test"], high["test"])
    assert (sweep / runs[0] / "train_log.csv").read_text().count("\n") == 4  # header + 3 rows
    assert (sweep / runs[0] / ".hydra" / "config.yaml").exists()


# Bad values, each with the one line that names it (checked in-process: the same validation
# the command runs before any folder exists; a few go through the command below).
BAD = [
    (["beta=-1"], "beta=-1.0 is invalid: must be a finite number >= 0"),
    (["beta=inf"], "beta=inf is invalid: must be a finite number >= 0"),
    (["train.lr=inf"], "train.lr=inf is invalid: must be a finite number > 0"),
    (["train.epochs=inf"], "train.epochs=inf is invalid: must be a finite number > 0"),
    (["train.lr_hold_epochs=inf"],
     "train.lr_hold_epochs=inf is invalid: must be a finite number >= 0"),
    (["encoder.hidden=[0]"], "encoder.hidden=[0] is invalid: must list widths >= 1"),
    (["encoder.hidden=[-5]"], "encoder.hidden=[-5] is invalid: must list widths >= 1"),
    (["data=binarized_mnist", "data.image_shape=[28,28]"],
     "data.image_shape=[28, 28] is invalid: must be [height, width, channels] >= 1"),
    (["data=binarized_mnist", "data.static_seed=-1"],
     "data.static_seed=-1 is invalid: must be an integer >= 0"),
    (["data=binarized_mnist", "data.dir=/no/such/folder"],
     "data.dir=/no/such/folder is invalid: no such directory"),
    (["data.bar_prob=2"], "data.bar_prob=2.0 is invalid: must be in [0, 1]"),
    (["train.batch_size=0"], "train.batch_size=0 is invalid: must be an integer >= 1"),
    (["train.steps=0"], "train.steps=0 is invalid: must be an integer >= 1"),
    (["latent_dim=0"], "latent_dim=0 is invalid: must be an integer >= 1"),
    (["data.binarization=grey"], "data.binarization=grey is invalid: must be one of"),
    (["train.checkpoint_every=-1"], "train.checkpoint_every=-1 is invalid"),
    (["train.keep_checkpoints=0"], "train.keep_checkpoints=0 is invalid: must be an integer >= 1"),
    (["train.grid_batching=pmap"],
     "train.grid_batching=pmap is invalid: must be one of: auto, vmap, map"),
    (["size=huge"], "size=huge is invalid: must be one of: small, paper, tiny"),
    (["encoder=conv", "size=tiny"], "encoder.size=tiny is invalid: must be one of: small, paper"),
    (["objective=target_rate", "sigma=-3"],
     "sigma=-3.0 is invalid: must be a finite number >= 0"),
    (["marginal=vamp", "marginal.pseudo_inputs=0"],
     "marginal.pseudo_inputs=0 is invalid: must be an integer >= 1"),
    (["family=+-+", "marginal.steps=0"], "marginal.steps=0 is invalid: must be an integer >= 1"),
    (["encoder=conv", "encoder.channels=[1,2]"],
     "encoder.channels=[1, 2] is invalid: must list 5 widths >= 1, one per layer of appendix F"),
    (["train.lr_hold_steps=5", "train.lr_hold_epochs=1"],
     "train.lr_hold_epochs=1.0 is invalid: give at most one of train.lr_hold_steps and "
     "train.lr_hold_epochs"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_value_is_named_in_one_line(args, message, make_cfg):
    data = [] if any(a.startswith("data=") for a in args) else ["data=synthetic"]
    with pytest.raises(BAD_INPUT) as error:
        validate(make_cfg(*data, *args))
    assert str(error.value).startswith(message) and "\n" not in str(error.value), error.value


def _fails_with_one_line(args, message, tmp_path):
    out = tmp_path / "out"
    p = rdsweep_here(*args, f"hydra.run.dir={out}", f"hydra.sweep.dir={out}", cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().splitlines() == [f"rdsweep: error: {message}"] or (
        message in p.stderr and len(p.stderr.strip().splitlines()) == 1), p.stderr
    assert not out.exists()  # nothing written, not even Hydra's folder


COMMAND_BAD = [
    (["beta=-1"], "beta=-1.0 is invalid: must be a finite number >= 0"),
    (["-m", "beta=1,-2"], "beta=-2.0 is invalid: must be a finite number >= 0"),
    (["-m", "train.lr=0.1,inf"], "train.lr=inf is invalid: must be a finite number > 0"),
    (["-m", "beta=1,2", "train.grid_batching=pmap"],
     "train.grid_batching=pmap is invalid: must be one of: auto, vmap, map"),
    (["-m", "family=+-+", "marginal.steps=4,0"],
     "marginal.steps=0 is invalid: must be an integer >= 1"),
    # jobs that would differ only in their folder names
    (["-m", "objective=target_rate", "sigma=3", "beta=0.5,1"],
     "objective=target_rate sigma=3 beta=0.5 data=synthetic and objective=target_rate sigma=3 "
     "beta=1 data=synthetic train the same model: beta is read by no option of this config "
     "(objective=target_rate); "
     "give beta a single value"),
    (["-m", "beta=1,1.0"], "beta=1 data=synthetic and beta=1.0 data=synthetic train the same "
     "model: a value is listed twice; list each value once"),
]


@pytest.mark.parametrize("args,message", COMMAND_BAD, ids=[" ".join(a) for a, _ in COMMAND_BAD])
def test_bad_value_fails_at_start_with_one_line(args, message, tmp_path):
    _fails_with_one_line([*args, "data=synthetic"], message, tmp_path)


def test_bad_split_of_real_data_fails_at_start_with_one_line(tfds_dir, tmp_path):
    _fails_with_one_line(
        [f"data.dir={tfds_dir}", "data.test_split=validationx"],
        "data.test_split=validationx is invalid: dataset 'binarized_mnist': Unknown split "
        "'validationx'. Should be one of", tmp_path)


HYDRA_BAD = [
    (["encoder=nope"], "encoder"),  # Hydra lists the available options
    (["trian.steps=5"], "trian"),
    (["beta=abc"], "beta"),
    (["train.steps=1.5"], "train.steps"),
    (["family=-x-"], "family"),
]


@pytest.mark.parametrize("args,name", HYDRA_BAD, ids=[" ".join(a) for a, _ in HYDRA_BAD])
def test_unknown_or_mistyped_option_fails_with_hydras_message(args, name, tmp_path):
    out = tmp_path / "out"
    p = rdsweep_here(*args, "data=synthetic", f"hydra.run.dir={out}", cwd=tmp_path)
    assert p.returncode != 0
    assert name in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert not out.exists()


def test_unknown_group_option_lists_the_valid_ones(tmp_path):
    p = rdsweep_here("decoder=pixelcnnn", "data=synthetic", cwd=tmp_path)
    assert p.returncode != 0 and "Available options in 'decoder'" in p.stderr
    assert "mlp" in p.stderr


def test_missing_data_offline_fails_with_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    p = rdsweep_here(f"data.dir={empty}", f"hydra.run.dir={out}", cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        f"rdsweep: error: dataset 'binarized_mnist' is not prepared in data_dir {empty} "
        "(data.download=false): set data.dir (or TFDS_DATA_DIR) to a tfds data_dir that holds it, "
        "or prepare it with data.download=true on a machine with internet and TensorFlow "
        "(pip install 'rdsweep[download]')"]
    assert not out.exists() and os.listdir(empty) == []


def test_finished_run_is_never_overwritten(tmp_path):
    out = tmp_path / "run"
    args = [*SMALL_MODEL, f"hydra.run.dir={out}", *TINY]
    first = rdsweep_here(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    snapshot = {p: (out / p).read_bytes() for p in ("metrics.json", "train_log.csv",
                                                     ".hydra/config.yaml")}
    assert read(out / "metrics.json")["status"] == "completed"

    again = rdsweep_here(*args, cwd=tmp_path)  # the same config: skipped, said so
    assert again.returncode == 0 and "not run again" in again.stderr, again.stderr
    other = rdsweep_here(*args, "beta=2", cwd=tmp_path)  # another config: refused
    assert other.returncode == 2
    assert "already holds a finished run of another config" in other.stderr
    assert {p: (out / p).read_bytes() for p in snapshot} == snapshot


@pytest.mark.slow  # two more processes
def test_python_dash_m_and_console_script_agree(tmp_path):
    cli = os.path.join(os.path.dirname(sys.executable), "rdsweep")
    a = subprocess.run([cli, "--cfg", "job"], cwd=tmp_path, capture_output=True, text=True)
    b = rdsweep("--cfg", "job", cwd=tmp_path)
    assert a.returncode == b.returncode == 0, a.stderr + b.stderr
    assert a.stdout == b.stdout and "latent_dim: 64" in a.stdout


def test_an_experiments_sweep_grid_is_checked_up_front(make_cfg, tfds_dir, capsys, tmp_path):
    """The grid in hydra.sweeper.params (an experiment preset's) is validated like a
    command-line sweep, before any job."""
    from hydra import compose, initialize_config_module
    from omegaconf import open_dict

    from rdsweep.callbacks import ValidateConfig

    make_cfg()  # registers the configs
    with initialize_config_module(config_module="rdsweep.conf", version_base="1.3"):
        cfg = compose("config", overrides=["experiment=paper_mnist", f"data.dir={tfds_dir}",
                                           f"hydra.sweep.dir={tmp_path}",
                                           "hydra.sweeper.params.beta='0.1,1'"],  # of 14 betas
                      return_hydra_config=True)
        ValidateConfig().on_multirun_start(cfg)  # the preset's own grid is valid (every job)
    jobs = read(tmp_path / "sweep_plan.json")["jobs"]  # every job of the grid, with its folder
    assert len(jobs) == len(cfg.hydra.sweeper.params.family.split(",")) * 2 == 12 * 2
    assert "beta=0.1,experiment=paper_mnist,family=-+v" in {job["subdir"] for job in jobs}
    with open_dict(cfg):
        cfg.hydra.sweeper.params.beta = "0.1,-1"
    with pytest.raises(SystemExit) as exit_info, initialize_config_module(
            config_module="rdsweep.conf", version_base="1.3"):
        ValidateConfig().on_multirun_start(cfg)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == ("rdsweep: error: beta=-1.0 is invalid: must be a finite "
                                       "number >= 0\n")


@pytest.mark.parametrize("preset", ["paper_mnist", "paper_omniglot", "cpu_mnist",
                                    "cpu_omniglot", "mlp_mnist", "mlp_omniglot"])
def test_experiment_presets_compose(preset, tmp_path):
    p = rdsweep_here(f"experiment={preset}", "--cfg", "job", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "train:" in p.stdout and "objective:" in p.stdout
    assert ("size: small" in p.stdout) == preset.startswith(("cpu_", "mlp_"))
    assert ("name: omniglot" in p.stdout) == preset.endswith("omniglot")


@pytest.mark.slow  # two runs in subprocesses; not a check of bad input
def test_compilation_cache_is_on_and_outside_the_run_identity(tmp_path):
    cache = tmp_path / "jax-cache"
    out = tmp_path / "run"
    p = rdsweep(*SMALL_MODEL, f"hydra.run.dir={out}", f"compilation_cache_dir={cache}",
                *TINY, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert len(os.listdir(cache)) > 0  # the training chunk's compiled program, at least
    again = rdsweep(*SMALL_MODEL, f"hydra.run.dir={out}", "compilation_cache_dir=null",
                    *TINY, cwd=tmp_path)  # another cache folder is the same run: not run again
    assert again.returncode == 0 and "not run again" in again.stderr, again.stderr


def test_help_names_the_app_rdsweep(tmp_path):
    p = rdsweep_here("--help", cwd=tmp_path)
    assert p.returncode == 0 and p.stdout.startswith("rdsweep is powered by Hydra"), p.stdout
