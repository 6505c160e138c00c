"""rdsweep's grid launcher, a Hydra plugin: hydra/launcher=grid."""
