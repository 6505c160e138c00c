"""`rdsweep-report SWEEP_DIR`: one table of every run of a sweep folder and the paper's plots.

    rdsweep-report outputs/sweeps/2026-11-24/10-00-00-000000 --compare paper_mnist

Writes into SWEEP_DIR/report/: results.csv and results.parquet (one row per run, planned jobs
that never started included), families.md (R / D / ELBO, a row per family, a column per beta or
sigma), rd_plane.png (D against R), skew.png (-ELBO against R), curves.png (each run's ELBO
during training), images.png and equal_elbo.png (the inputs, reconstructions and samples of a
few runs), README.md (the page that holds them) and, with --compare NAME, a published table's
numbers next to ours (rdsweep/reference/NAME.csv). Runs that are not completed are never dropped
silently: they are rows of the table and are counted under each plot. SWEEP_DIR may also be one
run's folder (it holds metrics.json or .hydra/): the report is then of that run. With --eval
NAME, the test metrics are those of each run's re-evaluation eval/NAME.json (rdsweep-eval), and
the report goes to SWEEP_DIR/report/eval=NAME/.

Modules: collect (runs -> the results table), tables (families.md, the comparison, markdown),
plots (the figures), cli (the command, and writing the report).
"""

from rdsweep.report.cli import build_report, main, write_report
from rdsweep.report.runs import collect

__all__ = ["build_report", "collect", "main", "write_report"]
