"""CUDA smoke tests: the GPU paths (bf16 autocast, channels_last, torch.compile, the device-resident
loader) on one real step each. Marked `gpu`: they run wherever a CUDA device is present and are
deselected elsewhere (see conftest.py)."""
from __future__ import annotations

import json

import pytest
import torch

from cifar_tricks.build import build_run
from cifar_tricks.config import Precision
from cifar_tricks.train import autocast_for
from conftest import TINY, compose_config, train_in_process

pytestmark = pytest.mark.gpu

CUDA = ["trainer.device=cuda", "trainer.limit_train_batches=2", "trainer.limit_eval_batches=1"]


def test_bf16_autocast_gives_bf16_logits_and_data_lives_on_the_gpu():
    run = build_run(compose_config(TINY + CUDA + ["model=resnet20", "trainer.precision=bf16"]))
    images, targets = next(iter(run.loaders.train))
    assert images.is_cuda and targets.is_cuda and run.data.train.images.is_cuda
    with autocast_for(run.device, Precision.bf16)():
        logits = run.model(images)
    assert logits.dtype == torch.bfloat16
    with autocast_for(run.device, Precision.fp32)():
        assert run.model(images).dtype == torch.float32


@pytest.mark.parametrize("model", ["resnet20", "vision_transformer"])
def test_one_epoch_on_cuda_with_bf16_channels_last_and_compile(tmp_path, model):
    overrides = TINY + CUDA + [f"model={model}", "trainer.precision=bf16",
                               "trainer.channels_last=true", "trainer.compile=true",
                               "trick=[ema]", "aug=[autoaugment,cutout,mixup]"]
    train_in_process(overrides, tmp_path, {"model": model})
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed", summary
    assert summary["device"].startswith("cuda") and summary["peak_mem_mb"] > 0
    assert 0 <= summary["test_acc"] <= 100 and summary["train_loss"] > 0


def test_channels_last_is_applied_to_the_trained_model(tmp_path):
    from cifar_tricks.run_folder import RunFolder
    from cifar_tricks.train import fit

    cfg = compose_config(TINY + CUDA + ["model=resnet20", "trainer.channels_last=true"])
    run = build_run(cfg)
    fit(run, RunFolder(tmp_path))
    convs = [m.weight for m in run.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
