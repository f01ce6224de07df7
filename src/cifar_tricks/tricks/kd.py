"""Knowledge distillation (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural
Network", https://arxiv.org/abs/1503.02531):

    loss = (1 - alpha) * base(z_s, y) + alpha * T^2 * KL( softmax(z_t / T) || softmax(z_s / T) )

with the KL summed over classes and averaged over the batch (`batchmean`, the true KL per sample).
The T^2 factor keeps the soft term's gradient magnitude independent of T (its gradient scales as
1/T^2). The teacher sees the same augmented batch as the student, so the loss takes the images.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import evaluation_weights, read_checkpoint
from ..errors import CheckpointError
from ..losses import SoftTargetCrossEntropy
from .base import Stage, Trick

__all__ = ["KDLoss", "KnowledgeDistillation", "load_teacher"]


def check_distillation(temperature: float, alpha: float) -> None:
    """Refuse a non-positive temperature or an alpha outside [0, 1] (ValueError naming it)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")


class KDLoss(nn.Module):
    """Hinton distillation from a frozen `teacher`, on top of the `base` loss.

    Args:
        teacher: the trained teacher network, on the device of the images; it is frozen
            (no gradients) and kept in eval mode, whatever `.train()` is called on this loss.
        temperature: T, softening both distributions (4 is common on CIFAR).
        alpha: weight of the distillation term; 0 gives the base loss alone.
        base: the loss on the (soft) targets, `base(logits, targets)`; cross-entropy if None.

    `forward(student_logits, targets, images)`: `images` is the batch the student saw; the
    teacher runs on it under `torch.no_grad()` (and under the caller's autocast, if any).
    """

    def __init__(self, teacher: nn.Module, temperature: float = 4.0, alpha: float = 0.9,
                 base: nn.Module | None = None) -> None:
        super().__init__()
        check_distillation(temperature, alpha)
        self.teacher = teacher.eval().requires_grad_(False)
        self.temperature = temperature
        self.alpha = alpha
        self.base = base if base is not None else SoftTargetCrossEntropy()

    def train(self, mode: bool = True) -> KDLoss:
        super().train(mode)
        self.teacher.eval()  # BN statistics and dropout of the teacher stay those it was trained to
        return self

    def soft_term(self, student_logits: torch.Tensor,
                  teacher_logits: torch.Tensor) -> torch.Tensor:
        """T^2 * KL(softmax(z_t/T) || softmax(z_s/T)), batch mean, computed in fp32."""
        t = self.temperature
        # fp32: bf16 log-probabilities of near-equal distributions make the KL mostly rounding
        log_p_student = F.log_softmax(student_logits.float() / t, dim=1)
        log_p_teacher = F.log_softmax(teacher_logits.float() / t, dim=1)
        kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
        return kl * t * t

    def forward(self, student_logits: torch.Tensor, targets: torch.Tensor,
                images: torch.Tensor) -> torch.Tensor:
        base = self.base(student_logits, targets)
        if self.alpha == 0.0:  # nothing to distil: skip the teacher's forward
            return base
        with torch.no_grad():
            teacher_logits = self.teacher(images)
        return (1 - self.alpha) * base + self.alpha * self.soft_term(student_logits,
                                                                     teacher_logits)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, alpha={self.alpha}"


def load_teacher(model: nn.Module, checkpoint: str | Path) -> nn.Module:
    """Load the weights one of our runs evaluated and reported into `model`; return it in eval
    mode.

    `checkpoint` is a run's `checkpoints/last.pt` or the run folder itself; the weights are the
    checkpoint's evaluation weights (the EMA's when that run averaged, `checkpoint.
    evaluation_weights`), so the teacher is the model behind the run's reported accuracy.
    `model` must be built with the same model config as that run. Raises CheckpointError naming
    the file and the fix when it is missing, unreadable, not ours, or its weights do not fit.
    """
    path = Path(checkpoint)
    if path.is_dir():
        path = path / "checkpoints" / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"teacher checkpoint {path} does not exist. Point the teacher at "
                              f"the checkpoints/last.pt (or the folder) of a finished run.")
    state = read_checkpoint(path, "Point the teacher at an intact checkpoints/last.pt.")
    weights = evaluation_weights(state) if isinstance(state, dict) else None
    if weights is None:
        raise CheckpointError(f"{path} is not a cifar-tricks checkpoint (no 'model' state dict). "
                              f"Point the teacher at the checkpoints/last.pt of one of our runs.")
    problems = _state_dict_mismatch(model.state_dict(), weights)
    if problems:
        config = state.get("config")
        written_by = config.get("model") if isinstance(config, dict) else None
        hint = f" It was written by the model config {written_by}." if written_by else ""
        raise CheckpointError(
            f"the weights in {path} do not fit the teacher model {type(model).__name__}:\n  "
            + "\n  ".join(problems[:10]) + (f"\n  ... and {len(problems) - 10} more"
                                            if len(problems) > 10 else "")
            + f"\nBuild the teacher with the model config of the run that wrote it.{hint}")
    model.load_state_dict(weights)
    return model.eval()


def _state_dict_mismatch(expected: dict[str, torch.Tensor],
                         given: dict[str, torch.Tensor]) -> list[str]:
    """Readable differences: missing and unexpected keys, then shape mismatches."""
    problems = [f"missing: {k}" for k in expected if k not in given]
    problems += [f"unexpected: {k}" for k in given if k not in expected]
    problems += [f"shape of {k}: model {tuple(v.shape)}, checkpoint {tuple(given[k].shape)}"
                 for k, v in expected.items()
                 if k in given and tuple(v.shape) != tuple(getattr(given[k], "shape", ()))]
    return problems


class KnowledgeDistillation(Trick):
    """`trick=[kd] trick.kd.teacher=<model name> trick.kd.checkpoint=<run>/checkpoints/last.pt`.

    The teacher (a model of the zoo, with the weights of one of our runs) is built and loaded
    when the trick is, so a missing or mismatched checkpoint stops the run before training.
    It sees the same augmented batch as the student, in eval mode, without gradients.
    """

    stage = Stage.wrap_loss  # wraps the (possibly label-smoothed) cross-entropy

    def __init__(self, teacher: str, checkpoint: str, num_classes: int,
                 temperature: float = 4.0, alpha: float = 0.9) -> None:
        from ..models import create_model, list_models

        check_distillation(temperature, alpha)  # before the teacher is loaded
        if teacher not in list_models():
            raise ValueError(f"teacher={teacher!r} is not a model of the zoo; use the model name "
                             f"of the teacher's run (e.g. resnet18, wideresnet)")
        self.teacher_name, self.checkpoint = teacher, checkpoint
        self.temperature, self.alpha = temperature, alpha
        self._teacher = load_teacher(create_model(teacher, num_classes=num_classes), checkpoint)

    def wrap_criterion(self, criterion: nn.Module, model: nn.Module) -> nn.Module:
        self._teacher.to(next(model.parameters()).device)
        return KDLoss(self._teacher, temperature=self.temperature, alpha=self.alpha,
                      base=criterion)
