"""Erasing and mixing augmentations (Cutout, Random Erasing, Mixup, CutMix, RICAP), each checked
against its definition on batches built so that the output tells what was done to it."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cifar_tricks.augment.cutmix import CutMix, cutmix
from cifar_tricks.augment.cutout import Cutout, cutout
from cifar_tricks.augment.mixup import Mixup
from cifar_tricks.augment.random_erase import RandomErasing, erase
from cifar_tricks.augment.ricap import RICAP, ricap

pytestmark = pytest.mark.usefixtures("one_thread")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def one_hot(n: int) -> torch.Tensor:
    """Targets of a batch whose sample i has class i."""
    return F.one_hot(torch.arange(n), n).float()


def box_of(mask: torch.Tensor) -> tuple[int, int, int, int] | None:
    """(top, left, height, width) of a 2-D mask that must be exactly one filled rectangle."""
    if not mask.any():
        return None
    rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
    top, left = int(rows[0]), int(cols[0])
    height, width = int(rows[-1]) - top + 1, int(cols[-1]) - left + 1
    expected = torch.zeros_like(mask)
    expected[top:top + height, left:left + width] = True
    assert torch.equal(mask, expected), "the changed pixels are not one rectangle"
    return top, left, height, width


# --------------------------------------------------------------------------------------- Cutout

def test_cutout_function_zeroes_the_given_squares_clipped_at_the_border():
    images = torch.ones(3, 2, 8, 8)
    out = cutout(images, torch.tensor([2, -2, 6]), torch.tensor([1, 5, -1]), size=4)
    expected = torch.ones(3, 2, 8, 8)
    expected[0, :, 2:6, 1:5] = 0
    expected[1, :, 0:2, 5:8] = 0
    expected[2, :, 6:8, 0:3] = 0
    assert torch.equal(out, expected)
    assert torch.equal(images, torch.ones(3, 2, 8, 8))  # the input is not modified


@pytest.mark.parametrize("size", [16, 8, 5])
def test_cutout_zeroes_one_square_per_image_centred_anywhere(size):
    images = torch.ones(64, 3, 32, 32)
    targets = one_hot(64)
    out, out_targets = Cutout(size)(images, targets, gen())
    assert out_targets is targets
    boxes = []
    for img in out:
        zero = img == 0
        assert torch.equal(zero, zero[:1].expand_as(zero))  # the same hole in every channel
        top, left, height, width = box_of(zero[0])
        # the square [centre - size//2, centre - size//2 + size) for a centre in the image,
        # clipped to it: unclipped sides are `size`, clipped ones touch the border
        assert height == size or top == 0 or top + height == 32
        assert width == size or left == 0 or left + width == 32
        assert height > size // 2 - 1 and width > size // 2 - 1
        assert (img[~zero] == 1).all()  # the rest untouched
        boxes.append((top, left, height, width))
    assert len(set(boxes)) > 32  # positions differ across the batch
    assert any(b[2] == size and b[3] == size for b in boxes)


def test_cutout_centres_cover_the_whole_image():
    out, _ = Cutout(1)(torch.ones(4000, 1, 4, 4), one_hot(1).expand(4000, 1), gen())
    hits = (out[:, 0] == 0).sum(0).float() / 4000  # a 1x1 hole is its centre
    assert torch.allclose(hits, torch.full((4, 4), 1 / 16), atol=0.02)


# ------------------------------------------------------------------------------ Random Erasing

def test_erase_function_fills_the_given_boxes_and_skips_empty_ones():
    images = torch.zeros(2, 1, 6, 6)
    out = erase(images, torch.tensor([1, 3]), torch.tensor([2, 0]), torch.tensor([3, 0]),
                torch.tensor([2, 4]), torch.tensor(7.0))
    expected = torch.zeros(2, 1, 6, 6)
    expected[0, :, 1:4, 2:4] = 7
    assert torch.equal(out, expected)


def test_random_erasing_rate_box_shape_and_random_fill():
    n, size = 3000, 32
    images = torch.ones(n, 3, size, size)
    out, _ = RandomErasing(p=0.5)(images, one_hot(1).expand(n, 1), gen())
    changed = out != 1
    erased = changed.flatten(1).any(1)
    assert abs(erased.float().mean().item() - 0.5) < 0.04  # 4.4 standard deviations
    for img in out[erased][:500]:
        mask = (img != 1)[0]
        assert torch.equal((img != 1), mask.expand_as(img))
        _, _, h, w = box_of(mask)
        # h = round(sqrt(area * r)), w = round(sqrt(area / r)): the bounds hold up to rounding
        assert (h + 0.5) * (w + 0.5) >= 0.02 * size * size
        assert (h - 0.5) * (w - 0.5) <= 0.4 * size * size
        assert (h + 0.5) / (w - 0.5) >= 0.3 and (h - 0.5) / (w + 0.5) <= 1 / 0.3
        assert h < size and w < size
    fill = out[changed]
    assert abs(fill.mean().item()) < 0.05 and abs(fill.std().item() - 1) < 0.05  # N(0, 1) noise


def test_random_erasing_draws_boxes_that_fit_and_respects_the_settings():
    aug = RandomErasing(p=1.0, scale=(0.1, 0.3), ratio=(0.5, 2.0))
    images = torch.zeros(2000, 1, 16, 24)
    top, left, height, width, _ = aug.make_params(images, gen())
    assert (height > 0).all()  # p = 1 and some candidate always fits at these settings
    assert (top >= 0).all() and (top + height <= 16).all()
    assert (left >= 0).all() and (left + width <= 24).all()
    area = (height * width).float() / (16 * 24)
    assert area.min() > 0.07 and area.max() < 0.35  # [0.1, 0.3] up to rounding h and w
    assert area.min() < 0.12 and area.max() > 0.28  # the whole range is used
    assert top.max() > 0 and left.max() > 0


def test_random_erasing_constant_fill_and_p_zero():
    images = torch.randn(256, 3, 8, 8)
    targets = one_hot(256)
    out, out_targets = RandomErasing(p=0.0)(images, targets, gen())
    assert torch.equal(out, images) and out_targets is targets
    out, _ = RandomErasing(p=1.0, value=-2.5)(images, targets, gen())
    assert ((out == images) | (out == -2.5)).all()
    assert (out == -2.5).flatten(1).any(1).float().mean() > 0.95


def test_random_erasing_leaves_an_image_unerased_when_no_candidate_fits():
    # every candidate covers at least 90% of the area with a 1:1 ratio, so h = w = 8 never fits
    out, _ = RandomErasing(p=1.0, scale=(0.99, 1.0), ratio=(1.0, 1.0))(
        torch.ones(16, 1, 8, 8), one_hot(16), gen())
    assert (out == 1).all()


# The seed's variant: black fill (pixel 0 before normalisation) and a uniform aspect ratio.
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def test_random_erasing_black_fill_is_a_normalised_black_pixel():
    n = 2000
    images = torch.full((n, 3, 16, 16), 100.0)  # no normalised pixel is near 100
    aug = RandomErasing(p=0.5, value="black", mean=CIFAR10_MEAN, std=CIFAR10_STD)
    out, _ = aug(images, one_hot(1).expand(n, 1), gen())
    changed = out != 100.0
    erased = changed.flatten(1).any(1)
    assert abs(erased.float().mean().item() - 0.5) < 0.05
    # black is pixel 0 before normalisation: (0 - mean_c) / std_c, e.g. -1.9895 in the red channel
    black = [(0.0 - m) / s for m, s in zip(CIFAR10_MEAN, CIFAR10_STD)]
    assert black[0] == pytest.approx(-1.98947, abs=1e-5)
    for c in range(3):
        assert torch.equal(changed[:, c], changed[:, 0])  # the same box in every channel
        assert torch.allclose(out[:, c][changed[:, c]], torch.tensor(black[c]), atol=1e-6)
    for img in out[erased][:200]:
        box_of((img != 100.0)[0])  # one rectangle per image


def test_random_erasing_black_matches_normalising_a_black_uint8_pixel():
    # what the loader does, (x / 255 - mean) / std, applied to x = 0
    mean, std = (0.5, 0.25, 0.0), (0.25, 0.5, 2.0)
    aug = RandomErasing(p=1.0, value="black", mean=mean, std=std)
    out, _ = aug(torch.full((64, 3, 8, 8), 9.0), one_hot(64), gen())
    assert set(out[:, 0].unique().tolist()) == {-2.0, 9.0}
    assert set(out[:, 1].unique().tolist()) == {-0.5, 9.0}
    assert set(out[:, 2].unique().tolist()) == {0.0, 9.0}


@pytest.mark.parametrize("kwargs, expected_mean", [
    # log r ~ U(ln r0, ln r1): E[r] = (r1 - r0) / (ln r1 - ln r0); r0 = 0.3, r1 = 1 / 0.3:
    # (3.33333 - 0.3) / ln(11.1111) = 3.03333 / 2.40795 = 1.25972
    ({}, 1.25972),
    ({"aspect": "log_uniform"}, 1.25972),
    # r ~ U(r0, r1): E[r] = (r0 + r1) / 2 = (0.3 + 3.33333) / 2 = 1.81667
    ({"aspect": "uniform"}, 1.81667),
])
def test_random_erasing_aspect_ratio_distribution(kwargs, expected_mean):
    r = 0.3
    if kwargs.get("aspect") == "uniform":
        assert expected_mean == pytest.approx((r + 1 / r) / 2, abs=1e-5)
    else:
        assert expected_mean == pytest.approx((1 / r - r) / math.log(1 / r ** 2), abs=1e-5)
    # small boxes on 64x64 images: the first candidate always fits, so the drawn aspect ratio
    # is the box's (height / width, up to rounding both sides of at least 5 pixels)
    aug = RandomErasing(p=1.0, scale=(0.02, 0.05), ratio=(r, 1 / r), value=0.0, **kwargs)
    images = torch.zeros(1, 1, 64, 64).expand(20_000, 1, 64, 64)
    _, _, height, width, _ = aug.make_params(images, gen())
    assert (height > 0).all()
    aspect = height.double() / width.double()
    assert aspect.mean().item() == pytest.approx(expected_mean, abs=0.04)
    # and the share below 1: (1 - r0) / (r1 - r0) = 0.23 uniformly, 1/2 log-uniformly (boxes
    # rounded to h = w count half)
    below = ((aspect < 1).double().mean() + 0.5 * (aspect == 1).double().mean()).item()
    assert below == pytest.approx(0.7 / (1 / r - r) if kwargs.get("aspect") == "uniform"
                                  else 0.5, abs=0.03)


@pytest.mark.parametrize("kwargs, argument", [
    ({"value": "black"}, "mean"),
    ({"value": "black", "std": CIFAR10_STD}, "mean"),
    ({"value": "black", "mean": CIFAR10_MEAN}, "std"),
    ({"value": "black", "mean": CIFAR10_MEAN, "std": (0.2, 0.0, 0.2)}, "std"),
    ({"value": "black", "mean": CIFAR10_MEAN, "std": (0.2, 0.2)}, "std"),
    ({"aspect": "normal"}, "aspect"),
])
def test_random_erasing_seed_options_refuse_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=f"^{argument} must"):
        RandomErasing(**kwargs)


def test_random_erasing_black_refuses_a_channel_count_mismatch():
    aug = RandomErasing(p=1.0, value="black", mean=CIFAR10_MEAN, std=CIFAR10_STD)
    with pytest.raises(ValueError, match="^mean must have one value per image channel"):
        aug(torch.zeros(2, 1, 8, 8), one_hot(2), gen())


# ---------------------------------------------------------------------------------------- Mixup

def coded_batch(n: int, extra: int = 3, size: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample i: channels 0..n-1 are the one-hot code of i (as its target), then random channels."""
    code = torch.eye(n).view(n, n, 1, 1).expand(n, n, size, size)
    return torch.cat([code, torch.randn(n, extra, size, size)], 1), one_hot(n)


