"""The rdsweep-sample command: pictures of a trained run's model.

    rdsweep-sample RUN_DIR --samples 64 --reconstruct 10 --interpolate 3,17 --steps 8 --seed 0

writes into a new folder (default RUN_DIR/samples, or samples-2, ... if that exists; --out DIR
must not exist) samples.png (z ~ m(z), x ~ d(x|z)), reconstructions.png (the first test
examples above their reconstructions) and interpolation.png (one row per pair of test examples
I,J: x_I, then x ~ d(x|z) along the line from z_I ~ e(z|x_I) to z_J ~ e(z|x_J), then x_J). The
folder appears whole or not at all.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
from typing import List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
from hydra.utils import instantiate

from rdsweep.console import BAD_INPUT, fail
from rdsweep.images import save_picture
from rdsweep.option import ConfigError
from rdsweep.trained import TrainedRun, load_run

SAMPLES = "samples"  # the default output folder in the run folder


def _pair(text: str) -> Tuple[int, int]:
    try:
        i, j = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a pair I,J of test example indices")
    return i, j


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rdsweep-sample",
        description="Writes samples.png, reconstructions.png and interpolation.png of a trained "
                    "run into a new folder (default RUN_DIR/samples).")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the folder of a completed run")
    parser.add_argument("--samples", type=int, default=64, metavar="N",
                        help="samples z ~ m(z), x ~ d(x|z) (default 64; 0: none)")
    parser.add_argument("--reconstruct", type=int, default=10, metavar="N",
                        help="the first N test examples and their reconstructions (default 10)")
    parser.add_argument("--interpolate", type=_pair, nargs="*", default=[(0, 1)], metavar="I,J",
                        help="pairs of test example indices to interpolate between (default 0,1; "
                             "none: the option without pairs)")
    parser.add_argument("--steps", type=int, default=8,
                        help="latent points per interpolation, both ends included (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="the key of every draw (default 0)")
    parser.add_argument("--out", metavar="DIR", help="the output folder; must not exist")
    return parser


def _check(args: argparse.Namespace, test_examples: int) -> None:
    """ConfigError naming the option unless every count and index is valid."""
    for name in ("samples", "reconstruct"):
        if getattr(args, name) < 0:
            raise ConfigError(f"--{name} {getattr(args, name)} is invalid: must be >= 0")
    if args.steps < 2:
        raise ConfigError(f"--steps {args.steps} is invalid: must be >= 2")
    if args.reconstruct > test_examples:
        raise ConfigError(f"--reconstruct {args.reconstruct} is invalid: the run's test split "
                          f"has {test_examples} examples")
    for i, j in args.interpolate:
        if not (0 <= i < test_examples and 0 <= j < test_examples):
            raise ConfigError(f"--interpolate {i},{j} is invalid: indices must be in "
                              f"0..{test_examples - 1} (the run's test split)")
    if args.out and os.path.exists(args.out):
        raise ConfigError(f"--out {args.out} exists; give a new folder (nothing is overwritten)")


def output_folder(run_dir: str, out: Optional[str]) -> str:
    """--out, or the first of RUN_DIR/samples, samples-2, ... that does not exist."""
    if out:
        return out
    path, n = os.path.join(run_dir, SAMPLES), 1
    while os.path.exists(path):
        n += 1
        path = os.path.join(run_dir, f"{SAMPLES}-{n}")
    return path


def interpolation_row(run: TrainedRun, x_i: jax.Array, x_j: jax.Array, steps: int,
                      key: jax.Array) -> jax.Array:
    """x_i, `steps` images x ~ d(x|z) along z_i -> z_j (z ~ e(z|x) at both ends), x_j:
    (steps + 2, *image)."""
    k_z, k_x = jax.random.split(key)
    z = run.encode(jnp.stack([x_i, x_j])).sample(k_z, 1)[0]  # (2, L)
    t = jnp.linspace(0.0, 1.0, steps)[:, None]
    images = run.decode((1 - t) * z[0] + t * z[1]).sample(k_x, 1)[0]
    return jnp.concatenate([x_i[None], images, x_j[None]])


def write_pictures(run: TrainedRun, args: argparse.Namespace, x: jax.Array,
                   folder: str) -> List[str]:
    """The PNGs of args (test examples x, (N, *image) in {0, 1}) in folder; their names."""
    key = jax.random.PRNGKey(args.seed)
    written = []
    if args.samples:
        samples = run.sample(args.samples, jax.random.fold_in(key, 0))
        columns = math.ceil(math.sqrt(args.samples))
        save_picture(os.path.join(folder, "samples.png"),
                     [samples[i:i + columns] for i in range(0, args.samples, columns)])
        written.append("samples.png")
    if args.reconstruct:
        inputs = x[:args.reconstruct]
        save_picture(os.path.join(folder, "reconstructions.png"),
                     [inputs, run.reconstruct(inputs, jax.random.fold_in(key, 1))])
        written.append("reconstructions.png")
    if args.interpolate:
        rows = [interpolation_row(run, x[i], x[j], args.steps, jax.random.fold_in(key, 2 + n))
                for n, (i, j) in enumerate(args.interpolate)]
        save_picture(os.path.join(folder, "interpolation.png"), rows)
        written.append("interpolation.png")
    return written


def main(argv: Optional[Sequence[str]] = None) -> None:
    """The rdsweep-sample command; bad input: one line on stderr, exit 2, nothing written."""
    args = _parser().parse_args(argv)
    try:
        run = load_run(args.run_dir)
        source = instantiate(run.config.data)
        if not source.pictures:
            raise ConfigError(f"{args.run_dir}: data={run.config.data.name} has no pictures "
                              "to draw")
        x = run.test_images(key=jax.random.PRNGKey(args.seed))
        _check(args, len(x))
    except BAD_INPUT as e:
        fail(str(e), prog="rdsweep-sample")
    folder = output_folder(run.run_dir, args.out)
    parent = os.path.dirname(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    staging = os.path.join(parent, f".{os.path.basename(folder)}.{os.getpid()}.tmp")
    os.mkdir(staging)
    try:
        written = write_pictures(run, args, x, staging)
        os.rename(staging, folder)  # fails, leaving nothing, if folder appeared meanwhile
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for name in written:
        print(os.path.join(folder, name))


if __name__ == "__main__":
    main()
