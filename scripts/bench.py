"""rdsweep's benchmark suite: one run measures every figure and prints one Markdown table.

    TFDS_DATA_DIR=../shared/tfds .venv/bin/python scripts/bench.py --write docs/benchmarks.md

PyTorch (the reference of the training rows) is the `bench` extra: `bash scripts/setup.sh
test,bench`. Without it the training rows show rdsweep alone, for the default model (the MLP):
the other models are named by benchmarks/torch_reference.py, which imports torch.

Sections (`--only` takes section names and model names, comma-separated; a model name restricts
the training and startup rows to it):
  matmul    f32 matmul GFLOP/s, n = 512, 1024, 2048; the best is the reference of every
            "fraction of matmul" below, so it is always measured.
  training  images/s at --batch-size for each model of benchmarks/torch_reference.py REFERENCES:
            rdsweep (one compiled scan of --steps steps, fewer for a slow model so that a call
            takes about 4 s) and PyTorch (its eager loop of as many steps, torch's default
            thread count), their ratio (target: mlp >= 1.8, conv* and pixelcnn* >= 1.0), and
            rdsweep's achieved GFLOP/s (XLA cost analysis of one step) as a fraction of the
            best matmul (target: mlp >= 80%).
  startup   seconds from launching a process (`bench.py --first-step`: load data, build the
            model, compile and run one 10-step scanned chunk) to that chunk done (mlp,
            conv_small), with a cold then a warm persistent compilation cache (target: warm at
            least 2x sooner).
  iwae      evaluate() of the mlp on test examples for k = 1, 100, 1000 in example-samples/s,
            and at k = 1000 the achieved GFLOP/s (XLA cost analysis) as a fraction of the best
            matmul (target >= 50%).
  memory    peak RSS (MiB) of a default run, `python -m rdsweep train.steps=500`.
  scaling   mlp training images/s against the batch size (32 to 1024), and against the
            number K = 1, 2, 4, 8 of models trained as one grid (total and per model), at
            --steps x --batch-size images per timed call.
  layers    the profile of `conv_small`: forward + backward milliseconds of each of its conv
            layers (batch --batch-size) in rdsweep (rdsweep.conv's modules) and in PyTorch
            (benchmarks/torch_reference.py's layers), their ratio, and the layers' sum against
            one training step of the whole model: where the time of a conv model goes.
  grid      wall time of 8 short mlp runs (seeds 0-7, 300 steps, short evaluation) as one
            `hydra/launcher=grid` process against 8 processes one after another, start-up,
            compilation and data loading included (target: ratio <= 0.6).

Example: `scripts/bench.py --only training,conv_small --repeats 3`.

Timings are the median of --repeats timed calls after one untimed warm-up call (which
compiles). Process timings (startup, grid) are the median of --repeats launches, each arm with a
fresh compilation cache; no warm-up launch: the data cache (~/.cache/rdsweep) is filled before
them, and this process has read the same Python modules. Peak RSS is one run.
`--quick` is a smoke test of every row (tiny sizes, two models, one repeat): its figures are
not benchmarks. Progress goes to stderr; stdout is the Markdown document that --write saves.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import importlib.metadata
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from omegaconf import DictConfig

from rdsweep import config as config_lib
from rdsweep.conv import (PAPER_DECODER_CHANNELS, PAPER_ENCODER_CHANNELS, Conv, Deconv, Gated,
                          preset_channels)
from rdsweep.evaluate import _eval_batch, evaluate
from rdsweep.experiment import build_model, grid_batching
from rdsweep.input_pipeline import load_split
from rdsweep.train import (TrainState, create_state, make_optimizer, make_train_chunk,
                           make_train_step, stack)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmarks/ (the PyTorch reference) is not an installed package

SECTIONS = ("matmul", "training", "layers", "startup", "iwae", "memory", "scaling", "grid")
MODEL_SECTIONS = ("training", "startup")  # the sections that a model name in --only restricts
FULL_COMMAND = ("TFDS_DATA_DIR=../shared/tfds .venv/bin/python scripts/bench.py "
                "--write docs/benchmarks.md")
FIRST_STEP_DONE = "bench: first training chunk done"
# The grid rows' runs: short, so that start-up, compilation and data loading weigh as they do
# in a sweep of many short runs.
SHORT_EVAL = ("eval.iwae_samples=10", "eval.train_examples=0", "eval.image_examples=0",
              "data.test_split='test[:1000]'")  # quoted: Hydra's grammar reads [ as a list
TORCH_MISSING = "torch not installed (pip install 'rdsweep[bench]')"
# Runs a command and prints its peak RSS (KiB) last. A separate small process because on Linux a
# child's ru_maxrss starts from its parent's RSS (its peak, under vfork) before exec, and this
# script's is large.
RSS_PROBE = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes and counts of one benchmark run."""
    steps: int = 200  # training steps per timed call at batch_size (at most, see below)
    call_seconds: float = 4.0  # slow models run fewer steps per timed call, about this long
    repeats: int = 5
    batch_size: int = 64
    models: Optional[Tuple[str, ...]] = None  # training rows; None: every REFERENCES entry
    startup_models: Tuple[str, ...] = ("mlp", "conv_small")
    startup_steps: int = 10  # the startup child's one chunk: start-up, not training, dominates
    batch_sizes: Tuple[int, ...] = (32, 64, 128, 256, 512, 1024)
    grid_sizes: Tuple[int, ...] = (1, 2, 4, 8)
    iwae_examples: int = 1000
    iwae_samples: Tuple[int, ...] = (1, 100, 1000)
    memory_overrides: Tuple[str, ...] = ("train.steps=500",)
    grid_runs: int = 8
    grid_overrides: Tuple[str, ...] = ("train.steps=300", *SHORT_EVAL)


