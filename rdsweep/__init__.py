"""rdsweep: rate-distortion sweeps of latent-variable models in JAX.

`rdsweep.load_run(run_dir)` loads a trained run (rdsweep.trained); it is imported on first use,
so that importing a part of the package does not import the whole of it."""

import importlib

__all__ = ["load_run"]


def __getattr__(name):
    if name == "load_run":
        return importlib.import_module("rdsweep.trained").load_run
    raise AttributeError(f"module 'rdsweep' has no attribute {name!r}")
