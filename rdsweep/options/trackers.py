"""Tracker options: where a run's results are reported besides its own folder. tracker=none (the
default) reports nowhere else; tracker=mlflow logs each run to an MLflow tracking store
(pip install 'rdsweep[mlflow]'; docs/tracking.md).

A tracker is where results go, not what a run is: the `tracker` key is left out of a run's
config hash and folder name. A tracker that fails (an unreachable store, ...) logs one warning
and is off for the rest of the run; the run's own outputs go on.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import yaml

from rdsweep.config import TrackerConfig
from rdsweep.option import ConfigError, Option, require
from rdsweep.outputs import IMAGES, METRICS

log = logging.getLogger(__name__)


class Tracker:
    """tracker=none: the calls a run makes to its tracker (from rdsweep.outputs.RunLog and
    rdsweep.experiment.run_grid), which report nowhere."""

    def __init__(self, run_dir: str):
        self.run_dir = run_dir

    def start(self) -> None:
        """Training starts (a resumed run: again, from its checkpoint)."""

    def scalars(self, values: Dict[str, float], step: int) -> None:
        """Scalars at a training step, e.g. {"train/rate": R, "train/distortion": D}."""

    def finish(self, metrics: Dict[str, Any]) -> None:
        """The run ended and wrote metrics.json (whose content is `metrics`)."""


def overrides(run_dir: str) -> Dict[str, str]:
    """The run's command-line overrides as Hydra recorded them (<run_dir>/.hydra/overrides.yaml;
    none without Hydra), key -> value as written, less the tracker's own."""
    path = os.path.join(run_dir, ".hydra", "overrides.yaml")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        pairs = [line.lstrip("+~").partition("=")[::2] for line in yaml.safe_load(f) or []]
    return {key: value for key, value in pairs if key.split(".")[0] != "tracker"}


def sweep_dir(run_dir: str) -> Optional[str]:
    """The sweep folder of a run (absolute): the nearest folder above it that holds Hydra's
    multirun.yaml, written at a sweep's start; None for a single run."""
    path = os.path.abspath(run_dir)
    while path != os.path.dirname(path):
        path = os.path.dirname(path)
        if os.path.exists(os.path.join(path, "multirun.yaml")):
            return path
    return None


