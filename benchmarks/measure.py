"""What the benchmark's rows measure: the configs and models, in-process timings (matmul,
training, IWAE evaluation, XLA's FLOP counts) and process timings (launch to the first training
chunk, whole runs, peak RSS)."""

from __future__ import annotations

import functools
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from omegaconf import DictConfig

from rdsweep import cpu_tuning, registry, resolvers
from rdsweep.evaluate import (MAX_DECODES, STATIC_ARGNUMS, compiled_eval_batch, eval_batch,
                              evaluate)
from rdsweep.experiment import build_model
from rdsweep.options.tfds_images import load_split
from rdsweep.train import (TrainState, create_state, make_optimizer, make_train_chunk,
                           make_train_step, stack)

if TYPE_CHECKING:  # torch is optional (the bench extra)
    from benchmarks.torch_reference import Variant

FIRST_STEP_DONE = "bench: first training chunk done"
# Runs a command and prints its peak RSS (KiB) last. A separate small process because on Linux a
# child's ru_maxrss starts from its parent's RSS (its peak, under vfork) before exec, and the
# benchmark's is large.
RSS_PROBE = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def note(message: str) -> None:
    """Progress on stderr (stdout is the Markdown table)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Configs and models


def model_overrides() -> Dict[str, List[str]]:
    """name -> rdsweep overrides of each benchmarked model: torch_reference.REFERENCES; without
    torch (which that module imports) only the default config, the MLP."""
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
    registry.register()
    resolvers.register()
    with initialize_config_module(config_module="rdsweep.conf", version_base="1.3"):
        return compose("config", overrides=list(overrides))


def new_states(cfg: DictConfig, images: jax.Array, count: int) -> List[TrainState]:
    """`count` fresh train states of cfg's model (seeds 0..count-1) sharing one model, optimiser
    and objective, so that they can be stacked."""
    model = build_model(cfg)
    optimizer = make_optimizer(cfg.train, images.shape[0])
    objective = instantiate(cfg.objective)
    example = jnp.zeros((1,) + images.shape[1:], jnp.float32)
    return [create_state(model, optimizer, objective, example, jax.random.PRNGKey(seed))
            for seed in range(count)]


def train_step(cfg: DictConfig) -> Callable:
    """cfg's pure training step, as rdsweep makes it."""
    return make_train_step(cfg.train.batch_size, cfg.data.binarization)


def batching(cfg: DictConfig, states: TrainState, images: jax.Array) -> str:
    """How rdsweep batches a stack of `states` of cfg's model (train.grid_batching; auto: see
    rdsweep.cpu_tuning.grid_batching)."""
    return cpu_tuning.grid_batching(cfg.train.grid_batching, train_step(cfg), states, images)


def train_chunk(cfg: DictConfig, states: TrainState, images: jax.Array) -> Callable:
    """cfg's compiled chunk of training steps of `states` (a stack), batched as rdsweep batches
    them, with the XLA options rdsweep compiles it with (train.fusions)."""
    return make_train_chunk(train_step(cfg), batching(cfg, states, images),
                            cpu_tuning.compile_options(cfg))


def xla_flops(compiled) -> Optional[float]:
    """XLA's FLOP count of one call of a compiled function (None if it gives none)."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return cost.get("flops") if cost else None


# ---------------------------------------------------------------------------------------------
# In-process timings


def side_by_side(calls: Dict[str, Callable[[], object]], repeats: int) -> Dict[str, float]:
    """Median wall time (s) of each call (each must block until its result is ready), timed in
    alternation after one warm-up call each: every round runs every call once, so a load spike
    of a shared machine hits all of them alike, not one of them."""
    for fn in calls.values():
        fn()
    times: Dict[str, List[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time (s) of fn() (which must block until its result is ready), after a
    warm-up call."""
    return side_by_side({"": fn}, repeats)[""]


def matmul_flops(repeats: int, sizes=(512, 1024, 2048)) -> Dict[int, float]:
    """f32 matmul FLOP/s (2 n^3 per product) per size n."""
    out = {}
    for n in sizes:
        a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
        mm = jax.jit(lambda x: x @ x)
        out[n] = 2 * n**3 / median_seconds(lambda: mm(a).block_until_ready(), repeats)
    return out


