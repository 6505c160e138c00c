"""The report's page, report/README.md: what was run, the summary tables and the figures,
as Markdown that any viewer renders (a code host shows a folder's README.md)."""

from __future__ import annotations

from typing import Mapping, Optional

import pandas as pd

from rdsweep.status import Status
import rdsweep.report.settings as settings
from rdsweep.report.runs import entropy_estimate
from rdsweep.report.tables import (comparison_markdown, family_table, markdown,
                                   reference_source, spread_table)

FIGURES = (  # file -> (heading, what it shows)
    ("rd_plane.png", "Rate-distortion plane",
     "Distortion against rate; the grey dashed lines are equal ELBO (D + R = c), the black "
     "line D = H - R bounds what any model can reach (H estimated by the best -IWAE)."),
    ("skew.png", "Skew view",
     "-ELBO against rate: runs at one height have the same ELBO but use the latent code to "
     "different degrees."),
    ("curves.png", "Training curves",
     "Each run's ELBO against the training step: faint, the training chunks' means; solid, "
     "the validation ELBO where the run checked one (early stopping), a dot at its best check."),
    ("equal_elbo.png", "Equal ELBO, different rates",
     "Runs whose test ELBOs lie within 1 nat of each other, at the most different rates found: "
     "inputs, reconstructions and samples of each."),
    ("images.png", "Inputs, reconstructions and samples",
     "A few runs spread over the range of rates."),
)


def counts(table: pd.DataFrame) -> str:
    """"50 completed, 6 failed": every status present, in the order of Status."""
    found = table.status.value_counts()
    return ", ".join(f"{found[s]} {s}" for s in Status if s in found)


def page(source: str, table: pd.DataFrame, figures: Mapping[str, str],
         comparison: Optional[pd.DataFrame], compare: Optional[str]) -> str:
    """report/README.md. figures: the image files beside the page (name -> path) to embed."""
    columns = settings.of(table)[0]
    lines = [f"# Sweep report: {source}", "",
             f"{len(table)} runs: {counts(table)}. Test-set bounds in nats per example: rate "
             "R, distortion D, ELBO = -(R + D). Runs are averaged only when they differ in "
             "nothing but the seed."]
    h = entropy_estimate(table)
    if h is not None:
        lines[-1] += f" H estimate (best -IWAE of the completed runs): {h:.2f} nats."
    differ = [c for c in ["family", "objective", *columns] if table[c].nunique() > 1]
    lines += ["", ("Keys that differ between the runs, the seed aside: "
                   + ", ".join(f"`{c}`" for c in differ) + ".") if differ else
              "The runs differ in nothing but the seed.",
              "", "## Test R / D / ELBO per setting", "", markdown(family_table(table))]
    spread = spread_table(table)
    if not spread.empty:
        lines += ["", "## Settings with several seeds", "",
                  "Mean (min to max) over the seeds, nats.", "", markdown(spread)]
    if comparison is not None:
        lines += ["", f"## Against `{compare}`", "", f"> {reference_source(compare)}", "",
                  "diff = ours - reference; runs = our completed runs of that setting.", "",
                  comparison_markdown(comparison)]
    for name, heading, text in FIGURES:
        if name in figures:
            lines += ["", f"## {heading}", "", text, "", f"![{heading}]({name})"]
    lines += ["", "## Files", "",
              "`results.csv` (and `results.parquet`): one row per run, planned runs that never "
              "started included, with each run's trained config as JSON in `config`. "
              "`families.md`: the table above."]
    return "\n".join(lines) + "\n"