QUICK = Plan(steps=10, call_seconds=1.0, repeats=1, models=("mlp", "conv_small"),
             batch_sizes=(32, 128), grid_sizes=(1, 2), iwae_examples=100,
             memory_overrides=("train.steps=20", *SHORT_EVAL), grid_runs=2,
             grid_overrides=("train.steps=20", *SHORT_EVAL))


class Row(NamedTuple):
    section: str
    measurement: str
    value: str
    target: str = ""
    met: Optional[bool] = None


def note(message: str) -> None:
    """Progress on stderr (stdout is the Markdown table)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Configs and models


def model_overrides() -> Dict[str, List[str]]:
    """name -> rdsweep overrides of each benchmarked model: benchmarks/torch_reference.py's
    REFERENCES; without torch (which that module imports) only the default config, the MLP."""
    try:
        from benchmarks.torch_reference import REFERENCES
    except ModuleNotFoundError as e:
        if e.name != "torch":
            raise
        return {"mlp": []}
    return {name: list(ref.overrides) for name, ref in REFERENCES.items()}


def torch_available() -> bool:
    """Whether the PyTorch reference can run."""
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError:
        return False
    return True


def compose_config(overrides: Sequence[str]) -> DictConfig:
    """The rdsweep job config of these overrides, as the rdsweep command builds it."""
    config_lib.register()
    with initialize_config_module(config_module="rdsweep.conf", version_base="1.3"):
        return compose("config", overrides=list(overrides))


def new_states(cfg: DictConfig, images: jax.Array, count: int) -> List[TrainState]:
    """`count` fresh train states of cfg's model (seeds 0..count-1) sharing one model, optimiser
    and objective, so that they can be stacked into a grid."""
    model = build_model(cfg)
    optimizer = make_optimizer(cfg.train, images.shape[0])
    objective = instantiate(cfg.objective)
    example = jnp.zeros((1,) + images.shape[1:], jnp.float32)
    return [create_state(model, optimizer, objective, example, jax.random.PRNGKey(seed))
            for seed in range(count)]


def xla_flops(compiled) -> Optional[float]:
    """XLA's FLOP count of one call of a compiled function (None if it gives none)."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return cost.get("flops") if cost else None


# ---------------------------------------------------------------------------------------------
# In-process timings


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time (s) of fn() (which must block until its result is ready), after a
    warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_flops(repeats: int, sizes=(512, 1024, 2048)) -> Dict[int, float]:
    """f32 matmul FLOP/s (2 n^3 per product) per size n."""
    out = {}
    for n in sizes:
        a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
        mm = jax.jit(lambda x: x @ x)
        out[n] = 2 * n**3 / median_seconds(lambda: mm(a).block_until_ready(), repeats)
    return out


