"""The shared rules of models/layers.py against their definitions: drop rates rising with depth
(each family against the closed form of its reference), activations chosen by name, and the
weight initialisation of every model that sets its own."""

from __future__ import annotations

import math

import hydra.utils
import pytest
import torch
from torch import nn

from cifar_tricks.models import create_model
from cifar_tricks.models.efficientnet import MBConv
from cifar_tricks.models.layers import (
    BN_IDENTITY,
    HE_NORMAL,
    ZERO_BIAS,
    DropPath,
    ParamInit,
    drop_path_rates,
    get_act_layer,
    init_weights,
)
from conftest import compose_config

pytestmark = pytest.mark.usefixtures("one_thread")


# --- drop rates rising with depth ------------------------------------------------------------

def test_drop_path_rules_are_their_closed_forms() -> None:
    assert drop_path_rates(0.4, 5) == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])  # timm, Swin
    assert drop_path_rates(0.4, 4, "huang") == pytest.approx([0.1, 0.2, 0.3, 0.4])  # l / L
    assert drop_path_rates(0.4, 4, "efficientnet") == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert drop_path_rates(0.4, 1) == [0.0]  # a single block is the first one
    # float32 is what torch.linspace gives with its default dtype: 0.3 * 4 / 6 to 7 digits only
    rate32 = drop_path_rates(0.3, 7, dtype=torch.float32)[4]
    assert rate32 == pytest.approx(0.2, rel=1e-7) and rate32 != 0.2
    with pytest.raises(ValueError, match="huang"):
        drop_path_rates(0.1, 3, "cosine")


def _linear(rate: float, n: int) -> list[float]:
    """timm / Swin: 0 at the first block, `rate` at the last."""
    return [rate * i / (n - 1) for i in range(n)]


def _family_rates(name: str, model: nn.Module) -> list[float]:
    """Per-block drop probabilities of `model`, first block first."""
    modules = {
        "vision_transformer": lambda: [b.drop_path for b in model.blocks],
        "cct_7_3x1": lambda: [b.drop_path for b in model.blocks],
        "coatnet_0": lambda: [b.drop_path for s in model.stages for b in s],
        "swin_t": lambda: [b.drop_path for s in model.stages for b in list(s)[1:]],
        "cvt": lambda: [b.drop_path for s in model.stages for b in list(s)[2:]],
        "pyramidnet110": lambda: [b.shake_drop for s in model.layers for b in s],
        "stochastic_depth_resnet18": lambda: [b.drop_path for s in model.layers for b in s],
    }[name]()
    return [m.drop_prob for m in modules]


@pytest.mark.parametrize(("name", "kwargs", "expected"), [
    ("vision_transformer", {"drop_path_rate": 0.3}, _linear(0.3, 7)),
    ("cct_7_3x1", {}, _linear(0.1, 7)),  # SHI-Labs: linspace(0, 0.1, 7)
    ("coatnet_0", {"drop_path_rate": 0.3}, _linear(0.3, 2 + 3 + 5 + 2)),  # s1..s4, not the stem
    ("swin_t", {"drop_path_rate": 0.3}, _linear(0.3, 2 + 2 + 6 + 2)),
    ("cvt", {"drop_path_rate": 0.3}, _linear(0.3, 1 + 2 + 10)),
    # ShakeDrop's linear decay rule, p_L = 0.5: block k of L = 54 drops with 0.5 k / L
    ("pyramidnet110", {}, [0.5 * k / 54 for k in range(1, 55)]),
    # survival 1 - 0.5 (k - 1) / (L - 1): the first block always survives, the last with 1/2
    ("stochastic_depth_resnet18", {}, [0.5 * (k - 1) / 7 for k in range(1, 9)]),
])
def test_each_family_drop_rates_follow_its_reference(name: str, kwargs: dict,
                                                     expected: list[float]) -> None:
    rates = _family_rates(name, create_model(name, **kwargs))
    # float32 torch.linspace in the transformers' reference code: equal to 7 digits
    assert rates == pytest.approx(expected, rel=1e-6, abs=1e-12)


