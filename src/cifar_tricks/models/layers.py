"""Building blocks and construction rules shared by several model families: written once here.

Model surface and body:

- `Classifier`: the base class of every model, ``forward(x) = forward_head(forward_features(x))``.
- `make_stages`: stages of residual blocks with a strided first block, the ResNet-like body.

Rules that models look up by name or apply to their layers:

- `get_act_layer`: an activation class from its name ("relu", "silu", ...), so YAML can choose it;
  `ActLayer` is the type of the activation arguments that accept it.
- `drop_path_rates`: per-block drop probabilities rising with depth, one named rule per reference.
- `init_weights`: initialise every conv, linear and BatchNorm layer of a model by a per-kind rule;
  `ParamInit` builds such a rule from tensor initialisers, and `HE_NORMAL`, `BN_IDENTITY` and
  `ZERO_BIAS` are the rules the zoo shares.

Layers:

- `ConvBnAct`: conv -> BatchNorm -> activation, the most repeated triple of CNNs.
- `SqueezeExcite`: channel gating (Hu et al. 2018, "Squeeze-and-Excitation Networks").
- `DropPath`: stochastic depth (Huang et al. 2016, "Deep Networks with Stochastic Depth").
- `ShakeShake` / `shake_shake`: Shake-Shake mixing of two branches (Gastaldi 2017,
  "Shake-Shake regularization"), the autograd function and its train/eval wrapper.
- `ShakeDropFunction` / `ShakeDrop`: ShakeDrop regularisation of a residual branch (Yamada et al.
  2018, "ShakeDrop Regularization for Deep Residual Learning"), function and module.

Every random draw is made on the input's device and dtype, so models run on CPU and CUDA alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

__all__ = ["Classifier", "make_stages", "get_act_layer", "drop_path_rates", "ParamInit",
           "init_weights", "HE_NORMAL", "BN_IDENTITY", "ZERO_BIAS", "ConvBnAct", "SqueezeExcite",
           "DropPath", "ShakeShake", "shake_shake", "ShakeDrop", "ShakeDropFunction"]

ActLayer = Callable[[], nn.Module]
"""An activation class (or factory): called with no arguments, it builds the layer."""


class Classifier(nn.Module):
    """The surface every model of the zoo shares: `forward(x) = forward_head(forward_features(x))`.

    Subclasses set `num_features` and either define `self.stem` and `self.layers` (the default
    `forward_features` runs one then the other) or override `forward_features`; the default head,
    global average pooling (`self.pool`) then a linear layer (`self.fc`), is what most CNNs end
    with. Models with another head override `forward_head`. tests/test_models.py checks this
    surface for every registered model; training, KD and EMA only call `forward`.
    """

    num_features: int

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.stem(x))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def make_stages(block: Callable[[int, int, int], nn.Module], in_channels: int,
                widths: Sequence[int], depths: Sequence[int],
                first_strides: Sequence[int] = (1, 2, 2, 2),
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


_ACT_LAYERS: dict[str, ActLayer] = {
    "relu": nn.ReLU, "relu6": nn.ReLU6, "gelu": nn.GELU, "silu": nn.SiLU, "swish": nn.SiLU,
    "hardswish": nn.Hardswish, "mish": nn.Mish, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU,
    "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "identity": nn.Identity,
}


def get_act_layer(name_or_layer: str | ActLayer | None) -> ActLayer | None:
    """The activation class for `name_or_layer`, as timm's `get_act_layer`.

    A name is one of relu, relu6, gelu, silu (alias swish), hardswish, mish, leaky_relu, elu,
    sigmoid, tanh and identity, in any case; a class or other callable, or None (no activation),
    is returned as given. Constructors pass their `act_layer` through it, so it can be a class
    from Python or a name from YAML.
    """
    if not isinstance(name_or_layer, str):
        return name_or_layer
    try:
        return _ACT_LAYERS[name_or_layer.lower()]
    except KeyError:
        raise ValueError(f"unknown activation name_or_layer={name_or_layer!r}; accepted names: "
                         f"{', '.join(_ACT_LAYERS)}") from None


# rule name -> (rate, L, dtype) -> the drop probabilities of blocks 0..L-1
_DROP_PATH_RULES: dict[str, Callable[[float, int, torch.dtype], torch.Tensor]] = {
    "linear": lambda rate, n, dtype: torch.linspace(0, rate, n, dtype=dtype),
    "huang": lambda rate, n, dtype: rate * torch.arange(1, n + 1, dtype=dtype) / n,
    "efficientnet": lambda rate, n, dtype: rate * torch.arange(n, dtype=dtype) / n,
}


def drop_path_rates(rate: float, num_blocks: int, rule: str = "linear",
                    dtype: torch.dtype = torch.float64) -> list[float]:
    """Drop probability of each of `num_blocks` blocks (first block first), rising with depth.

    Rules, for block i = 0..L-1 of L (l = i + 1 counts from 1):

    - "linear": ``rate * i / (L - 1)``, 0 at the first block and `rate` at the last: timm's
      `calculate_drop_path_rates`, i.e. ``torch.linspace(0, rate, L)`` (Swin, Liu et al. 2021;
      CCT, Hassani et al. 2021; CvT, Wu et al. 2021), and the survival 1 -> p_L of the
      stochastic-depth ResNet that weiaicunzai/pytorch-cifar100 ports.
    - "huang": ``rate * l / L``, the linear decay rule p_l = 1 - l / L (1 - p_L) of Huang et al.
      2016 ("Deep Networks with Stochastic Depth") with `rate` = 1 - p_L, which ShakeDrop
      (Yamada et al. 2018) and its PyramidNet use: even the first block can drop.
    - "efficientnet": ``rate * i / L``, EfficientNet's ``drop_connect_rate * block_idx /
      num_blocks`` (Tan & Le 2019, the TF/Keras reference): the last block stays below `rate`.

    `dtype` is the precision of the arithmetic: float64 gives the closed form in Python floats;
    float32 gives the values of the reference code that calls ``torch.linspace`` with its
    default dtype (timm, Swin, CCT), which differ from the closed form in the 8th digit.
    """
    try:
        rates = _DROP_PATH_RULES[rule]
    except KeyError:
        raise ValueError(f"unknown drop-path rule {rule!r}; one of {', '.join(_DROP_PATH_RULES)}"
                         ) from None
    return rates(rate, num_blocks, dtype).tolist()


@dataclass(frozen=True)
class ParamInit:
    """An initialisation rule for one layer: `weight` and `bias` fill the layer's weight and bias
    in place (e.g. `nn.init.kaiming_normal_`); None keeps what the layer was built with, and a
    layer built without a bias has none to fill."""

    weight: Callable[[torch.Tensor], Any] | None = None
    bias: Callable[[torch.Tensor], Any] | None = None

    def __call__(self, module: nn.Module) -> None:
        if self.weight is not None:
            self.weight(module.weight)
        if self.bias is not None and module.bias is not None:
            self.bias(module.bias)


HE_NORMAL = ParamInit(nn.init.kaiming_normal_)
"""He et al. 2015: weight ~ N(0, 2 / fan_in), bias as built."""
BN_IDENTITY = ParamInit(nn.init.ones_, nn.init.zeros_)
"""Scale 1, shift 0: BatchNorm starts as the identity on normalised inputs."""
ZERO_BIAS = ParamInit(bias=nn.init.zeros_)
"""Bias 0, weight as built."""


def init_weights(model: nn.Module, conv: Callable[[nn.Module], None] | None = None,
                 linear: Callable[[nn.Module], None] | None = None,
                 batchnorm: Callable[[nn.Module], None] | None = None) -> None:
    """Apply `conv` to every nn.Conv2d of `model`, `linear` to every nn.Linear and `batchnorm` to
    every nn.BatchNorm2d (None: leave that kind as built).

    The layers are visited in `model.modules()` order, so a seed fixes every draw.
    """
    rules = {nn.Conv2d: conv, nn.Linear: linear, nn.BatchNorm2d: batchnorm}
    for module in model.modules():
        for kind, rule in rules.items():
            if rule is not None and isinstance(module, kind):
                rule(module)


def _per_sample(x: torch.Tensor, draw: Callable[..., torch.Tensor]) -> torch.Tensor:
    """A random tensor of shape (B, 1, 1, ...) that broadcasts over all but the batch dim."""
    return draw((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device, dtype=x.dtype)


class ConvBnAct(nn.Sequential):
    """Conv2d -> BatchNorm2d -> activation (a class, a `get_act_layer` name, or None: identity).

    The conv has no bias by default (BatchNorm's shift makes it redundant); `bias=True` rebuilds
    reference models that kept one, so their parameter counts match.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, padding: int | None = None, groups: int = 1,
                 act_layer: str | ActLayer | None = nn.ReLU, bias: bool = False) -> None:
        padding = kernel_size // 2 if padding is None else padding
        act_layer = get_act_layer(act_layer)
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
        act_layer, gate_layer: the inner activation and the gate (sigmoid in the paper), classes
            or `get_act_layer` names.
        bias: biases in the two layers (some reference ports have none).
    """

    def __init__(self, channels: int, rd_channels: int, act_layer: str | ActLayer = nn.ReLU,
                 gate_layer: str | ActLayer = nn.Sigmoid, bias: bool = True) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, rd_channels, 1, bias=bias)
        self.act = get_act_layer(act_layer)()
        self.fc2 = nn.Conv2d(rd_channels, channels, 1, bias=bias)
        self.gate = get_act_layer(gate_layer)()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


class DropPath(nn.Module):
    """Drop a residual branch at random during training (stochastic depth).

    Every model builds it as ``DropPath(rate)`` whatever the rate: at rate 0 it is the identity.

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
    """(b + alpha (1 - b)) x forward and (b + beta (1 - b)) g backward, with a gate
    b ~ Bernoulli(1 - p), alpha ~ U(-1, 1) and an independent beta ~ U(0, 1) (Yamada et al.
    2018). alpha and beta are drawn per sample; the gate per sample (`gate_per_sample`, the
    default) or once for the whole mini-batch (False, what the seed's PyramidNet did)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, drop_prob: float,
                gate_per_sample: bool = True) -> torch.Tensor:
        gate_shape = (x.shape[0] if gate_per_sample else 1,) + (1,) * (x.dim() - 1)
        gate = torch.empty(gate_shape, device=x.device, dtype=x.dtype).bernoulli_(1.0 - drop_prob)
        alpha = _per_sample(x, torch.empty).uniform_(-1.0, 1.0)
        ctx.save_for_backward(gate)
        return (gate + alpha * (1 - gate)) * x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (gate,) = ctx.saved_tensors
        beta = _per_sample(grad, torch.rand)  # per sample even when the gate is per batch
        return (gate + beta * (1 - gate)) * grad, None, None


class ShakeDrop(nn.Module):
    """ShakeDrop on a residual branch; evaluation uses the expectation (1 - p) x.

    Args:
        drop_prob: p, the probability that the gate is off (the branch is shaken).
        gate_per_sample: draw the gate b per sample (True) or one gate per mini-batch (False:
            every sample of a batch is shaken or none is, as in the seed's PyramidNet code);
            alpha and beta are per sample either way.
    """

    def __init__(self, drop_prob: float, gate_per_sample: bool = True) -> None:
        super().__init__()
        self.drop_prob, self.gate_per_sample = drop_prob, gate_per_sample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return ShakeDropFunction.apply(x, self.drop_prob, self.gate_per_sample)
        return (1.0 - self.drop_prob) * x

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}, gate_per_sample={self.gate_per_sample}"
