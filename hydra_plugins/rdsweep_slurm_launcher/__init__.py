"""rdsweep's SLURM launcher, a Hydra plugin: hydra/launcher=slurm and slurm_cpu."""
