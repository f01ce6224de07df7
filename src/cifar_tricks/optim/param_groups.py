"""Parameter groups for weight decay, and the optimizer built from an `optim` config node.

"No bias decay" (He et al. 2019, "Bag of Tricks for Image Classification with Convolutional
Neural Networks", section 3.1): weight decay only on the weights of convolution and linear
layers; biases and the scale/shift of normalisation layers are not decayed. The seed's README
claimed this trick but its training path decayed every parameter; here `no_decay_bias_bn: true`
in any `conf/optim` config turns it on.
"""
from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.optim import Optimizer

__all__ = ["NORM_LAYERS", "param_groups", "create_optimizer"]

# Normalisation layers whose parameters are a per-channel scale and shift. _NormBase covers
# BatchNorm*, SyncBatchNorm and InstanceNorm*.
NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)


def _is_decayed(module: nn.Module, name: str, param: nn.Parameter) -> bool:
    """Whether `param` (attribute `name` of `module`) is a weight that weight decay should shrink:
    a matrix or kernel (ndim > 1) that is neither a bias nor owned by a normalisation layer.
    The ndim test also catches the 1-d scales of normalisation layers written by hand (e.g. a
    channel LayerNorm), which no class check can list."""
    return param.ndim > 1 and name != "bias" and not isinstance(module, NORM_LAYERS)


def param_groups(model: nn.Module, weight_decay: float,
                 no_decay_bias_bn: bool) -> list[dict[str, Any]]:
    """The optimizer's parameter groups for `model`.

    With `no_decay_bias_bn` false: one group of every parameter with `weight_decay`. With it true:
    the decayed weights (see `_is_decayed`) with `weight_decay`, then every other parameter (biases,
    normalisation scales and shifts) with weight decay 0. Empty groups are left out. Each parameter
    appears once even if modules share it.
    """
    if not no_decay_bias_bn:
        return [{"params": list(model.parameters()), "weight_decay": weight_decay}]
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if id(param) in seen:  # shared (tied) parameters: the first owner decides
                continue
            seen.add(id(param))
            (decay if _is_decayed(module, name, param) else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def create_optimizer(optim_cfg: DictConfig, model: nn.Module) -> Optimizer:
    """Build the optimizer of an `optim` config node for `model`.

    The node is a `_partial_` optimizer (`_target_` a torch.optim class or ours) plus the key
    `no_decay_bias_bn`, which is ours and not the optimizer's: it is removed before instantiation
    and decides the parameter groups (`param_groups`), each carrying the node's weight decay.
    """
    # A resolved plain copy: the composed config is read-only (struct mode) and must stay whole.
    node = OmegaConf.to_container(optim_cfg, resolve=True)
    no_decay_bias_bn = node.pop("no_decay_bias_bn", False)
    if not isinstance(no_decay_bias_bn, bool):
        raise ValueError(f"no_decay_bias_bn must be true or false, "
                         f"got {no_decay_bias_bn!r}")
    node["_partial_"] = True  # the parameters are ours to pass, whatever the file says
    weight_decay = node.get("weight_decay", 0.0) or 0.0
    factory = instantiate(node)
    return factory(param_groups(model, weight_decay=weight_decay,
                                no_decay_bias_bn=no_decay_bias_bn))
