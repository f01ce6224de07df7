"""Knowledge distillation (`KDLoss`, `load_teacher`) against Hinton et al.'s definition, written
out with plain torch ops, and the teacher checkpoint's error messages."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cifar_tricks.errors import CheckpointError
from cifar_tricks.losses import SoftTargetCrossEntropy
from cifar_tricks.run_folder import RunFolder
from cifar_tricks.tricks.kd import KDLoss, load_teacher

pytestmark = pytest.mark.usefixtures("one_thread")

B, C, D = 6, 5, 4


class FixedTeacher(nn.Module):
    """Returns preset logits whatever the images; counts its calls."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.calls = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.logits


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    student = (torch.randn(B, C, generator=g) * 3).requires_grad_()
    teacher = torch.randn(B, C, generator=g) * 3
    targets = F.one_hot(torch.randint(C, (B,), generator=g), C).float()
    images = torch.randn(B, D, generator=g)
    return student, teacher, targets, images


def by_hand(student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor, t: float,
            alpha: float, eps: float = 0.0) -> torch.Tensor:
    q = (1 - eps) * targets + eps / C
    base = -(q * torch.log(torch.softmax(student, 1))).sum(1).mean()
    p_t = torch.softmax(teacher / t, 1)
    p_s = torch.softmax(student / t, 1)
    kl = (p_t * (torch.log(p_t) - torch.log(p_s))).sum(1).sum() / B  # batchmean
    return (1 - alpha) * base + alpha * t * t * kl


@pytest.mark.parametrize("t,alpha,eps", [(4.0, 0.9, 0.0), (1.0, 0.5, 0.0), (2.5, 0.3, 0.1)])
def test_the_loss_is_hintons_formula(t: float, alpha: float, eps: float):
    student, teacher, targets, images = batch()
    kd = KDLoss(FixedTeacher(teacher), temperature=t, alpha=alpha,
                base=SoftTargetCrossEntropy(label_smoothing=eps))
    loss = kd(student, targets, images)
    assert loss.item() == pytest.approx(by_hand(student, teacher, targets, t, alpha, eps).item(),
                                        rel=1e-5)


def test_the_soft_terms_gradient_is_t_times_the_probability_gap():
    # d/dz_s [T^2 KL(p_t || p_s)] = T (p_s - p_t) / B: why the T^2 factor keeps its scale
    student, teacher, targets, images = batch(1)
    t = 4.0
    kd = KDLoss(FixedTeacher(teacher), temperature=t, alpha=1.0)
    kd(student, targets, images).backward()
    expected = t * (torch.softmax(student.detach() / t, 1) - torch.softmax(teacher / t, 1)) / B
    assert torch.allclose(student.grad, expected, atol=1e-6)


def test_alpha_zero_is_the_base_loss_and_skips_the_teacher():
    student, teacher, targets, images = batch(2)
    fixed = FixedTeacher(teacher)
    kd = KDLoss(fixed, temperature=4.0, alpha=0.0)
    assert torch.equal(kd(student, targets, images), SoftTargetCrossEntropy()(student, targets))
    assert fixed.calls == 0


def test_the_teacher_runs_on_the_images_frozen_and_in_eval_mode():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(D, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, C))
    teacher.train()
    student = nn.Linear(D, C)
    kd = KDLoss(teacher, temperature=4.0, alpha=0.9)
    assert not any(m.training for m in teacher.modules())
    kd.train()  # what a loop may do to its loss: must not put the teacher in training mode
    assert not any(m.training for m in teacher.modules())
    mean = teacher[1].running_mean.clone()
    _, _, targets, images = batch(3)
    loss = kd(student(images), targets, images)
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters())
    assert torch.equal(teacher[1].running_mean, mean)  # eval: the statistics did not move
    # eval mode makes the teacher deterministic (no dropout): the same images, the same loss
    assert torch.equal(kd(student(images), targets, images), loss.detach())


@pytest.mark.parametrize("kwargs", [{"temperature": 0.0}, {"alpha": 1.5}, {"alpha": -0.1}])
def test_invalid_settings_are_refused_naming_the_argument(kwargs: dict):
    with pytest.raises(ValueError, match=f"^{next(iter(kwargs))} must"):
        KDLoss(nn.Identity(), **kwargs)


# ------------------------------------------------------------------------------------ teacher

def teacher_net(width: int = 8) -> nn.Module:
    return nn.Sequential(nn.Linear(D, width), nn.BatchNorm1d(width), nn.Linear(width, C))


def write_run(folder: Path, model: nn.Module) -> Path:
    """A checkpoint in our runs' format, written the way `fit` writes it."""
    run = RunFolder(folder)
    run.save_checkpoint({"model": model.state_dict(), "optimizer": {}, "scheduler": {},
                         "rng": {}, "epoch": 3, "history": [],
                         "config": {"model": {"_target_": "tests.teacher_net"}},
                         "overrides": []})
    return run.checkpoint_path


def test_a_checkpoint_of_our_runs_loads_into_the_teacher(tmp_path: Path):
    torch.manual_seed(1)
    trained = teacher_net()
    path = write_run(tmp_path, trained)
    for where in (path, tmp_path, str(path)):  # the file, the run folder, a string
        teacher = load_teacher(teacher_net(), where)
        assert not teacher.training
        for (k, a), b in zip(teacher.state_dict().items(), trained.state_dict().values()):
            assert torch.equal(a, b), k


def test_a_missing_checkpoint_names_the_path(tmp_path: Path):
    path = tmp_path / "nowhere" / "last.pt"
    with pytest.raises(CheckpointError, match="does not exist") as info:
        load_teacher(teacher_net(), path)
    assert str(path) in str(info.value)


def test_an_unreadable_checkpoint_names_the_path(tmp_path: Path):
    path = tmp_path / "last.pt"
    path.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="cannot read") as info:
        load_teacher(teacher_net(), path)
    assert str(path) in str(info.value)


def test_a_file_that_is_not_our_checkpoint_names_the_path(tmp_path: Path):
    path = tmp_path / "weights.pt"
    torch.save(teacher_net().state_dict(), path)  # a bare state dict: no "model" key
    with pytest.raises(CheckpointError, match="not a cifar-tricks checkpoint") as info:
        load_teacher(teacher_net(), path)
    assert str(path) in str(info.value)


def test_weights_of_another_architecture_are_refused_with_the_differences(tmp_path: Path):
    path = write_run(tmp_path, teacher_net(width=16))
    with pytest.raises(CheckpointError) as info:
        load_teacher(teacher_net(width=8), path)
    message = str(info.value)
    assert str(path) in message and "shape of 0.weight: model (8, 4), checkpoint (16, 4)" in message
    assert "tests.teacher_net" in message  # says which model config wrote it

    path = write_run(tmp_path / "other", nn.Sequential(nn.Linear(D, C)))
    with pytest.raises(CheckpointError) as info:
        load_teacher(teacher_net(), path)
    assert "missing: 1.running_mean" in str(info.value)
    assert str(path) in str(info.value)
