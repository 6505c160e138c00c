"""XLA:CPU fusion choices of rdsweep's compiled programs (the training chunk, the evaluation
batch): compiler options for `jax.jit(..., compiler_options=...)`, None for XLA's defaults.

XLA:CPU's default YNNPACK fusions put a reduction, or a dot with its neighbours, into one
library call. Here that runs the mlp's evaluation ~1.2-1.6x and the conv models' training
~1.2x slower than single-dot fusions plus XLA's own loops (rdsweep-bench's iwae and training
sections measure both). A user's XLA_FLAGS naming the option win over these choices.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

import jax

from rdsweep import registry

YNN_FUSION = "xla_cpu_experimental_ynn_fusion_type"


def single_dot() -> Optional[Dict[str, str]]:
    """Single-dot YNNPACK fusions only: on the CPU, unless the user's XLA_FLAGS choose."""
    if jax.default_backend() != "cpu" or YNN_FUSION in os.environ.get("XLA_FLAGS", ""):
        return None
    return {YNN_FUSION: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


def training(choice: str, convolutional: bool) -> Optional[Dict[str, str]]:
    """The training chunk's options for train.fusions = choice (auto, xla, single_dot). auto: single_dot for
    a model with a convolutional part (faster there), XLA's defaults otherwise (no faster for
    the mlp, whose numbers then stay those of earlier versions)."""
    if choice == "auto":
        choice = "single_dot" if convolutional else "xla"
    return single_dot() if choice == "single_dot" else None


def options_of(cfg: Any) -> Optional[Dict[str, str]]:
    """training() for a composed config: its train.fusions and its model's parts."""
    return training(cfg.train.fusions, any(opt.convolutional for opt in registry.parts(cfg)))
