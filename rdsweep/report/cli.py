"""The rdsweep-report command: checks its arguments, writes SWEEP_DIR/report/ (build_report,
write_report) and prints the summary."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, Mapping, Optional, Sequence, Tuple

import pandas as pd
from matplotlib.figure import Figure

from rdsweep.fileio import atomic_write
from rdsweep.outputs import IMAGES
import rdsweep.report.settings as settings
from rdsweep.report.page import FIGURES, counts, page
from rdsweep.report.runs import ReportError, collect, entropy_estimate, merge, read_results
from rdsweep.report.plots import (choose_equal_elbo_runs, choose_image_runs, curves_figure,
                                  images_figure, rd_plane_figure, skew_figure)
from rdsweep.report.tables import (compare_with, comparison_markdown, family_table,
                                   load_reference, markdown, reference_names, spread_table)

REPORT = "report"
RESULTS = "results.csv"
METRIC_COLUMNS = ("status", "rate", "distortion", "elbo", "iwae", "detail")


def key_columns(table: pd.DataFrame) -> list:
    """The columns the command prints: what each run is, and how it went."""
    return ["family", "objective", *settings.of(table)[0], "seed", *METRIC_COLUMNS]


def _save_figure(fig: Figure, path: str) -> None:
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110), binary=True)


def _save_csv(frame: pd.DataFrame, path: str) -> None:
    atomic_write(path, lambda f: frame.to_csv(f, index=False))


def _check_image_runs(table: pd.DataFrame, sweep_dir: str, runs: Sequence[str]) -> None:
    """ReportError unless every run of --images is in the table and has an images.png."""
    for run in runs:
        if run not in set(table.run):
            raise ReportError(f"--images {run}: no such run in {sweep_dir}")
        if not os.path.isfile(os.path.join(sweep_dir, run, IMAGES)):
            raise ReportError(f"--images {run}: {os.path.join(sweep_dir, run, IMAGES)} "
                              "does not exist")


def source(sweep_dir: str, include: Sequence[str]) -> str:
    """Where the table's rows come from: "SWEEP_DIR", or "SWEEP_DIR + CSV + ..."."""
    return " + ".join([sweep_dir, *include])


def is_results_csv(path: str) -> bool:
    """SWEEP_DIR given as an earlier report's results.csv (its runs' folders may be gone)."""
    return os.path.isfile(path) and path.endswith(".csv")


def build_report(sweep_dir: str, compare: Optional[str] = None,
                 image_runs: Optional[Sequence[str]] = None, eval_name: Optional[str] = None,
                 include: Sequence[str] = ()
                 ) -> Tuple[pd.DataFrame, Optional[pd.DataFrame], Dict[str, str]]:
    """(the table, the comparison or None, the paths written by file name). Every argument is
    checked before the first file is written. eval_name: the test metrics are the runs'
    re-evaluation eval/<eval_name>.json, and the report goes to report/eval=<eval_name>/.
    include: earlier reports' results.csv files whose rows join the table (runs.merge).
    sweep_dir may be a results.csv: the report is rebuilt from it, beside it."""
    from_csv = is_results_csv(sweep_dir)
    if include and eval_name:
        raise ReportError("--include and --eval cannot be combined: an included row's test "
                          "metrics are its own run's evaluation")
    if from_csv and (eval_name or image_runs):
        raise ReportError(f"{sweep_dir}: a results.csv has no run folders; --eval and --images "
                          "need the sweep folder")
    reference = load_reference(compare) if compare else None
    earlier = [read_results(path) for path in include]
    table = read_results(sweep_dir, option="") if from_csv else collect(sweep_dir, eval_name)
    for rows in earlier:
        table = merge(table, rows)
    if image_runs:
        _check_image_runs(table, sweep_dir, image_runs)
    comparison = compare_with(table, reference) if reference is not None else None

    folder = (os.path.dirname(os.path.abspath(sweep_dir)) if from_csv else
              os.path.join(sweep_dir, REPORT, *([f"eval={eval_name}"] if eval_name else [])))
    paths = {name: os.path.join(folder, name)
             for name in (RESULTS, "results.parquet", "families.md", "rd_plane.png",
                          "skew.png")}
    _save_csv(table, paths[RESULTS])
    atomic_write(paths["results.parquet"], lambda f: table.to_parquet(f, index=False),
                 binary=True)
    spread = spread_table(table)
    atomic_write(paths["families.md"], lambda f: f.write(
        f"Test R / D / ELBO (nats) per setting, {source(sweep_dir, include)}\n\n"
        + markdown(family_table(table)) + "\n"
        + ("" if spread.empty else "\nSettings with several runs (seeds): mean (min to max), "
           "nats\n\n" + markdown(spread) + "\n")))
    _save_figure(rd_plane_figure(table), paths["rd_plane.png"])
    _save_figure(skew_figure(table), paths["skew.png"])
    if not from_csv:
        curves = curves_figure(table, sweep_dir)
        if curves is not None:
            paths["curves.png"] = os.path.join(folder, "curves.png")
            _save_figure(curves, paths["curves.png"])
        pictures = {"images.png": list(image_runs or choose_image_runs(table, sweep_dir)),
                    "equal_elbo.png": choose_equal_elbo_runs(table, sweep_dir)}
        for name, runs in pictures.items():
            if runs:
                paths[name] = os.path.join(folder, name)
                _save_figure(images_figure(table, sweep_dir, runs), paths[name])
    if comparison is not None:
        name = f"compare_{compare}.csv"
        paths[name] = os.path.join(folder, name)
        _save_csv(comparison, paths[name])
    # a rebuilt report keeps the pictures its run folders gave, if they are there
    figures = {name for name, *_ in FIGURES if os.path.isfile(os.path.join(folder, name))}
    paths["README.md"] = os.path.join(folder, "README.md")
    atomic_write(paths["README.md"], lambda f: f.write(page(
        source(sweep_dir, include), table, {n: os.path.join(folder, n) for n in figures},
        comparison, compare)))
    return table, comparison, paths


