"""The rdsweep-eval command: evaluates trained runs again, with evaluation-side overrides.

    rdsweep-eval RUN_DIR eval.iwae_samples=5000 data.test_split=validation
    rdsweep-eval SWEEP_DIR eval.iwae_samples=5000     # every completed run of the sweep
    rdsweep-eval SWEEP_DIR --step previous eval.iwae_samples=1 eval.train_examples=0

Each run gets a new file RUN_DIR/eval/<overrides>.json (written atomically; `base.json` without
overrides; `...,step=N` for the kept checkpoint at step N, chosen by `--step N` or
`--step previous`, the newest one before the last: how much the test bounds still moved at the
end of training, which rdsweep-report shows as `test_elbo_gain`) with the test bounds (and the train bounds if eval.train_examples > 0) in nats per
example; metrics.json and every other output of training stay as they are. An existing file is
kept (the evaluation is deterministic: it would be the same). The keys of the evaluation are
training's own (seed), so without overrides the numbers are metrics.json's (up to the order of
floating-point operations).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import jax
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from hydra.errors import HydraException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rdsweep.checkpoints import kept_steps
from rdsweep.config import EvalConfig
from rdsweep.console import BAD_INPUT, fail
from rdsweep.evaluate import evaluate
from rdsweep.fileio import atomic_write
from rdsweep.option import ConfigError, DataError
from rdsweep.report.runs import ReportError, eval_path, list_runs
from rdsweep.identity import NOT_IDENTITY, in_identity
from rdsweep.sweep import run_slug
from rdsweep.trained import TrainedRun, load_run, read_completed

# What rdsweep-eval may change: what is evaluated, never what was trained.
EVAL_KEYS = ("eval.iwae_samples", "eval.batch_size", "eval.train_examples", "data.test_split")
# Where the data is: allowed, and not in the result file's name (rdsweep.identity).
LOCATION_KEYS = tuple(k for k in NOT_IDENTITY if k.startswith("data."))
_ABSENT = object()


def parse_overrides(lines: Sequence[str]) -> List[Override]:
    """Hydra's parse of KEY=VALUE overrides; ConfigError for any other form."""
    try:
        overrides = OverridesParser.create().parse_overrides(list(lines))
    except HydraException as e:
        raise ConfigError(f"bad override: {str(e).splitlines()[0]}") from None
    for o in overrides:
        if o.type != OverrideType.CHANGE or o.is_sweep_override():
            raise ConfigError(f"{o.input_line}: rdsweep-eval takes one KEY=VALUE per key "
                              "(no +, ~ or sweeps)")
    return overrides


def eval_name(overrides: Sequence[Override], step: Optional[int] = None) -> str:
    """The result file's name (no .json) from the overrides, sorted, less data locations, and
    `step=N` for an evaluation of a checkpoint before the last."""
    named = sorted(f"{o.key_or_group}={o.value()}" for o in overrides
                   if in_identity(o.key_or_group))
    named += [] if step is None else [f"step={step}"]
    return run_slug(",".join(named)) if named else "base"


PREVIOUS = "previous"  # --step: the newest kept checkpoint before the last


def parse_step(text: Optional[str]) -> Optional[str]:
    """--step's value: None (the last checkpoint), PREVIOUS or a step number; ConfigError
    otherwise."""
    if text is None or text == PREVIOUS or (text.isdigit() and int(text) > 0):
        return text
    raise ConfigError(f"--step {text}: give a positive step number or '{PREVIOUS}'")


def checkpoint_step(run_dir: str, final: int, step: Optional[str]) -> Optional[int]:
    """The step to evaluate in run_dir: None for the last (final) one; the newest kept
    checkpoint before it for PREVIOUS (DataError if there is none); else the number."""
    if step is None or (step != PREVIOUS and int(step) == final):
        return None
    if step != PREVIOUS:
        return int(step)
    earlier = [s for s in kept_steps(run_dir) if s < final]
    if not earlier:
        raise DataError(f"{run_dir}: --step {PREVIOUS}: no checkpoint is kept before the last "
                        f"(step {final})")
    return max(earlier)


def _check_key(cfg: DictConfig, key: str) -> None:
    """ConfigError unless key is an evaluation-side key of this run's config."""
    allowed = ", ".join(EVAL_KEYS + LOCATION_KEYS)
    present = OmegaConf.select(cfg, key, default=_ABSENT) is not _ABSENT
    if key not in EVAL_KEYS + LOCATION_KEYS:
        why = ("is not a config key" if not present else "is not used by re-evaluation"
               if key.startswith("eval.") else "would change the trained model or its training")
        raise ConfigError(f"{key} {why}; rdsweep-eval takes only: {allowed}")
    if not present:
        raise ConfigError(f"{key} is not a key of this run's config (data={cfg.data.name}); "
                          f"rdsweep-eval takes only: {allowed}")


