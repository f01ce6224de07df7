"""README promises about a run's life that had no test: the evaluation batch size changes no
result, a failed job resumes from its checkpoint, summary.json records the job's identity,
concurrent atomic writes never share a temporary file, a sweep evaluation notes the jobs it
skipped, export's check and weight choices, MLflow's `$MLFLOW_TRACKING_URI`, trackers that fail,
and the torchrun batch-size rule. Every run is a tiny in-process one (synthetic data, LeNet)."""
from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from cifar_tricks import export, jobs, load_run
from cifar_tricks.errors import CheckpointError, ConfigError
from cifar_tricks.identity import job_key, job_overrides
from cifar_tricks.run_folder import RunFolder
from cifar_tricks.validate import validate
from conftest import ROOT, TINY, compose_config, train_in_process

pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated:FutureWarning")

# two training steps an epoch, one torch thread (tiny convolutions gain nothing from two)
QUICK = TINY + ["trainer.limit_train_batches=2", "trainer.num_threads=1"]


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """trainer.num_threads sets the process's torch threads: give them back after each test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def read_metrics(folder: Path) -> list[dict[str, str]]:
    with open(folder / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def summary_of(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def eval_mode(overrides: list[str], output_dir: Path):
    """What `python run.py mode=eval <overrides>` does, without a subprocess."""
    overrides = ["mode=eval", *overrides]
    return jobs.MODES["eval"](compose_config(overrides), jobs.Job(output_dir, overrides, {}))


# ------------------------------------------------------------------------------------ eval batch

def test_the_eval_batch_size_changes_neither_training_nor_evaluation_results(tmp_path):
    """README trainer table: `eval_batch_size` ... images per evaluation batch (does not change
    results); and `mode=eval` may be given `trainer.eval_batch_size`."""
    run = QUICK + ["trainer.epochs=2", "data.val_size=32"]  # 128 test, 32 val images
    train_in_process(run, tmp_path / "batch128")  # TINY's trainer.eval_batch_size=128
    # 7 divides neither split: the last batch of each is partial
    train_in_process(run + ["trainer.eval_batch_size=7"], tmp_path / "batch7")
    rows128, rows7 = read_metrics(tmp_path / "batch128"), read_metrics(tmp_path / "batch7")
    assert [r["epoch"] for r in rows7] == [r["epoch"] for r in rows128] == ["1", "2"]
    for a, b in zip(rows128, rows7):
        # training after an evaluation is untouched by it, and the accuracies are counts
        for column in ("lr", "train_loss", "train_acc", "test_acc", "val_acc"):
            assert float(a[column]) == float(b[column]), column
        for column in ("test_loss", "val_loss"):  # a mean: equal up to summation order
            assert float(a[column]) == pytest.approx(float(b[column]), rel=1e-5), column

    # the trained run evaluated again with another batch size gives the numbers it reported
    summary = summary_of(tmp_path / "batch128")
    eval_mode([f"eval.run={tmp_path / 'batch128'}", "trainer.eval_batch_size=7",
               f"eval.out={tmp_path / 'eval7'}"], tmp_path / "eval_command")
    report = json.loads((tmp_path / "eval7" / "eval.json").read_text())
    assert report["test"]["images"] == 128
    assert report["test"]["top1"] == summary["test_acc"]
    assert report["val"]["top1"] == summary["val_acc"]
    assert report["test"]["loss"] == pytest.approx(summary["test_loss"], rel=1e-5)


# ------------------------------------------------------------------------------------ resume

def test_a_job_that_failed_resumes_from_its_checkpoint_when_rerun(tmp_path, monkeypatch, caplog):
    """README: rerun, unfinished jobs (`running` after a kill, `interrupted`, `failed`) resume
    from their checkpoint."""
    run = QUICK + ["trainer.epochs=2"]
    original_save = RunFolder.save_checkpoint

    def crash_while_saving_epoch_2(self, state, best=False):
        if state["epoch"] == 2:
            raise RuntimeError("simulated crash while writing epoch 2")
        original_save(self, state, best)

    with monkeypatch.context() as patch:
        patch.setattr(RunFolder, "save_checkpoint", crash_while_saving_epoch_2)
        with pytest.raises(RuntimeError, match="simulated crash"):
            train_in_process(run, tmp_path)
    crashed = summary_of(tmp_path)
    assert crashed["status"] == "failed" and "simulated crash" in crashed["error"]
    first_epoch = read_metrics(tmp_path)
    assert [r["epoch"] for r in first_epoch] == ["1"]
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1

    caplog.set_level(logging.INFO, logger="cifar_tricks")
    train_in_process(run, tmp_path)  # the same command again
    assert "resuming" in caplog.text
    rows = read_metrics(tmp_path)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    # epoch 1 comes from the checkpoint's history, timings included: it was not trained again
    assert rows[0] == first_epoch[0]
    summary = summary_of(tmp_path)
    assert summary["status"] == "completed" and summary["epochs"] == 2
    assert "error" not in summary


# ------------------------------------------------------------------------------------ identity

def test_summary_records_the_jobs_key_and_its_canonical_overrides(tmp_path):
    """README: `summary.json` records the job's identity (`job_key`) and its canonical
    overrides (`job_overrides`)."""
    overrides = QUICK + ["optim.lr=5e-2", "seed=0"]
    train_in_process(overrides, tmp_path)
    summary = summary_of(tmp_path)
    # the definitions (identity.py): a digest of the resolved config's identity, and the
    # overrides that change the job, spelled one way
    config = OmegaConf.to_container(compose_config(overrides), resolve=True)
    assert summary["job_key"] == job_key(config)
    assert summary["job_overrides"] == job_overrides(overrides)
    # as the README spells them: `seed=0` (the default) and settings that cannot change a result
    # (threads, evaluation batch size) are left out, `5e-2` is `0.05`
    assert set(summary["job_overrides"]) == {
        "data.num_test=128", "data.num_train=256", "data.val_size=0", "experiment=smoke",
        "optim.lr=0.05", "trainer.batch_size=32", "trainer.limit_train_batches=2"}

    # a job is its configuration: the same job spelled otherwise has the key, another seed not
    def key(some: list[str]) -> str:
        return job_key(OmegaConf.to_container(compose_config(some), resolve=True))

    respelled = [o for o in overrides if o not in ("seed=0", "optim.lr=5e-2")] + [
        "optim.lr=0.05", "trainer.num_threads=2", "trainer.eval_batch_size=64"]
    assert key(respelled) == summary["job_key"]
    assert key(overrides + ["seed=1"]) != summary["job_key"]


# ------------------------------------------------------------------------------------ atomic writes

WRITER = """
import json, sys, time
from pathlib import Path
from cifar_tricks.run_folder import write_text