def write_report(sweep_dir: str, compare: Optional[str] = None,
                 image_runs: Optional[Sequence[str]] = None) -> Dict[str, str]:
    """Writes SWEEP_DIR/report/ (see rdsweep.report); returns the paths by file name."""
    return build_report(sweep_dir, compare, image_runs)[2]


def summary(sweep_dir: str, table: pd.DataFrame, comparison: Optional[pd.DataFrame],
            compare: Optional[str], paths: Mapping[str, str]) -> str:
    """What main prints: counts per status, H, the key columns, the comparison, the paths."""
    lines = [f"{len(table)} runs in {sweep_dir}: {counts(table)}"]
    h = entropy_estimate(table)
    if h is not None:
        lines.append(f"H estimate (best -IWAE of the completed runs): {h:.2f} nats")
    lines += ["", markdown(table[key_columns(table)])]
    if comparison is not None:
        lines += ["", f"against {compare} (diff = ours - reference):",
                  comparison_markdown(comparison)]
    lines += ["", "written:"] + [f"  {path}" for path in paths.values()]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rdsweep-report",
        description="Collects the runs of a sweep folder (or one run's folder) into "
                    "SWEEP_DIR/report/: README.md (the page: tables and figures), "
                    "results.csv, results.parquet, families.md, rd_plane.png, skew.png, "
                    "curves.png, images.png, equal_elbo.png.")
    parser.add_argument("sweep_dir", metavar="SWEEP_DIR",
                        help="a sweep folder (hydra.sweep.dir), one run's folder, or an "
                             "earlier report's results.csv (rebuilt beside it)")
    parser.add_argument("--compare", metavar="NAME",
                        help="compare with a published table of rdsweep/reference: "
                             + ", ".join(reference_names()))
    parser.add_argument("--images", nargs="+", metavar="SUBDIR",
                        help="the runs shown in images.png (default: up to 5 spread over R)")
    parser.add_argument("--include", nargs="+", default=[], metavar="CSV",
                        help="add the runs of earlier reports' results.csv (a sweep continued "
                             "in a new folder); a run in both keeps the folder's row unless "
                             "only the CSV's is completed")
    parser.add_argument("--eval", metavar="NAME", dest="eval_name",
                        help="use the runs' re-evaluation eval/NAME.json (rdsweep-eval) as "
                             "their test metrics; written to report/eval=NAME/")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
    """The rdsweep-report command; exits with status 2 and one error line on a bad argument."""
    args = _parser().parse_args(argv)
    try:
        table, comparison, paths = build_report(args.sweep_dir, args.compare, args.images,
                                                args.eval_name, args.include)
    except ReportError as e:
        print(f"rdsweep-report: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print(summary(source(args.sweep_dir, args.include), table, comparison, args.compare, paths))
