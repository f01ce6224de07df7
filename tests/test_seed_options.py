"""Options that re-create what the seed's code did: ShakeDrop's per-batch gate (PyramidNet),
the seed's Random Erasing entry (`aug=[random_erase_seed]`) and ToyNet, each checked against its
definition."""
from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from cifar_tricks.augment.random_erase import RandomErasing
from cifar_tricks.models import create_model
from cifar_tricks.models.layers import ShakeDrop
from cifar_tricks.models.toynet import toynet
from conftest import compose_config

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------ ShakeDrop's gate

def shake(layer: ShakeDrop, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward and backward coefficients of one training batch, one per sample: on ones, the
    output is b + alpha (1 - b) and the gradient of a ones cotangent is b + beta (1 - b)."""
    x = torch.ones(batch, 3, requires_grad=True)
    out = layer(x)
    out.backward(torch.ones_like(out))
    fwd, bwd = out.detach(), x.grad
    assert torch.equal(fwd, fwd[:, :1].expand_as(fwd))  # one coefficient per sample
    assert torch.equal(bwd, bwd[:, :1].expand_as(bwd))
    return fwd[:, 0], bwd[:, 0]


def test_shake_drop_per_batch_gate_is_shared_by_the_whole_batch():
    torch.manual_seed(0)
    p, batches, batch = 0.3, 600, 16
    layer = ShakeDrop(p, gate_per_sample=False).train()
    kept_batches = 0
    for _ in range(batches):
        fwd, bwd = shake(layer, batch)
        kept = (fwd == 1) & (bwd == 1)  # b = 1: the identity both ways (alpha = 1 has prob. 0)
        assert kept.all() or not kept.any(), "a per-batch gate is the same for every sample"
        if kept.all():
            kept_batches += 1
        else:
            # b = 0: alpha ~ U(-1, 1) and beta ~ U(0, 1) are still drawn per sample
            assert ((fwd >= -1) & (fwd <= 1)).all() and ((bwd >= 0) & (bwd <= 1)).all()
            assert fwd.unique().numel() == batch and bwd.unique().numel() == batch
    # P(b = 1) = 1 - p = 0.7; 600 batches: standard deviation 0.019
    assert abs(kept_batches / batches - (1 - p)) < 0.06


def test_shake_drop_per_sample_gate_mixes_kept_and_shaken_samples():
    torch.manual_seed(0)
    p, batches, batch = 0.3, 200, 16
    layer = ShakeDrop(p).train()  # gate_per_sample=True is the default
    assert layer.gate_per_sample
    mixed, kept_total = 0, 0
    for _ in range(batches):
        fwd, bwd = shake(layer, batch)
        kept = (fwd == 1) & (bwd == 1)
        mixed += bool(kept.any() and not kept.all())
        kept_total += int(kept.sum())
    # a batch of 16 is all kept or all shaken with probability 0.7^16 + 0.3^16 = 0.003
    assert mixed >= 0.95 * batches
    assert abs(kept_total / (batches * batch) - (1 - p)) < 0.03


@pytest.mark.parametrize("gate_per_sample", [True, False])
def test_shake_drop_eval_is_the_expectation_whatever_the_gate(gate_per_sample):
    layer = ShakeDrop(0.3, gate_per_sample=gate_per_sample).eval()
    x = torch.randn(5, 4, 2, 2)
    assert torch.equal(layer(x), (1 - 0.3) * x)


@pytest.mark.parametrize("name", ["pyramidnet110", "pyramidnet272"])
def test_pyramidnet_threads_the_gate_knob_to_every_shake_drop(name):
    for overrides, expected in (([], True), (["model.gate_per_sample=false"], False)):
        cfg = compose_config([f"model={name}"] + overrides)
        assert cfg.model.gate_per_sample is expected
        model = instantiate(cfg.model)
        layers = [m for m in model.modules() if isinstance(m, ShakeDrop)]
        assert len(layers) == (54 if name == "pyramidnet110" else 90)
        assert all(m.gate_per_sample is expected for m in layers)
        assert f"gate_per_sample={expected}" in repr(layers[0])


def test_pyramidnet_per_batch_gate_trains_and_evaluates():
    torch.manual_seed(0)
    model = create_model("pyramidnet110", gate_per_sample=False)
    x = torch.randn(4, 3, 8, 8)
    out = model.train()(x)
    out.sum().backward()
    assert torch.isfinite(out).all()
    assert all(p.grad is not None for p in model.parameters())
    with torch.no_grad():
        model.eval()
        assert torch.equal(model(x), model(x))


# ------------------------------------------------------------------------ Random Erasing

@pytest.mark.parametrize("data", ["cifar10", "cifar100", "synthetic"])
def test_random_erase_seed_entry_is_black_uniform_with_the_datas_statistics(data):
    cfg = compose_config([f"data={data}", "aug=[random_erase_seed]"])
    assert list(cfg.aug) == ["random_erase_seed"]
    aug = instantiate(cfg.aug.random_erase_seed)
    assert isinstance(aug, RandomErasing) and aug.stage == "erase"
    assert aug.p == 0.5 and aug.scale == (0.02, 0.4)
    assert aug.ratio == pytest.approx((0.3, 1 / 0.3))
    assert aug.value == "black" and aug.aspect == "uniform"
    mean, std = list(cfg.data.mean), list(cfg.data.std)
    assert list(aug.mean) == pytest.approx(mean) and list(aug.std) == pytest.approx(std)
    # every erased pixel is a black pixel after the data's normalisation
    out, _ = aug(torch.full((256, 3, 32, 32), 50.0), torch.eye(256),
                 torch.Generator().manual_seed(0))
    for c in range(3):
        erased = out[:, c][out[:, c] != 50.0]
        assert erased.numel() > 0
        assert torch.allclose(erased, torch.tensor((0 - mean[c]) / std[c]), atol=1e-6)


def test_the_default_random_erase_entry_is_unchanged():
    aug = instantiate(compose_config(["aug=[random_erase]"]).aug.random_erase)
    assert aug.value == "random" and aug.aspect == "log_uniform"
    assert aug.mean is None and aug.std is None


# ------------------------------------------------------------------------ ToyNet

def count(model: nn.Module, kind: type[nn.Module]) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.mark.parametrize("depth, pools", [(1, 0), (2, 0), (3, 1), (4, 1), (6, 2), (8, 2),
                                          (9, 3), (12, 3), (16, 3)])
def test_toynet_depth_is_the_number_of_conv_layers_after_the_stem(depth, pools):
    model = toynet(depth=depth, width=8)
    assert count(model, nn.Conv2d) == depth + 1  # the stem and `depth` body layers
    assert count(model, nn.BatchNorm2d) == depth + 1
    assert count(model, nn.MaxPool2d) == pools  # after layers 3, 6, 9 only
    assert count(model, nn.Linear) == 1
    assert all(m.kernel_size == (3, 3) for m in model.modules() if isinstance(m, nn.Conv2d))


def test_toynet_parameter_count_by_hand():
    # depth 1, width 8, 10 classes: stem 3*8*9 + 2*8 = 232, one layer 8*8*9 + 2*8 = 592,
    # head 8*10 + 10 = 90
    assert sum(p.numel() for p in toynet(depth=1, width=8).parameters()) == 914
    # depth 2 adds one more body layer of 592
    assert sum(p.numel() for p in toynet(depth=2, width=8).parameters()) == 914 + 592
    # depth 2, width 16, 100 classes: stem 3*16*9 + 2*16 = 464, two layers of
    # 16*16*9 + 2*16 = 2,336, head 16*100 + 100 = 1,700
    assert sum(p.numel() for p in toynet(num_classes=100, depth=2,
                                         width=16).parameters()) == 464 + 2 * 2336 + 1700


def test_toynet_depth_16_runs_on_32x32():
    torch.manual_seed(0)
    model = toynet(depth=16, width=8).train()
    x = torch.randn(2, 3, 32, 32)
    assert model.forward_features(x).shape == (2, 8, 4, 4)  # 32 -> 16 -> 8 -> 4, then no pool
    out = model(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("kwargs, argument", [({"depth": 0}, "depth"), ({"depth": -2}, "depth"),
                                              ({"width": 0}, "width")])
def test_toynet_refuses_a_bad_depth_or_width(kwargs, argument):
    with pytest.raises(ValueError, match=f"^{argument} must"):
        toynet(**kwargs)
