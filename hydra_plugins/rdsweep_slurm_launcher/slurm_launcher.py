"""hydra/launcher=slurm: Hydra's submitit launcher, with what a sweep on a shared cluster needs.

- Each job's script sets the data and cache locations the driver sees (TFDS_DATA_DIR,
  RDSWEEP_CACHE, as absolute paths), and its step (srun) gets the script's environment. Under a
  site's `--export=NONE` (e.g. SBATCH_EXPORT=NONE) that is the clean environment plus these
  lines and submitit's own; without it the step lost even submitit's and failed at start.
- The driver waits on all jobs together and logs the sweep's progress on its console.
- A job the scheduler ends without a result (scancel, out of memory, node failure) fails in its
  own run: its metrics.json says failed with the job's state, the other jobs go on, and the
  sweep's end reports it (and exits 1). Hydra's launcher instead raises at the first such job,
  so the driver died without a report while the rest of the array kept running.

`launch` submits the array as Hydra's launcher does, through submitit's executor, and waits in
its own way. In its SLURM process a job runs Hydra's `__call__` as it is: that runs rdsweep's
app, which first calls the process's start-up (rdsweep.main.start).
"""
# Imported by rdsweep.main's start-up: submitit itself is imported only when a sweep runs.

import logging
import os
import shlex
import time
from pathlib import Path
from typing import Any, List, Optional, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher import submitit_launcher
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf

from rdsweep import sweep
from rdsweep.outputs import read_metrics, write_metrics
from rdsweep.status import FINISHED, Status

log = logging.getLogger(__name__)

LOCATIONS = ("TFDS_DATA_DIR", "RDSWEEP_CACHE")  # read by the jobs' configs (conf/, config.py)
POLL_S = 2.0


def location_exports() -> List[str]:
    """Shell lines that set, in a job, the locations set in the driver's environment."""
    return [f"export {name}={shlex.quote(os.path.abspath(os.environ[name]))}"
            for name in LOCATIONS if os.environ.get(name)]


def record_killed(run_dir: str, reason: str) -> None:
    """Writes a failed metrics.json for a run whose job ended without a result; a run's own
    metrics.json (finished, or failed with its error) is kept."""
    if (read_metrics(run_dir) or {}).get("status") in (*FINISHED, Status.FAILED):
        return
    os.makedirs(run_dir, exist_ok=True)
    write_metrics(run_dir, {"status": Status.FAILED, "error": reason})


class SlurmLauncher(submitit_launcher.SlurmLauncher):
    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.params["setup"] = [*(self.params.get("setup") or []), *location_exports()]
        self.params["srun_args"] = [*(self.params.get("srun_args") or []), "--export=ALL"]

    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        # Hydra's launch submits the array, then waits on each job in turn and raises at the
        # first one without a result: its submission is done here as it does it, the waiting
        # by _wait.
        assert self.config is not None
        executor = self._executor()
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        log.info("Submitit '%s' sweep output dir : %s", self._EXECUTOR, sweep_dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        job_params = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}",
                               Singleton.get_state()))
        return self._wait(executor.map_array(self, *zip(*job_params)), job_overrides)

    def _executor(self) -> Any:
        """submitit's executor, set up as Hydra's launcher sets it up: max_num_timeout when it
        is made, then the queue's shared keys (BaseQueueConf) as they are and the others with
        the cluster's prefix (slurm_partition, ...)."""
        import submitit

        made_with = {"max_num_timeout"}
        executor = submitit.AutoExecutor(
            folder=self.params["submitit_folder"], cluster=self._EXECUTOR,
            **{f"{self._EXECUTOR}_{k}": v for k, v in self.params.items() if k in made_with})
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in shared else f"{self._EXECUTOR}_{k}": v
                                      for k, v in self.params.items()
                                      if k not in made_with | {"submitit_folder"}})
        return executor

    def _wait(self, jobs: Sequence[Any],
              job_overrides: Sequence[Sequence[str]]) -> List[JobReturn]:
        """Each job's JobReturn once all are done, logging the sweep's progress meanwhile."""
        sweep_dir = str(self.config.hydra.sweep.dir)
        returns: dict = {}
        shown = None
        while True:
            for i, job in enumerate(jobs):
                if i not in returns and job.done():
                    returns[i] = self._result(job, job_overrides[i], sweep_dir)
            progress = sweep.progress(sweep_dir)
            if progress != shown:
                log.info("sweep %s: %s", sweep_dir, progress)
                shown = progress
            if len(returns) == len(jobs):
                return [returns[i] for i in range(len(jobs))]
            time.sleep(POLL_S)

    def _result(self, job: Any, overrides: Sequence[str], sweep_dir: str) -> JobReturn:
        try:
            return job.results()[0]
        except Exception:  # no result: the scheduler ended the job, or it failed outside a run
            reason = f"SLURM job {job.job_id} ended without a result (state {job.state})"
            run_dir = _run_dir(sweep_dir, overrides)
            log.error("%s: %s; its log: %s", run_dir or " ".join(overrides), reason,
                      job.paths.stdout)
            if run_dir is not None:
                record_killed(run_dir, reason)
            # COMPLETED, as for a run that failed inside its job: the sweep's end reports it
            return JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED,
                             _return_value=float("nan"))


def _run_dir(sweep_dir: str, overrides: Sequence[str]) -> Optional[str]:
    """The job's run folder from the sweep's plan (None if the plan does not list it)."""
    for job in sweep.read_plan(sweep_dir):
        if list(job["overrides"]) == list(overrides):
            return os.path.join(sweep_dir, job["subdir"])
    return None