@pytest.mark.parametrize("alpha", [1.0, 0.2])
def test_mixup_mixes_images_and_targets_with_one_lambda_and_a_permutation(alpha):
    n = 16
    for seed in range(10):
        torch.manual_seed(seed)  # lambda comes from the global RNG
        images, targets = coded_batch(n)
        out, out_targets = Mixup(alpha)(images, targets, gen(seed))
        code = out[:, :n, 0, 0]
        assert torch.allclose(code, out_targets, atol=1e-6)  # the same mixing for both
        assert torch.allclose(out_targets.sum(1), torch.ones(n), atol=1e-6)
        assert (out_targets >= 0).all()
        # recover the partner and lambda: row i = lam * e_i + (1 - lam) * e_perm[i]
        off = code - torch.diag(torch.diag(code))
        moved = off.sum(1) > 0
        if not moved.any():  # lambda == 1 in float32
            assert torch.equal(out, images)
            continue
        perm = torch.where(moved, off.argmax(1), torch.arange(n))
        assert sorted(perm.tolist()) == list(range(n))  # a permutation of the batch
        lam = torch.diag(code)[moved]
        assert torch.allclose(lam, lam[0].expand_as(lam), atol=1e-6)
        lam = lam[0]
        expected = lam * images + (1 - lam) * images[perm]
        assert torch.allclose(out, expected, atol=1e-5)


