"""Training throughput of a model against this machine's f32 matmul rate, measured in one run.

    TFDS_DATA_DIR=../shared/tfds .venv/bin/python scripts/bench.py [--repeats 5] [OVERRIDE ...]

OVERRIDEs are rdsweep config overrides (default: the default model, train.batch_size=64).
Each figure is the median of --repeats timed calls after one warm-up call; the table is printed
as Markdown.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
from hydra import compose, initialize_config_module
from hydra.utils import instantiate

from rdsweep import config as config_lib
from rdsweep.experiment import build_model
from rdsweep.input_pipeline import load_split
from rdsweep.train import create_state, make_optimizer, make_train_chunk, make_train_step


def median_seconds(fn, repeats: int) -> float:
    """Median wall time of fn() (which must block until its result is ready), after a warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_flops(repeats: int, sizes=(512, 1024, 2048)) -> dict:
    """f32 matmul FLOP/s (2 n^3 per product) per size."""
    out = {}
    for n in sizes:
        a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
        mm = jax.jit(lambda x: x @ x)
        out[n] = 2 * n**3 / median_seconds(lambda: mm(a).block_until_ready(), repeats)
    return out


def training_rate(cfg, steps: int, repeats: int) -> dict:
    """images/s of `steps` training steps in one compiled scan, and XLA's FLOP count per image."""
    images = jax.device_put(load_split(cfg.data.train_split, cfg.data))
    model = build_model(cfg)
    example = jnp.zeros((1,) + images.shape[1:], jnp.float32)
    state = create_state(model, make_optimizer(cfg.train, images.shape[0]),
                         instantiate(cfg.objective), example, jax.random.PRNGKey(0))
    step = make_train_step(cfg.train.batch_size, cfg.data.binarization)
    chunk = make_train_chunk(step)
    # XLA counts a scan's body once, so FLOPs are counted on one step.
    cost = jax.jit(step).lower(state, images).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = cost.get("flops") if cost else None
    holder = {"state": state}

    def run():
        holder["state"], metrics = chunk(holder["state"], images, steps)
        jax.block_until_ready(metrics)

    seconds = median_seconds(run, repeats)
    batch = cfg.train.batch_size
    return {"images_per_s": steps * batch / seconds,
            "flops_per_image": flops / batch if flops else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps per timed call")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    config_lib.register()
    with initialize_config_module(config_module="rdsweep.conf", version_base="1.3"):
        cfg = compose("config", overrides=args.overrides)

    mm = matmul_flops(args.repeats)
    best = max(mm.values())
    tr = training_rate(cfg, args.steps, args.repeats)
    enc, dec = (cfg[g]._target_.rsplit(".", 1)[1] for g in ("encoder", "decoder"))

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} "
          f"({jax.default_backend()}); median of {args.repeats} after warm-up")
    print(f"overrides: {' '.join(args.overrides) or '(none)'}\n")
    print("| measurement | value |\n|---|---|")
    for n, f in mm.items():
        print(f"| f32 matmul {n}x{n}x{n} | {f / 1e9:.1f} GFLOP/s |")
    print(f"| training, {enc} + {dec}, batch {cfg.train.batch_size}, {args.steps} steps per "
          f"call | {tr['images_per_s']:,.0f} images/s |")
    if tr["flops_per_image"]:
        achieved = tr["flops_per_image"] * tr["images_per_s"]
        print(f"| training FLOP/image (XLA cost analysis) | {tr['flops_per_image'] / 1e6:.2f} "
              "MFLOP |")
        print(f"| training achieved | {achieved / 1e9:.1f} GFLOP/s = {achieved / best:.0%} of "
              "the best matmul |")


if __name__ == "__main__":
    main()
