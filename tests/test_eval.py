"""`mode=eval`, test-time augmentation and `load_run`: a trained run evaluated again gives the
numbers its summary reports (the EMA's with trick=[ema]), TTA follows airbench's definition, and
bad input is refused naming the key to change."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from cifar_tricks import jobs, load_run
from cifar_tricks.errors import CheckpointError, ConfigError
from cifar_tricks.evaluation import evaluate_run, split_metrics
from cifar_tricks.inference import Preprocess, class_names
from cifar_tricks.run_folder import RunFolder
from cifar_tricks.tta import with_tta
from conftest import TINY, compose_config, run_cli, train_in_process

pytestmark = pytest.mark.usefixtures("one_thread")

# Two jobs with an EMA that stays near the initial weights (no warmup, decay 0.999, 8 steps), so
# the reported (EMA) weights and the trained ones differ clearly in accuracy. One thread: tiny
# convolutions gain nothing from two, and lose much when other processes share the cores.
SWEEP = ["experiment=smoke", "trick=[ema]", "trick.ema.warmup=false", "trainer.num_threads=1",
         "optim.lr=0.05,0.1"]
TEST_IMAGES = 256  # experiment=smoke's


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sweep")
    run_cli("-m", *SWEEP, f"hydra.sweep.dir={folder}")
    return folder


def job_folders(sweep: Path) -> list[Path]:
    return sorted(p.parent for p in sweep.glob("*/summary.json"))


def eval_mode(overrides: list[str], output_dir: Path):
    """What `python run.py mode=eval <overrides>` does, without a subprocess."""
    overrides = ["mode=eval", *overrides]
    return jobs.MODES["eval"](compose_config(overrides), jobs.Job(output_dir, overrides, {}))


# ------------------------------------------------------------------------------------ TTA

def flatten(images: torch.Tensor) -> torch.Tensor:
    """A 'model' whose logits are its input pixels, so a TTA's output is its views' average."""
    return images.flatten(1)


class Flatten(nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return flatten(images)


def test_flip_tta_is_the_mean_of_the_logits_of_the_image_and_its_mirror():
    image = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    # logits of the image (1, 2, 3, 4) and of its mirror (2, 1, 4, 3), averaged
    assert with_tta(Flatten(), "flip")(image).tolist() == [[1.5, 1.5, 3.5, 3.5]]


def test_flip_translate_tta_weighs_the_image_one_half_and_each_one_pixel_shift_one_quarter():
    image = torch.arange(9.0).view(1, 1, 3, 3)  # [[0 1 2] [3 4 5] [6 7 8]]
    # reflect-padded by one pixel, the two 3x3 corners are the shifted views; both are mirror
    # symmetric, so their flip average is themselves
    up_left = torch.tensor([[4.0, 3, 4], [1, 0, 1], [4, 3, 4]])
    down_right = torch.tensor([[4.0, 5, 4], [7, 8, 7], [4, 5, 4]])
    flipped_mean = torch.tensor([[1.0, 1, 1], [4, 4, 4], [7, 7, 7]])  # (x + mirror(x)) / 2
    expected = 0.5 * flipped_mean + 0.25 * up_left + 0.25 * down_right  # rows 2.5, 4, 5.5
    assert expected.tolist() == [[2.5] * 3, [4.0] * 3, [5.5] * 3]
    assert with_tta(Flatten(), "flip_translate")(image).tolist() == [expected.flatten().tolist()]


def test_no_tta_is_the_model_itself_and_an_unknown_one_names_the_options():
    model = Flatten()
    assert with_tta(model, "none") is model
    with pytest.raises(ValueError, match="none, flip, flip_translate"):
        with_tta(model, "flips")


# ------------------------------------------------------------------------------------ metrics

def test_split_metrics_against_a_hand_counted_case():
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [3.0, 1.0, 2.0], [1.0, 2.0, 3.0]])
    labels = torch.tensor([0, 2, 1, 2])  # right, wrong (2nd choice), wrong (3rd), right
    metrics = split_metrics(logits, labels, ["a", "b", "c"])
    assert metrics["top1"] == 50.0
    assert metrics["top5"] == 100.0  # three classes: top-3
    assert metrics["confusion"] == [[1, 0, 0], [1, 0, 0], [0, 1, 1]]
    assert metrics["per_class_acc"] == {"a": 100.0, "b": 0.0, "c": 50.0}
    expected_loss = torch.nn.functional.cross_entropy(logits, labels).item()
    assert metrics["loss"] == pytest.approx(expected_loss)


def test_preprocess_takes_uint8_or_unit_floats_as_the_training_loader_normalises():
    images = torch.tensor([[[[0, 51]], [[128, 255]], [[7, 200]]]], dtype=torch.uint8)
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    by_hand = (images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) \
        / torch.tensor(std).view(1, 3, 1, 1)
    preprocess = Preprocess(mean, std)
    assert torch.allclose(preprocess(images), by_hand, atol=1e-5)
    assert torch.allclose(preprocess(images.float() / 255), by_hand, atol=1e-5)
    assert torch.allclose(preprocess(images[0]), by_hand, atol=1e-5)  # one image, no batch


def test_class_names_come_from_the_releases_meta_file(tmp_path):
    import pickle

    def meta(folder, name, entry):
        (tmp_path / folder).mkdir(exist_ok=True)
        with open(tmp_path / folder / name, "wb") as f:
            pickle.dump(entry, f)

    cifar10_names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                     "ship", "truck"]  # the release's batches.meta
    meta("cifar-10-batches-py", "batches.meta",
         {b"label_names": [n.encode() for n in cifar10_names]})
    cifar10 = {"_target_": "cifar_tricks.data.cifar10", "num_classes": 10, "root": str(tmp_path)}
    assert class_names(cifar10) == cifar10_names
    cifar100 = {"_target_": "cifar_tricks.data.cifar100", "num_classes": 100,
                "root": str(tmp_path)}
    assert class_names(cifar100)[:2] == ["class 0", "class 1"]  # no meta file yet
    meta("cifar-100-python", "meta",
         {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
          b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]})
    assert class_names(cifar100)[:2] == ["fine0", "fine1"]
    coarse = {**cifar100, "num_classes": 20, "labels": "coarse"}
    assert class_names(coarse) == [f"coarse{i}" for i in range(20)]
    meta("cifar-100-python", "meta", {b"fine_label_names": ["too", "few"]})  # not the release's
    assert class_names(cifar100)[:2] == ["class 0", "class 1"]
    synthetic = {"_target_": "cifar_tricks.data.synthetic", "num_classes": 3}
    assert class_names(synthetic) == ["class 0", "class 1", "class 2"]


# ------------------------------------------------------------------------------------ runs

@pytest.mark.slow
def test_eval_of_a_sweep_reproduces_each_jobs_reported_numbers_through_the_cli(sweep):
    proc = run_cli("mode=eval", f"eval.run={sweep}", "eval.tta=flip",
                   f"hydra.run.dir={sweep.parent / 'eval_command'}")
    assert "evaluated 2 of 2 jobs" in proc.stdout
    with open(sweep / "eval.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and (sweep / "eval.md").read_text().count("| completed |") == 2
    for row, folder in zip(rows, job_folders(sweep)):
        summary = RunFolder(folder).read_summary()
        report = json.loads((folder / "eval" / "eval.json").read_text())
        # the EMA weights, as reported: test and val top-1 exactly, the loss up to summation order
        assert report["test"]["top1"] == summary.test_acc == float(row["top1"])
        assert report["val"]["top1"] == summary.val_acc
        assert report["test"]["loss"] == pytest.approx(summary.test_loss, rel=1e-5)
        assert float(row["summary test_acc"]) == summary.test_acc
        assert row["job"].startswith("optim.lr=")  # named by what differs between the jobs
        # the confusion matrix counts every test image once; its diagonal is the top-1
        confusion = torch.tensor(report["test"]["confusion"])
        assert confusion.sum() == report["test"]["images"] == TEST_IMAGES
        assert 100 * confusion.diag().sum().item() / TEST_IMAGES == report["test"]["top1"]
        # TTA is reported beside, not instead of, the plain number
        assert float(row["tta top1"]) == report["test_tta"]["top1"]
        assert (folder / "eval" / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (sweep.parent / "eval_command" / "eval.json").exists()


@pytest.mark.slow
def test_trained_weights_of_an_ema_run_give_its_raw_accuracy_not_the_reported_one(sweep, tmp_path):
    folder = job_folders(sweep)[1]
    summary = RunFolder(folder).read_summary()
    eval_mode([f"eval.run='{folder}'", "eval.weights=model", f"eval.out={tmp_path}"], tmp_path)
    report = json.loads((tmp_path / "eval.json").read_text())
    with open(folder / "metrics.csv") as f:
        last = list(csv.DictReader(f))[-1]
    assert report["test"]["top1"] == float(last["raw_test_acc"]) == report["logged"]["test_acc"]
    assert report["test"]["top1"] != summary.test_acc  # 8 steps of EMA stay near the init
    assert (tmp_path / "confusion.png").is_file()  # eval.out: there, not in the run folder
    reported, trained = load_run(folder), load_run(folder, weights="model")
    images = reported.data().test.images[:16]
    assert not torch.allclose(reported.logits(images), trained.logits(images))


@pytest.mark.slow
def test_load_run_predicts_with_the_reported_weights_on_cpu(sweep):
    folder = job_folders(sweep)[0]
    run = load_run(folder)
    assert not run.model.training and run.device == torch.device("cpu")
    assert run.class_names == [f"class {i}" for i in range(10)]
    assert run.summary.status == "completed"
    test = run.data().test
    predicted = torch.cat([run.logits(test.images[i:i + 100]) for i in range(0, TEST_IMAGES, 100)])
    accuracy = 100 * (predicted.argmax(1) == test.labels).sum().item() / len(test.labels)
    assert accuracy == run.summary.test_acc
    assert len(run.predict(test.images[:3])) == 3
    with pytest.raises(CheckpointError, match="trainer.save_best=true"):
        load_run(folder, checkpoint="best")


def test_bad_input_is_refused_naming_the_key_and_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="eval.run"):
        eval_mode([], tmp_path)
    with pytest.raises(ConfigError, match="holds no run"):
        eval_mode([f"eval.run={tmp_path}"], tmp_path)
    with pytest.raises(ConfigError, match="eval.tta=flips.*none, flip, flip_translate"):
        eval_mode([f"eval.run={tmp_path}", "eval.tta=flips"], tmp_path)
    with pytest.raises(ConfigError, match="optim.lr=0.5: mode=eval evaluates a run as it was"):
        eval_mode([f"eval.run={tmp_path}", "optim.lr=0.5"], tmp_path)


def test_a_run_that_kept_only_its_best_epoch_is_evaluated_there_with_its_logged_numbers(tmp_path):
    overrides = TINY + ["data.val_size=64", "trainer.epochs=2", "trainer.save_best=true",
                        "trainer.checkpoint=false", "trainer.limit_train_batches=2",
                        "trainer.num_threads=1"]
    train_in_process(overrides, tmp_path / "run")
    with pytest.raises(CheckpointError, match="trainer.checkpoint=false.*eval.checkpoint=best"):
        evaluate_run(tmp_path / "run")
    report = evaluate_run(tmp_path / "run", checkpoint="best")
    with open(tmp_path / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    best = max(rows, key=lambda r: float(r["val_acc"]))  # the first of equals, as best.pt keeps
    assert report["epoch"] == int(best["epoch"])
    assert report["test"]["top1"] == float(best["test_acc"])
    assert report["val"]["top1"] == float(best["val_acc"])