def test_mixup_lambda_follows_beta():
    lams = []
    for seed in range(400):
        torch.manual_seed(seed)
        images, targets = coded_batch(8, extra=0, size=1)
        _, out_targets = Mixup(0.2)(images, targets, gen(seed))
        lams.append(out_targets.max(1).values.min().item())  # max(lam, 1 - lam) or 1
    lams = torch.tensor(lams)
    # Beta(0.2, 0.2) piles up near 0 and 1: max(lam, 1 - lam) > 0.9 about 65% of the time
    assert 0.58 < (lams > 0.9).float().mean() < 0.77


# --------------------------------------------------------------------------------------- CutMix

def test_cutmix_function_pastes_the_clipped_box_and_weighs_targets_by_its_area():
    images = torch.arange(2.0).view(2, 1, 1, 1).expand(2, 1, 4, 5).contiguous()
    perm = torch.tensor([1, 0])
    out, targets = cutmix(images, one_hot(2), perm, torch.tensor(-1), torch.tensor(3),
                          torch.tensor(2), torch.tensor(7))  # rows 0..1, cols 3..4: 4 pixels
    expected = images.clone()
    expected[0, :, 0:2, 3:5], expected[1, :, 0:2, 3:5] = 1, 0
    assert torch.equal(out, expected)
    assert torch.allclose(targets, torch.tensor([[0.8, 0.2], [0.2, 0.8]]))