def configure(cfg: DictConfig, overrides: Sequence[Override]) -> DictConfig:
    """The run's config with the overrides, each checked (type, range, data available);
    ConfigError or DataError with one line naming the key otherwise."""
    cfg = OmegaConf.create(OmegaConf.to_container(cfg))
    eval_node = OmegaConf.structured(EvalConfig(**cfg.eval))
    data_node = OmegaConf.structured(instantiate(cfg.data))
    for o in overrides:
        key = o.key_or_group
        _check_key(cfg, key)
        group, field = key.split(".", 1)
        try:
            OmegaConf.update(eval_node if group == "eval" else data_node, field, o.value())
        except OmegaConfBaseException as e:
            raise ConfigError(f"{o.input_line} is invalid: {str(e).splitlines()[0]}") from None
    OmegaConf.to_object(eval_node).check("eval")
    source = OmegaConf.to_object(data_node)
    source.check("data")
    source.check_available()
    return OmegaConf.merge(cfg, {"eval": eval_node, "data": data_node})


def reevaluate(run: TrainedRun, cfg: DictConfig) -> Dict[str, Any]:
    """The bounds of run's model under cfg (the run's config with evaluation overrides), with
    the keys of training's own evaluation: {test, train (or None), rate_estimator, seconds}."""
    start = time.perf_counter()
    train_split, test_split = instantiate(cfg.data).load()
    ev = lambda split, i: evaluate(run.apply_fn, run.params, split.images,
                                   jax.random.fold_in(run.eval_key, i), cfg.eval.iwae_samples,
                                   cfg.eval.batch_size, cfg.data.binarization,
                                   weights=split.weights)
    test, estimator = ev(test_split, 0)
    train = ev(train_split.head(cfg.eval.train_examples), 1)[0] if cfg.eval.train_examples else None
    return {"test": test, "train": train, "rate_estimator": estimator,
            "seconds": time.perf_counter() - start}


def _targets(folder: str) -> List[str]:
    """The run folders to evaluate: the folder itself, or each run of a sweep folder."""
    if not os.path.isdir(folder):
        raise ConfigError(f"{folder}: no such folder")
    try:
        runs = list_runs(folder)
    except (ReportError, OSError, ValueError) as e:
        raise ConfigError(f"{folder}: {e}") from None
    if not runs:
        raise ConfigError(f"{folder} holds no runs: give a run folder or a sweep folder")
    return [os.path.normpath(os.path.join(folder, subdir)) for subdir, _ in runs]


def plan(folder: str, overrides: Sequence[Override], step: Optional[str] = None
         ) -> List[Tuple[TrainedRun, DictConfig, str]]:
    """(run, evaluation config, result name) of each run to evaluate, at the checkpoint `step`
    (parse_step's). Every override is checked against every run first (ConfigError/DataError:
    nothing is written). In a sweep folder, runs that cannot be loaded are skipped with one line
    each; one run folder that cannot raises."""
    dirs = _targets(folder)
    single = dirs == [os.path.normpath(folder)]
    jobs = []
    for run_dir in dirs:
        try:
            final = int(read_completed(run_dir)["steps"])
            run = load_run(run_dir, checkpoint_step(run_dir, final, step))
        except BAD_INPUT as e:
            if single:
                raise
            print(f"skipped: {e}")
            continue
        cfg = configure(run.config, overrides)
        name = eval_name(overrides, None if run.step == final else run.step)
        if os.path.exists(eval_path(run_dir, name)):
            print(f"skipped: {eval_path(run_dir, name)} exists")
            continue
        jobs.append((run, cfg, name))
    return jobs


def write_eval(run: TrainedRun, cfg: DictConfig, overrides: Sequence[Override],
               name: str) -> Tuple[str, Dict[str, Any]]:
    """Evaluates run under cfg and writes RUN_DIR/eval/<name>.json; returns (its path, what it
    holds)."""
    result = reevaluate(run, cfg)
    record = {"overrides": [o.input_line for o in overrides], "step": run.step,
              "config_hash": run.metrics.get("config_hash"),
              "config": OmegaConf.to_container(cfg), **result}
    path = eval_path(run.run_dir, name)
    atomic_write(path, lambda f: f.write(json.dumps(record, indent=2, sort_keys=True) + "\n"))
    return path, record


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rdsweep-eval",
        description="Evaluates trained runs again (e.g. eval.iwae_samples=5000) into "
                    "RUN_DIR/eval/<overrides>.json; metrics.json is left as it is.")
    parser.add_argument("folder", metavar="RUN_DIR",
                        help="a run folder, or a sweep folder (each completed run in it)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help=f"evaluation overrides: {', '.join(EVAL_KEYS + LOCATION_KEYS)}")
    parser.add_argument("--step", metavar="N|previous",
                        help="evaluate the kept checkpoint at step N, or the newest one before "
                             "the last (previous), instead of the last")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
    """The rdsweep-eval command; bad input: one line on stderr, exit 2, nothing written."""
    logging.basicConfig(level=logging.WARNING)
    args = _parser().parse_intermixed_args(argv)
    try:
        overrides = parse_overrides(args.overrides)
        jobs = plan(args.folder, overrides, parse_step(args.step))
    except BAD_INPUT as e:
        fail(str(e), prog="rdsweep-eval")
    for run, cfg, name in jobs:
        print(f"{run.run_dir}: evaluating step {run.step} (k={cfg.eval.iwae_samples})",
              flush=True)
        path, record = write_eval(run, cfg, overrides, name)
        test = record["test"]
        print(f"{path}: test R {test['rate']:.2f}  D {test['distortion']:.2f}  "
              f"ELBO {test['elbo']:.2f}  IWAE(k={test['iwae_samples']}) {test['iwae']:.2f} nats")


if __name__ == "__main__":
    main()
