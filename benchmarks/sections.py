"""The benchmark's sections but `layers` (benchmarks.layer_profile): each `*_rows` function
measures one section at the sizes of a `Plan` and returns its table rows."""

from __future__ import annotations

import dataclasses
import statistics
import sys
import tempfile
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import jax

from benchmarks.measure import (TRIAL_REPEATS, affordable_steps, batching, compose_config,
                                eval_batch_rate, fastest_torch, images_per_s,
                                iwae_flops_per_sample, iwae_rate, median_process, new_states,
                                note, peak_rss_mib, rdsweep_cmd, side_by_side, startup_seconds,
                                timed_process, torch_available, train_flops_per_image,
                                training_call, training_rate)
from rdsweep import cpu_tuning
from rdsweep.train import stack
from rdsweep.options.tfds_images import load_split

# The grid rows' runs: short, so that start-up, compilation and data loading weigh as they do
# in a sweep of many short runs.
SHORT_EVAL = ("eval.iwae_samples=10", "eval.train_examples=0", "eval.image_examples=0",
              "data.test_split='test[:1000]'")  # quoted: Hydra's grammar reads [ as a list
TORCH_MISSING = "torch not installed (the bench extra: bash scripts/setup.sh test,bench)"


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
    main_overrides: Tuple[str, ...] = ()  # the README's main job: the default run
    main_repeats: int = 3  # launches of it (each ~1 min)
    large_k: int = 5000  # IWAE samples of the literature's test NLL (rdsweep-eval of that run)


QUICK = Plan(steps=10, call_seconds=1.0, repeats=1, models=("mlp", "conv_small"),
             batch_sizes=(32, 128), grid_sizes=(1, 2), iwae_examples=100,
             memory_overrides=("train.steps=20", *SHORT_EVAL), grid_runs=2,
             grid_overrides=("train.steps=20", *SHORT_EVAL),
             main_overrides=("train.steps=20", *SHORT_EVAL), main_repeats=1, large_k=10)


class Row(NamedTuple):
    section: str
    measurement: str
    value: str
    target: str = ""
    met: Optional[bool] = None


def target(value: float, bound: float, at_least: bool, shown: str) -> Dict[str, object]:
    """Row fields `target` (the bound as `shown`) and `met` of a figure against its bound."""
    return {"target": ("&ge; " if at_least else "&le; ") + shown,
            "met": value >= bound if at_least else value <= bound}


def ratio_target(name: str) -> Optional[float]:
    """The rdsweep / PyTorch training ratio model `name` should reach, if it has one."""
    if name == "mlp":
        return 1.5
    return 1.0 if name.startswith(("conv", "pixelcnn")) else None


def fraction_target(name: str, fraction: float) -> Dict[str, object]:
    """The target fields of model `name`'s achieved fraction of the best matmul rate: mlp
    >= 80%, conv* >= 60%, none for the others."""
    bound = 0.8 if name == "mlp" else 0.6 if name.startswith("conv") else None
    return target(fraction, bound, True, f"{bound:.0%}") if bound else {}


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
        steps = affordable_steps(cfg, device_images, plan.steps, plan.call_seconds)
        # rdsweep, XLA's default fusions where auto chose others, and PyTorch: side by side.
        calls = {"rdsweep": training_call(cfg, device_images, steps)}
        if cpu_tuning.compile_options(cfg):  # train.fusions=auto chose single-dot fusions
            calls["xla"] = training_call(compose_config([*overrides[name], "train.fusions=xla",
                                                         f"train.batch_size={b}"]),
                                         device_images, steps)
        if has_torch:
            variant, calls["torch"], tried = fastest_torch(name, images, b, steps,
                                                           plan.repeats)
        rates = {who: images_per_s(cfg, steps, seconds)
                 for who, seconds in side_by_side(calls, plan.repeats).items()}
        rate = rates["rdsweep"]
        label = f"training `{name}`, batch {b}"
        rows.append(Row("training", f"{label}: rdsweep, {steps}-step scan",
                        f"{rate:,.0f} images/s"))
        if "xla" in rates:
            rows.append(Row("training", f"{label}: XLA's default fusions (train.fusions=xla) "
                            "/ rdsweep's (auto: single-dot YNNPACK fusions only)",
                            f"{rates['xla']:,.0f} / {rate:,.0f} images/s = "
                            f"{rate / rates['xla']:.2f}x",
                            **target(rate / rates["xla"], 1.0, True, "1.0x")))
        if has_torch:
            ratio = rate / rates["torch"]
            bound = ratio_target(name)
            reference = f"PyTorch ({variant}, fused Adam, {threads} threads)"
            trial = min(plan.repeats, TRIAL_REPEATS)
            rows += [Row("training", f"{label}: PyTorch variants, {trial} side-by-side "
                         f"{steps}-step call(s) each; the fastest is the reference",
                         "; ".join(f"{v}: {r}" for v, r in tried.items())),
                     Row("training", f"{label}: {reference}, {steps}-step loop",
                         f"{rates['torch']:,.0f} images/s"),
                     Row("training", f"{label}: rdsweep / {reference}", f"{ratio:.2f}x",
                         **(target(ratio, bound, True, f"{bound}x") if bound else {}))]
        flops = train_flops_per_image(cfg, device_images)
        if flops:
            achieved = flops * rate
            rows.append(Row(
                "training", f"{label}: rdsweep achieved (XLA cost analysis: "
                f"{flops / 1e6:,.2f} MFLOP/image)",
                f"{achieved / 1e9:,.1f} GFLOP/s = {achieved / best:.1%} of matmul",
                **fraction_target(name, achieved / best)))
    return rows