def training_rate(cfg: DictConfig, images: jax.Array, steps: int, repeats: int,
                  models: int = 1) -> float:
    """Training images/s (all `models` together) of cfg's model in one compiled scan of
    `steps` steps; models > 1: that many stacked states trained as a grid, batched as
    hydra/launcher=grid does (train.grid_batching: auto = lax.map on the CPU)."""
    states = new_states(cfg, images, models)
    grid = grid_batching(cfg.train.grid_batching) if models > 1 else None
    chunk = make_train_chunk(make_train_step(cfg.train.batch_size, cfg.data.binarization),
                             grid=grid)
    holder = {"state": stack(states) if models > 1 else states[0]}

    def run():
        holder["state"], metrics = chunk(holder["state"], images, steps)
        jax.block_until_ready(metrics)

    return steps * cfg.train.batch_size * models / median_seconds(run, repeats)


def train_flops_per_image(cfg: DictConfig, images: jax.Array) -> Optional[float]:
    """XLA's FLOPs per image of one training step of cfg's model. Counted on one step, not on
    the scan: XLA counts a loop body once."""
    step = make_train_step(cfg.train.batch_size, cfg.data.binarization)
    flops = xla_flops(jax.jit(step).lower(new_states(cfg, images, 1)[0], images).compile())
    return flops / cfg.train.batch_size if flops else None


def affordable_steps(cfg: DictConfig, images: jax.Array, plan: Plan) -> int:
    """Training steps per timed call: plan.steps, or fewer for a slow model, so that a call
    takes about plan.call_seconds (judged from a 2-step call)."""
    rate = training_rate(cfg, images, 2, repeats=1)
    return int(min(plan.steps, max(1, plan.call_seconds * rate / cfg.train.batch_size)))


def torch_rate(name: str, images, steps: int, plan: Plan) -> float:
    """PyTorch training images/s of REFERENCES entry `name` (torch's default threads), median
    of plan.repeats loops of `steps` steps after one such loop untimed."""
    from benchmarks.torch_reference import train_images_per_s

    return train_images_per_s(name, images, plan.batch_size, steps=steps, repeats=plan.repeats,
                              warmup=steps)


def iwae_rate(cfg: DictConfig, state: TrainState, images, k: int, repeats: int) -> float:
    """evaluate() throughput at k samples in example-samples/s (examples x k per second)."""
    batch = min(cfg.eval.batch_size, len(images))
    seconds = median_seconds(
        lambda: evaluate(state.apply_fn, state.params, images, jax.random.PRNGKey(0), k, batch,
                         cfg.data.binarization), repeats)
    return len(images) * k / seconds


def iwae_flops_per_sample(cfg: DictConfig, state: TrainState, images, k: int) -> float:
    """XLA's FLOPs per example-sample of one _eval_batch call at k samples. max_decodes =
    k x batch puts all k samples in one lax.map step: XLA counts a loop body once, and
    evaluate()'s grouped loop does the same work (up to the encoder, run once per group)."""
    batch = min(cfg.eval.batch_size, len(images))
    lowered = _eval_batch.lower(state.apply_fn, state.params, jnp.asarray(images[:batch]),
                                jax.random.PRNGKey(0), k, k * batch, cfg.data.binarization)
    return xla_flops(lowered.compile()) / (batch * k)


# ---------------------------------------------------------------------------------------------
# Process timings