def test_efficientnet_drop_connect_is_rate_times_block_index_over_blocks() -> None:
    """Tan & Le's reference: drop_connect_rate * idx / 16, so the last block stays below it."""
    blocks = [m for m in create_model("efficientnetb0", drop_path_rate=0.2).modules()
              if isinstance(m, MBConv)]
    skipping = [(i, b) for i, b in enumerate(blocks) if b.has_skip]
    assert len(blocks) == 16 and len(skipping) == 9
    for i, block in skipping:
        assert block.drop_path.drop_prob == pytest.approx(0.2 * i / 16, abs=1e-12)


def test_drop_path_at_rate_zero_is_the_identity() -> None:
    x = torch.randn(4, 3, 2, 2)
    for drop in (DropPath(0.0), DropPath(0.0, per_sample=False, scale_by_keep=False)):
        assert torch.equal(drop.train()(x), x) and torch.equal(drop.eval()(x), x)
    # every block holds a DropPath, the first one at rate 0
    blocks = create_model("vision_transformer", drop_path_rate=0.1).blocks
    assert all(isinstance(b.drop_path, DropPath) for b in blocks)
    assert blocks[0].drop_path.drop_prob == 0.0


# --- activations by name ---------------------------------------------------------------------

@pytest.mark.parametrize(("name", "cls"), [
    ("relu", nn.ReLU), ("relu6", nn.ReLU6), ("gelu", nn.GELU), ("silu", nn.SiLU),
    ("swish", nn.SiLU), ("hardswish", nn.Hardswish), ("mish", nn.Mish),
    ("leaky_relu", nn.LeakyReLU), ("elu", nn.ELU), ("sigmoid", nn.Sigmoid), ("tanh", nn.Tanh),
    ("identity", nn.Identity), ("SiLU", nn.SiLU),
])
def test_get_act_layer_names(name: str, cls: type[nn.Module]) -> None:
    assert get_act_layer(name) is cls


def test_get_act_layer_passes_layers_through_and_rejects_unknown_names() -> None:
    assert get_act_layer(nn.GELU) is nn.GELU and get_act_layer(None) is None

    def make() -> nn.Module:
        return nn.LeakyReLU(0.2)

    assert get_act_layer(make) is make
    with pytest.raises(ValueError, match=r"name_or_layer='swiss'.*relu6.*hardswish"):
        get_act_layer("swiss")


def _act_types(model: nn.Module) -> set[type[nn.Module]]:
    acts = (nn.ReLU, nn.SiLU, nn.GELU, nn.Hardswish, nn.Sigmoid)
    return {type(m) for m in model.modules() if isinstance(m, acts)}


def test_a_string_selects_the_activation_inside_a_model() -> None:
    assert _act_types(create_model("efficientnetb0")) == {nn.SiLU, nn.Sigmoid}  # swish, SE gate
    assert _act_types(create_model("efficientnetb0", act_layer="relu")) == {nn.ReLU, nn.Sigmoid}
    assert _act_types(create_model("vision_transformer")) == {nn.GELU}
    assert _act_types(create_model("vision_transformer", act_layer="silu")) == {nn.SiLU}


def test_activation_override_from_the_command_line() -> None:
    cfg = compose_config(["model=efficientnetb0", "+model.act_layer=hardswish"])
    model = hydra.utils.instantiate(cfg.model)
    assert _act_types(model) == {nn.Hardswish, nn.Sigmoid}


# --- weight initialisation -------------------------------------------------------------------

