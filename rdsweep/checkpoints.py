"""A run's checkpoints, the one module that knows their folder: `<run_dir>/checkpoints/<step>/`
holds orbax's items `state` (the train state) and `log` (the config hash and the learning curve
so far), and `rdsweep.sha256`. Training saves and resumes them (RunCheckpoints); a trained run
restores one step's parameters (restore_params).

A run started again in the same folder with the same config resumes from its newest readable
checkpoint. Because a step's randomness depends only on (seed, step), the resumed run ends with
the same final state as an uninterrupted one. A checkpoint that cannot be read (truncated,
corrupt) is deleted with a warning and the next older one is tried; none left means a restart
from step 0. Orbax writes each checkpoint into a temporary folder and renames it when complete,
so a kill during a save leaves no half checkpoint behind.

Each saved checkpoint gets a sha256 of its files (`<step>/rdsweep.sha256`), checked before it is
restored: one whose bytes changed (flipped bits of the same size too) is deleted with a warning
like an unreadable one, so a run never resumes from damaged weights. The sha256 is written last:
in a folder where checkpoints have one, a checkpoint without it is a save cut short between
orbax's rename and the hash (a kill), and is deleted like a damaged one, since its bytes cannot
be vouched for. A folder where no checkpoint has the file (an rdsweep older than the hashes) is
refused, its checkpoints kept.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from typing import Any, Dict, List, Optional, Tuple

import jax
import orbax.checkpoint as ocp
from flax import struct

from rdsweep.console import error_line
from rdsweep.fileio import atomic_write
from rdsweep.option import ConfigError, DataError
from rdsweep.outputs import METRICS

log = logging.getLogger(__name__)

Rows = List[Dict[str, float]]
CHECKPOINTS = "checkpoints"
DIGEST = "rdsweep.sha256"


def kept_steps(run_dir: str) -> List[int]:
    """The steps of the run's checkpoints/<step>/ folders, ascending ([] if there is none)."""
    folder = os.path.join(run_dir, CHECKPOINTS)
    return sorted(int(name) for name in (os.listdir(folder) if os.path.isdir(folder) else [])
                  if name.isdigit() and os.path.isdir(os.path.join(folder, name)))


def content_hash(folder: str) -> str:
    """sha256 over the names and bytes of every file under folder (DIGEST itself aside)."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            if name == DIGEST and root == folder:
                continue
            digest.update(os.path.relpath(path, folder).encode() + b"\0")
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def hash_problem(folder: str) -> Optional[str]:
    """Why folder's files do not match the hash recorded at save, None if they do."""
    try:
        with open(os.path.join(folder, DIGEST)) as f:
            recorded = f.read().strip()
    except FileNotFoundError:
        return "its save ended before its sha256 was written"
    return None if content_hash(folder) == recorded else "its files do not match their sha256"


