"""Time-outs and preemptions of SLURM jobs run by submitit (hydra/launcher=slurm).

SLURM signals a job `hydra.launcher.signal_delay_s` before its time limit (submitit asks for
USR2), and sites configure preemption to send the same signal. submitit's handler then requeues
the job and exits at once, which would lose every step since the run's last checkpoint. While a
run trains, `deferred` only notes the signal; after the current compiled chunk (Python runs
signal handlers only between chunks anyway) the run saves a checkpoint and then hands over to
submitit's handler, which requeues the job and exits. The delay must therefore cover one chunk
and its save: the first chunk after compilation measures that, and a warning says so if it does
not fit. Outside a submitit job nothing changes.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Iterator, Optional

from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

log = logging.getLogger(__name__)


class Deferral:
    """The signal noted while a run trains, and submitit's handler to run once it has saved."""

    def __init__(self, signum: Optional[int], handler: Optional[Callable], chunk_steps: int,
                 delay_s: Optional[float]):
        self.signum = signum
        self.handler = handler
        self.chunk_steps = chunk_steps
        self.delay_s = delay_s
        self.caught: Optional[tuple] = None
        self._last_chunk: Optional[float] = None
        self._measured = False

    @property
    def requested(self) -> bool:
        """True once SLURM has signalled a time-out or preemption."""
        return self.caught is not None

    def note(self, signum: int, frame: Any) -> None:
        log.warning("signal %s: saving a checkpoint after this chunk, then requeueing",
                    signal.Signals(signum).name)
        self.caught = (signum, frame)

    def chunk_done(self) -> None:
        """Called after each chunk and its saves: the second call (the first chunk after
        compilation) checks that the signal's delay covers a chunk."""
        now = time.perf_counter()
        if self._last_chunk is not None and not self._measured and self.delay_s is not None:
            self._measured = True
            seconds = now - self._last_chunk
            if seconds > self.delay_s:
                log.warning("a chunk of train.log_every=%d steps and its checkpoint take %.0f s, "
                            "more than hydra.launcher.signal_delay_s=%s: at a time-out or "
                            "preemption SLURM may kill this job before it saves (losing up to "
                            "%d steps); raise signal_delay_s or lower train.log_every",
                            self.chunk_steps, seconds, self.delay_s, self.chunk_steps)
        self._last_chunk = now

    def release(self) -> None:
        """Restores submitit's handler; if the signal came, runs it (requeue and exit)."""
        if self.handler is None:
            return
        signal.signal(self.signum, self.handler)
        handler, self.handler = self.handler, None
        if self.caught is None:
            return
        try:
            handler(*self.caught)
        except subprocess.CalledProcessError as e:
            # SLURM ends a requeued job's processes once it accepts the requeue, and that can
            # include submitit's own `scontrol requeue` before it returns: then the job is
            # requeued, not failed, and exits as submitit's handler would have.
            if e.returncode != -signal.SIGTERM:
                raise
            log.info("`%s` ended by SLURM's SIGTERM: the job is being requeued; exiting",
                     " ".join(map(str, e.cmd)))
            sys.exit(-1)


def _submitit_signal() -> Optional[int]:
    """The signal submitit handles in this process, None outside a submitit job."""
    submitit = sys.modules.get("submitit")  # a submitit job has imported it
    if submitit is None:
        return None
    signum = getattr(signal, f"SIG{submitit.JobEnvironment.USR_SIG}", None)
    return signum if signum is not None and callable(signal.getsignal(signum)) else None


@contextlib.contextmanager
def deferred(chunk_steps: int) -> Iterator[Deferral]:
    """Defers submitit's time-out/preemption handler until `release()` (or the end of the
    block, which only restores it: an exception then ends the run as failed)."""
    signum = _submitit_signal()
    if signum is None:
        yield Deferral(None, None, chunk_steps, None)
        return
    delay = (OmegaConf.select(HydraConfig.get(), "launcher.signal_delay_s")
             if HydraConfig.initialized() else None)
    deferral = Deferral(signum, signal.getsignal(signum), chunk_steps, delay)
    signal.signal(signum, deferral.note)
    try:
        yield deferral
    finally:
        if deferral.handler is not None:
            signal.signal(signum, deferral.handler)
