"""MLflow (`logger=[mlflow]`; `pip install -e ".[mlflow]"`): one MLflow run per job.

It records the job's config as params (dotted keys, values spelled as on the command line),
its group choices, identity and folder as tags, every metrics.csv column per epoch (step =
epoch), the step metrics (`step/train_loss`, ... at the global step), the summary's numbers
(`summary/<key>`), and as artifacts `summary.json`, `metrics.csv`, `hydra/*.yaml` (and the
checkpoints with `log_checkpoints=true`). The run ends FINISHED (completed), FAILED (diverged,
failed) or KILLED (interrupted); a run resumed from its checkpoint continues its MLflow run
(its id is kept in `<run>/mlflow_run_id`).

The default store is the file store `mlruns/` in the directory the command was started from
(Hydra's `runtime.cwd`), or `$MLFLOW_TRACKING_URI` when set; `tracking_uri=` takes any MLflow
URI (`sqlite:///mlflow.db`, `http://host:5000`, a folder).
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..identity import render_value
from ..run_folder import RunFolder, Status, Summary
from .base import (
    JobInfo,
    artifact_dir,
    import_for,
    recorded_rows,
    run_files,
    store_id,
    stored_id,
    summary_metrics,
)

__all__ = ["MLflow", "MLFLOW_STATUS", "default_tracking_uri", "store_uri"]

MLFLOW_STATUS = {Status.completed: "FINISHED", Status.diverged: "FAILED",
                 Status.failed: "FAILED", Status.interrupted: "KILLED"}
ID_FILE = "mlflow_run_id"

log = logging.getLogger(__name__)
PARAMS_PER_BATCH = 100  # MLflow's limits per log_batch call
METRICS_PER_BATCH = 1000


def default_tracking_uri() -> str:
    """`$MLFLOW_TRACKING_URI`, else the file store `mlruns/` where the command was started."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    from hydra.core.hydra_config import HydraConfig

    cwd = HydraConfig.get().runtime.cwd if HydraConfig.initialized() else os.getcwd()
    return (Path(cwd) / "mlruns").as_uri()


def store_uri(uri: str) -> str:
    """An MLflow tracking URI; a folder (`mlruns`, `file:mlruns`, `file:///abs/mlruns`) becomes
    an absolute `file://` URI of MLflow's file store, which MLflow 3 keeps in maintenance mode
    behind `MLFLOW_ALLOW_FILE_STORE` (set here: the folder was asked for)."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file") or uri.startswith("databricks"):
        return uri
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return Path(parsed.path if parsed.scheme else uri).resolve().as_uri()


class MLflow:
    def __init__(self, tracking_uri: str | None = None, experiment_name: str = "cifar-tricks",
                 run_name: str | None = None, log_checkpoints: bool = False) -> None:
        import_for("[mlflow]", "mlflow", "mlflow")
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.run_name = run_name
        self.log_checkpoints = log_checkpoints
        self.client: Any = None
        self.run_id: str | None = None
        self.job: JobInfo | None = None
        self.folder: RunFolder | None = None
        self.steps: list[Any] = []  # step metrics waiting for their epoch

    def start(self, job: JobInfo, folder: RunFolder, resumed_epoch: int) -> None:
        from mlflow.entities import Param, RunTag
        from mlflow.tracking import MlflowClient

        self.client = client = MlflowClient(tracking_uri=store_uri(
            self.tracking_uri or default_tracking_uri()))
        self.job, self.folder, self.steps = job, folder, []
        self.run_id = self._continued(stored_id(folder, ID_FILE, resumed_epoch))
        tags = {"job_key": job.key, "run_folder": str(folder.path.resolve()),
                "status": Status.running.value,
                **{f"choice.{g}": render_value(v) for g, v in job.group_choices.items()}}
        if self.run_id is None:
            run = client.create_run(self._experiment_id(), run_name=self.run_name or job.name)
            self.run_id = run.info.run_id
            store_id(folder, ID_FILE, self.run_id)
            logged = {}
        else:  # continue it
            client.update_run(self.run_id, status="RUNNING")
            logged = client.get_run(self.run_id).data.params
        self._catch_up(recorded_rows(folder, resumed_epoch))
        # params never change in MLflow: a resumed run keeps the values it started with (a
        # setting that changes no result, such as trainer.device, may differ)
        params = [Param(k, v) for k, v in job.params.items() if k not in logged]
        for i in range(0, max(len(params), 1), PARAMS_PER_BATCH):
            client.log_batch(self.run_id, params=params[i:i + PARAMS_PER_BATCH],
                             tags=[RunTag(k, v) for k, v in tags.items()] if i == 0 else [])

    def _catch_up(self, rows: list[dict[str, Any]]) -> None:
        """Log the values of a resumed run's epochs that this MLflow run lacks (it stopped
        after the checkpoint, before or while logging them; or it did not track them)."""
        from mlflow.entities import Metric

        keys = {k for row in rows for k in row} - {"epoch"}
        last = {k: max((m.step for m in self.client.get_metric_history(self.run_id, k)),
                       default=0) for k in keys}
        now = _now()
        self._log_metrics([Metric(k, float(v), now, row["epoch"]) for row in rows
                           for k, v in row.items() if k != "epoch" and row["epoch"] > last[k]])

    def _continued(self, run_id: str | None) -> str | None:
        """The stored run, if the store still holds it."""
        if run_id is None:
            return None
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(run_id)
        except (MlflowException, ValueError, OSError) as e:  # deleted, or its files damaged
            log.warning("MLflow run %s cannot be continued (%s); this run starts a new one",
                        run_id, e)
            return None
        return run_id if run.info.lifecycle_stage == "active" else None

    def _experiment_id(self) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(self.experiment_name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(self.experiment_name)
        except MlflowException:  # a parallel job of the sweep created it first
            return self.client.get_experiment_by_name(self.experiment_name).experiment_id

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = _now()
        self.steps += [Metric(f"step/{k}", float(v), now, step) for k, v in metrics.items()]

    def log_epoch(self, epoch: int, row: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        now = _now()
        self._log_metrics([Metric(k, float(v), now, epoch) for k, v in row.items()
                           if k != "epoch" and v is not None])

    def _log_metrics(self, metrics: list[Any]) -> None:
        metrics, self.steps = self.steps + metrics, []
        for i in range(0, len(metrics), METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + METRICS_PER_BATCH])

    def finish(self, summary: Summary, folder: RunFolder) -> None:
        from mlflow.entities import Metric

        now = _now()
        self._log_metrics([Metric(f"summary/{k}", v, now, summary.epochs or 0)
                           for k, v in summary_metrics(summary).items()])
        self.client.log_dict(self.run_id, self.job.final_summary(summary), "summary.json")
        self._end(summary.status)

    def close(self, status: Status) -> None:
        """Failed or interrupted: the steps of the unfinished epoch are dropped (a rerun
        resumes from the last checkpoint and trains that epoch again)."""
        self.steps = []
        self._end(status)

    def _end(self, status: Status) -> None:
        client, run_id, folder = self.client, self.run_id, self.folder
        for path in run_files(folder, self.log_checkpoints):
            client.log_artifact(run_id, str(path), artifact_dir(folder, path) or None)
        client.set_tag(run_id, "status", status.value)
        client.set_terminated(run_id, MLFLOW_STATUS[status])


def _now() -> int:
    return int(time.time() * 1000)
