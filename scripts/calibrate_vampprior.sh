#!/usr/bin/env bash
# The calibration against Tomczak & Welling's one-layer VAE (docs/results.md, "Calibration"):
# the standard prior, the VampPrior and a 500-component Gaussian mixture, each trained to the
# paper's stopping rule (experiment=vampprior_mnist), then test NLL with 5000 importance
# samples and the report, the paper's numbers beside ours. Resumable: the same command again
# skips finished runs and evaluations and resumes the others from their checkpoints.
#   TFDS_DATA_DIR=../shared/tfds scripts/calibrate_vampprior.sh SWEEP_DIR
set -euo pipefail
sweep_dir="${1:?usage: calibrate_vampprior.sh SWEEP_DIR}"
bin="${RDSWEEP_BIN:-$(dirname "$0")/../.venv/bin}"
status=0
"$bin/rdsweep" -m experiment=vampprior_mnist "hydra.sweep.dir=${sweep_dir}" || status=1
"$bin/rdsweep" -m experiment=vampprior_mnist marginal=mixture marginal.components=500 \
  "hydra.sweep.dir=${sweep_dir}" || status=1
# The paper's test log-likelihood: 5000 importance samples per test image.
"$bin/rdsweep-eval" "$sweep_dir" eval.iwae_samples=5000 eval.train_examples=0 || status=1
"$bin/rdsweep-report" "$sweep_dir" --eval eval.iwae_samples=5000,eval.train_examples=0 \
  --compare vampprior_mnist || status=1
exit $status