def timed_process(cmd: Sequence[str], until: Optional[str] = None) -> Tuple[float, List[str]]:
    """Runs cmd to its end; returns its wall seconds from launch to exit (or to the first output
    line containing `until`) and its output lines (stdout and stderr)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # the `until` line arrives when printed
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    seconds, lines = None, []
    for line in proc.stdout:
        lines.append(line)
        if until is not None and seconds is None and until in line:
            seconds = time.perf_counter() - start
    end = time.perf_counter()
    if proc.wait() or (until is not None and seconds is None):
        raise RuntimeError(f"{shlex.join(cmd)} exited {proc.returncode}:\n"
                           + "".join(lines[-30:]))
    return (end - start if until is None else seconds), lines


def peak_rss_mib(cmd: Sequence[str]) -> float:
    """Peak RSS (MiB) of cmd run to its end (through RSS_PROBE)."""
    _, lines = timed_process([sys.executable, "-c", RSS_PROBE, *cmd])
    return int(lines[-1]) / 1024  # ru_maxrss is in KiB on Linux


def first_step(cache_dir: str, overrides: Sequence[str], steps: int, batch_size: int) -> None:
    """The startup rows' child (bench.py --first-step): builds the model, compiles and runs one
    scanned chunk of `steps` steps with the persistent compilation cache in cache_dir, then
    prints FIRST_STEP_DONE."""
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)  # cache small programs too
    cfg = compose_config([*overrides, f"train.batch_size={batch_size}"])
    images = jax.device_put(load_split(cfg.data.train_split, cfg.data))
    state = new_states(cfg, images, 1)[0]
    chunk = make_train_chunk(make_train_step(batch_size, cfg.data.binarization))
    jax.block_until_ready(chunk(state, images, steps))
    print(FIRST_STEP_DONE, flush=True)


def median_process(make_cmds: Callable[[str], List[List[str]]], repeats: int) -> float:
    """Median over `repeats` of the summed wall seconds of the commands make_cmds(tmp) gives,
    run one after another; tmp is a fresh temporary folder each repeat."""
    totals = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="rdsweep-bench-") as tmp:
            totals.append(sum(timed_process(cmd)[0] for cmd in make_cmds(tmp)))
    return statistics.median(totals)


def startup_seconds(overrides: Sequence[str], plan: Plan) -> Dict[str, float]:
    """Median seconds from launch to the first training chunk done, with a fresh (cold)
    compilation cache and then with the cache that run filled (warm)."""
    def child(tmp: str) -> List[str]:
        return [sys.executable, str(Path(__file__).resolve()), "--first-step", tmp,
                "--steps", str(plan.startup_steps), "--batch-size", str(plan.batch_size),
                *overrides]

    cold, warm = [], []
    for _ in range(plan.repeats):
        with tempfile.TemporaryDirectory(prefix="rdsweep-bench-cache-") as cache:
            cold.append(timed_process(child(cache), FIRST_STEP_DONE)[0])
            warm.append(timed_process(child(cache), FIRST_STEP_DONE)[0])
    return {"cold": statistics.median(cold), "warm": statistics.median(warm)}


def rdsweep_cmd(*args: str) -> List[str]:
    """The rdsweep command line with these arguments."""
    return [sys.executable, "-m", "rdsweep", *args]


# ---------------------------------------------------------------------------------------------
# Sections: each returns its table rows


def target(value: float, bound: float, at_least: bool, shown: str) -> Dict[str, object]:
    """Row fields `target` (the bound as `shown`) and `met` of a figure against its bound."""
    return {"target": ("&ge; " if at_least else "&le; ") + shown,
            "met": value >= bound if at_least else value <= bound}


def ratio_target(name: str) -> Optional[float]:
    """The rdsweep / PyTorch training ratio model `name` should reach, if it has one."""
    if name == "mlp":
        return 1.8
    return 1.0 if name.startswith(("conv", "pixelcnn")) else None


def matmul_rows(mm: Dict[int, float]) -> List[Row]:
    best = max(mm, key=mm.get)
    return [Row("matmul", f"f32 matmul {n}x{n}x{n}{' (best: the reference)' * (n == best)}",
                f"{f / 1e9:,.1f} GFLOP/s") for n, f in mm.items()]


def training_rows(names: Sequence[str], overrides: Dict[str, List[str]], images,
                  device_images: jax.Array, best: float, plan: Plan) -> List[Row]:
    """images: the training split as numpy (PyTorch's copy) and on the device (rdsweep's)."""
    b = plan.batch_size
    has_torch = torch_available()
    rows = []
    if has_torch:
        import torch
        threads = torch.get_num_threads()
    else:
        rows.append(Row("training", "PyTorch reference and the other models", TORCH_MISSING))
    for name in names:
        note(f"training {name}")
        cfg = compose_config([*overrides[name], f"train.batch_size={b}"])
        steps = affordable_steps(cfg, device_images, plan)
        rate = training_rate(cfg, device_images, steps, plan.repeats)
        label = f"training `{name}`, batch {b}"
        rows.append(Row("training", f"{label}: rdsweep, {steps}-step scan",
                        f"{rate:,.0f} images/s"))
        if has_torch:
            ref = torch_rate(name, images, steps, plan)
            ratio = rate / ref
            bound = ratio_target(name)
            rows += [Row("training", f"{label}: PyTorch, {threads} threads, {steps}-step loop",
                         f"{ref:,.0f} images/s"),
                     Row("training", f"{label}: rdsweep / PyTorch", f"{ratio:.2f}x",
                         **(target(ratio, bound, True, f"{bound}x") if bound else {}))]
        flops = train_flops_per_image(cfg, device_images)
        if flops:
            achieved = flops * rate
            rows.append(Row(
                "training", f"{label}: rdsweep achieved (XLA cost analysis: "
                f"{flops / 1e6:,.2f} MFLOP/image)",
                f"{achieved / 1e9:,.1f} GFLOP/s = {achieved / best:.0%} of matmul",
                **(target(achieved / best, 0.8, True, "80%") if name == "mlp" else {})))
    return rows


def conv_small_layers() -> List[Tuple[str, int, int, int, int, int, str, str]]:
    """conv_small's layers, in order: (name, input side, c_in, c_out, kernel, stride, kind,
    padding), as rdsweep.conv builds them at the small presets' widths; c_out counts a gated
    layer's outputs (it computes twice as many)."""
    e = preset_channels("small", None, PAPER_ENCODER_CHANNELS, "encoder")
    d = preset_channels("small", None, PAPER_DECODER_CHANNELS, "decoder")
    latent = compose_config([]).latent_dim
    return [("encoder conv0", 28, 1, e[0], 5, 1, "conv", "SAME"),
            ("encoder conv1", 28, e[0], e[1], 5, 2, "conv", "SAME"),
            ("encoder conv2", 14, e[1], e[2], 5, 1, "conv", "SAME"),
            ("encoder conv3", 14, e[2], e[3], 5, 2, "conv", "SAME"),
            ("encoder conv4", 7, e[3], e[4], 7, 1, "conv", "VALID"),
            ("decoder deconv0", 1, latent, d[0], 7, 1, "deconv", "VALID"),
            ("decoder deconv1", 7, d[0], d[1], 5, 1, "deconv", "SAME"),
            ("decoder deconv2", 7, d[1], d[2], 5, 2, "deconv", "SAME"),
            ("decoder deconv3", 14, d[2], d[3], 5, 1, "deconv", "SAME"),
            ("decoder deconv4", 14, d[3], d[4], 5, 2, "deconv", "SAME"),
            ("decoder deconv5", 28, d[4], d[5], 4, 1, "deconv", "SAME"),
            ("decoder out (linear)", 28, d[5], 1, 5, 1, "out", "SAME")]