@pytest.mark.parametrize("size", [(32, 32), (12, 20)])
def test_cutmix_lambda_is_one_minus_the_pasted_area(size):
    n, (height, width) = 12, size
    clipped = mixed = 0
    for seed in range(40):
        torch.manual_seed(seed)
        # channel 0 says which sample a pixel came from, channel 1 is unique noise
        index = torch.arange(n, dtype=torch.float).view(n, 1, 1, 1).expand(n, 1, height, width)
        images = torch.cat([index, torch.randn(n, 1, height, width)], 1)
        out, targets = CutMix(alpha=1.0, prob=1.0)(images, one_hot(n), gen(seed))
        assert torch.allclose(targets.sum(1), torch.ones(n), atol=1e-6)
        changed = (out != images).any(1)  # (n, H, W)
        source = out[:, 0].long()
        boxes = {box_of(changed[i]) for i in range(n) if changed[i].any()}
        assert len(boxes) <= 1  # one box for the whole batch
        if not boxes:
            continue  # lambda drew so close to 1 that the box rounds to nothing
        mixed += 1
        top, left, h, w = boxes.pop()
        clipped += top == 0 or left == 0 or top + h == height or left + w == width
        lam = 1 - h * w / (height * width)
        for i in range(n):
            partner = int(source[i, top, left])
            assert (source[i, top:top + h, left:left + w] == partner).all()
            assert torch.equal(out[i, 1, top:top + h, left:left + w],
                               images[partner, 1, top:top + h, left:left + w])
            expected = torch.zeros(n)
            expected[i] += lam
            expected[partner] += 1 - lam
            assert torch.allclose(targets[i], expected, atol=1e-6)
    assert mixed > 30 and clipped > 0


def test_cutmix_prob_zero_leaves_the_batch_unchanged_and_prob_half_mixes_about_half():
    images, targets = torch.randn(8, 3, 16, 16), one_hot(8)
    out, out_targets = CutMix(prob=0.0)(images, targets, gen())
    assert torch.equal(out, images) and torch.equal(out_targets, targets)
    aug, g = CutMix(prob=0.5), gen()
    torch.manual_seed(0)
    mixed = sum(not torch.equal(aug(images, targets, g)[1], targets) for _ in range(400))
    assert 160 < mixed < 240


# ---------------------------------------------------------------------------------------- RICAP

def ricap_by_slicing(images, targets, perms, w, h, tops, lefts):
    """The official code's loops: crop, then concatenate 2 x 2 (here per image)."""
    _, _, height, width = images.shape
    sizes = [(h, w), (h, width - w), (height - h, w), (height - h, width - w)]
    out = torch.empty_like(images)
    for b in range(len(images)):
        crops = [images[perms[k, b], :, tops[b, k]:tops[b, k] + hk, lefts[b, k]:lefts[b, k] + wk]
                 for k, (hk, wk) in enumerate(sizes)]
        out[b] = torch.cat([torch.cat(crops[:2], 2), torch.cat(crops[2:], 2)], 1)
    weights = [hk * wk / (height * width) for hk, wk in sizes]
    return out, sum(wk * targets[perms[k]] for k, wk in enumerate(weights))