class MlflowTracker(Tracker):
    """One MLflow run per run folder in the experiment `experiment`, named by the folder (a
    sweep's job: its subdir) and tagged rdsweep.run_dir. Its parameters are the run's
    overrides; its metrics the train/... scalars at each log step and the test/... bounds at the
    last; its artifacts metrics.json and images.png. The jobs of a sweep are children of one
    parent run per sweep folder (the parent tagged rdsweep.sweep, each child rdsweep.sweep_dir
    and rdsweep.subdir). A resumed run starts a new MLflow run holding the whole learning
    curve."""

    def __init__(self, run_dir: str, uri: str, experiment: str,
                 artifact_location: Optional[str]):
        super().__init__(run_dir)
        self.uri, self.experiment, self.artifact_location = uri, experiment, artifact_location
        self.client: Any = None
        self.run_id: Optional[str] = None  # None: not started, or off after a failure

    def start(self) -> None:
        self._call(self._start)

    def scalars(self, values: Dict[str, float], step: int) -> None:
        if self.run_id:
            self._call(self._scalars, values, step)

    def finish(self, metrics: Dict[str, Any]) -> None:
        if self.run_id:
            self._call(self._finish, metrics)

    def _call(self, action, *args) -> None:
        """action(*args); a failure logs one warning and turns the tracker off."""
        try:
            action(*args)
        except Exception as e:  # the tracker's failure must not cost the run its outputs
            self.run_id = None
            log.warning("%s: tracker=mlflow failed, the run goes on without it: %s: %s",
                        self.run_dir, type(e).__name__, (str(e).splitlines() or [""])[0])

    def _start(self) -> None:
        import mlflow  # only here: the base install has no mlflow
        from mlflow.entities import Param

        client = mlflow.MlflowClient(self.uri)
        experiment_id = self._experiment_id(client)
        run_dir = os.path.abspath(self.run_dir)
        tags = {"rdsweep.run_dir": run_dir}
        sweep = sweep_dir(run_dir)
        if sweep:
            tags.update({"mlflow.parentRunId": self._parent(client, experiment_id, sweep),
                         "rdsweep.sweep_dir": sweep,
                         "rdsweep.subdir": os.path.relpath(run_dir, sweep)})
        run = client.create_run(experiment_id, run_name=tags.get("rdsweep.subdir",
                                                                 os.path.basename(run_dir)),
                                tags=tags)
        client.log_batch(run.info.run_id, params=[
            Param(k, v) for k, v in overrides(self.run_dir).items()])
        self.client, self.run_id = client, run.info.run_id

    def _experiment_id(self, client) -> str:
        """The experiment's id; created if new (or by a job beside this one meanwhile)."""
        from mlflow.exceptions import MlflowException

        found = client.get_experiment_by_name(self.experiment)
        if found is None:
            try:
                return client.create_experiment(self.experiment, self.artifact_location)
            except MlflowException:
                found = client.get_experiment_by_name(self.experiment)
        return found.experiment_id

    @staticmethod
    def _parent(client, experiment_id: str, sweep: str) -> str:
        """The sweep's parent run: the first created of those tagged with its folder. Jobs
        started side by side may each create one; all take the first, and the others delete
        their own. It only groups the jobs: it ends at once."""
        def parents() -> List[Any]:
            runs = client.search_runs([experiment_id], f"tags.`rdsweep.sweep` = '{sweep}'")
            return sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))

        found = parents()
        if not found:
            mine = client.create_run(experiment_id, run_name=os.path.basename(sweep),
                                     tags={"rdsweep.sweep": sweep}).info.run_id
            client.set_terminated(mine)
            found = parents()
            if found[0].info.run_id != mine:
                client.delete_run(mine)
        return found[0].info.run_id

    def _scalars(self, values: Dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step)
                                                    for k, v in values.items()])

    def _finish(self, metrics: Dict[str, Any]) -> None:
        for name in (METRICS, IMAGES):
            path = os.path.join(self.run_dir, name)
            if os.path.exists(path):
                self.client.log_artifact(self.run_id, path)
        self.client.set_tag(self.run_id, "rdsweep.status", str(metrics.get("status")))
        self.client.set_terminated(
            self.run_id, "FINISHED" if metrics.get("status") == "completed" else "FAILED")
        self.run_id = None


@dataclass
class NoTrackerConfig(TrackerConfig):
    _target_: str = f"{__name__}.Tracker"


@dataclass
class MlflowTrackerConfig(TrackerConfig):
    _target_: str = f"{__name__}.MlflowTracker"
    uri: Optional[str] = None  # the tracking store: sqlite:///mlflow.db, http://host:5000, ...
    experiment: str = "rdsweep"  # the MLflow experiment of every run (created if new)
    # Where a new experiment keeps its artifacts (null: MLflow's default; for a database
    # store that is ./mlruns in the working directory).
    artifact_location: Optional[str] = None

    def check(self, key: str) -> None:
        require(bool(self.uri), f"{key}.uri", self.uri,
                f"{key}=mlflow needs a tracking store, e.g. {key}.uri=sqlite:///mlflow.db")
        if importlib.util.find_spec("mlflow") is None:
            raise ConfigError(f"{key}=mlflow needs pip install 'rdsweep[mlflow]'")


OPTIONS = [
    Option("tracker", "none", NoTrackerConfig, "runs report only into their own folders"),
    Option("tracker", "mlflow", MlflowTrackerConfig,
           "each run also logged to an MLflow tracking store (pip install 'rdsweep[mlflow]'; "
           "docs/tracking.md)"),
]