target, ready, other, name, times = sys.argv[1:]
text = json.dumps({"writer": name, "data": name * 200_000})
Path(ready).touch()
while not Path(other).exists():  # both processes write at the same time
    time.sleep(0.001)
for _ in range(int(times)):
    write_text(Path(target), text)
"""


def test_two_processes_writing_one_file_at_once_leave_it_whole_and_no_temporary(tmp_path):
    """README: temporary files are unique per process (every write is a temporary file, then
    a rename: a reader sees the old file or the new one)."""
    folder, flags = tmp_path / "run", tmp_path / "flags"
    folder.mkdir()
    flags.mkdir()
    target = folder / "summary.json"
    writers = [subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target), str(flags / me), str(flags / other), me,
         "40"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for me, other in (("a", "b"), ("b", "a"))]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err[-3000:]  # no writer ever lost its temporary file
    written = json.loads(target.read_text())  # one whole file, of one writer
    assert written in ({"writer": "a", "data": "a" * 200_000},
                       {"writer": "b", "data": "b" * 200_000})
    assert sorted(p.name for p in folder.iterdir()) == ["summary.json"]  # no temporary left


# ------------------------------------------------------------------------------------ sweep eval

def test_a_sweep_evaluation_notes_each_job_it_did_not_evaluate(tmp_path):
    """README: a sweep's eval.md / eval.csv have a `note` for jobs not evaluated (not
    completed, no checkpoint)."""
    sweep = tmp_path / "sweep"
    train_in_process(QUICK, sweep / "defaults")
    train_in_process(QUICK + ["seed=1", "trainer.checkpoint=false"], sweep / "seed=1")
    (sweep / "seed=2").mkdir()  # killed before its first checkpoint, as a SIGKILL leaves it
    (sweep / "seed=2" / "summary.json").write_text(json.dumps(
        {"status": "running", "overrides": ["seed=2"]}))

    eval_mode([f"eval.run={sweep}"], tmp_path / "eval_command")
    with open(sweep / "eval.csv", newline="") as f:
        rows = {Path(r["path"]).name: r for r in csv.DictReader(f)}
    assert sorted(rows) == ["defaults", "seed=1", "seed=2"]

    evaluated = rows["defaults"]
    assert evaluated["note"] == ""
    assert float(evaluated["top1"]) == summary_of(sweep / "defaults")["test_acc"]
    assert (sweep / "defaults" / "eval" / "eval.json").is_file()

    running, no_checkpoint = rows["seed=2"], rows["seed=1"]
    assert running["status"] == "running" and running["top1"] == ""
    assert "not completed" in running["note"]
    assert no_checkpoint["status"] == "completed" and no_checkpoint["top1"] == ""
    assert "checkpoint" in no_checkpoint["note"]
    assert not (sweep / "seed=1" / "eval").exists() and not (sweep / "seed=2" / "eval").exists()

    table = (sweep / "eval.md").read_text()
    assert "not completed" in table
    assert table.count("not evaluated") == 2


# ------------------------------------------------------------------------------------ export

@pytest.fixture(scope="module")
def best_only_ema_run(tmp_path_factory) -> Path:
    """An EMA run (no warmup, decay 0.999: the reported weights stay near the initial ones) that
    kept only its best epoch (trainer.save_best=true, trainer.checkpoint=false)."""
    folder = tmp_path_factory.mktemp("export") / "run"
    threads = torch.get_num_threads()
    train_in_process(QUICK + ["trick=[ema]", "trick.ema.warmup=false", "data.val_size=64",
                              "trainer.epochs=2", "trainer.save_best=true",
                              "trainer.checkpoint=false"], folder)
    torch.set_num_threads(threads)
    return folder


def best_row(run: Path) -> dict[str, str]:
    """metrics.csv's row of the epoch best.pt holds, which must be one of highest validation
    accuracy (an EMA's accuracy barely moves, so epochs may tie)."""
    rows = read_metrics(run)
    epoch = torch.load(run / "checkpoints" / "best.pt", weights_only=True)["epoch"]
    (row,) = [r for r in rows if int(r["epoch"]) == epoch]
    assert float(row["val_acc"]) == max(float(r["val_acc"]) for r in rows)
    return row


def split_images(run: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's test images as an exported module takes them (float in [0, 1]), and labels."""
    test = load_run(run, checkpoint="best").data().test
    return test.images.float() / 255, test.labels


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return 100 * (logits.argmax(1) == labels).sum().item() / len(labels)


def exported_logits(run: Path, out: Path, *flags: str) -> torch.Tensor:
    """`python -m cifar_tricks.export RUN --out OUT <flags>` (TorchScript), then the file's
    logits of the run's test images."""
    export.main([str(run), "--out", str(out), *flags])
    images, _ = split_images(run)
    with torch.no_grad():
        return torch.jit.load(str(out))(images)


def test_export_checkpoint_best_and_weights_model_choose_those_weights(best_only_ema_run, tmp_path):
    """README: `--weights model` and `--checkpoint best` choose other weights, as for
    `mode=eval` (best.pt; the trained weights, metrics.csv's raw_* numbers, not the EMA's)."""
    run = best_only_ema_run
    with pytest.raises(CheckpointError):  # the default reads last.pt, which this run did not keep
        export.export_run(run, out=tmp_path / "last.pt")
    best = best_row(run)
    _, labels = split_images(run)

    reported = exported_logits(run, tmp_path / "best.pt", "--checkpoint", "best")
    assert accuracy(reported, labels) == float(best["test_acc"])  # the EMA's, as reported

    trained = exported_logits(run, tmp_path / "trained.pt", "--checkpoint", "best",
                              "--weights", "model")
    assert accuracy(trained, labels) == float(best["raw_test_acc"])
    # the trained weights of best.pt, built by hand and normalised by hand
    state = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    model = instantiate(state["config"]["model"])
    model.load_state_dict(state["model"])
    model.eval()
    mean = torch.tensor(state["config"]["data"]["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(state["config"]["data"]["std"]).view(1, 3, 1, 1)
    images, _ = split_images(run)
    with torch.no_grad():
        by_hand = model((images - mean) / std)
    assert (trained - by_hand).abs().max().item() < 1e-4
    assert not torch.allclose(reported, trained, atol=1e-4)  # the EMA's are other weights


def test_an_export_whose_check_exceeds_the_tolerance_fails(best_only_ema_run, tmp_path,
                                                           monkeypatch, capsys):
    """README: each export is checked against the eager model; the command prints the largest
    absolute logit difference and fails above 1e-4 x max(1, largest |logit|)."""
    run = best_only_ema_run
    images, _ = split_images(run)
    largest = load_run(run, checkpoint="best").logits(images).abs().max().item()
    real = export.FORMATS["torchscript"]

    def shifted(offset: float):
        """TorchScript whose loaded file adds `offset` to every logit, as a faulty runtime."""
        def load(path):
            module = real.load(path)
            return lambda batch: module(batch) + offset
        return export.Format(real.suffix, real.save, load, real.packages)

    # below the least tolerance (1e-4): the export passes and prints the difference
    monkeypatch.setitem(export.FORMATS, "torchscript", shifted(0.5e-4))
    export.main([str(run), "--checkpoint", "best", "--out", str(tmp_path / "close.pt")])
    printed = capsys.readouterr().out
    assert "max abs logit difference" in printed
    difference = float(printed.split("max abs logit difference ")[1].split()[0])
    assert difference == pytest.approx(0.5e-4, rel=0.02)

    # twice the tolerance of any of the test images: the command fails (exit status 1)
    monkeypatch.setitem(export.FORMATS, "torchscript", shifted(2e-4 * max(1.0, largest)))
    with pytest.raises(SystemExit) as stop:
        export.main([str(run), "--checkpoint", "best", "--out", str(tmp_path / "far.pt")])
    assert stop.value.code == 1
    assert "does not reproduce the model" in capsys.readouterr().err
    with pytest.raises(export.ExportMismatchError):
        export.export_run(run, checkpoint="best", out=tmp_path / "far.pt")


# ------------------------------------------------------------------------------------ trackers

def test_mlflow_uses_the_tracking_uri_from_the_environment(tmp_path, monkeypatch):
    """README: MLflow's default store is `mlruns/` where run.py was started, or
    `$MLFLOW_TRACKING_URI` when set."""
    from mlflow.tracking import MlflowClient

    store, start_dir, folder = tmp_path / "store", tmp_path / "started_here", tmp_path / "run"
    start_dir.mkdir()
    monkeypatch.chdir(start_dir)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads a file store only so
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    train_in_process(QUICK + ["logger=[mlflow]"], folder)

    assert not (start_dir / "mlruns").exists()  # not the default store
    client = MlflowClient(tracking_uri=store.as_uri())
    experiment = client.get_experiment_by_name("cifar-tricks")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_id == (folder / "mlflow_run_id").read_text().strip()
    assert run.data.tags["run_folder"] == str(folder.resolve())
    assert run.info.status == "FINISHED"


TRACKER_CALLS: list[tuple] = []  # what ScriptedTracker was called with, in order


class ScriptedTracker:
    """A tracker (loggers.base.Logger) that records its calls and raises in `fail_in`, as one
    whose server is unreachable (`start`) or goes away mid-run (`log_epoch`)."""

    def __init__(self, fail_in: str = "") -> None:
        self.fail_in = fail_in

    def _call(self, method: str, *args) -> None:
        TRACKER_CALLS.append((method, *args))
        if method == self.fail_in:
            raise ConnectionError(f"tracking server unreachable ({method})")

    def start(self, job, folder, resumed_epoch):
        self._call("start", resumed_epoch)

    def log_step(self, step, metrics):
        self._call("log_step", step)

    def log_epoch(self, epoch, row):
        self._call("log_epoch", epoch)

    def finish(self, summary, folder):
        self._call("finish", str(summary.status))

    def close(self, status):
        self._call("close", str(status))


def scripted_tracker(fail_in: str) -> list[str]:
    TRACKER_CALLS.clear()
    return [f"+logger.scripted._target_={__name__}.ScriptedTracker",
            f"+logger.scripted.fail_in={fail_in}"]


def test_a_tracker_that_fails_mid_run_is_dropped_with_a_warning_and_the_run_completes(
        tmp_path, caplog):
    """README: a tracker that fails mid-run (a server gone) is logged as a warning and dropped:
    tracking never costs a trained run."""
    train_in_process(QUICK + ["trainer.epochs=2"] + scripted_tracker("log_epoch"), tmp_path)
    summary = summary_of(tmp_path)
    assert summary["status"] == "completed" and summary["epochs"] == 2
    assert [r["epoch"] for r in read_metrics(tmp_path)] == ["1", "2"]
    assert any(r.levelno == logging.WARNING and "ScriptedTracker" in r.getMessage()
               and "unreachable" in r.getMessage() for r in caplog.records)
    # the tracker got epoch 1, failed there, and was sent nothing more to log
    failed_at = TRACKER_CALLS.index(("log_epoch", 1))
    assert TRACKER_CALLS[0] == ("start", 0)
    assert all(call[0] == "close" for call in TRACKER_CALLS[failed_at + 1:])
    assert ("log_epoch", 2) not in TRACKER_CALLS


def test_a_tracker_that_cannot_start_stops_the_run_before_it_trains(tmp_path):
    """README: a tracker that cannot start stops the run before it trains."""
    with pytest.raises(ConnectionError, match="unreachable"):
        train_in_process(QUICK + scripted_tracker("start"), tmp_path)
    assert not (tmp_path / "metrics.csv").exists()  # no epoch trained
    assert not (tmp_path / "checkpoints" / "last.pt").exists()
    summary = summary_of(tmp_path)
    assert summary["status"] == "failed" and "unreachable" in summary["error"]
    assert not any(call[0] in ("log_step", "log_epoch", "finish") for call in TRACKER_CALLS)


# ------------------------------------------------------------------------------------ torchrun

def test_under_torchrun_the_batch_must_divide_by_the_number_of_processes(tmp_path, monkeypatch):
    """README: under torchrun `trainer.batch_size` is the global batch; the batch must divide
    by N (torchrun tells each process N in WORLD_SIZE)."""
    monkeypatch.setenv("WORLD_SIZE", "3")
    folder = tmp_path / "run"
    with pytest.raises(ConfigError) as refused:
        train_in_process(TINY, folder)  # trainer.batch_size=32 over 3 processes
    assert "trainer.batch_size=32" in str(refused.value)
    assert not folder.exists()  # refused before anything was written
    validate(compose_config(TINY + ["trainer.batch_size=33"]))  # 11 images per process
    monkeypatch.setenv("WORLD_SIZE", "4")
    validate(compose_config(TINY))  # 8 per process
