"""Weight initialisation schemes, applied over a whole model after it is built.

* He et al. 2015 ("Delving Deep into Rectifiers", https://arxiv.org/abs/1502.01852): conv weights
  ~ N(0, 2 / fan_out) with fan_out = out_channels * kernel area / groups (the "fan_out" mode keeps
  the backward pass' gradient variance constant through ReLU layers); linear weights ~ N(0, 0.01^2)
  as in torchvision's VGG/ResNet recipes.
* Glorot & Bengio 2010 ("Understanding the difficulty of training deep feedforward neural
  networks"): conv and linear weights ~ U(-a, a), a = sqrt(6 / (fan_in + fan_out)), i.e.
  std = sqrt(2 / (fan_in + fan_out)).

Both set every conv/linear bias to 0 and every normalisation layer to the identity (weight 1,
bias 0). They overwrite the model's own initialisation, including special ones such as a
zero-initialised last BN per residual block; parameters of other modules (embeddings, position
tables, layer-scale) are left as the model made them.
"""
from __future__ import annotations

from torch import nn

from .base import Stage, Trick

__all__ = ["KaimingInit", "XavierInit", "kaiming_init", "xavier_init"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm,
          nn.LayerNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)


def _zero_bias(module: nn.Module) -> None:
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)


def _identity_norm(module: nn.Module) -> None:
    # affine=False / elementwise_affine=False layers have weight None: nothing to set
    if getattr(module, "weight", None) is not None:
        nn.init.ones_(module.weight)
    _zero_bias(module)


def kaiming_init(model: nn.Module) -> nn.Module:
    """He init: conv N(0, 2/fan_out) (ReLU gain), linear N(0, 0.01^2), biases 0, norms 1/0."""
    for module in model.modules():
        if isinstance(module, _CONVS):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            _zero_bias(module)
        elif isinstance(module, nn.Linear):
            # small logits at init: every class starts near-uniform, as in torchvision's recipes
            nn.init.normal_(module.weight, 0.0, 0.01)
            _zero_bias(module)
        elif isinstance(module, _NORMS):
            _identity_norm(module)
    return model


def xavier_init(model: nn.Module) -> nn.Module:
    """Glorot init: conv and linear U(-a, a), a = sqrt(6/(fan_in+fan_out)), biases 0, norms 1/0."""
    for module in model.modules():
        if isinstance(module, (*_CONVS, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            _zero_bias(module)
        elif isinstance(module, _NORMS):
            _identity_norm(module)
    return model


class KaimingInit(Trick):
    """`trick=[kaiming_init]`: re-initialise the model with `kaiming_init` before training."""

    stage = Stage.init_weights  # before anything copies the weights (EMA)
    exclusive = "a weight initialisation"

    def setup_model(self, model: nn.Module) -> None:
        kaiming_init(model)


class XavierInit(Trick):
    """`trick=[xavier_init]`: re-initialise the model with `xavier_init` before training."""

    stage = Stage.init_weights
    exclusive = "a weight initialisation"

    def setup_model(self, model: nn.Module) -> None:
        xavier_init(model)
