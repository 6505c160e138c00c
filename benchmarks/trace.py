"""Where a compiled program's time goes: a jax.profiler trace of the default model's training
chunk (`train`: 200 steps, batch 64) or of one evaluation batch (`eval`: 500 examples, k = 100),
its XLA operations summed over the trace, largest first (docs/benchmarks.md, analysis).
    TFDS_DATA_DIR=../shared/tfds python -m benchmarks.trace train|eval [--top N]
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import tempfile
import time
from typing import Callable, Dict, Iterable, List, Tuple

import jax

from benchmarks.measure import compose_config, new_states, train_chunk
from rdsweep.evaluate import MAX_DECODES, compiled_eval_batch
from rdsweep.options.tfds_images import load_split
from rdsweep.train import stack

STEPS, EVAL_BATCH, EVAL_K = 200, 500, 100
# Spans of the runtime and of Python, not operations of the program.
NOT_OPERATIONS = ("ThunkExecutor", "SlinkyThreadPool", "$")


def operation_totals(events: Iterable[dict]) -> List[Tuple[str, float, int]]:
    """(name, summed microseconds, count) of each XLA operation among a Chrome trace's complete
    events ("ph": "X"), largest total first."""
    total: Dict[str, float] = collections.Counter()
    count: Dict[str, int] = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and not e["name"].startswith(NOT_OPERATIONS):
            total[e["name"]] += e.get("dur", 0)
            count[e["name"]] += 1
    return sorted(((n, t, count[n]) for n, t in total.items()), key=lambda r: -r[1])


def traced(call: Callable[[], object]) -> List[dict]:
    """The trace events of one call (compiled before: a first call compiles)."""
    with tempfile.TemporaryDirectory(prefix="rdsweep-trace-") as d:
        with jax.profiler.trace(d, create_perfetto_trace=True):
            jax.block_until_ready(call())
        (path,) = glob.glob(os.path.join(d, "**", "*.trace.json.gz"), recursive=True)
        with gzip.open(path) as f:
            trace = json.load(f)
    return trace["traceEvents"] if isinstance(trace, dict) else trace


def program(which: str) -> Tuple[Callable[[], object], str]:
    """The default model's call to trace, and what one call is."""
    cfg = compose_config([])
    images = jax.device_put(load_split(cfg.data.train_split, cfg.data))
    if which == "train":
        states = stack(new_states(cfg, images, 1))
        chunk = train_chunk(cfg, states, images)
        box = [states]

        def call():
            box[0], metrics = chunk(box[0], images, STEPS)
            return metrics
        return call, f"{STEPS} training steps of batch {cfg.train.batch_size}"
    state = new_states(cfg, images, 1)[0]
    batch = images[:EVAL_BATCH]
    fn = compiled_eval_batch()
    return (lambda: fn(state.apply_fn, state.params, batch, jax.random.PRNGKey(0), EVAL_K,
                       MAX_DECODES, cfg.data.binarization),
            f"one evaluation batch of {EVAL_BATCH} examples at k = {EVAL_K}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.trace", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("program", choices=("train", "eval"))
    parser.add_argument("--top", type=int, default=25, help="operations listed (default 25)")
    args = parser.parse_args()
    call, what = program(args.program)
    jax.block_until_ready(call())  # compiles
    start = time.perf_counter()
    jax.block_until_ready(call())
    seconds = time.perf_counter() - start
    rows = operation_totals(traced(call))
    print(f"{what}: {seconds * 1000:.1f} ms (untraced). XLA operations of one traced call, "
          "each summed over its runs (operations on both cores at once count twice):")
    for name, micros, n in rows[:args.top]:
        print(f"{micros / 1000:9.2f} ms {n:6d}x  {name}")
    print(f"{sum(r[1] for r in rows) / 1000:9.2f} ms in all {len(rows)} operations")


if __name__ == "__main__":
    main()
