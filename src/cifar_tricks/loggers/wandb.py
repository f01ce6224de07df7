"""Weights & Biases (`logger=[wandb]`; `pip install -e ".[wandb]"`): one W&B run per job.

Offline by default (`mode: offline`): the run is written under `<run>/wandb/offline-run-*/`
and nothing touches the network; `wandb sync <run>/wandb/offline-run-*` uploads it later, or
`logger.wandb.mode=online` logs live (after `wandb login`). It records the job's config (and
its group choices as `choices`), the epoch rows (x axis `epoch`), the step metrics
(`step/train_loss`, ... over `global_step`), summary.json's values as the run's summary, and
`summary.json`, `metrics.csv`, `hydra/*.yaml` (and the checkpoints with `log_checkpoints=true`)
as the run's files. Exit code 0 for a completed run, 1 diverged or failed, 255 interrupted; a
run resumed from its checkpoint reuses its W&B run id (kept in `<run>/wandb_run_id`).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ..run_folder import RunFolder, Status, Summary
from .base import (
    JobInfo,
    artifact_dir,
    import_for,
    recorded_rows,
    run_files,
    store_id,
    stored_id,
)

__all__ = ["WandB", "WANDB_EXIT_CODE"]

WANDB_EXIT_CODE = {Status.completed: 0, Status.diverged: 1, Status.failed: 1,
                   Status.interrupted: 255}
ID_FILE = "wandb_run_id"


class WandB:
    def __init__(self, project: str = "cifar-tricks", entity: str | None = None,
                 mode: str = "offline", group: str | None = None, name: str | None = None,
                 tags: list[str] | None = None, dir: str | None = None,
                 log_checkpoints: bool = False, settings: dict[str, Any] | None = None) -> None:
        self.wandb = import_for("[wandb]", "wandb", "wandb")
        self.options = dict(project=project, entity=entity, mode=mode, group=group, name=name,
                            tags=list(tags) if tags else None)
        self.dir = dir
        self.log_checkpoints = log_checkpoints
        self.settings = dict(settings or {})
        self.run: Any = None
        self.steps: list[dict[str, Any]] = []  # step metrics waiting for their epoch
        self.epoch_keys: set[str] = set()

    def start(self, job: JobInfo, folder: RunFolder, resumed_epoch: int) -> None:
        wandb = self.wandb
        run_id = stored_id(folder, ID_FILE, resumed_epoch)
        options = {**self.options, "name": self.options["name"] or job.name}
        self.run = run = wandb.init(
            **options, dir=str(self.dir or folder.path),
            id=run_id, resume="allow" if run_id else None,
            config={**job.tracked_config, "choices": job.group_choices, "job_key": job.key},
            reinit="create_new", settings=wandb.Settings(**self.settings))
        store_id(folder, ID_FILE, run.id)
        run.define_metric("global_step", hidden=True)
        run.define_metric("step/*", step_metric="global_step")
        run.define_metric("epoch")
        self.job, self.folder, self.steps, self.epoch_keys = job, folder, [], set()
        if run_id is None:  # a new W&B run of a resumed run: its epochs so far
            for row in recorded_rows(folder, resumed_epoch):
                self.log_epoch(row["epoch"], row)

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        self.steps.append({"global_step": step, **{f"step/{k}": v for k, v in metrics.items()}})

    def log_epoch(self, epoch: int, row: dict[str, Any]) -> None:
        self._flush_steps()
        for key in row.keys() - self.epoch_keys - {"epoch"}:
            self.run.define_metric(key, step_metric="epoch")
            self.epoch_keys.add(key)
        self.run.log(dict(row))

    def _flush_steps(self) -> None:
        for metrics in self.steps:
            self.run.log(metrics)
        self.steps = []

    def finish(self, summary: Summary, folder: RunFolder) -> None:
        self._flush_steps()
        values = self.job.final_summary(summary)
        self.run.summary.update(values)
        (Path(self.run.dir) / "summary.json").write_text(json.dumps(values, indent=2))
        self._end(summary.status)

    def close(self, status: Status) -> None:
        """Failed or interrupted: the steps of the unfinished epoch are dropped (a rerun
        resumes from the last checkpoint and trains that epoch again)."""
        self.steps = []
        self.run.summary["status"] = status.value
        self._end(status)

    def _end(self, status: Status) -> None:
        """Copy the run folder's files among the W&B run's files (uploaded with the run, or by
        `wandb sync` when offline), and end the run."""
        folder, files = self.folder, Path(self.run.dir)
        for path in run_files(folder, self.log_checkpoints):
            target = files / artifact_dir(folder, path) / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        self.run.finish(exit_code=WANDB_EXIT_CODE[status])
