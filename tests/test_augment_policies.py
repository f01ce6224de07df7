"""AutoAugment, RandAugment and TrivialAugment Wide, checked against torchvision's per-image
definitions: the draws map to torchvision's ops and magnitudes, and the batched application equals
applying those ops image by image."""
from __future__ import annotations

import math

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from cifar_tricks.augment import split_stages
from cifar_tricks.augment.policies import AutoAugment, RandAugment, TrivialAugmentWide, apply_ops

POLICIES = [AutoAugment, RandAugment, TrivialAugmentWide]
TV_OPS = v2.RandAugment()  # torchvision's per-image op mapping, the reference


def images(n: int = 16, seed: int = 0, h: int = 32) -> torch.Tensor:
    """Smooth random images: a coarse random field, upsampled, so that every op changes them."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g) * 255
    smooth = torch.nn.functional.interpolate(coarse, size=(h, h), mode="bilinear")
    return smooth.round().to(torch.uint8)


def run(aug, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    targets = torch.eye(10)[torch.arange(len(x)) % 10]
    out, out_targets = aug(x, targets, torch.Generator().manual_seed(seed))
    assert out_targets is targets
    return out


def per_image_reference(x: torch.Tensor, ops: torch.Tensor, table, fill: float = 128.0):
    """What the batched `apply_ops` must equal: torchvision's op, one image at a time."""
    out = []
    for image, codes in zip(x, ops.tolist()):
        for code in codes:
            name, magnitude = table[code]
            image = TV_OPS._apply_image_or_video_transform(
                image, name, magnitude, interpolation=InterpolationMode.NEAREST,
                fill={"others": fill})
        out.append(image)
    return torch.stack(out)


# ------------------------------------------------------------------------------ the contract

@pytest.mark.parametrize("cls", POLICIES)
def test_policy_keeps_uint8_shape_and_targets_and_is_a_policy_stage(cls):
    aug = cls()
    assert aug.stage == "policy" and split_stages([aug]) == ([aug], [])
    x = images(32)
    out = run(aug, x)
    assert out.dtype == torch.uint8 and out.shape == x.shape
    assert not torch.equal(out, x)
    assert torch.equal(x, images(32))  # the input is not modified in place


@pytest.mark.parametrize("cls", POLICIES)
def test_each_image_gets_its_own_draws(cls):
    x = images(1).expand(64, -1, -1, -1).contiguous()
    out = run(cls(), x)
    distinct = torch.unique(out.flatten(1), dim=0)
    assert len(distinct) > 15, f"64 copies gave only {len(distinct)} distinct images"


@pytest.mark.parametrize("cls", POLICIES)
def test_the_generator_seed_alone_decides_the_output(cls):
    x = images(32)
    assert torch.equal(run(cls(), x, seed=3), run(cls(), x, seed=3))
    assert not torch.equal(run(cls(), x, seed=3), run(cls(), x, seed=4))


@pytest.mark.parametrize("cls", POLICIES)
def test_batched_application_equals_torchvision_per_image(cls):
    aug, x = cls(), images(48, seed=1)
    ops = aug.sample(len(x), 32, 32, torch.Generator().manual_seed(5))["ops"]
    table = aug.op_table(32, 32)
    assert torch.equal(apply_ops(x, ops, table), per_image_reference(x, ops, table))
    assert torch.equal(run(aug, x, seed=5), per_image_reference(x, ops, table))


def test_every_op_of_every_table_is_batched_exactly_as_per_image():
    x = images(6, seed=2)
    for aug in (AutoAugment(), RandAugment(), TrivialAugmentWide(num_magnitude_bins=5)):
        table = aug.op_table(32, 32)
        for code in range(len(table)):
            ops = torch.full((len(x), 1), code)
            expected = per_image_reference(x, ops, table)
            assert torch.equal(apply_ops(x, ops, table), expected), table[code]