@pytest.mark.parametrize("w, h", [(3, 2), (0, 4), (5, 0), (5, 6), (2, 6)])
def test_ricap_function_matches_crop_and_concatenate(w, h):
    g = gen(w * 10 + h)
    n, height, width = 5, 6, 5
    images, targets = torch.randn(n, 2, height, width), torch.rand(n, 4)
    perms = torch.stack([torch.randperm(n, generator=g) for _ in range(4)])
    sizes_h = torch.tensor([h, h, height - h, height - h])
    sizes_w = torch.tensor([w, width - w, w, width - w])
    tops = (torch.rand(n, 4, generator=g) * (height - sizes_h + 1)).long()
    lefts = (torch.rand(n, 4, generator=g) * (width - sizes_w + 1)).long()
    out, out_targets = ricap(images, targets, perms, torch.tensor(w), torch.tensor(h), tops, lefts)
    ref, ref_targets = ricap_by_slicing(images, targets, perms, w, h, tops, lefts)
    assert torch.equal(out, ref)
    assert torch.allclose(out_targets, ref_targets, atol=1e-6)


def test_ricap_label_weights_equal_the_areas_each_sample_contributes():
    n, height, width = 10, 32, 32
    boundaries = set()
    for seed in range(30):
        torch.manual_seed(seed)
        # pixel value = sample * 10000 + y * 100 + x: the output says where each pixel came from
        y = torch.arange(height).view(1, 1, height, 1) * 100
        x = torch.arange(width).view(1, 1, 1, width)
        images = (torch.arange(n).view(n, 1, 1, 1) * 10000 + y + x).float().expand(n, 3, -1, -1)
        out, targets = RICAP(beta=0.3)(images, one_hot(n), gen(seed))
        assert torch.allclose(targets.sum(1), torch.ones(n), atol=1e-6)
        code = out[:, 0].long()
        source = code // 10000
        counts = F.one_hot(source.flatten(1), n).sum(1).float() / (height * width)
        assert torch.allclose(targets, counts, atol=1e-6)
        # four rectangles split at one boundary (w, h) for the whole batch; each a shifted crop
        src_y, src_x = code % 10000 // 100, code % 100
        row_change = (src_y[:, 1:] - src_y[:, :-1] != 1).any(2).any(0)  # (H - 1,)
        col_change = (src_x[:, :, 1:] - src_x[:, :, :-1] != 1).any(1).any(0)
        assert row_change.sum() <= 1 and col_change.sum() <= 1
        h = int(row_change.nonzero()[0]) + 1 if row_change.any() else None
        w = int(col_change.nonzero()[0]) + 1 if col_change.any() else None
        boundaries.add((w, h))
        for rows in (slice(0, h), slice(h, None)):
            for cols in (slice(0, w), slice(w, None)):
                region = source[:, rows, cols].flatten(1)
                assert (region == region[:, :1]).all()  # one partner per region
    assert len(boundaries) > 10


# ------------------------------------------------------------------------------ all of them

AUGMENTS = [Cutout(), RandomErasing(), Mixup(), CutMix(prob=1.0), RICAP()]


@pytest.mark.parametrize("aug", AUGMENTS, ids=lambda a: type(a).__name__)
def test_same_seed_same_output(aug):
    images, targets = torch.randn(16, 3, 32, 32), one_hot(16)
    calls = iter(range(100))

    def run(seed):
        # Beta draws (mixup, cutmix, ricap) come from the global RNG; cutout and random
        # erasing draw from the generator alone, so their global RNG differs on every call
        beta = isinstance(aug, (Mixup, CutMix, RICAP))
        torch.manual_seed(123 if beta else next(calls))
        return aug(images, targets, gen(seed))

    first, again, other = run(0), run(0), run(1)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])
    assert first[0].shape == images.shape and first[0].dtype == images.dtype


@pytest.mark.parametrize("make, argument", [
    (lambda: Cutout(0), "size"), (lambda: RandomErasing(p=1.5), "p"),
    (lambda: RandomErasing(scale=(0.5, 0.2)), "scale"),
    (lambda: RandomErasing(value="mean"), "value"), (lambda: Mixup(0.0), "alpha"),
    (lambda: CutMix(prob=2), "prob"), (lambda: RICAP(beta=-1), "beta")])
