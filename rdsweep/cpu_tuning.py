"""XLA:CPU tuning of rdsweep's compiled programs. The rest of rdsweep asks three things:
`compile_options(cfg)` (XLA's options for the training chunk, train.fusions),
`eval_options()` (for the evaluation batch) and `grid_batching(...)` (how a grid's models are
stepped, train.grid_batching); the choices, and which models they favour, are this module's.
The benchmark (benchmarks/ in the checkout) measures each choice against the alternative.

Fusions: XLA:CPU's default YNNPACK fusions put a reduction, or a dot with its neighbours, into
one library call. Here that runs the mlp's evaluation ~1.5x and the conv-decoder models'
training up to ~1.3x slower than single-dot fusions plus XLA's own loops (the benchmark's iwae
and training sections). A user's XLA_FLAGS naming the option win over these choices.

Grid batching: XLA:CPU runs vmapped convolutions as slow grouped convolutions, so a grid of
models that convolve is stepped one model after another (lax.map).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Optional

import jax

from rdsweep import registry
from rdsweep.train import unstack

YNN_FUSION = "xla_cpu_experimental_ynn_fusion_type"
# Decoder options whose models train faster with single-dot fusions (the benchmark's training
# rows), which train.fusions=auto gives them. Not the mlp (no faster, and its numbers stay those
# of earlier versions) nor the PixelCNN (pixelcnn_small was slower).
SINGLE_DOT_DECODERS = frozenset({"conv"})


def single_dot() -> Optional[Dict[str, str]]:
    """Single-dot YNNPACK fusions only: on the CPU, unless the user's XLA_FLAGS choose."""
    if jax.default_backend() != "cpu" or YNN_FUSION in os.environ.get("XLA_FLAGS", ""):
        return None
    return {YNN_FUSION: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


def compile_options(cfg: Any) -> Optional[Dict[str, str]]:
    """The training chunk's XLA options (None: XLA's defaults) for a composed config's
    train.fusions: xla, single_dot, or auto (single_dot for SINGLE_DOT_DECODERS, xla
    otherwise)."""
    choice = cfg.train.fusions
    if choice == "auto":
        decoder = registry.chosen(cfg, "decoder")
        choice = ("single_dot" if decoder is not None and decoder.name in SINGLE_DOT_DECODERS
                  else "xla")
    return single_dot() if choice == "single_dot" else None


def eval_options() -> Optional[Dict[str, str]]:
    """The evaluation batch's XLA options: single-dot fusions for every model."""
    return single_dot()


def convolves(fn: Callable, *args: Any) -> bool:
    """Whether fn(*args) runs a convolution: lax.conv_general_dilated anywhere in its jaxpr,
    nested jaxprs (scans, custom VJPs, ...) included. Traced, not run."""
    def walk(jaxpr) -> bool:
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "conv_general_dilated":
                return True
            for param in eqn.params.values():
                for sub in param if isinstance(param, (tuple, list)) else (param,):
                    inner = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr's Jaxpr
                    if hasattr(inner, "eqns") and walk(inner):
                        return True
        return False
    return walk(jax.make_jaxpr(fn)(*args).jaxpr)


def grid_batching(option: str, step: Callable, states: Any, images: jax.Array,
                  weights: Optional[jax.Array] = None) -> str:
    """train.grid_batching for `step` of a stack of K states (leading axis K). auto: lax.map
    for one model (K = 1: one plain scan) and, on the CPU, for a step that convolves; vmap
    otherwise (the benchmark's scaling rows: mlp grids of K = 2-8 train as fast or faster
    vmapped). Traced, not run: states and images may be jax.ShapeDtypeStructs."""
    if option != "auto":
        return option
    if jax.tree_util.tree_leaves(states)[0].shape[0] == 1:
        return "map"
    if jax.default_backend() != "cpu":
        return "vmap"
    first = lambda stacked, images, weights: step(unstack(stacked, 0), images, weights)
    return "map" if convolves(first, states, images, weights) else "vmap"