def test_a_forced_group_equals_the_public_functional_ops():
    x = images(8, seed=3)
    table = [("Identity", 0.0), ("Rotate", -12.0), ("ShearX", 0.2), ("TranslateY", 7.0),
             ("Solarize", 0.5), ("Posterize", 3.0), ("Contrast", 0.6), ("Equalize", 0.0)]
    # each op once, in a shuffled order, so the groups are scattered over the batch
    ops = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:, None]
    out = apply_ops(x, ops, table, fill=128)
    expected = {
        "Identity": lambda im: im,
        "Rotate": lambda im: F.rotate(im, -12.0, fill=[128.0]),
        "ShearX": lambda im: F.affine(im, angle=0.0, translate=[0, 0], scale=1.0,
                                      shear=[math.degrees(math.atan(0.2)), 0.0], fill=[128.0],
                                      center=[0, 0]),
        "TranslateY": lambda im: F.affine(im, angle=0.0, translate=[0, 7], scale=1.0,
                                          shear=[0.0, 0.0], fill=[128.0]),
        "Solarize": lambda im: F.solarize(im, 127.5),
        "Posterize": lambda im: F.posterize(im, 3),
        "Contrast": lambda im: F.adjust_contrast(im, 1.6),
        "Equalize": F.equalize,
    }
    for i, code in enumerate(ops[:, 0].tolist()):
        assert torch.equal(out[i], expected[table[code][0]](x[i])), table[code]
    rotated = out[ops[:, 0] == 1]
    assert (rotated[..., 0, 0] == 128).all()  # the corners a rotation uncovers hold the fill


def test_ops_are_applied_in_slot_order():
    x = images(4)
    table = [("Identity", 0.0), ("Invert", 0.0), ("Posterize", 2.0)]
    ops = torch.tensor([[1, 2], [2, 1], [1, 1], [0, 2]])
    out = apply_ops(x, ops, table)
    assert torch.equal(out[0], F.posterize(F.invert(x[0]), 2))
    assert torch.equal(out[1], F.invert(F.posterize(x[1], 2)))
    assert torch.equal(out[2], x[2])
    assert torch.equal(out[3], F.posterize(x[3], 2))


# ---------------------------------------------------------------- the draws vs the definitions

def test_autoaugment_draws_follow_the_cifar10_policy():
    aug = AutoAugment("cifar10", fill=128)
    tv = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)
    policies = tv._get_policies(v2.AutoAugmentPolicy.CIFAR10)
    assert len(policies) == 25
    n = 25 * 800
    draws = aug.sample(n, 32, 32, torch.Generator().manual_seed(0))
    counts = torch.bincount(draws["policy"], minlength=25).float()
    assert (counts - n / 25).abs().max() < 5 * math.sqrt(n / 25), counts  # uniform, 5 sigma
    probabilities = torch.tensor([[p for _, p, _ in sub] for sub in policies])[draws["policy"]]
    applied = draws["applied"].float()
    assert (applied.mean() - probabilities.mean()).abs() < 0.01
    # each op with its own probability: sub-policy 1 is (Rotate p=0.7, TranslateX p=0.3)
    for slot in range(2):
        rows = draws["policy"] == 1
        assert abs(applied[rows, slot].mean().item() - (0.7, 0.3)[slot]) < 0.05
    table = aug.op_table(32, 32)
    for i in range(200):  # each code is torchvision's (op, +-magnitude) of that sub-policy slot
        for slot in range(2):
            name, _, bin_ = policies[int(draws["policy"][i])][slot]
            magnitudes_fn, signed = tv._AUGMENTATION_SPACE[name]
            magnitudes = magnitudes_fn(10, 32, 32)
            magnitude = 0.0 if magnitudes is None else float(magnitudes[bin_])
            if signed and draws["negated"][i, slot]:
                magnitude = -magnitude
            code = int(draws["ops"][i, slot])
            expected = (name, magnitude) if draws["applied"][i, slot] else ("Identity", 0.0)
            assert table[code] == expected
    rotations = [table[c][1] for c in draws["ops"].flatten().tolist() if table[c][0] == "Rotate"]
    negated = sum(angle < 0 for angle in rotations) / len(rotations)
    assert 0.4 < negated < 0.6  # torchvision signs rotations too (the seed's port did not)


