#!/usr/bin/env bash
# The MLP-scale reproduction (docs/results.md): four sweeps into one folder, each run's
# test ELBO at its checkpoint before the last (convergence), then the report. Resumable: the
# same command again skips finished runs (and evaluations) and resumes the others from their
# checkpoints.
#   TFDS_DATA_DIR=../shared/tfds scripts/reproduce_mlp.sh mnist SWEEP_DIR
set -euo pipefail
dataset="${1:?usage: reproduce_mlp.sh mnist|omniglot SWEEP_DIR}"
sweep_dir="${2:?usage: reproduce_mlp.sh mnist|omniglot SWEEP_DIR}"
rdsweep="${RDSWEEP:-$(dirname "$0")/../.venv/bin/rdsweep}"
run() { "$rdsweep" -m "experiment=mlp_${dataset}" "hydra.sweep.dir=${sweep_dir}" "$@"; }
status=0
run || status=1                                                 # 4 families x 9 betas
run "mlp_family=--+,-++,+--,+-+,+-v,++-,+++,++v" beta=1 || status=1  # the other 8 at beta = 1
run "mlp_family=---,-+-,--v,-+v" beta=1 seed=1,2 || status=1    # 2 more seeds at beta = 1
run mlp_family=-+- objective=target_rate sigma=3,10,20,30 beta=1 || status=1  # the target rate
bin="$(dirname "$rdsweep")"
# Each run's test ELBO at its checkpoint before the last: the report's test_elbo_gain column.
"$bin/rdsweep-eval" "$sweep_dir" --step previous eval.iwae_samples=1 eval.train_examples=0 \
  || status=1
compare=()
[ "$dataset" = mnist ] && compare=(--compare paper_mnist)  # the paper's beta = 1 table (conv scale)
"$bin/rdsweep-report" "$sweep_dir" "${compare[@]}"
exit $status
