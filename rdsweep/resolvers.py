"""The OmegaConf resolvers that conf/config.yaml uses; `register()` makes them known to
OmegaConf (before any config is composed: the rdsweep command, the tests' compose)."""

from __future__ import annotations

from omegaconf import OmegaConf

from rdsweep import identity, sweep

RESOLVERS = {
    "rdsweep_slug": sweep.run_slug,  # a job's folder name
    "rdsweep_unnamed_keys": identity.unnamed_keys,  # overrides left out of that name
    "rdsweep_xla_flags": sweep.xla_flags,  # jobs that share the cores
    "rdsweep_gpu_memory": sweep.gpu_memory_fraction,  # jobs that share a GPU
}


def register() -> None:
    for name, resolver in RESOLVERS.items():
        OmegaConf.register_new_resolver(name, resolver, replace=True)
