"""The option registry: every option composes and passes its own checks at its defaults, the
family code, requirements between options, size presets shared by a config and its module, and
docs/options.md generated from it."""

import importlib
import os
import pkgutil

import pytest
from hydra.utils import get_class

from rdsweep import options as options_package
from rdsweep import registry
from rdsweep.option import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALL = [(g, n) for g, table in registry.options().items() for n in table]
# What an option needs beside it to compose and pass (its requirements and data shape).
NEEDS = {"toy": ["experiment=toy"], "categorical": ["experiment=toy"],
         "mlflow": ["data=synthetic", "tracker.uri=sqlite:///mlflow.db"]}


@pytest.mark.parametrize("group,name", ALL, ids=[f"{g}={n}" for g, n in ALL])
def test_every_option_composes_and_passes_its_checks(group, name, make_cfg):
    cfg = make_cfg(*NEEDS.get(name, ["data=synthetic"]), f"{group}={name}")
    registry.check(cfg)
    assert registry.chosen(cfg, group).name == name


def test_every_options_module_is_registered():
    for info in pkgutil.iter_modules(options_package.__path__):
        module = importlib.import_module(f"rdsweep.options.{info.name}")
        for opt in module.OPTIONS:
            assert registry.options()[opt.group][opt.name] is opt


@pytest.mark.parametrize("overrides,code", [
    (["family=-+v"], "-+v"), (["family=+-+"], "+-+"), (["mlp_family=++v"], "++v"),
    (["mlp_family=---"], "---"), ([], "---"), (["marginal=mixture"], "mlp/mlp/mixture"),
    (["decoder=linear"], "mlp/linear/gaussian"),
])
def test_family_code(overrides, code, make_cfg):
    assert registry.family_code(make_cfg(*overrides)) == code


def test_requirements_between_options_are_checked(make_cfg):
    with pytest.raises(ConfigError, match=r"^marginal=gaussian is invalid with encoder=toy: "
                                          r"encoder=toy needs marginal=categorical$"):
        registry.check(make_cfg("experiment=toy", "marginal=gaussian"))


def test_sized_configs_share_their_modules_presets():
    for table in registry.options().values():
        for opt in table.values():
            presets = getattr(opt.node, "PRESETS", None)
            if presets is not None:
                assert get_class(opt.target).PRESETS is presets, opt.name


def test_a_size_a_part_lacks_is_named(make_cfg):
    with pytest.raises(ConfigError, match=r"^encoder.size=tiny is invalid: must be one of: "
                                          r"small, paper$"):
        registry.check(make_cfg("encoder=conv", "size=tiny"))


def test_docs_options_is_generated_from_the_registry():
    with open(os.path.join(ROOT, "docs", "options.md")) as f:
        assert f.read() == registry.reference(), (
            "docs/options.md is stale: python -m rdsweep.registry > docs/options.md")