@pytest.mark.parametrize("num_ops", [0, 1, 2, 3])
def test_randaugment_applies_num_ops_ops_per_image(num_ops):
    aug = RandAugment(num_ops=num_ops, magnitude=9)
    n = 14 * 300
    draws = aug.sample(n, 32, 32, torch.Generator().manual_seed(0))
    assert draws["ops"].shape == draws["op"].shape == (n, num_ops)
    if num_ops == 0:
        assert torch.equal(run(aug, images(4)), images(4))
        return
    counts = torch.bincount(draws["op"].flatten(), minlength=14).float()
    expected = n * num_ops / 14
    assert (counts - expected).abs().max() < 5 * math.sqrt(expected)  # uniform over the 14 ops
    table, names = aug.op_table(32, 32), list(v2.RandAugment._AUGMENTATION_SPACE)
    for i in range(100):
        for slot in range(num_ops):
            name = names[int(draws["op"][i, slot])]
            magnitudes_fn, signed = v2.RandAugment._AUGMENTATION_SPACE[name]
            magnitudes = magnitudes_fn(31, 32, 32)
            magnitude = 0.0 if magnitudes is None else float(magnitudes[9])
            if signed and draws["negated"][i, slot]:
                magnitude = -magnitude
            assert table[int(draws["ops"][i, slot])] == (name, magnitude)


def test_randaugment_at_magnitude_zero_leaves_images_of_identity_like_ops_unchanged():
    aug = RandAugment(num_ops=2, magnitude=0)
    x = images(64).clamp(max=254)  # solarize at magnitude 0 inverts only pixels >= 255
    draws = aug.sample(len(x), 32, 32, torch.Generator().manual_seed(7))
    out = run(aug, x, seed=7)
    table = aug.op_table(32, 32)
    names = [[table[c][0] for c in row] for row in draws["ops"].tolist()]
    plain = torch.tensor([not {"AutoContrast", "Equalize"} & set(row) for row in names])
    assert plain.sum() > 20
    assert torch.equal(out[plain], x[plain])


def test_trivialaugment_draws_one_op_and_one_bin_uniformly():
    aug = TrivialAugmentWide(num_magnitude_bins=31)
    n = 14 * 31 * 20
    draws = aug.sample(n, 32, 32, torch.Generator().manual_seed(0))
    assert draws["ops"].shape == (n, 1)
    for key, k in (("op", 14), ("magnitude_bin", 31)):
        counts = torch.bincount(draws[key].flatten(), minlength=k).float()
        assert (counts - n / k).abs().max() < 5 * math.sqrt(n / k), key
    table, names = aug.op_table(32, 32), list(v2.TrivialAugmentWide._AUGMENTATION_SPACE)
    for i in range(200):
        name = names[int(draws["op"][i, 0])]
        magnitudes_fn, signed = v2.TrivialAugmentWide._AUGMENTATION_SPACE[name]
        magnitudes = magnitudes_fn(31, 32, 32)
        bin_ = int(draws["magnitude_bin"][i, 0])
        magnitude = 0.0 if magnitudes is None else float(magnitudes[bin_])
        if signed and draws["negated"][i, 0]:
            magnitude = -magnitude
        assert table[int(draws["ops"][i, 0])] == (name, magnitude)


def test_fill_and_interpolation_are_parameters():
    x = images(8)
    ops = torch.full((8, 1), 1)
    table = [("Identity", 0.0), ("Rotate", 45.0)]
    out = apply_ops(x, ops, table, fill=[10.0, 20.0, 30.0])
    assert out[:, :, 0, 0].tolist() == [[10, 20, 30]] * 8
    bilinear = apply_ops(x, ops, table, interpolation=InterpolationMode.BILINEAR)
    assert torch.equal(bilinear[0], F.rotate(x[0], 45.0, InterpolationMode.BILINEAR, fill=[128.0]))
    aug = AutoAugment(interpolation="bilinear", fill=[1, 2, 3])
    assert aug.fill == [1.0, 2.0, 3.0] and run(aug, x).dtype == torch.uint8
    with pytest.raises(ValueError):
        RandAugment(magnitude=31, num_magnitude_bins=31)
