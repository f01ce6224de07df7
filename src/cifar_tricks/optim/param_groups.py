"""Parameter groups for weight decay, and the optimizer built from an `optim` config node.

"No bias decay" (He et al. 2019, "Bag of Tricks for Image Classification with Convolutional
Neural Networks", section 3.1): weight decay only on the weights of convolution and linear
layers; biases and the scale/shift of normalisation layers are not decayed. The seed's README
claimed this trick but its training path decayed every parameter; here `no_decay_bias_bn: true`
in any `conf/optim` config turns it on.

Scaled normalisation-bias learning rate (airbench, Jordan 2024, arXiv 2404.00498: `bias_scaler`
64): `norm_bias_lr_scale: s` gives the biases (shifts) of normalisation layers their own group
with lr x s and weight decay / s, so that their decay step lr x weight_decay x p, in the coupled
form of SGD's L2 term (and AdamW's decoupled one), stays what it is for the other parameters
(with `no_decay_bias_bn` it is 0 either way). Schedules scale each group's lr by the same factor
(every torch scheduler derives a group's lr from its own initial lr), so the ratio s holds all
run, except near a schedule's absolute floor `eta_min` (one lr for all groups: 0 by default,
1e-4 in cosine_restarts). The LR finder sets one lr for all groups. The key is optional (absent:
1.0, one group as before): `+optim.norm_bias_lr_scale=64`.
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


def _is_norm_bias(module: nn.Module, name: str) -> bool:
    return name == "bias" and isinstance(module, NORM_LAYERS)


def param_groups(model: nn.Module, weight_decay: float, no_decay_bias_bn: bool,
                 norm_bias_lr_scale: float = 1.0, lr: float | None = None) -> list[dict[str, Any]]:
    """The optimizer's parameter groups for `model`.

    With `no_decay_bias_bn` false: one group of every parameter with `weight_decay`. With it true:
    the decayed weights (see `_is_decayed`) with `weight_decay`, then every other parameter (biases,
    normalisation scales and shifts) with weight decay 0. With `norm_bias_lr_scale` s other than
    1, the biases of normalisation layers leave those groups for a last one with lr `lr` x s and
    their weight decay divided by s. Empty groups are left out. Each parameter appears once even
    if modules share it.
    """
    scaled = norm_bias_lr_scale != 1.0
    if not no_decay_bias_bn and not scaled:
        return [{"params": list(model.parameters()), "weight_decay": weight_decay}]
    if scaled and lr is None:
        raise ValueError(f"norm_bias_lr_scale={norm_bias_lr_scale} scales the optimizer's lr, "
                         f"which the optim node does not set: set optim.lr")
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    norm_bias: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if id(param) in seen:  # shared (tied) parameters: the first owner decides
                continue
            seen.add(id(param))
            if scaled and _is_norm_bias(module, name):
                norm_bias.append(param)
            elif not no_decay_bias_bn or _is_decayed(module, name, param):
                decay.append(param)
            else:
                no_decay.append(param)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if norm_bias:
        norm_decay = 0.0 if no_decay_bias_bn else weight_decay
        groups.append({"params": norm_bias, "lr": lr * norm_bias_lr_scale,
                       "weight_decay": norm_decay / norm_bias_lr_scale})
    return [g for g in groups if g["params"]]


def create_optimizer(optim_cfg: DictConfig, model: nn.Module) -> Optimizer:
    """Build the optimizer of an `optim` config node for `model`.

    The node is a `_partial_` optimizer (`_target_` a torch.optim class or ours) plus the keys
    `no_decay_bias_bn` and, optionally, `norm_bias_lr_scale` (default 1.0), which are ours and not
    the optimizer's: they are removed before instantiation and decide the parameter groups
    (`param_groups`), each carrying the node's weight decay (and the scaled group its own lr).
    """
    # A resolved plain copy: the composed config is read-only (struct mode) and must stay whole.
    node = OmegaConf.to_container(optim_cfg, resolve=True)
    no_decay_bias_bn = node.pop("no_decay_bias_bn", False)
    if not isinstance(no_decay_bias_bn, bool):
        raise ValueError(f"no_decay_bias_bn must be true or false, "
                         f"got {no_decay_bias_bn!r}")
    norm_bias_lr_scale = node.pop("norm_bias_lr_scale", 1.0)
    if isinstance(norm_bias_lr_scale, bool) or not isinstance(norm_bias_lr_scale, (int, float)) \
            or not norm_bias_lr_scale > 0:
        raise ValueError(f"norm_bias_lr_scale must be a positive number (airbench: 64), "
                         f"got {norm_bias_lr_scale!r}")
    node["_partial_"] = True  # the parameters are ours to pass, whatever the file says
    weight_decay = node.get("weight_decay", 0.0) or 0.0
    factory = instantiate(node)
    return factory(param_groups(model, weight_decay=weight_decay,
                                no_decay_bias_bn=no_decay_bias_bn,
                                norm_bias_lr_scale=float(norm_bias_lr_scale),
                                lr=node.get("lr")))