def jax_layer_seconds(spec, batch: int, repeats: int, steps: int = 20) -> float:
    """Seconds of one forward + backward (parameter and input gradients) of an rdsweep layer,
    from a compiled scan of `steps` of them."""
    _, side, c_in, c_out, k, stride, kind, padding = spec
    make = functools.partial(Deconv if kind == "deconv" else Conv, kernel_size=(k, k), strides=stride,
                      padding=padding)
    layer = make(c_out) if kind == "out" else Gated(make, c_out)
    x = jax.random.normal(jax.random.PRNGKey(0), (batch, side, side, c_in))
    params = layer.init(jax.random.PRNGKey(1), x)
    grad = jax.grad(lambda p, x: jnp.sum(layer.apply(p, x) ** 2), argnums=(0, 1))

    @jax.jit
    def many(params, x):
        def body(p, _):
            dp, dx = grad(p, x)
            return jax.tree_util.tree_map(lambda a, b: a - 1e-6 * b, p, dp), dx.sum()
        return jax.lax.scan(body, params, None, length=steps)

    return median_seconds(lambda: jax.block_until_ready(many(params, x)), repeats) / steps


def torch_layer_seconds(spec, batch: int, repeats: int, steps: int = 20) -> float:
    """The same layer as benchmarks/torch_reference.py builds it, forward + backward."""
    import torch
    from torch import nn

    from benchmarks.torch_reference import gated

    _, side, c_in, c_out, k, stride, kind, padding = spec
    if kind == "deconv" and padding == "VALID":
        layer = gated(nn.ConvTranspose2d, c_in, c_out, k)
    elif kind == "deconv" and stride == 2:
        layer = gated(nn.ConvTranspose2d, c_in, c_out, k, stride, padding=k // 2,
                      output_padding=1)
    elif k % 2 == 0:  # even kernel, "same": padded 2 before and 1 after, as flax does
        layer = nn.Sequential(nn.ZeroPad2d((k // 2, k // 2 - 1) * 2), gated(nn.Conv2d, c_in,
                                                                             c_out, k))
    elif kind == "out":
        layer = nn.Conv2d(c_in, c_out, k, padding=k // 2)
    else:
        layer = gated(nn.Conv2d, c_in, c_out, k, stride, padding=k // 2 if padding == "SAME"
                      else 0)
    x = torch.randn(batch, c_in, side, side, requires_grad=True)

    def run():
        for _ in range(steps):
            layer.zero_grad()
            (layer(x) ** 2).sum().backward()

    return median_seconds(run, repeats) / steps


def layer_rows(device_images: jax.Array, plan: Plan) -> List[Row]:
    b = plan.batch_size
    has_torch = torch_available()
    rows, total, torch_total = [], 0.0, 0.0
    for spec in conv_small_layers():
        name, side, c_in, c_out, k, stride, kind, padding = spec
        note(f"layers {name}")
        t = jax_layer_seconds(spec, b, plan.repeats)
        total += t
        label = (f"`conv_small` {name}: {side}x{side}x{c_in} -> {c_out}"
                 f"{' (x2, gated)' if kind != 'out' else ''}, {k}x{k}, stride {stride}, "
                 f"{padding.lower()}, batch {b}, forward + backward")
        value = f"rdsweep {t * 1e3:.2f} ms"
        if has_torch:
            ref = torch_layer_seconds(spec, b, plan.repeats)
            torch_total += ref
            value += f", PyTorch {ref * 1e3:.2f} ms (rdsweep speed / PyTorch's: {ref / t:.2f}x)"
        rows.append(Row("layers", label, value))
    cfg = compose_config([*model_overrides().get("conv_small", ["family=---"]),
                          f"train.batch_size={b}"])
    step = b / training_rate(cfg, device_images, affordable_steps(cfg, device_images, plan),
                             plan.repeats)
    value = f"rdsweep {total * 1e3:.1f} ms"
    if has_torch:
        value += (f", PyTorch {torch_total * 1e3:.1f} ms (rdsweep speed / PyTorch's: "
                  f"{torch_total / total:.2f}x)")
    rows += [Row("layers", "`conv_small`: the layers above, summed", value),
             Row("layers", f"`conv_small`: one rdsweep training step (batch {b}), whole model",
                 f"{step * 1e3:.1f} ms: the conv layers are {total / step:.0%} of it")]
    return rows


def startup_rows(names: Sequence[str], overrides: Dict[str, List[str]], plan: Plan) -> List[Row]:
    rows = []
    for name in names:
        note(f"startup {name}")
        s = startup_seconds(overrides[name], plan)
        label = f"launch to first {plan.startup_steps}-step chunk, `{name}`"
        ratio = s["cold"] / s["warm"]
        rows += [Row("startup", f"{label}, cold compilation cache", f"{s['cold']:.1f} s"),
                 Row("startup", f"{label}, warm compilation cache", f"{s['warm']:.1f} s"),
                 Row("startup", f"{label}: cold / warm", f"{ratio:.2f}x",
                     **target(ratio, 2.0, True, "2x"))]
    return rows


def iwae_rows(images, best: float, plan: Plan) -> List[Row]:
    cfg = compose_config([])
    test = load_split(cfg.data.test_split, cfg.data)[:plan.iwae_examples]
    state = new_states(cfg, jax.device_put(images), 1)[0]
    rates = {}
    for k in plan.iwae_samples:
        note(f"iwae k={k}")
        rates[k] = iwae_rate(cfg, state, test, k, plan.repeats)
    rows = [Row("iwae", f"IWAE evaluation, mlp, {len(test)} test examples, k={k}",
                f"{rate:,.0f} example-samples/s") for k, rate in rates.items()]
    k = max(rates)
    flops = iwae_flops_per_sample(cfg, state, test, k)
    achieved = flops * rates[k]
    rows.append(Row("iwae", f"IWAE evaluation, k={k}: achieved (XLA cost analysis: "
                    f"{flops / 1e6:,.2f} MFLOP per example-sample)",
                    f"{achieved / 1e9:,.1f} GFLOP/s = {achieved / best:.0%} of matmul",
                    **target(achieved / best, 0.5, True, "50%")))
    return rows


def memory_rows(plan: Plan) -> List[Row]:
    note("memory")
    with tempfile.TemporaryDirectory(prefix="rdsweep-bench-") as tmp:
        args = [*plan.memory_overrides, f"hydra.run.dir={tmp}/run",
                f"compilation_cache_dir={tmp}/jax"]  # cold: compilation's memory counts
        peak = peak_rss_mib(rdsweep_cmd(*args))
    return [Row("memory", f"peak RSS of `rdsweep {' '.join(plan.memory_overrides)}` (default "
                "model, with its evaluation; cold compilation cache)", f"{peak:,.0f} MiB")]


def scaling_rows(images, plan: Plan) -> List[Row]:
    per_call = plan.steps * plan.batch_size  # images per timed call, the same in every row
    rows = []
    for b in plan.batch_sizes:
        note(f"scaling batch {b}")
        steps = max(1, per_call // b)
        rate = training_rate(compose_config([f"train.batch_size={b}"]), images, steps,
                             plan.repeats)
        rows.append(Row("scaling", f"mlp training, batch {b}, {steps}-step scan",
                        f"{rate:,.0f} images/s"))
    cfg = compose_config([f"train.batch_size={plan.batch_size}"])
    for k in plan.grid_sizes:
        note(f"scaling grid K={k}")
        steps = max(1, per_call // (plan.batch_size * k))
        rate = training_rate(cfg, images, steps, plan.repeats, models=k)
        rows.append(Row("scaling", f"mlp grid of K={k}, batch {plan.batch_size}, {steps}-step "
                        "scan", f"{rate:,.0f} images/s in all = "
                        f"{rate / k:,.0f} per model"))
    return rows


def grid_rows(plan: Plan) -> List[Row]:
    n = plan.grid_runs
    seeds = ",".join(map(str, range(n)))

    def grid(tmp: str) -> List[List[str]]:
        return [rdsweep_cmd("-m", "hydra/launcher=grid", f"seed={seeds}", *plan.grid_overrides,
                            f"hydra.sweep.dir={tmp}/sweep", f"compilation_cache_dir={tmp}/jax")]

    def separate(tmp: str) -> List[List[str]]:
        return [rdsweep_cmd(f"seed={i}", *plan.grid_overrides, f"hydra.run.dir={tmp}/{i}",
                            f"compilation_cache_dir={tmp}/jax") for i in range(n)]

    note(f"grid: {n} runs as one grid")
    one = median_process(grid, plan.repeats)
    note(f"grid: {n} runs as separate processes")
    many = median_process(separate, plan.repeats)
    return [Row("grid", f"{n} mlp runs as one process, `rdsweep -m hydra/launcher=grid "
                f"seed={seeds} {' '.join(plan.grid_overrides)}` (with its sweep report)",
                f"{one:.1f} s"),
            Row("grid", f"the same {n} runs as {n} processes `rdsweep seed=i ...` one after "
                "another", f"{many:.1f} s"),
            Row("grid", f"{n} runs: one grid process / {n} processes", f"{one / many:.2f}",
                **target(one / many, 0.6, False, "0.6"))]


# ---------------------------------------------------------------------------------------------
# The document


def machine() -> List[str]:
    """Lines describing this machine and the software measured."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), platform.processor())
    mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text()
                   .splitlines() if line.startswith("MemTotal"))

    def version(package: str) -> str:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return [f"- CPU: {cpu}, {os.cpu_count()} cores ({platform.machine()}), "
            f"RAM {mem_kib / 2**20:.1f} GiB",
            f"- jax {jax.__version__}, jaxlib {version('jaxlib')} ({jax.default_backend()}), "
            f"torch {version('torch')}, Python {platform.python_version()}",
            f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='minutes')}",
            f"- load average (1 min) at the start: {os.getloadavg()[0]:.2f}"]


def command() -> str:
    """The command line of this run, data location included."""
    data = os.environ.get("TFDS_DATA_DIR")
    env = f"TFDS_DATA_DIR={shlex.quote(data)} " if data else ""
    return env + shlex.join([sys.executable, *sys.argv])


def document(rows: Sequence[Row], header: Sequence[str], quick: bool, plan: Plan,
             seconds: float) -> str:
    """The Markdown document: title, how it was measured, the machine, the table."""
    lines = ["# rdsweep benchmarks", ""]
    if quick:
        lines += ["**SMOKE RUN (`--quick`), NOT A BENCHMARK.** Tiny sizes "
                  f"({plan.steps} training steps per call, {plan.repeats} repeat(s)), few "
                  "models, possibly on a busy machine: these figures only show that every row "
                  "is measured. Replace this file with a full run on a quiet machine:", "",
                  f"    {FULL_COMMAND}", ""]
    lines += [f"Generated by `scripts/bench.py` in one run of {seconds / 60:.1f} min: "
              f"median of {plan.repeats} timed calls after a warm-up call "
              "(processes: median of that many launches).", "",
              f"Command: `{command()}`", "", *header, "",
              "| section | measurement | value | target | met |", "|---|---|---|---|---|"]
    for r in rows:
        met = "" if r.met is None else ("yes" if r.met else "**no**")
        lines.append(f"| {r.section} | {r.measurement} | {r.value} | {r.target} | {met} |")
    return "\n".join(lines) + "\n"


def selection(only: Optional[str], known: Sequence[str],
              plan: Plan) -> Tuple[List[str], List[str], List[str]]:
    """(sections, training models, startup models) that --only selects."""
    names = only.split(",") if only else []
    unknown = [n for n in names if n not in SECTIONS and n not in known]
    if unknown:
        sys.exit(f"bench.py: --only: unknown {', '.join(unknown)}; sections: "
                 f"{', '.join(SECTIONS)}; models: {', '.join(known)}")
    sections = [s for s in SECTIONS if s in names]
    models = [n for n in names if n in known]
    if not sections:
        sections = list(MODEL_SECTIONS if models else SECTIONS)
    training = models or [m for m in (plan.models or known) if m in known]
    startup = [m for m in (models or plan.startup_models) if m in known]
    return sections, training, startup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, help="training steps per timed call (default 200)")
    parser.add_argument("--repeats", type=int, help="timed calls per figure (default 5)")
    parser.add_argument("--batch-size", type=int, help="training batch size (default 64)")
    parser.add_argument("--only", metavar="NAME[,NAME]", help="sections and/or models")
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny sizes")
    parser.add_argument("--write", metavar="PATH", help="also write the document to PATH")
    # The startup rows' child process: bench.py --first-step CACHE_DIR [OVERRIDE ...]
    parser.add_argument("--first-step", metavar="CACHE_DIR", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.overrides and not args.first_step:
        parser.error(f"unrecognized arguments: {' '.join(args.overrides)}")

    plan = QUICK if args.quick else Plan()
    plan = dataclasses.replace(plan, **{k: v for k, v in (
        ("steps", args.steps), ("repeats", args.repeats), ("batch_size", args.batch_size))
        if v is not None})
    if args.first_step:
        first_step(args.first_step, args.overrides, plan.steps, plan.batch_size)
        return

    start = time.perf_counter()
    header = machine()
    overrides = model_overrides()
    sections, training, startup = selection(args.only, list(overrides), plan)
    cfg = compose_config([])
    images = load_split(cfg.data.train_split, cfg.data)
    for c in (cfg, compose_config(SHORT_EVAL)):  # fills the data cache the processes read
        load_split(c.data.test_split, c.data)

    note("matmul")
    mm = matmul_flops(plan.repeats)
    best = max(mm.values())
    rows = matmul_rows(mm)
    device_images = jax.device_put(images)
    if "training" in sections:
        rows += training_rows(training, overrides, images, device_images, best, plan)
    if "layers" in sections:
        rows += layer_rows(device_images, plan)
    if "iwae" in sections:
        rows += iwae_rows(device_images, best, plan)
    if "scaling" in sections:
        rows += scaling_rows(device_images, plan)
    if "startup" in sections:
        rows += startup_rows(startup, overrides, plan)
    if "memory" in sections:
        rows += memory_rows(plan)
    if "grid" in sections:
        rows += grid_rows(plan)

    text = document(rows, header, args.quick, plan, time.perf_counter() - start)
    print(text)
    if args.write:
        Path(args.write).parent.mkdir(parents=True, exist_ok=True)
        Path(args.write).write_text(text)
        note(f"wrote {args.write}")


if __name__ == "__main__":
    main()