def training_call(cfg: DictConfig, images: jax.Array, steps: int,
                  models: int = 1) -> Callable[[], None]:
    """One blocking call of cfg's compiled scan of `steps` training steps of a stack of
    `models` states: one run (models = 1) or a grid, as rdsweep trains it. It trains on from
    where the last call left off."""
    holder = {"state": stack(new_states(cfg, images, models))}
    chunk = train_chunk(cfg, holder["state"], images)

    def run():
        holder["state"], metrics = chunk(holder["state"], images, steps)
        jax.block_until_ready(metrics)

    return run


def images_per_s(cfg: DictConfig, steps: int, seconds: float, models: int = 1) -> float:
    """Training images/s (all `models` together) of `seconds` per call of `steps` steps."""
    return steps * cfg.train.batch_size * models / seconds


def training_rate(cfg: DictConfig, images: jax.Array, steps: int, repeats: int,
                  models: int = 1) -> float:
    """Training images/s of training_call(cfg, images, steps, models), timed alone."""
    seconds = median_seconds(training_call(cfg, images, steps, models), repeats)
    return images_per_s(cfg, steps, seconds, models)


def train_flops_per_image(cfg: DictConfig, images: jax.Array) -> Optional[float]:
    """XLA's FLOPs per image of one training step of cfg's model. Counted on one step, not on
    the scan: XLA counts a loop body once."""
    flops = xla_flops(jax.jit(train_step(cfg)).lower(new_states(cfg, images, 1)[0],
                                                      images).compile())
    return flops / cfg.train.batch_size if flops else None


def affordable_steps(cfg: DictConfig, images: jax.Array, max_steps: int,
                     call_seconds: float) -> int:
    """Training steps per timed call: max_steps, or fewer for a slow model, so that a call
    takes about call_seconds (judged from a 2-step call)."""
    rate = training_rate(cfg, images, 2, repeats=1)
    return int(min(max_steps, max(1, call_seconds * rate / cfg.train.batch_size)))


TRIAL_REPEATS = 2  # timed calls per variant when picking the PyTorch reference


def fastest_torch(name: str, images, batch_size: int, steps: int, repeats: int
                  ) -> Tuple[Variant, Callable[[], None], Dict[Variant, str]]:
    """The strongest PyTorch reference of torch_reference.REFERENCES entry `name` at torch's
    default thread count: (its variant, one blocking call of `steps` training steps of it, what
    each variant tried gave: images/s or why it failed).

    Picked in two side-by-side trials of min(repeats, TRIAL_REPEATS) calls of `steps` steps:
    the memory format, eager (NCHW or channels-last, for a model with convolutions), then eager
    against each torch.compile mode in that format. A mode that fails to compile is skipped.
    """
    import torch

    from benchmarks.torch_reference import COMPILE_MODES, Variant, convolves, trainer

    # Each model compiles afresh: variants of all models share one forward's code, and past
    # dynamo's recompile limit a compiled function silently runs eager.
    torch._dynamo.reset()
    tried: Dict[Variant, str] = {}

    def trial(variants: List[Variant], calls: Dict[Variant, Callable[[], None]]):
        for variant in variants:
            try:
                _, train = trainer(name, images, batch_size, variant=variant)
                train(1)  # compiles
            except Exception as e:  # any compiler failure: that mode is out, eager is not
                if variant.compile_mode is None:
                    raise
                tried[variant] = f"failed ({type(e).__name__})"
                note(f"torch {name} {variant}: {type(e).__name__}: "
                     f"{(str(e).splitlines() or [''])[0][:300]}")
                continue
            calls[variant] = functools.partial(train, steps)
        if len(calls) == 1:  # nothing to compare
            return next(iter(calls.items()))
        seconds = side_by_side(calls, min(repeats, TRIAL_REPEATS))
        tried.update({v: f"{steps * batch_size / s:,.0f} images/s" for v, s in seconds.items()})
        best = min(seconds, key=seconds.get)
        return best, calls[best]

    formats = [Variant(), Variant(channels_last=True)] if convolves(name) else [Variant()]
    eager, call = trial(formats, {})
    best, call = trial([Variant(mode, eager.channels_last) for mode in COMPILE_MODES],
                       {eager: call})
    return best, call, tried


