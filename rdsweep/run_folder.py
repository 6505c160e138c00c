"""A run folder: its lock (one process at a time), its record (.hydra/), and whether it already
holds this config's finished run.

A run folder belongs to one process at a time: an exclusive flock on its lock file, taken
before anything is written into it (for a single run in the callback's on_run_start, for a
sweep's job first thing in the job), held until the run ends. The OS drops the lock when its
process dies, even by SIGKILL, so a killed run never blocks a relaunch. Hydra itself writes no
`.hydra/` (conf: hydra.output_subdir=null): the job writes it once it holds the lock and knows
that the folder's record is this run's.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
from typing import Dict, Optional

import yaml
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from rdsweep.fileio import atomic_write
from rdsweep.identity import config_hash
from rdsweep.option import ConfigError
from rdsweep.outputs import load_metrics
from rdsweep.status import FINISHED, recorded_status

log = logging.getLogger(__name__)

LOCK = ".rdsweep.lock"
RECORD = ".hydra"  # Hydra's record of a run: config.yaml, hydra.yaml, overrides.yaml


class FolderBusy(ConfigError):
    """Another process holds the run folder's lock; the message names the folder and holder."""


_held: Dict[str, int] = {}  # run folder -> the open lock file this process holds


def claim(run_dir: str) -> None:
    """Takes run_dir's exclusive lock (creating the folder) unless this process holds it.
    Raises FolderBusy naming the holder, ConfigError if the folder cannot be written."""
    run_dir = os.path.abspath(run_dir)
    if run_dir in _held:
        return
    try:
        os.makedirs(run_dir, exist_ok=True)
        fd = os.open(os.path.join(run_dir, LOCK), os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise unwritable(run_dir, e) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
        os.close(fd)
        if e.errno not in (errno.EWOULDBLOCK, errno.EACCES):
            raise
        raise FolderBusy(f"{run_dir} is in use by {holder}: not started (wait for that run "
                         "to end, or choose another folder)") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
    _held[run_dir] = fd


def unwritable(run_dir: str, e: OSError) -> ConfigError:
    return ConfigError(f"{run_dir} cannot be written ({e.strerror}): choose a run folder you "
                       "can write, on a disk with space (hydra.run.dir, or hydra.sweep.dir)")


def release(run_dir: str) -> None:
    """Drops run_dir's lock if this process holds it."""
    fd = _held.pop(os.path.abspath(run_dir), None)
    if fd is not None:
        os.close(fd)  # closing the file releases its flock


def _recorded_hash(run_dir: str) -> Optional[str]:
    """The config hash of the run recorded in run_dir's .hydra/config.yaml (None if none)."""
    try:
        with open(os.path.join(run_dir, RECORD, "config.yaml")) as f:
            return config_hash(OmegaConf.create(yaml.safe_load(f)))
    except FileNotFoundError:
        return None
    except Exception:  # an unreadable record (a write cut short): the checkpoints still guard
        log.warning("%s/%s/config.yaml is unreadable: rewritten", run_dir, RECORD)
        return None


def finished_here(run_dir: str, cfg: DictConfig) -> bool:
    """True if run_dir already holds this config's finished run (a re-run would repeat it
    exactly); raises ConfigError if it holds another config's run, finished or not."""
    if recorded_status(run_dir) not in FINISHED:
        if _recorded_hash(run_dir) not in (None, config_hash(cfg)):
            raise ConfigError(
                f"hydra.run.dir={run_dir} holds a run of another config (its .hydra/config.yaml); "
                "choose another folder (runs are never mixed)")
        return False
    if load_metrics(run_dir)[0].get("config_hash") != config_hash(cfg):
        raise ConfigError(
            f"hydra.run.dir={run_dir} already holds a finished run of another config; "
            "choose another hydra.run.dir (finished runs are never overwritten)")
    return True


def write_record(run_dir: str, cfg: DictConfig) -> None:
    """run_dir/.hydra/: the job's config, Hydra's config and the overrides, as Hydra writes them
    (written here, under the folder's lock and after the folder's checks, not by Hydra)."""
    hydra_cfg = HydraConfig.get()
    for name, node in (("config.yaml", cfg), ("hydra.yaml", {"hydra": hydra_cfg}),
                       ("overrides.yaml", hydra_cfg.overrides.task)):
        text = OmegaConf.to_yaml(OmegaConf.create(node) if isinstance(node, dict) else node)
        atomic_write(os.path.join(run_dir, RECORD, name), lambda f: f.write(text))
