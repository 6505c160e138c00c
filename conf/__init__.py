"""Hydra configs of rdsweep (installed as the package rdsweep.conf)."""
