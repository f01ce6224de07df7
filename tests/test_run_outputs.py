"""What a run shows and keeps besides its metrics: fp16 with gradient scaling, best.pt chosen on
validation, the progress lines of a log, the end-of-run block, the summary's time fields."""
from __future__ import annotations

import csv
import json
import re

import pytest
import torch

from cifar_tricks.build import build_run
from cifar_tricks.config import Precision
from cifar_tricks.errors import ConfigError
from cifar_tricks.losses import SoftTargetCrossEntropy
from cifar_tricks.precision import autocast_dtype, autocast_for, grad_scaler
from cifar_tricks.run_folder import RunFolder
from cifar_tricks.train import evaluate, fit, train_one_epoch
from cifar_tricks.tricks.base import TrainState
from cifar_tricks.validate import validate
from conftest import TINY, compose_config, run_cli, train_in_process


def read_rows(folder):
    with open(folder / "metrics.csv") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------------------------ precision

def test_each_precision_names_its_forward_dtype_and_only_fp16_scales_the_loss():
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu, Precision.bf16) is torch.bfloat16
    assert autocast_dtype(cpu, Precision.fp16) is torch.float16
    assert autocast_dtype(cpu, Precision.fp32) is None
    assert autocast_dtype(cpu, Precision.auto) is None  # a CPU trains in fp32
    assert grad_scaler(cpu, Precision.fp16) is not None
    for precision in (Precision.bf16, Precision.fp32, Precision.auto):
        assert grad_scaler(cpu, precision) is None


def test_fp16_runs_the_forward_in_fp16_and_the_tricks_see_unscaled_gradients(tmp_path):
    # grad_clip at 0.01: every step's gradient norm is above it, so the optimizer must see a norm
    # of exactly 0.01 (clip_grad_norm_'s definition). Clipping the still-scaled gradients would
    # leave 0.01 / scale after the scaler unscales them.
    cfg = compose_config(TINY + ["trainer.precision=fp16", "trick=[grad_clip]",
                                 "trick.grad_clip.max_norm=0.01", "trainer.limit_train_batches=3"])
    run = build_run(cfg)
    assert run.scaler is not None
    dtypes, norms = set(), []
    first_conv = next(m for m in run.model.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_hook(lambda m, i, out: dtypes.add(out.dtype))

    def record_norm(optimizer, args, kwargs):
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        norms.append(torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(g.float()) for g in grads])).item())

    run.optimizer.register_step_pre_hook(record_norm)
    summary = fit(run, RunFolder(tmp_path))
    assert summary.status == "completed"
    assert torch.float16 in dtypes
    assert len(norms) == len(run.loaders.train)  # no step skipped at this loss scale
    assert norms == pytest.approx([0.01] * len(norms), rel=1e-3)
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert state["scaler"]["scale"] == run.scaler.get_scale()  # resumes with its loss scale


def test_fp16_with_sam_is_refused_naming_the_precision_key():
    with pytest.raises(ConfigError, match=r"trainer\.precision=fp16.*fp32"):
        validate(compose_config(TINY + ["trainer.precision=fp16", "trick=[sam]"]))


# ------------------------------------------------------------------------------------ best.pt

def test_best_pt_is_the_epoch_of_highest_validation_accuracy(tmp_path):
    overrides = TINY + ["trainer.epochs=4", "data.val_size=64", "trainer.save_best=true",
                        "optim.lr=0.05"]
    train_in_process(overrides, tmp_path)
    rows = read_rows(tmp_path)
    val = [float(r["val_acc"]) for r in rows]
    best_epoch = val.index(max(val)) + 1  # the first epoch reaching the maximum
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["best_val_epoch"] == best_epoch
    assert summary["best_val_acc"] == pytest.approx(max(val))
    best = torch.load(tmp_path / "checkpoints" / "best.pt", weights_only=True)
    assert best["epoch"] == best_epoch
    # its evaluation weights reproduce that epoch's validation accuracy
    run = build_run(compose_config(overrides))
    run.model.load_state_dict(best["eval_model"])
    _, acc = evaluate(run.model, run.loaders.val, SoftTargetCrossEntropy(),
                      autocast_for(run.device, Precision.fp32), False)
    assert acc == pytest.approx(val[best_epoch - 1], abs=1e-6)


def test_save_best_without_a_validation_split_is_refused():
    with pytest.raises(ConfigError, match=r"trainer\.save_best.*data\.val_size"):
        validate(compose_config(TINY + ["trainer.save_best=true"]))


# ------------------------------------------------------------------------------------ the log