def startup_rows(names: Sequence[str], overrides: Dict[str, List[str]], plan: Plan) -> List[Row]:
    rows = []
    for name in names:
        note(f"startup {name}")
        s = startup_seconds(overrides[name], plan.startup_steps, plan.batch_size, plan.repeats)
        label = f"launch to first {plan.startup_steps}-step chunk, `{name}`"
        ratio = s["cold"] / s["warm"]
        rows += [Row("startup", f"{label}, cold compilation cache", f"{s['cold']:.1f} s"),
                 Row("startup", f"{label}, warm compilation cache", f"{s['warm']:.1f} s"),
                 Row("startup", f"{label}: cold / warm", f"{ratio:.2f}x",
                     **target(ratio, 2.0, True, "2x"))]
    return rows


def iwae_rows(images: jax.Array, best: float, plan: Plan) -> List[Row]:
    """images: the training split on the device (the optimiser's example count)."""
    cfg = compose_config([])
    test = load_split(cfg.data.test_split, cfg.data)[:plan.iwae_examples]
    state = new_states(cfg, images, 1)[0]
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
                    f"{achieved / 1e9:,.1f} GFLOP/s = {achieved / best:.1%} of matmul",
                    **target(achieved / best, 0.5, True, "50%")))
    # The evaluation's XLA options (rdsweep.cpu_tuning.eval_options) against XLA's defaults.
    k = sorted(rates)[len(rates) // 2]
    note(f"iwae xla options k={k}")
    base, ours = (eval_batch_rate(cfg, state, test, k, tuned, plan.repeats)
                  for tuned in (False, True))
    rows.append(Row("iwae", f"one evaluation batch ({min(cfg.eval.batch_size, len(test))} "
                    f"examples, k={k}) compiled with XLA's default fusions / with rdsweep's "
                    "(single-dot YNNPACK fusions only)",
                    f"{base:,.0f} / {ours:,.0f} example-samples/s = {ours / base:.2f}x",
                    **target(ours / base, 1.0, True, "1.0x")))
    return rows


# The calibration experiment with each of its priors (the VampPrior paper's one-layer VAE).
PRIORS = {"N(0, I)": ("marginal=gaussian",),
          "mixture of 500 Gaussians": ("marginal=mixture", "marginal.components=500"),
          "VampPrior, 500 pseudo-inputs": ("marginal=vamp_tomczak",)}
EPOCH_IMAGES, TEST_IMAGES = 50_000, 10_000  # its training and test splits


def priors_rows(images: jax.Array, plan: Plan) -> List[Row]:
    """Training images/s of `experiment=vampprior_mnist` with each prior at its own batch size,
    timed side by side, with the seconds of one epoch at that rate; then the IWAE evaluation's
    example-samples/s of each (k = the largest of plan.iwae_samples, plan.iwae_examples test
    images) and the minutes that gives the literature's k = plan.large_k on 10,000 images."""
    note("priors")
    cfgs = {name: compose_config(["experiment=vampprior_mnist", *o]) for name, o in PRIORS.items()}
    seconds = side_by_side({name: training_call(cfg, images, plan.steps)
                            for name, cfg in cfgs.items()}, plan.repeats)
    rows, k = [], max(plan.iwae_samples)
    data = next(iter(cfgs.values())).data  # the priors share it
    test = load_split(data.test_split, data)[:plan.iwae_examples]
    for name, cfg in cfgs.items():
        rate = images_per_s(cfg, plan.steps, seconds[name])
        label = f"`experiment=vampprior_mnist {' '.join(PRIORS[name])}` ({name})"
        rows.append(Row("priors", f"{label}, batch {cfg.train.batch_size}, {plan.steps}-step "
                        f"scan: training, and one epoch of its {EPOCH_IMAGES:,} images at that "
                        "rate",
                        f"{rate:,.0f} images/s; {EPOCH_IMAGES / rate:.1f} s"))
        note(f"priors: {name}, evaluation")
        rate = iwae_rate(cfg, new_states(cfg, images, 1)[0], test, k, plan.repeats)
        rows.append(Row("priors", f"{label}: IWAE evaluation, {len(test)} test examples, k={k}; "
                        f"at that rate, k = {plan.large_k} on {TEST_IMAGES:,} test images",
                        f"{rate:,.0f} example-samples/s; "
                        f"{TEST_IMAGES * plan.large_k / rate / 60:.1f} min"))
    return rows


def memory_rows(plan: Plan) -> List[Row]:
    note("memory")
    with tempfile.TemporaryDirectory(prefix="rdsweep-bench-") as tmp:
        args = [*plan.memory_overrides, f"hydra.run.dir={tmp}/run",
                f"compilation_cache_dir={tmp}/jax"]  # cold: compilation's memory counts
        peak = peak_rss_mib(rdsweep_cmd(*args))
    return [Row("memory", f"peak RSS of `rdsweep {' '.join(plan.memory_overrides)}` (default "
                "model, with its evaluation; cold compilation cache)", f"{peak:,.0f} MiB")]


def scaling_rows(images: jax.Array, plan: Plan) -> List[Row]:
    per_call = plan.steps * plan.batch_size  # images per timed call, the same in every row
    rows = []
    for b in plan.batch_sizes:
        note(f"scaling batch {b}")
        steps = max(1, per_call // b)
        rate = training_rate(compose_config([f"train.batch_size={b}"]), images, steps,
                             plan.repeats)
        rows.append(Row("scaling", f"mlp training, batch {b}, {steps}-step scan",
                        f"{rate:,.0f} images/s"))
    # Each grid size both ways (train.grid_batching), side by side: `auto` should take what
    # wins here, and a grid of K should train as many images/s in all as one model does (the
    # rate of K separate runs).
    auto_cfg, single, picks = compose_config([f"train.batch_size={plan.batch_size}"]), None, []
    for k in plan.grid_sizes:
        steps = max(1, per_call // (plan.batch_size * k))
        note(f"scaling grid K={k}, map and vmap")
        cfgs = {mode: compose_config([f"train.batch_size={plan.batch_size}",
                                      f"train.grid_batching={mode}"]) for mode in ("map", "vmap")}
        seconds = side_by_side({mode: training_call(cfg, images, steps, k)
                                for mode, cfg in cfgs.items()}, plan.repeats)
        rates = {mode: images_per_s(cfgs[mode], steps, s, k) for mode, s in seconds.items()}
        auto = batching(auto_cfg, stack(new_states(auto_cfg, images, k)), images)
        single = single or rates[auto]
        picks.append(rates[auto] >= max(rates.values()))
        rows.append(Row("scaling", f"mlp grid of K={k}, batch {plan.batch_size}, {steps}-step "
                        f"scan, lax.map / vmap over the models (auto: {auto}): images/s in all, "
                        "and auto's against one model's", f"{rates['map']:,.0f} / "
                        f"{rates['vmap']:,.0f}; {rates[auto] / single:.2f}x",
                        **target(rates[auto] / single, 1.0, True, "1.0x")))
    rows.append(Row("scaling", "train.grid_batching=auto is the faster of map and vmap at "
                    "every K", "yes" if all(picks) else "no", "faster at every K", all(picks)))
    return rows


MAIN_SECONDS = 60.0  # the README's main job, launch to metrics.json
LARGE_K_MINUTES = 10.0  # rdsweep-eval at k = 5000 on the whole test split of the main job's run


def main_rows(plan: Plan) -> List[Row]:
    """The README's main job (`rdsweep`: the default model trained and evaluated) from launch to
    exit, metrics.json written; data cache warm, compilation cache fresh each launch. Then the
    literature's NLL of its first run: `rdsweep-eval` at k = plan.large_k on the test split,
    timed once (minutes)."""
    note("main")
    seconds = []
    with tempfile.TemporaryDirectory(prefix="rdsweep-bench-") as tmp:
        for i in range(plan.main_repeats):
            seconds.append(timed_process(rdsweep_cmd(
                *plan.main_overrides, f"hydra.run.dir={tmp}/run{i}",
                f"compilation_cache_dir={tmp}/jax{i}"))[0])
        note(f"main: rdsweep-eval k={plan.large_k}")
        overrides = (f"eval.iwae_samples={plan.large_k}", "eval.train_examples=0")
        large_k = timed_process([sys.executable, "-m", "rdsweep.eval_cli", f"{tmp}/run0",
                                 *overrides])[0]
    command = " ".join(("rdsweep",) + plan.main_overrides)
    median, minutes = statistics.median(seconds), large_k / 60
    return [Row("main", f"`{command}` from launch to metrics.json (median of "
                f"{plan.main_repeats}; cold compilation cache)", f"{median:.1f} s",
                **target(median, MAIN_SECONDS, False, f"{MAIN_SECONDS:.0f} s")),
            Row("main", f"`rdsweep-eval RUN {' '.join(overrides)}` of that run, launch to exit "
                "(its whole test split; one launch)", f"{minutes:.1f} min",
                **target(minutes, LARGE_K_MINUTES, False, f"{LARGE_K_MINUTES:.0f} min"))]


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