def test_init_weights_applies_each_rule_to_its_kind_in_module_order() -> None:
    """The same draws as initialising by hand, layer by layer in model order."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Linear(8, 4),
                          nn.Conv2d(8, 8, 1, bias=False), nn.LayerNorm(8))
    model[1].weight.data.fill_(3.0)
    layer_norm = model[4].weight.detach().clone()
    conv_bias = model[0].bias.detach().clone()
    torch.manual_seed(0)
    init_weights(model, conv=HE_NORMAL, linear=ParamInit(nn.init.normal_, nn.init.ones_),
                 batchnorm=BN_IDENTITY)

    torch.manual_seed(0)
    w0, w2, w3 = torch.empty(8, 3, 3, 3), torch.empty(4, 8), torch.empty(8, 8, 1, 1)
    w0.normal_(0, math.sqrt(2 / 27))
    w2.normal_()
    w3.normal_(0, math.sqrt(2 / 8))
    assert torch.allclose(model[0].weight, w0) and torch.equal(model[0].bias, conv_bias)
    assert torch.equal(model[2].weight, w2) and torch.equal(model[2].bias, torch.ones(4))
    assert torch.allclose(model[3].weight, w3)
    assert torch.equal(model[1].weight, torch.ones(8))
    assert torch.equal(model[1].bias, torch.zeros(8))
    assert torch.equal(model[4].weight, layer_norm)  # not a kind init_weights knows


def test_zero_bias_keeps_the_weight() -> None:
    layer = nn.Linear(5, 3)
    weight = layer.weight.detach().clone()
    ZERO_BIAS(layer)
    assert torch.equal(layer.weight, weight) and torch.equal(layer.bias, torch.zeros(3))


def _largest(model: nn.Module, kind: type[nn.Module]) -> nn.Module:
    return max((m for m in model.modules() if isinstance(m, kind)), key=lambda m: m.weight.numel())


def _fans(weight: torch.Tensor) -> tuple[int, int]:
    receptive = weight[0, 0].numel()
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def _assert_std(weight: torch.Tensor, std: float) -> None:
    assert abs(weight.mean().item()) < 0.05 * std
    assert weight.std().item() == pytest.approx(std, rel=0.03)


def _assert_bn_identity(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight))
            assert torch.equal(m.bias, torch.zeros_like(m.bias))


def test_he_normal_fan_in_models() -> None:
    """He et al. 2015: weight ~ N(0, 2 / fan_in) for the convs (and ResNet's fc)."""
    for name in ("resnet20", "spp_d11_pN", "shake_resnet26_2x32d", "rir", "cct_7_3x1"):
        model = create_model(name)
        conv = _largest(model, nn.Conv2d)
        _assert_std(conv.weight, math.sqrt(2 / _fans(conv.weight)[0]))
    fc = create_model("resnet20", num_classes=100).fc
    _assert_std(fc.weight, math.sqrt(2 / 64))


def test_model_specific_inits() -> None:
    pyramid = create_model("pyramidnet110")  # He normal over fan_out, BN (1, 0)
    conv = _largest(pyramid, nn.Conv2d)
    _assert_std(conv.weight, math.sqrt(2 / _fans(conv.weight)[1]))
    _assert_bn_identity(pyramid)

    wrn = create_model("wideresnet40_2")  # Xavier uniform with ReLU gain, BN (1, 0), fc bias 0
    conv = _largest(wrn, nn.Conv2d)
    bound = math.sqrt(2) * math.sqrt(6 / sum(_fans(conv.weight)))
    assert conv.weight.abs().max().item() <= bound
    _assert_std(conv.weight, bound / math.sqrt(3))
    _assert_bn_identity(wrn)
    assert torch.equal(wrn.fc.bias, torch.zeros_like(wrn.fc.bias))

    shake = create_model("shake_resnet26_2x32d")  # BN (1, 0) and a zero fc bias
    _assert_bn_identity(shake)
    assert torch.equal(shake.fc.bias, torch.zeros_like(shake.fc.bias))

    rir = create_model("rir")  # every conv bias at 0.01
    biases = [m.bias for m in rir.modules() if isinstance(m, nn.Conv2d)]
    assert biases and all(torch.equal(b, torch.full_like(b, 0.01)) for b in biases)

    cct = create_model("cct_7_3x1")  # linears trunc-normal(0.02) with zero bias
    biases = [m.bias for m in cct.modules() if isinstance(m, nn.Linear) and m.bias is not None]
    assert biases and all(torch.equal(b, torch.zeros_like(b)) for b in biases)
    _assert_std(_largest(cct, nn.Linear).weight, 0.02)
    _assert_std(cct.pos_embed, 0.2)
