"""XLA:CPU fusion choices of rdsweep's compiled programs (the training chunk, the evaluation
batch): compiler options for `jax.jit(..., compiler_options=...)`, None for XLA's defaults.

XLA:CPU's default YNNPACK fusions put a reduction, or a dot with its neighbours, into one
library call. Here that runs the mlp's evaluation ~1.5x and the conv-decoder models' training
up to ~1.3x slower than single-dot fusions plus XLA's own loops (rdsweep-bench's iwae and
training sections measure both). A user's XLA_FLAGS naming the option win over these choices.
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


def options_of(cfg: Any) -> Optional[Dict[str, str]]:
    """The training chunk's options for a composed config's train.fusions (auto, xla,
    single_dot). auto: single_dot if its decoder's option says its models train faster so (the
    conv decoder), XLA's defaults otherwise (the mlp: no faster, and its numbers stay those of
    earlier versions; the PixelCNN: slower for pixelcnn_small)."""
    choice = cfg.train.fusions
    if choice == "auto":
        decoder = registry.chosen(cfg, "decoder")
        choice = "single_dot" if decoder is not None and decoder.single_dot_fusions else "xla"
    return single_dot() if choice == "single_dot" else None