def iwae_rate(cfg: DictConfig, state: TrainState, images, k: int, repeats: int) -> float:
    """evaluate() throughput at k samples in example-samples/s (examples x k per second)."""
    batch = min(cfg.eval.batch_size, len(images))
    seconds = median_seconds(
        lambda: evaluate(state.apply_fn, state.params, images, jax.random.PRNGKey(0), k, batch,
                         cfg.data.binarization), repeats)
    return len(images) * k / seconds


def eval_batch_rate(cfg: DictConfig, state: TrainState, images, k: int, tuned: bool,
                    repeats: int) -> float:
    """One eval_batch call's example-samples/s on images[:eval.batch_size] at k samples,
    compiled as rdsweep compiles it (tuned: rdsweep.cpu_tuning's XLA options) or with XLA's
    defaults."""
    batch = jnp.asarray(images[:cfg.eval.batch_size])
    fn = compiled_eval_batch() if tuned else jax.jit(eval_batch, static_argnums=STATIC_ARGNUMS)
    seconds = median_seconds(lambda: jax.block_until_ready(fn(
        state.apply_fn, state.params, batch, jax.random.PRNGKey(0), k, MAX_DECODES,
        cfg.data.binarization)), repeats)
    return len(batch) * k / seconds


def iwae_flops_per_sample(cfg: DictConfig, state: TrainState, images, k: int) -> float:
    """XLA's FLOPs per example-sample of one eval_batch call at k samples. max_decodes =
    k x batch puts all k samples in one lax.map step: XLA counts a loop body once, and
    evaluate()'s grouped loop does the same work (the encoder runs once per batch in both)."""
    batch = min(cfg.eval.batch_size, len(images))
    lowered = compiled_eval_batch().lower(state.apply_fn, state.params,
                                          jnp.asarray(images[:batch]), jax.random.PRNGKey(0),
                                          k, k * batch, cfg.data.binarization)
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
    """The startup rows' child (`python -m benchmarks --first-step`): builds the model, compiles and
    runs one scanned chunk of `steps` steps of one run (a stack of one) with the persistent
    compilation cache in cache_dir, then prints FIRST_STEP_DONE."""
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)  # cache small programs too
    cfg = compose_config([*overrides, f"train.batch_size={batch_size}"])
    images = jax.device_put(load_split(cfg.data.train_split, cfg.data))
    states = stack(new_states(cfg, images, 1))
    jax.block_until_ready(train_chunk(cfg, states, images)(states, images, steps))
    print(FIRST_STEP_DONE, flush=True)


def median_process(make_cmds: Callable[[str], List[List[str]]], repeats: int) -> float:
    """Median over `repeats` of the summed wall seconds of the commands make_cmds(tmp) gives,
    run one after another; tmp is a fresh temporary folder each repeat."""
    totals = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="rdsweep-bench-") as tmp:
            totals.append(sum(timed_process(cmd)[0] for cmd in make_cmds(tmp)))
    return statistics.median(totals)


def startup_seconds(overrides: Sequence[str], steps: int, batch_size: int,
                    repeats: int) -> Dict[str, float]:
    """Median seconds from launch to the first training chunk (of `steps` steps) done, with a
    fresh (cold) compilation cache and then with the cache that run filled (warm)."""
    def child(tmp: str) -> List[str]:
        return [sys.executable, "-m", "benchmarks", "--first-step", tmp, "--steps",
                str(steps), "--batch-size", str(batch_size), *overrides]

    cold, warm = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="rdsweep-bench-cache-") as cache:
            cold.append(timed_process(child(cache), FIRST_STEP_DONE)[0])
            warm.append(timed_process(child(cache), FIRST_STEP_DONE)[0])
    return {"cold": statistics.median(cold), "warm": statistics.median(warm)}


def rdsweep_cmd(*args: str) -> List[str]:
    """The rdsweep command line with these arguments."""
    return [sys.executable, "-m", "rdsweep", *args]