def test_invalid_settings_are_refused_naming_the_argument(make, argument):
    with pytest.raises(ValueError, match=f"^{argument} must"):
        make()


@pytest.mark.parametrize("aug", [Mixup(), CutMix(prob=1.0), RICAP()],
                         ids=lambda a: type(a).__name__)
def test_the_generator_alone_decides_permutations_and_positions(aug):
    """README, Extending: an augmentation draws its random numbers from the generator it is
    given; only lambda's Beta draw comes from torch's global RNG (torch has no seeded Beta
    sampler). With one generator seed and two global seeds, the partner permutations agree, and
    so do CutMix's box centres."""
    images = torch.randn(16, 3, 24, 40)

    def params(global_seed):
        torch.manual_seed(global_seed)
        return aug.make_params(images, gen(5))

    first, second = params(1), params(2)
    assert torch.equal(first[0], second[0])
    if isinstance(aug, CutMix):
        centres = [(top + (bottom - top) // 2, left + (right - left) // 2)
                   for _, top, left, bottom, right in (first, second)]
        assert torch.equal(centres[0][0], centres[1][0])
        assert torch.equal(centres[0][1], centres[1][1])


def test_cutmix_boxes_on_a_wide_image_scale_each_side_and_centre_anywhere():
    """Yun et al. 2019: the box is r_w = W sqrt(1 - lambda) by r_h = H sqrt(1 - lambda), its
    centre uniform over the image: on a 24 x 40 image each side follows its own dimension."""
    torch.manual_seed(0)
    images, generator = torch.zeros(2, 3, 24, 40), gen(0)
    boxes = [CutMix(prob=1.0).make_params(images, generator)[1:] for _ in range(300)]
    for top, left, bottom, right in boxes:
        cut_h, cut_w = (bottom - top).item(), (right - left).item()
        assert abs(cut_h / 24 - cut_w / 40) <= 0.5 / 24 + 0.5 / 40
    centre_x = [(left + (right - left) // 2).item() for _, left, _, right in boxes]
    centre_y = [(top + (bottom - top) // 2).item() for top, _, bottom, _ in boxes]
    assert min(centre_x) >= 0 and max(centre_x) == 39 and max(centre_y) == 23
    assert max(c for c in centre_x) > 24  # the width, not the height, bounds x


def test_ricap_crops_fit_their_regions_and_take_every_position_on_a_wide_image():
    """Takahashi et al. 2018: the boundary (w, h) lies in [0, W] x [0, H]; each of the four
    crops (sizes w x h, (W-w) x h, w x (H-h), (W-w) x (H-h)) sits uniformly where it fits."""
    torch.manual_seed(0)
    images, generator = torch.zeros(8, 3, 24, 40), gen(0)
    ws, tops_seen, lefts_seen = [], [], []
    for _ in range(100):
        _, w, h, tops, lefts = RICAP().make_params(images, generator)
        assert 0 <= w <= 40 and 0 <= h <= 24
        heights = torch.stack([h, h, 24 - h, 24 - h])
        widths = torch.stack([w, 40 - w, w, 40 - w])
        assert ((tops >= 0) & (tops <= 24 - heights)).all()
        assert ((lefts >= 0) & (lefts <= 40 - widths)).all()
        ws.append(w.item())
        tops_seen.append(tops.max().item())
        lefts_seen.append(lefts.max().item())
    assert max(ws) > 24  # w follows the width
    assert max(tops_seen) > 12 and max(lefts_seen) > 20  # positions spread over the free range


def test_cutout_centres_cover_a_wide_image_and_odd_sizes_stay_square():
    """DeVries & Taylor 2017: the square's centre is uniform over the whole image (here 24 x 40:
    x reaches 39), the square size x size, clipped at the border."""
    images, generator = torch.ones(512, 3, 24, 40), gen(0)
    out, _ = Cutout(5)(images, one_hot(512)[:, :10], generator)
    zeroed = (out == 0).all(1)  # (B, H, W)
    xs = zeroed.any(1).float().argmax(1)  # the first zeroed column of each image
    assert xs.max() > 24
    for mask in zeroed[:64]:
        rows, cols = mask.any(1).nonzero()[:, 0], mask.any(0).nonzero()[:, 0]
        if 0 < rows.min() and rows.max() < 23 and 0 < cols.min() and cols.max() < 39:
            assert (len(rows), len(cols)) == (5, 5) and mask.sum() == 25  # unclipped: 5 x 5
