"""Run checkpoints with orbax: the train state and the learning curve so far, under
`<run_dir>/checkpoints/<step>/`.

A run started again in the same folder with the same config resumes from its newest readable
checkpoint. Because a step's randomness depends only on (seed, step), the resumed run ends with
the same final state as an uninterrupted one. A checkpoint that cannot be read (truncated,
corrupt) is deleted with a warning and the next older one is tried; none left means a restart
from step 0. Orbax writes each checkpoint into a temporary folder and renames it when complete,
so a kill during a save leaves no half checkpoint behind.
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import Any, Dict, List, Optional, Tuple

import jax
import orbax.checkpoint as ocp

from rdsweep.option import ConfigError
from rdsweep.outputs import CHECKPOINTS

log = logging.getLogger(__name__)

Rows = List[Dict[str, float]]


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
        steps = [s for s in self.manager.all_steps() if max_step is None or s <= max_step]
        for step in sorted(steps, reverse=True):
            try:
                item = self.manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), log=ocp.args.JsonRestore()))
            except Exception as e:  # orbax and tensorstore raise many kinds on damaged files
                log.warning("checkpoint at step %d in %s is unreadable (%s: %s): deleted; "
                            "trying an older one", step, self.directory, type(e).__name__,
                            str(e).splitlines()[0] if str(e) else "")
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
        self.last_saved = step

    def close(self) -> None:
        self.manager.close()
