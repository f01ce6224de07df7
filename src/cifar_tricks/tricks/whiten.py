"""Patch-whitening first layer initialised from the data (airbench, Jordan 2024, "94% on CIFAR-10
in 3.29 Seconds on a Single GPU", arXiv 2404.00498, section 3.2; `init_whitening_conv` of
KellerJordan/cifar10-airbench).

For a first layer that is a k x k conv over C channels with 2 C k^2 outputs: take every k x k
patch (stride 1, no padding) of the first `num_images` normalised training images, flatten the
patches to vectors p of d = C k^2 numbers, and form Sigma = mean(p p^T) (airbench's estimate: the
images are normalised, so it is not centred again). With the eigendecomposition Sigma = V diag(l)
V^T, the filters are v_i / sqrt(l_i + eps) for the eigenvalues in descending order, followed by
the same filters negated: the first d outputs whiten the patches (their second moment is
diag(l_i / (l_i + eps)), the identity up to eps) and the last d are their negatives, so that a
following ReLU-like activation keeps both signs. The weight is then frozen; the bias trains for
the first `bias_epochs` epochs only (airbench's `whiten_bias_epochs`, 3).
"""
from __future__ import annotations

import torch
from torch import nn

from ..data import ImageData, normalisation
from ..errors import ConfigError
from .base import Stage, TrainState, Trick

__all__ = ["WhitenInit", "first_conv", "normalised", "patch_moment", "whitening_weights"]


def first_conv(model: nn.Module) -> nn.Conv2d:
    """The model's first layer: its first nn.Conv2d in `model.modules()` order."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise ConfigError("trick whiten_init needs a model whose first layer is a conv; this "
                          "model has none (use e.g. model=airbench94)")
    return conv


def normalised(images: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 images (N, C, H, W) as the loader feeds them: (x / 255 - mean) / std, float32,
    with the loader's arithmetic (`data.normalisation`)."""
    offset, scale = normalisation(mean, std, images.device)
    return (images.float() - offset) * scale


def patch_moment(images: torch.Tensor, kernel_size: tuple[int, int],
                 chunk: int = 1000) -> torch.Tensor:
    """mean(p p^T) over every kh x kw patch p (stride 1, flattened in (C, kh, kw) order, as a
    conv weight is) of the float images (N, C, H, W); float64, computed `chunk` images at a time."""
    kh, kw = kernel_size
    d = images.shape[1] * kh * kw
    total, count = torch.zeros(d, d, dtype=torch.float64, device=images.device), 0
    for part in images.split(chunk):
        flat = part.unfold(2, kh, 1).unfold(3, kw, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, d)
        total += (flat.T @ flat).double()
        count += len(flat)
    return total / count


def whitening_weights(moment: torch.Tensor, channels: int, kernel_size: tuple[int, int],
                      eps: float) -> torch.Tensor:
    """The (2d, C, kh, kw) weight of airbench's whitening conv for the patch moment `moment`
    (d x d): the eigenvectors scaled by 1 / sqrt(eigenvalue + eps), largest eigenvalue first,
    then the same filters negated."""
    eigenvalues, eigenvectors = torch.linalg.eigh(moment.cpu().double())
    scaled = (eigenvectors / torch.sqrt(eigenvalues + eps)).T.flip(0)
    filters = scaled.reshape(-1, channels, *kernel_size)
    return torch.cat((filters, -filters)).to(moment.device)


class WhitenInit(Trick):
    """`trick=[whiten_init]`: the model's first conv becomes airbench's frozen patch-whitening
    layer, computed from the first `num_images` training images; its bias trains in epochs
    1..`bias_epochs` only.

    Args:
        num_images: training images whose patches estimate the patch moment (airbench: 5000).
        eps: added to each eigenvalue before the inverse square root (airbench: 5e-4).
        bias_epochs: epochs (from the first) in which the layer's bias trains (airbench: 3).
    """

    # after the weight initialisations (kaiming_init would overwrite the whitening), before EMA
    # copies the weights; it freezes parameters, i.e. acts on what the optimizer updates
    stage = Stage.optimize

    def __init__(self, num_images: int = 5000, eps: float = 5e-4, bias_epochs: int = 3) -> None:
        if num_images < 1:
            raise ValueError(f"num_images must be at least 1, got {num_images}")
        if eps <= 0:
            raise ValueError(f"eps must be positive (it keeps 1 / sqrt(eigenvalue + eps) finite), "
                             f"got {eps}")
        if bias_epochs < 0:
            raise ValueError(f"bias_epochs must be 0 or more, got {bias_epochs}")
        self.num_images, self.eps, self.bias_epochs = num_images, eps, bias_epochs
        self._weight: torch.Tensor | None = None

    def setup_data(self, model: nn.Module, data: ImageData) -> None:
        conv = first_conv(model)
        channels, kernel = conv.in_channels, tuple(conv.kernel_size)
        width = 2 * channels * kernel[0] * kernel[1]
        if conv.groups != 1 or conv.out_channels != width:
            raise ConfigError(
                f"trick whiten_init needs the model's first layer to be a k x k conv with "
                f"2 x {channels} x k^2 outputs; its first conv is {conv} ({width} outputs for "
                f"its {kernel[0]}x{kernel[1]} kernel, no groups). Use e.g. model=airbench94")
        images = normalised(data.train.images[: self.num_images], data.mean, data.std)
        moment = patch_moment(images.to(conv.weight.device), kernel)
        self._weight = whitening_weights(moment, channels, kernel, self.eps)

    def setup_model(self, model: nn.Module) -> None:
        if self._weight is None:
            raise RuntimeError("WhitenInit.setup_data must see the training data before "
                               "setup_model (build.build_run calls them in that order)")
        conv = first_conv(model)
        with torch.no_grad():
            conv.weight.copy_(self._weight)
        conv.weight.requires_grad_(False)

    def on_epoch_start(self, model: nn.Module, state: TrainState) -> None:
        bias = first_conv(model).bias
        if bias is not None:
            bias.requires_grad_(state.epoch <= self.bias_epochs)
