"""`python -m cifar_tricks.export`: the exported file, loaded by its own runtime, computes the
logits of the run's reported model on its test images, with the run's normalisation inside
(or not, with --no-preprocessing)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cifar_tricks import load_run
from cifar_tricks.export import Format, MissingPackageError, _check_packages, export_run
from conftest import ROOT, TINY, train_in_process

pytestmark = [pytest.mark.filterwarnings("ignore:.*deprecated:FutureWarning"),
              pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("export") / "run"
    threads = torch.get_num_threads()  # trainer.num_threads sets the process's
    train_in_process(TINY + ["trainer.limit_train_batches=3", "trainer.num_threads=1"], folder)
    torch.set_num_threads(threads)
    return folder


def reference(run: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Test images as the exported file takes them (float in [0, 1]), and the eager model's
    logits of them normalised by hand with the run's mean and std."""
    loaded = load_run(run)
    images = loaded.data().test.images[:37].float() / 255  # not the export's example batch size
    mean = torch.tensor(loaded.config["data"]["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(loaded.config["data"]["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        return images, loaded.model((images - mean) / std)


@pytest.mark.slow
def test_torchscript_export_through_the_cli_reproduces_the_models_logits(run):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "cifar_tricks.export", str(run)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "max abs logit difference" in proc.stdout
    path = run / "export" / "model.pt"
    card = json.loads((run / "export" / "model.pt.json").read_text())
    assert card["input"]["preprocessing_included"] and card["check"]["max_abs_diff"] <= 1e-4
    images, expected = reference(run)
    exported = torch.jit.load(str(path))
    assert (exported(images) - expected).abs().max().item() < 1e-4


def test_onnx_export_without_preprocessing_reproduces_the_logits_in_onnxruntime(run, tmp_path):
    import onnxruntime

    result = export_run(run, "onnx", out=tmp_path / "model.onnx", preprocessing=False)
    assert result.max_abs_diff <= result.tolerance
    images, expected = reference(run)
    loaded = load_run(run)
    normalised = ((images - torch.tensor(loaded.config["data"]["mean"]).view(1, 3, 1, 1))
                  / torch.tensor(loaded.config["data"]["std"]).view(1, 3, 1, 1))
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"images": normalised.numpy()})[0])
    assert (got - expected).abs().max().item() < 1e-4


def test_pt2_export_reproduces_the_logits(run, tmp_path):
    result = export_run(run, "pt2", out=tmp_path / "model.pt2")
    images, expected = reference(run)
    exported = torch.export.load(str(result.path)).module()
    assert (exported(images) - expected).abs().max().item() < 1e-4


def test_a_missing_package_is_named_with_its_pip_install():
    needs = Format(".x", save=None, load=None, packages=("json", "no_such_package_cifar"))
    with pytest.raises(MissingPackageError, match="pip install json no_such_package_cifar"):
        _check_packages("x", needs)
