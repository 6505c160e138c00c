"""The Hydra internals rdsweep relies on, in one place: how the basic sweeper splits a sweep into
jobs and how Hydra names a job's folder from its overrides."""

from __future__ import annotations

from typing import List, Sequence

from hydra._internal.config_loader_impl import get_overrides_dirname
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

BASIC_SWEEPER = f"{BasicSweeper.__module__}.BasicSweeper"


def split_sweep(lines: Sequence[str]) -> List[List[str]]:
    """The basic sweeper's jobs (each a list of overrides) of a sweep's override lines."""
    parser = OverridesParser.create()
    return BasicSweeper.split_arguments(parser.parse_overrides(list(lines)), None)[0]


def override_dirname(job: Sequence[str], exclude_keys: Sequence[str], item_sep: str,
                     kv_sep: str) -> str:
    """hydra.job.override_dirname of a job's overrides."""
    parser = OverridesParser.create()
    return get_overrides_dirname(parser.parse_overrides(list(job)), list(exclude_keys), item_sep,
                                 kv_sep)


def compose_job(master_config, job: Sequence[str]):
    """A sweep job's full config, composed as the launchers compose it (raises Hydra's error
    for an override that cannot compose, e.g. an unknown option)."""
    from hydra.core.global_hydra import GlobalHydra

    return GlobalHydra.instance().config_loader().load_sweep_config(master_config, list(job))
