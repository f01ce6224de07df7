"""TensorBoard, always on: epoch rows, step metrics, the job's hparams and its summary."""
from __future__ import annotations

import time
from typing import Any

from ..run_folder import RunFolder, Status, Summary
from .base import JobInfo, recorded_rows, summary_metrics

__all__ = ["TensorBoard"]


class TensorBoard:
    """Event files in `<run>/tensorboard/`: the epoch rows (`test/acc`, `train/loss`, ... at
    step = epoch), the job's hparams (a session start: one row per job in the HParams view of
    a sweep folder, whose columns are the union over the jobs), the summary (`summary/<key>`)
    and the session's end status, success or failure (diverged), written only when the run is
    finished (TensorBoard keeps a tag's first metadata: the end of an interrupted or failed
    session, which a rerun resumes, would stay). Step metrics go to `<run>/tensorboard/steps/`
    (step = the global step), a run of their own so that resuming drops each axis's stale
    events."""

    def __init__(self) -> None:
        self.writer: Any = None
        self.steps: Any = None

    def start(self, job: JobInfo, folder: RunFolder, resumed_epoch: int) -> None:
        from torch.utils.tensorboard import SummaryWriter  # heavy import, only when training

        self.dir = folder.tensorboard_dir
        # resumed: events from the resumed epoch on are stale, and that epoch's row (which the
        # run may have stopped before logging) is written again from metrics.csv
        self.writer = SummaryWriter(str(self.dir), purge_step=max(resumed_epoch, 1))
        self.writer.file_writer.add_summary(_hparams_summary(session_start_info=_session_start(
            job.hparams)))
        for row in recorded_rows(folder, resumed_epoch)[-1:]:
            self.log_epoch(row["epoch"], row)

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        if self.steps is None:  # events at or after the first step logged now are stale
            from torch.utils.tensorboard import SummaryWriter

            self.steps = SummaryWriter(str(self.dir / "steps"), purge_step=step)
        for key, value in metrics.items():
            self.steps.add_scalar(f"step/{key}", value, step)

    def log_epoch(self, epoch: int, row: dict[str, Any]) -> None:
        for key, value in row.items():
            if key != "epoch":
                self.writer.add_scalar(key.replace("_", "/", 1), value, epoch)

    def finish(self, summary: Summary, folder: RunFolder) -> None:
        from tensorboard.plugins.hparams.api_pb2 import Status as SessionStatus
        from tensorboard.plugins.hparams.plugin_data_pb2 import SessionEndInfo

        for key, value in summary_metrics(summary).items():
            self.writer.add_scalar(f"summary/{key}", value, summary.epochs or 0)
        status = SessionStatus.Value(SESSION_END[summary.status])
        self.writer.file_writer.add_summary(_hparams_summary(
            session_end_info=SessionEndInfo(status=status, end_time_secs=time.time())))
        self.close(summary.status)

    def close(self, status: Status) -> None:
        for writer in (self.writer, self.steps):
            if writer is not None:
                writer.close()


# the session's end in the HParams view, for a finished run
SESSION_END = {Status.completed: "STATUS_SUCCESS", Status.diverged: "STATUS_FAILURE"}


def _session_start(hparams: dict[str, bool | int | float | str]) -> Any:
    from tensorboard.plugins.hparams.plugin_data_pb2 import SessionStartInfo

    start = SessionStartInfo(start_time_secs=time.time())
    kinds = {bool: "bool_value", int: "number_value", float: "number_value", str: "string_value"}
    for key, value in hparams.items():
        setattr(start.hparams[key], kinds[type(value)], value)
    return start


def _hparams_summary(**plugin_data: Any) -> Any:
    """A Summary holding one message of TensorBoard's hparams plugin (session start or end;
    no `experiment` message, so the plugin computes the experiment from all the runs)."""
    from tensorboard.compat.proto.summary_pb2 import Summary as SummaryProto
    from tensorboard.compat.proto.summary_pb2 import SummaryMetadata
    from tensorboard.plugins.hparams import metadata
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    (name,) = plugin_data
    content = HParamsPluginData(version=metadata.PLUGIN_DATA_VERSION, **plugin_data)
    meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(
        plugin_name=metadata.PLUGIN_NAME, content=content.SerializeToString()))
    tag = {"session_start_info": metadata.SESSION_START_INFO_TAG,
           "session_end_info": metadata.SESSION_END_INFO_TAG}[name]
    return SummaryProto(value=[SummaryProto.Value(tag=tag, metadata=meta)])