class RunCheckpoints:
    """Saves every `every` steps (0: only at the end) and keeps the newest `keep`."""

    def __init__(self, run_dir: str, config_hash: str, every: int, keep: int):
        self.directory = os.path.join(os.path.abspath(run_dir), CHECKPOINTS)
        self.config_hash = config_hash
        self.every = every
        self.manager = ocp.CheckpointManager(
            self.directory, item_names=("state", "log"),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, create=True, cleanup_tmp_directories=True,
                # Synchronous: a save has finished before the next training chunk starts.
                enable_async_checkpointing=False))
        self.last_saved: Optional[int] = None

    def latest(self) -> Optional[int]:
        """The newest checkpoint's step, None if there is none."""
        return self.manager.latest_step()

    def restore(self, state: Any, max_step: Optional[int] = None) -> Tuple[Any, Rows]:
        """The newest readable checkpoint's (state, log rows), or (state, []) if there is none;
        only checkpoints at or below max_step count if it is given.

        `state` is the freshly initialised state: it gives the structure, shapes and dtypes.
        Raises ConfigError if the folder holds checkpoints of another config.
        """
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, state)
        damaged = False
        saved = self.manager.all_steps()
        if saved and not any(os.path.exists(os.path.join(self.directory, str(s), DIGEST))
                             for s in saved):
            raise ConfigError(
                f"hydra.run.dir={os.path.dirname(self.directory)} holds checkpoints without "
                f"their sha256 ({DIGEST}: an older rdsweep's), which cannot be vouched for; "
                "choose another folder, or move its checkpoints away to train it from step 0")
        steps = [s for s in saved if max_step is None or s <= max_step]
        for step in sorted(steps, reverse=True):
            try:
                problem = hash_problem(os.path.join(self.directory, str(step)))
                if problem is None:
                    item = self.manager.restore(step, args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(abstract), log=ocp.args.JsonRestore()))
            except Exception as e:  # orbax and tensorstore raise many kinds on damaged files
                problem = error_line(e)
            if problem is not None:
                log.warning("checkpoint at step %d in %s is unreadable (%s): deleted; trying "
                            "an older one", step, self.directory, problem[:200])
                shutil.rmtree(os.path.join(self.directory, str(step)), ignore_errors=True)
                self.manager.reload()
                damaged = True
                continue
            if item.log["config_hash"] != self.config_hash:
                raise ConfigError(
                    f"hydra.run.dir={os.path.dirname(self.directory)} holds checkpoints of "
                    "another config; choose another folder (runs are never mixed)")
            log.info("resuming from the checkpoint at step %d", step)
            self._discard_after(step)
            return item.state, item.log["rows"]
        if damaged:
            log.warning("no readable checkpoint left: training again from step 0")
        self._discard_after(-1)
        return state, []

    def _discard_after(self, step: int) -> None:
        """Deletes the checkpoints after `step`, the one training resumes from: they belong to
        a future that is trained again (and orbax would not save over them)."""
        for later in [s for s in self.manager.all_steps() if s > step]:
            log.warning("discarding the checkpoint at step %d (resuming from %s)", later,
                        step if step >= 0 else "scratch")
            self.manager.delete(later)
        self.last_saved = step if step >= 0 else None

    def save(self, state: Any, rows: Rows, final: bool = False) -> None:
        """Saves if a multiple of `every` was passed since the last save, or if `final`."""
        step = int(state.step)
        due = self.every > 0 and step // self.every > (self.last_saved or 0) // self.every
        if step == self.last_saved or not (final or due):
            return
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            log=ocp.args.JsonSave({"config_hash": self.config_hash, "rows": rows})))
        self.manager.wait_until_finished()
        folder = os.path.join(self.directory, str(step))
        digest = content_hash(folder)  # before atomic_write puts its temporary file there
        atomic_write(os.path.join(folder, DIGEST), lambda f: f.write(digest))
        self.last_saved = step

    def close(self) -> None:
        self.manager.close()


@struct.dataclass
class WithBest:
    """What an early-stopping run's checkpoints hold (train.early_stopping): its state and the
    params of its best validation check, the model its result is."""

    state: Any
    best: Any

    @property
    def step(self) -> jax.Array:
        return self.state.step


def restore_params(run_dir: str, step: int, params: Any, config_hash: Optional[str],
                   best: bool = False) -> Any:
    """The parameters of run_dir's checkpoint at `step` (one of kept_steps), restored into the
    structure `params` (shape-dtype structs) on the CPU, after checking its files against their
    sha256 and that it is of the config `config_hash` (metrics.json's); best: those of the best
    validation check (a WithBest checkpoint). Reads only; raises DataError, one line naming
    run_dir and the checkpoint, otherwise."""
    which = "best" if best else "params"
    folder = os.path.join(os.path.abspath(run_dir), CHECKPOINTS, str(step))
    name = f"{CHECKPOINTS}/{step}"
    problem = hash_problem(folder)
    if problem is not None:
        raise DataError(f"{run_dir}: {name} is damaged ({problem}); train the run again")
    cpu = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
    item = {which: jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=cpu), params)}
    try:
        with ocp.Checkpointer(ocp.JsonCheckpointHandler()) as checkpointer:
            recorded = checkpointer.restore(os.path.join(folder, "log")).get("config_hash")
        if recorded == config_hash:
            with ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as checkpointer:
                restored = checkpointer.restore(os.path.join(folder, "state"),
                                                args=ocp.args.PyTreeRestore(
                    item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item),
                    partial_restore=True))[which]
            # a partial restore leaves what the checkpoint lacks as the template's structs
            if any(isinstance(a, jax.ShapeDtypeStruct)
                   for a in jax.tree_util.tree_leaves(restored)):
                raise ValueError(f"it holds no '{which}'")
            return restored
    except Exception as e:  # orbax and tensorstore raise many kinds on damaged files
        raise DataError(f"{run_dir}: {name} cannot be restored into the model of the run's "
                        f"config ({error_line(e)[:200]}); train the run again") from None
    raise DataError(f"{run_dir}: {name} belongs to another config (config_hash {recorded}; "
                    f"{METRICS}: {config_hash}): the folder mixes two runs; train this config "
                    "again into a new folder")
