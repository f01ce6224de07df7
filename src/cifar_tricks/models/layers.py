"""Building blocks shared by several model families: written once, reused everywhere.

- `ConvBnAct`: conv -> BatchNorm -> activation, the most repeated triple of CNNs.
- `SqueezeExcite`: channel gating (Hu et al. 2018, "Squeeze-and-Excitation Networks").
- `DropPath`: stochastic depth (Huang et al. 2016, "Deep Networks with Stochastic Depth").
- `shake_shake`: Shake-Shake mixing of two branches (Gastaldi 2017, "Shake-Shake regularization").
- `ShakeDrop`: ShakeDrop regularisation of a residual branch (Yamada et al. 2018).

Every random draw is made on the input's device and dtype, so models run on CPU and CUDA alike.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

__all__ = ["Classifier", "make_stages", "ConvBnAct", "SqueezeExcite", "DropPath", "ShakeShake", "shake_shake", "ShakeDrop",
           "ShakeDropFunction"]


class Classifier(nn.Module):
    """The surface every model of the zoo shares: `forward(x) = forward_head(forward_features(x))`.

    Subclasses set `num_features` and either define `self.stem` and `self.layers` (the default
    `forward_features` runs one then the other) or override `forward_features`; the default head,
    global average pooling (`self.pool`) then a linear layer (`self.fc`), is what most CNNs end
    with. Models with another head override `forward_head`. KD, EMA and the tests rely on this.
    """

    num_features: int

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.stem(x))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def make_stages(block: Callable[[int, int, int], nn.Module], in_channels: int,
                widths: Sequence[int], depths: Sequence[int], first_strides: Sequence[int] = (1, 2, 2, 2),
                expansion: int = 1) -> tuple[nn.Sequential, int]:
    """Stages of residual blocks, the body of the ResNet-like families.

    Stage i holds `depths[i]` blocks `block(in_channels, widths[i], stride)` of output width
    `widths[i] * expansion`; its first block has stride `first_strides[i]`, the others 1.
    Returns the stages (a Sequential of Sequentials) and their output channels.
    """
    stages = []
    for width, depth, stride in zip(widths, depths, first_strides):
        blocks = []
        for j in range(depth):
            blocks.append(block(in_channels, width, stride if j == 0 else 1))
            in_channels = width * expansion
        stages.append(nn.Sequential(*blocks))
    return nn.Sequential(*stages), in_channels


def _per_sample(x: torch.Tensor, draw: Callable[..., torch.Tensor]) -> torch.Tensor:
    """A random tensor of shape (B, 1, 1, ...) that broadcasts over all but the batch dim."""
    return draw((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device, dtype=x.dtype)


class ConvBnAct(nn.Sequential):
    """Conv2d -> BatchNorm2d -> activation (None: identity).

    The conv has no bias by default (BatchNorm's shift makes it redundant); `bias=True` rebuilds
    reference models that kept one, so their parameter counts match.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, padding: int | None = None, groups: int = 1,
                 act_layer: Callable[[], nn.Module] | None = nn.ReLU, bias: bool = False) -> None:
        padding = kernel_size // 2 if padding is None else padding
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups,
                      bias=bias),
            nn.BatchNorm2d(out_channels),
            act_layer() if act_layer is not None else nn.Identity(),
        )


class SqueezeExcite(nn.Module):
    """x * gate(fc2(act(fc1(avgpool(x))))) with the two fully connected layers as 1x1 convs.

    Args:
        channels: input and output channels.
        rd_channels: width of the bottleneck (e.g. channels // 16).
        act_layer, gate_layer: the inner activation and the gate (sigmoid in the paper).
        bias: biases in the two layers (some reference ports have none).
    """

    def __init__(self, channels: int, rd_channels: int, act_layer: Callable[[], nn.Module] = nn.ReLU,
                 gate_layer: Callable[[], nn.Module] = nn.Sigmoid, bias: bool = True) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, rd_channels, 1, bias=bias)
        self.act = act_layer()
        self.fc2 = nn.Conv2d(rd_channels, channels, 1, bias=bias)
        self.gate = gate_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


class DropPath(nn.Module):
    """Drop a residual branch at random during training (stochastic depth).

    Args:
        drop_prob: probability of dropping the branch.
        per_sample: one gate per sample (timm) or one per batch (Huang et al. 2016).
        scale_by_keep: divide kept branches by the survival probability in training (so eval is
            the identity), or, as in the paper, leave training unscaled and multiply the branch by
            the survival probability in eval.
    """

    def __init__(self, drop_prob: float = 0.0, per_sample: bool = True,
                 scale_by_keep: bool = True) -> None:
        super().__init__()
        self.drop_prob, self.per_sample, self.scale_by_keep = drop_prob, per_sample, scale_by_keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep = 1.0 - self.drop_prob
        if not self.training or self.drop_prob == 0.0:
            return x if self.scale_by_keep else x * keep
        shape = (x.shape[0] if self.per_sample else 1,) + (1,) * (x.dim() - 1)
        mask = torch.empty(shape, device=x.device, dtype=x.dtype).bernoulli_(keep)
        return x * mask / keep if self.scale_by_keep else x * mask

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}, per_sample={self.per_sample}"


class ShakeShake(torch.autograd.Function):
    """alpha * a + (1 - alpha) * b forward, beta / (1 - beta) backward; alpha, beta ~ U(0, 1)
    per sample and independent ("Shake-Shake-Image" of Gastaldi 2017)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        alpha = _per_sample(a, torch.rand)
        ctx.save_for_backward(alpha)  # kept only for shape, dtype and device of beta
        return alpha * a + (1 - alpha) * b

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        beta = torch.rand_like(ctx.saved_tensors[0])
        return beta * grad, (1 - beta) * grad


def shake_shake(a: torch.Tensor, b: torch.Tensor, training: bool) -> torch.Tensor:
    """Shake-Shake in training; the expectation 0.5 * (a + b) in evaluation."""
    return ShakeShake.apply(a, b) if training else 0.5 * (a + b)


class ShakeDropFunction(torch.autograd.Function):
    """(b + alpha (1 - b)) x forward and (b + beta (1 - b)) g backward, with a per-sample gate
    b ~ Bernoulli(1 - p), alpha ~ U(-1, 1) and an independent beta ~ U(0, 1) (Yamada et al. 2018)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, drop_prob: float) -> torch.Tensor:
        gate = _per_sample(x, torch.empty).bernoulli_(1.0 - drop_prob)
        alpha = _per_sample(x, torch.empty).uniform_(-1.0, 1.0)
        ctx.save_for_backward(gate)
        return (gate + alpha * (1 - gate)) * x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (gate,) = ctx.saved_tensors
        beta = torch.rand_like(gate)
        return (gate + beta * (1 - gate)) * grad, None


class ShakeDrop(nn.Module):
    """ShakeDrop on a residual branch; evaluation uses the expectation (1 - p) x."""

    def __init__(self, drop_prob: float) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return ShakeDropFunction.apply(x, self.drop_prob)
        return (1.0 - self.drop_prob) * x

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"
