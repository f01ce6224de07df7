"""Experiment tracking through the real CLI, offline: TensorBoard's HParams view of a sweep,
MLflow's file store and W&B's offline run, each read back and compared with the run folders
(metrics.csv, summary.json, .hydra/config.yaml). No server, no network."""
from __future__ import annotations

import _thread
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import pytest
import yaml
from omegaconf import OmegaConf

from cifar_tricks.config import check_multi_select
from cifar_tricks.errors import ConfigError
from cifar_tricks.identity import is_result_key, job_key, job_overrides, render_value
from cifar_tricks.loggers import deferred_interrupts
from cifar_tricks.loggers.base import flatten, import_for
from conftest import ROOT, compose_config, train_in_process

# 4 training steps of 32 images per epoch, a step log every 2: two windows of 64 images
# (one torch thread: the runs are too small to gain from two, and lose much when cores are busy)
SMALL = ["experiment=smoke", "trainer.epochs=2", "trainer.batch_size=32", "trainer.log_every=2",
         "data.num_train=160", "data.val_size=32", "data.num_test=64", "trainer.num_threads=1"]
STEPS_PER_EPOCH, LOG_EVERY = 4, 2


@pytest.fixture(scope="module")
def offline(tmp_path_factory) -> Iterator[dict[str, str]]:
    """The environment of every run here: trackers offline and quiet, caches in tmp (for the
    CLI runs; in-process runs and the store readers get MLflow's settings)."""
    home = tmp_path_factory.mktemp("tracker_home")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "WANDB_")) and k != "DO_NOT_TRACK"}
    env.update(HYDRA_FULL_ERROR="1", PYTHONWARNINGS="ignore", DO_NOT_TRACK="true",
               MLFLOW_DISABLE_TELEMETRY="true", WANDB_MODE="offline", WANDB_SILENT="true",
               WANDB_DISABLE_GIT="true", WANDB_CONFIG_DIR=str(home / "config"),
               WANDB_CACHE_DIR=str(home / "cache"), WANDB_DATA_DIR=str(home / "data"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads a file store only so
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield env


def cli(args: list[str], cwd: Path, env: dict[str, str]) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"run.py {' '.join(args)}:\n{proc.stderr[-4000:]}"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, offline) -> Path:
    """Two jobs (aug=[] and aug=[cutout]) with MLflow and W&B, started from a scratch
    directory, so MLflow's default store is <that directory>/mlruns."""
    cwd = tmp_path_factory.mktemp("sweep_cwd")
    cli(["-m", *SMALL, "logger=[mlflow,wandb]", "aug=[],[cutout]",
         f"hydra.sweep.dir={cwd / 'sweep'}"], cwd, offline)
    return cwd


def jobs_of(sweep: Path) -> list[Path]:
    return sorted(p for p in (sweep / "sweep").iterdir() if (p / "summary.json").is_file())


def config_of(folder: Path) -> dict:
    return OmegaConf.to_container(OmegaConf.load(folder / ".hydra" / "config.yaml"), resolve=True)


def summary_of(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def metrics_of(folder: Path) -> list[dict[str, float]]:
    import csv

    with open(folder / "metrics.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def tracked_params(folder: Path) -> dict[str, str]:
    """The config as MLflow params: dotted keys, command-line spellings, no `logger.*`."""
    return {k: render_value(v) for k, v in flatten(config_of(folder)).items()
            if not k.startswith("logger.")}


# ------------------------------------------------------------------------------------ identity

def test_loggers_never_change_a_job_and_unknown_options_are_refused():
    def key(overrides):
        return job_key(OmegaConf.to_container(compose_config(overrides), resolve=True))

    assert key(["logger=[mlflow,wandb]", "logger.mlflow.experiment_name=x"]) == key([])
    assert job_overrides(["logger=[wandb]", "seed=1"]) == ["seed=1"]  # the sweep folder name
    with pytest.raises(ConfigError, match="'mlfow' is not an option of logger; the options "
                                          "are mlflow, wandb"):
        check_multi_select(["logger=[mlfow]"])


def test_ctrl_c_waits_for_a_trackers_write_and_a_second_one_stops_at_once():
    events = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupts():
            signal.raise_signal(signal.SIGINT)
            events.append("write finished")
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupts():
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
            events.append("not reached")
    assert events == ["write finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_tracker_that_cannot_be_imported_names_the_install_command():
    with pytest.raises(ConfigError, match=r'pip install -e "\.\[nothing\]"'):
        import_for("[nothing]", "cifar_tricks_no_such_module", "nothing")


# ------------------------------------------------------------------------------------ TensorBoard

def hparams_view(logdir: Path) -> list:
    """The rows TensorBoard's HParams view shows for `logdir` (its plugin's session groups)."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider
    from tensorboard.backend.event_processing import plugin_event_multiplexer as pem
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups

    mux = pem.EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, str(logdir))
    tb = base_plugin.TBContext(logdir=str(logdir), multiplexer=mux, data_provider=provider)
    request = api_pb2.ListSessionGroupsRequest(start_index=0, slice_size=100,
                                               allowed_statuses=list(range(5)))
    return list(list_session_groups.Handler(context.RequestContext(),
                                            backend_context.Context(tb), "", request)
                .run().session_groups)


@pytest.mark.slow
def test_tensorboard_hparams_view_has_one_row_per_sweep_job(sweep):
    from google.protobuf.json_format import MessageToDict
    from tensorboard.plugins.hparams import api_pb2

    rows = {Path(g.name).parent.name: g for g in hparams_view(sweep / "sweep")}
    assert sorted(rows) == [p.name for p in jobs_of(sweep)]
    for folder in jobs_of(sweep):
        row, config, summary = rows[folder.name], config_of(folder), summary_of(folder)
        hparams = {k: MessageToDict(v) for k, v in row.hparams.items()}
        # every setting that can change the result, the order of the multi-select groups, and
        # each result-changing group's choice; nothing that cannot (logger, device, ...)
        settings = {k for k in flatten(config) if is_result_key(k)}
        choices = {g for g in summary["choices"] if is_result_key(g)}
        assert set(hparams) == settings | {"aug.<order>", "trick.<order>"} | choices
        assert hparams["aug"] == render_value(summary["choices"]["aug"])
        assert hparams["model"] == "lenet" and hparams["optim.lr"] == 0.02
        assert hparams["trainer.epochs"] == 2 and "trainer.device" not in hparams
        metrics = {(m.name.group, m.name.tag): m.value for m in row.metric_values}
        last = metrics_of(folder)[-1]
        assert metrics["", "summary/test_acc"] == pytest.approx(summary["test_acc"])
        assert metrics["", "summary/val_acc"] == pytest.approx(summary["val_acc"])
        assert metrics["", "test/acc"] == pytest.approx(last["test_acc"])
        assert metrics["", "train/loss"] == pytest.approx(last["train_loss"])
        assert ("steps", "step/train_loss") in metrics
        assert row.sessions[0].status == api_pb2.STATUS_SUCCESS


# ------------------------------------------------------------------------------------ MLflow

def mlflow_runs(store: Path) -> dict[str, object]:
    """The MLflow runs of the store's `cifar-tricks` experiment, by run folder name."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store.as_uri())
    experiment = client.get_experiment_by_name("cifar-tricks")
    runs = client.search_runs([experiment.experiment_id])
    return client, {Path(r.data.tags["run_folder"]).name: r for r in runs}


def history(client, run, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))


@pytest.mark.slow
def test_mlflow_records_config_metrics_summary_and_files(sweep):
    client, runs = mlflow_runs(sweep / "mlruns")  # the default store: where run.py was started
    assert sorted(runs) == [p.name for p in jobs_of(sweep)]
    for folder in jobs_of(sweep):
        run, rows, summary = runs[folder.name], metrics_of(folder), summary_of(folder)
        assert run.info.run_id == (folder / "mlflow_run_id").read_text().strip()
        assert run.info.status == "FINISHED" and run.data.tags["status"] == "completed"
        assert run.info.run_name == folder.name  # the job's name, as its sweep folder's
        assert run.data.params == tracked_params(folder)
        assert run.data.tags["choice.aug"] == render_value(summary["choices"]["aug"])
        for column in rows[0].keys() - {"epoch"}:
            assert history(client, run, column) == [(int(r["epoch"]), r[column]) for r in rows]
        assert history(client, run, "summary/test_acc") == [(2, summary["test_acc"])]
        # a step metric is the mean over its window of steps: with equal windows, the mean of
        # an epoch's windows is the epoch's training loss
        losses = history(client, run, "step/train_loss")
        assert [s for s, _ in losses] == list(range(LOG_EVERY, 2 * STEPS_PER_EPOCH + 1,
                                                    LOG_EVERY))
        for epoch, row in enumerate(rows):
            window = [v for _, v in losses[2 * epoch:2 * epoch + 2]]
            assert sum(window) / 2 == pytest.approx(row["train_loss"], rel=1e-5)
        artifacts = Path(urlparse(run.info.artifact_uri).path)
        assert json.loads((artifacts / "summary.json").read_text()) == summary
        assert (artifacts / "metrics.csv").read_bytes() == (folder / "metrics.csv").read_bytes()
        assert (artifacts / "hydra" / "config.yaml").read_bytes() == \
            (folder / ".hydra" / "config.yaml").read_bytes()
        assert not (artifacts / "checkpoints").exists()  # only with log_checkpoints=true


@pytest.mark.slow
def test_an_interrupted_run_resumes_its_mlflow_run_without_duplicates(tmp_path, offline,
                                                                     one_thread):
    """Ctrl-C mid-run (after its first checkpoint): the MLflow run ends KILLED; the same job
    resumes from its checkpoint and continues the same MLflow run, which then holds each
    epoch exactly once, equal to metrics.csv."""
    store, folder = tmp_path / "elsewhere" / "mlruns", tmp_path / "run"
    overrides = ["experiment=smoke", "trainer.epochs=16", "trainer.batch_size=32",
                 "trainer.log_every=1", "data.num_train=96", "data.val_size=32",
                 "data.num_test=32", "trainer.num_threads=1", "logger=[mlflow]",
                 f"logger.mlflow.tracking_uri={store}"]

    def interrupt_after_the_first_epoch():
        while not (folder / "metrics.csv").is_file():
            time.sleep(0.005)
        _thread.interrupt_main()  # KeyboardInterrupt in the training thread, as Ctrl-C

    threading.Thread(target=interrupt_after_the_first_epoch, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        train_in_process(overrides, folder)
    assert summary_of(folder)["status"] == "interrupted"
    client, runs = mlflow_runs(store)
    (stopped,) = runs.values()
    assert stopped.info.status == "KILLED" and stopped.data.tags["status"] == "interrupted"
    assert len(metrics_of(folder)) < 16

    # the resumed job may change how it is tracked: now with its checkpoints
    train_in_process(overrides + ["logger.mlflow.log_checkpoints=true"], folder)
    client, runs = mlflow_runs(store)
    (run,) = runs.values()
    assert run.info.run_id == stopped.info.run_id and run.info.status == "FINISHED"
    artifacts = Path(urlparse(run.info.artifact_uri).path)
    assert (artifacts / "checkpoints" / "last.pt").read_bytes() == \
        (folder / "checkpoints" / "last.pt").read_bytes()
    rows = metrics_of(folder)
    assert [int(r["epoch"]) for r in rows] == list(range(1, 17))
    for column in rows[0].keys() - {"epoch"}:
        assert history(client, run, column) == [(int(r["epoch"]), r[column]) for r in rows]
    steps = [s for s, _ in history(client, run, "step/train_loss")]
    assert len(steps) == len(set(steps)) and steps[-1] == 16 * 2  # 2 steps an epoch
    # TensorBoard likewise: each epoch once (stale events purged), the session a success
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import api_pb2

    events = EventAccumulator(str(folder / "tensorboard")).Reload()
    scalars = [(e.step, e.value) for e in events.Scalars("test/acc")]
    assert scalars == [(int(r["epoch"]), pytest.approx(r["test_acc"])) for r in rows]
    steps = [e.step for e in EventAccumulator(str(folder / "tensorboard" / "steps")).Reload()
             .Scalars("step/train_loss")]
    assert steps == list(range(1, 33))
    (row,) = hparams_view(tmp_path)
    assert row.sessions[0].status == api_pb2.STATUS_SUCCESS


def test_a_diverged_run_ends_failed_in_mlflow_and_tensorboard(tmp_path, offline, one_thread):
    store, folder = tmp_path / "mlruns", tmp_path / "run"
    train_in_process(SMALL + ["optim.lr=1e9", "logger=[mlflow]",
                              f"logger.mlflow.tracking_uri={store}"], folder)
    summary = summary_of(folder)
    assert summary["status"] == "diverged"
    _, runs = mlflow_runs(store)
    (run,) = runs.values()
    assert run.info.status == "FAILED" and run.data.tags["status"] == "diverged"
    artifacts = Path(urlparse(run.info.artifact_uri).path)
    assert json.loads((artifacts / "summary.json").read_text()) == summary
    (row,) = hparams_view(tmp_path)
    from tensorboard.plugins.hparams import api_pb2

    assert row.sessions[0].status == api_pb2.STATUS_FAILURE


# ------------------------------------------------------------------------------------ W&B

def wandb_records(path: Path) -> list:
    """The records of a `.wandb` file: a 7-byte header (`:W&B`, magic, version), then
    LevelDB-log blocks of 32 KiB, each record chunk with a 7-byte header (crc32c, length,
    type: 1 full, 2 first, 3 middle, 4 last) holding a serialised wandb `Record`."""
    from wandb.proto import wandb_internal_pb2

    data, records, pending, pos = path.read_bytes(), [], b"", 7
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def items(updates) -> dict:
    return {u.key or "/".join(u.nested_key): json.loads(u.value_json) for u in updates}


@pytest.mark.slow
def test_wandb_offline_run_records_config_metrics_summary_and_files(sweep):
    for folder in jobs_of(sweep):
        (run_dir,) = (folder / "wandb").glob("offline-run-*")
        records = wandb_records(next(run_dir.glob("run-*.wandb")))
        by_kind: dict[str, list] = {}
        for r in records:
            by_kind.setdefault(r.WhichOneof("record_type"), []).append(r)
        (start,) = by_kind["run"]
        summary, config = summary_of(folder), config_of(folder)
        assert start.run.run_id == (folder / "wandb_run_id").read_text().strip()
        assert start.run.display_name == folder.name and start.run.project == "cifar-tricks"
        recorded = items(start.run.config.update)
        tracked = {k: v for k, v in config.items() if k != "logger"}
        assert {k: recorded[k] for k in tracked} == tracked
        assert recorded["choices"] == {g: v for g, v in summary["choices"].items()
                                       if is_result_key(g)}
        logged = [items(r.history.item) for r in by_kind["history"]]
        epochs = [{k: v for k, v in h.items() if not k.startswith("_")} for h in logged
                  if "epoch" in h]
        assert epochs == metrics_of(folder)
        assert [h["global_step"] for h in logged if "global_step" in h] == [2, 4, 6, 8]
        final: dict = {}
        for r in by_kind["summary"]:
            final.update(items(r.summary.update))
        assert {k: final[k] for k in summary} == summary
        assert by_kind["exit"][0].exit.exit_code == 0
        files = run_dir / "files"
        assert json.loads((files / "summary.json").read_text()) == summary
        assert (files / "metrics.csv").read_bytes() == (folder / "metrics.csv").read_bytes()
        assert yaml.safe_load((files / "hydra" / "overrides.yaml").read_text()) == \
            yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text())
