"""One identity for a run (rdsweep.identity): the run's hash, the sweep's duplicate check, the
grid launcher's grouping, the run folder's name, the re-evaluation's name and the report's
setting agree, over a table of config pairs whose relation is written out here by hand."""

import pytest

from rdsweep import experiment, identity, registry, sweep
from rdsweep.eval_cli import eval_name, parse_overrides
from rdsweep.hydra_adapter import override_dirname
from rdsweep.option import ConfigError
from rdsweep.report import settings

# (overrides a, overrides b, same model?, same hash?, one grid?)
PAIRS = [
    (["data.dir=/a"], ["data.dir=/b"], True, True, True),
    (["data.cache_dir=/a"], ["data.download=true"], True, True, True),
    (["train.fusions=xla"], ["train.fusions=single_dot"], True, True, True),
    (["tracker=mlflow", "tracker.uri=x"], [], True, True, True),
    (["compilation_cache_dir=/c"], [], True, True, True),
    # an alias no option reads: the same model; the hash keeps the alias, as it always did
    (["objective=target_rate", "beta=0.5"], ["objective=target_rate", "beta=1"],
     True, False, True),
    (["beta=0.5"], ["beta=1"], False, False, True),
    (["seed=0"], ["seed=1"], False, False, True),
    (["train.lr=0.001"], ["train.lr=0.003"], False, False, True),
    (["objective=target_rate", "sigma=3"], ["objective=target_rate", "sigma=30"],
     False, False, True),
    (["latent_dim=2"], ["latent_dim=16"], False, False, False),
    (["data=synthetic"], ["data=binarized_mnist"], False, False, False),
    (["objective=target_rate"], [], False, False, False),
    (["train.steps=10"], ["train.steps=20"], False, False, False),
    (["mlp_family=---"], ["mlp_family=-+-"], False, False, False),
]
IDS = [f"{' '.join(a) or 'default'} vs {' '.join(b) or 'default'}" for a, b, *_ in PAIRS]


@pytest.mark.parametrize("a,b,same_model,same_hash,one_grid", PAIRS, ids=IDS)
def test_every_comparison_of_runs_agrees(a, b, same_model, same_hash, one_grid, make_cfg):
    cfg_a, cfg_b = make_cfg(*a), make_cfg(*b)
    assert (identity.trained(cfg_a) == identity.trained(cfg_b)) == same_model
    assert (identity.config_hash(cfg_a) == identity.config_hash(cfg_b)) == same_hash
    assert (experiment.grid_key(cfg_a) == experiment.grid_key(cfg_b)) == one_grid
    if same_model:
        with pytest.raises(ConfigError, match="train the same model"):
            sweep.check_distinct([(a, cfg_a), (b, cfg_b)])
    else:
        sweep.check_distinct([(a, cfg_a), (b, cfg_b)])
    # the report: one setting (seeds of it) exactly when the model is the same but the seed
    rows, columns, _ = settings.setting_columns(
        [identity.trained(cfg_a), identity.trained(cfg_b)],
        [registry.option_name(cfg_a, "objective"), registry.option_name(cfg_b, "objective")])
    replicate = identity.trained(cfg_a) | {"seed": 0} == identity.trained(cfg_b) | {"seed": 0}
    assert (rows[0] == rows[1]) == replicate, (rows, columns)


@pytest.mark.parametrize("a,b,same_model", [(a, b, m) for a, b, m, *_ in PAIRS
                                            if a and b and m], ids=lambda v: str(v))
def test_keys_outside_the_identity_name_no_folder(a, b, same_model):
    """Runs that differ only outside the identity get one folder and one evaluation name."""
    name = lambda job: override_dirname(job, identity.unnamed_keys(), ",", "=")
    if all(identity.in_identity(o.split("=")[0]) for o in a + b):
        return  # an unread alias: check_distinct rejects the sweep before any folder
    assert name(a) == name(b) == ""
    evaluation = lambda job: eval_name(parse_overrides([*job, "eval.iwae_samples=5"]))
    assert evaluation(a) == evaluation(b) == "eval.iwae_samples=5"


def test_tracker_keys_are_outside_the_identity():
    keys = identity.unnamed_keys()
    assert {"tracker", "tracker.uri", "tracker.experiment", "data.dir"} <= set(keys)
    assert not any(identity.in_identity(k) for k in keys)
    assert identity.in_identity("train.lr") and identity.in_identity("data.name")


def test_aliases_are_the_top_level_keys_read_by_interpolation():
    assert {"beta", "sigma", "latent_dim", "size"} <= set(identity.aliases())
    assert "seed" not in identity.aliases() and "train" not in identity.aliases()


def test_the_objectives_declare_their_knobs(make_cfg):
    assert identity.knob(make_cfg().objective) == "beta"
    assert identity.knob(make_cfg("objective=target_rate").objective) == "sigma"