def test_a_log_gets_a_progress_line_every_log_every_steps_and_an_end_block(tmp_path):
    # 256 images / 32 = 8 steps; log_every=4: lines at steps 4 and 8. Step 8's running means
    # are the epoch's: they equal metrics.csv's train_loss and train_acc.
    proc = run_cli(*TINY, "trainer.log_every=4", f"hydra.run.dir={tmp_path}")
    text = proc.stdout + proc.stderr  # not a terminal: no bar, log lines
    lines = re.findall(r"epoch 1/1 step (\d+)/8 loss ([\d.]+) acc ([\d.]+) lr ([\d.e-]+) "
                       r"img/s (\d+) eta (\S+ ?s?)", text)
    assert [int(step) for step, *_ in lines] == [4, 8], text[-2000:]
    row = read_rows(tmp_path)[0]
    _, loss, acc, lr, img_s, eta = lines[-1]
    assert float(loss) == pytest.approx(float(row["train_loss"]), abs=1e-4)
    assert float(acc) == pytest.approx(float(row["train_acc"]), abs=0.005)
    assert float(lr) == pytest.approx(0.02)
    assert int(img_s) > 0 and eta.startswith("0.0 s")  # nothing left after the last step
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert f"test acc   {summary['test_acc']:.2f}%" in text
    assert f"folder     {tmp_path}" in text
    assert "\x1b" not in text and "\r" not in text  # no bar redraws in a log


def test_the_end_block_shows_the_test_time_augmented_accuracy_when_there_is_one():
    from cifar_tricks.progress import end_of_run_block
    from cifar_tricks.run_folder import Status, Summary

    plain = Summary(status=Status.completed, test_acc=85.28, epochs=5, epochs_planned=5)
    assert "test acc   85.28%\n" in end_of_run_block(plain, "out") + "\n"
    tta = Summary(status=Status.completed, test_acc=85.28, tta_test_acc=86.17, epochs=5,
                  epochs_planned=5)
    assert "test acc   85.28% (86.17% with TTA)" in end_of_run_block(tta, "out")


def test_the_bar_shows_images_per_second_and_the_run_eta(tmp_path, capsys):
    train_in_process(TINY + ["trainer.progress=bar", "trainer.log_every=1"], tmp_path)
    err = capsys.readouterr().err
    for field in ("epoch 1/1", "loss=", "acc=", "lr=", "img_s=", "eta=", "eval test"):
        assert field in err, (field, err[-500:])


def test_the_summary_separates_training_time_from_wall_time_and_names_the_weights(tmp_path):
    train_in_process(TINY + ["trainer.epochs=2", "trick=[ema]"], tmp_path)
    rows = read_rows(tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["eval_weights"] == "ema"
    for row in rows:  # an epoch's wall time holds its training and its evaluation
        assert float(row["wall_time_s"]) >= float(row["epoch_time_s"]) + float(row["eval_time_s"])
        assert float(row["eval_time_s"]) > 0
    assert summary["train_time_s"] == pytest.approx(sum(float(r["epoch_time_s"]) for r in rows))
    assert summary["wall_time_s"] == pytest.approx(sum(float(r["wall_time_s"]) for r in rows))
    train_in_process(TINY, tmp_path / "plain")
    assert json.loads((tmp_path / "plain" / "summary.json").read_text())["eval_weights"] == \
        "model"


def test_the_first_step_of_a_compiled_run_is_timed_apart_from_the_epoch():
    # torch.compile compiles at the first step: with time_compile that step is compile_time_s
    # and the epoch's time and img/s count the other steps' images only
    run = build_run(compose_config(TINY))
    state = TrainState(epochs=1, steps_per_epoch=len(run.loaders.train), epoch=1)
    run.loaders.train.set_epoch(1)
    stats = train_one_epoch(run, run.model, state, autocast_for(run.device, Precision.fp32),
                            False, run.loaders.train, time_compile=True)
    images = len(run.loaders.train) * 32  # 8 batches of 32
    assert stats["compile_time_s"] > 0
    assert stats["img_per_s"] * stats["epoch_time_s"] == pytest.approx(images - 32)
    plain = train_one_epoch(run, run.model, state, autocast_for(run.device, Precision.fp32),
                            False, run.loaders.train)
    assert "compile_time_s" not in plain
    assert plain["img_per_s"] * plain["epoch_time_s"] == pytest.approx(images)


def test_eval_tta_reports_the_last_epochs_flip_averaged_accuracy_beside_the_plain_one(tmp_path):
    overrides = TINY + ["trainer.epochs=2"]
    train_in_process(overrides + ["trainer.eval_tta=flip"], tmp_path / "tta")
    train_in_process(overrides, tmp_path / "plain")
    with_tta_summary = json.loads((tmp_path / "tta" / "summary.json").read_text())
    plain = json.loads((tmp_path / "plain" / "summary.json").read_text())
    assert with_tta_summary["test_acc"] == plain["test_acc"]  # the plain number is unchanged
    assert plain["tta_test_acc"] is None
    rows = read_rows(tmp_path / "tta")
    assert rows[0]["tta_test_acc"] == "" and rows[1]["tta_test_acc"] != ""  # the last epoch only
    # the definition: the mean of the logits of each test image and of its mirror image
    run = build_run(compose_config(overrides))
    state = torch.load(tmp_path / "tta" / "checkpoints" / "last.pt", weights_only=True)
    run.model.load_state_dict(state["eval_model"])
    run.model.eval()
    correct = total = 0
    with torch.no_grad():
        for images, targets in run.loaders.test:
            logits = 0.5 * run.model(images) + 0.5 * run.model(images.flip(3))
            correct += (logits.argmax(1) == targets.argmax(1)).sum().item()
            total += len(images)
    assert with_tta_summary["tta_test_acc"] == pytest.approx(100 * correct / total)
