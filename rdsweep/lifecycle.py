"""A run's life before and after training: its status, the checks of its config (once, before
any folder exists), its run folder and the folder's lock, and the one-line failure of bad input.

A run folder belongs to one process at a time: an exclusive flock on its lock file, taken
before anything is written into it (for a single run in the callback's on_run_start, for a
sweep's job first thing in the job), held until the run ends. The OS drops the lock when its
process dies, even by SIGKILL, so a killed run never blocks a relaunch. Hydra itself writes no
`.hydra/` (conf: hydra.output_subdir=null): the job writes it once it holds the lock and knows
that the folder's record is this run's.
"""

from __future__ import annotations

import enum
import errno
import fcntl
import logging
import numbers
import os
import socket
import sys
from typing import Any, Dict, Mapping, Optional, Set

import jax
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rdsweep import registry
from rdsweep.identity import config_hash
from rdsweep.fileio import atomic_write
from rdsweep.option import ConfigError, DataError
from rdsweep.outputs import load_metrics

log = logging.getLogger(__name__)


class Status(str, enum.Enum):
    """A run's status. A run writes the first three into metrics.json; the report says the
    last three of folders without a usable one."""

    COMPLETED = "completed"
    DIVERGED = "diverged"  # the loss became non-finite; a re-run would repeat it exactly
    FAILED = "failed"  # an exception; a re-launch runs it again
    INCOMPLETE = "incomplete"  # started, no metrics.json yet (running, or killed)
    MISSING = "missing"  # planned, never started
    CORRUPT = "corrupt"  # metrics.json unreadable or inconsistent

    def __str__(self) -> str:
        return self.value


FINISHED = (Status.COMPLETED, Status.DIVERGED)  # not run again by a re-launch
LOCK = ".rdsweep.lock"
RECORD = ".hydra"  # Hydra's record of a run: config.yaml, hydra.yaml, overrides.yaml


class FolderBusy(ConfigError):
    """Another process holds the run folder's lock; the message names the folder and holder."""


BAD_INPUT = (ConfigError, DataError)


class ConsoleFormatter(logging.Formatter):
    """The console's log format (hydra.job_logging): one line per record, without tracebacks;
    main.log, formatted by its own handler, keeps them. Records of libraries (orbax's errors
    about a full disk, ...) reach the console only as rdsweep's own one-line warning."""

    def formatException(self, ei) -> str:
        return ""

    def formatStack(self, stack_info: str) -> str:
        return ""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).strip().split("\n")[0]


class OwnRecords(logging.Filter):
    """The console's filter: rdsweep's records, and any record at CRITICAL."""

    def filter(self, record: logging.LogRecord) -> bool:
        return (record.name.split(".")[0] in ("rdsweep", "hydra_plugins", "__main__")
                or record.levelno >= logging.CRITICAL)


def error_line(e: BaseException) -> str:
    """An exception as one line: its type and its message's first line."""
    return f"{type(e).__name__}: {e}".splitlines()[0]


def fail(message: str, code: int = 2, prog: str = "rdsweep") -> None:
    """One line on stderr, exit code 2 (bad input) or `code`; prog names the command."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(code)


TEST_METRICS = ("rate", "distortion", "elbo", "iwae", "iwae_samples")  # metrics.json["test"]
RECORDED = (Status.COMPLETED, Status.DIVERGED, Status.FAILED)  # the statuses a run writes


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def corrupt(detail: str) -> Dict[str, Any]:
    return {"status": Status.CORRUPT, "detail": detail}


def metrics_outcome(metrics: Mapping[str, Any]) -> Dict[str, Any]:
    """status, the test metrics, steps, timing and detail recorded in a metrics.json."""
    status = metrics.get("status")
    if status not in RECORDED:
        return corrupt(f"metrics.json has status {status!r}")
    status = Status(status)
    outcome = {"status": status, "steps": metrics.get("steps"), "seconds": metrics.get("seconds"),
               "images_per_s": metrics.get("images_per_s")}
    if status == Status.DIVERGED:
        outcome["detail"] = f"diverged at step {metrics.get('steps')}"
    elif status == Status.FAILED:
        outcome["detail"] = metrics.get("error")
    elif not isinstance(metrics.get("test"), dict):
        return corrupt("metrics.json is completed without test metrics")
    else:
        test = metrics["test"]
        bad = [key for key in TEST_METRICS if not _is_number(test.get(key))]
        if bad:
            return corrupt("metrics.json is completed with test values that are not numbers: "
                            + ", ".join(bad))
        outcome.update({key: test[key] for key in TEST_METRICS})
    return outcome


def recorded_status(run_dir: str) -> Optional[Status]:
    """What run_dir's metrics.json says: its status, CORRUPT if it is unreadable or says
    completed without numeric test metrics, None if there is none."""
    metrics, problem = load_metrics(run_dir)
    if problem is not None:
        return Status.CORRUPT
    if metrics is None:
        return None
    return Status(metrics_outcome(metrics)["status"])


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


def validate(cfg: DictConfig) -> None:
    """Raises ConfigError or DataError if cfg cannot run: every option's values, the options'
    requirements on each other, and the data's availability."""
    registry.check(cfg)
    source = instantiate(cfg.data)
    if not source.pictures and cfg.eval.image_examples:
        raise ConfigError(f"eval.image_examples={cfg.eval.image_examples} is invalid: must be 0 "
                          f"for data={cfg.data.name} (its examples are not pictures)")
    data = OmegaConf.to_yaml(cfg.data, resolve=True)
    if data not in _available:  # a sweep's jobs mostly share their data: check it once
        source.check_available()
        _available.add(data)


_available: Set[str] = set()  # the data configs found available by this process


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


def use_compilation_cache(directory: Optional[str]) -> None:
    """JAX's persistent compilation cache in `directory` (None: off)."""
    if directory:
        jax.config.update("jax_compilation_cache_dir", directory)


def prepare_job(cfg: DictConfig) -> Optional[str]:
    """Readies the current Hydra job: returns its run folder, locked by this process and with
    its record written, or None if it must not train (the folder holds this run finished, is in
    use by another process, or the job's config is bad input). A single run was checked and
    locked by the callback before its folder existed; a sweep's job is checked and locked here.
    Bad input ends a single run with one line and exit 2; in a sweep it is one line too (the job
    then has no metrics.json, and the sweep's end reports it as not finished)."""
    single = HydraConfig.get().mode == RunMode.RUN
    run_dir = HydraConfig.get().runtime.output_dir
    try:
        if not single:
            validate(cfg)
        claim(run_dir)
        if finished_here(run_dir, cfg):
            log.info("%s already holds this run, finished: skipped", run_dir)
            release(run_dir)
            return None
        try:
            write_record(run_dir, cfg)
        except OSError as e:
            raise unwritable(run_dir, e) from None
    except BAD_INPUT as e:
        if not isinstance(e, FolderBusy):
            release(run_dir)
        if single:
            fail(str(e))
        # stderr, not the log: the folder (and its main.log) may be another process's
        print(f"rdsweep: {e}", file=sys.stderr)
        return None
    log.info("run folder: %s", run_dir)
    use_compilation_cache(cfg.compilation_cache_dir)
    return run_dir
