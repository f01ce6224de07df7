"""airbench's loader options, checked against their definitions (Jordan 2024, "94% on CIFAR-10
in 3.29 seconds on a single GPU", arXiv 2404.00498):

- `flip_mode=alternating`: each training image has one flip bit, drawn once from the seed; in
  epoch e (counting from 1) it is mirrored iff bit XOR (e is even).
- `crop_fill=reflect`: the random crop is a window of `F.pad(image, (p,)*4, mode='reflect')`.

Both are `data.*` keys whose defaults (`random`, `zeros`) give the loader's batches as before and
keep older jobs' keys.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from cifar_tricks.build import build_loaders
from cifar_tricks.config import TrainerConfig
from cifar_tricks.data import BatchLoader, Split
from cifar_tricks.data.loader import CROP_FILLS
from cifar_tricks.errors import ConfigError
from cifar_tricks.identity import config_differences, job_key
from cifar_tricks.validate import validate
from conftest import TINY, compose_config


def random_split(n: int, h: int = 8, w: int = 8, seed: int = 0) -> Split:
    """Random images (so each window of each image is unique) labelled by their index."""
    g = torch.Generator().manual_seed(seed)
    return Split(torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=g),
                 torch.arange(n))


def raw_loader(split: Split, **kwargs) -> BatchLoader:
    """Pixels as they are ((x - 0) * 1) and one class per image, so a target names its image."""
    return BatchLoader(split, num_classes=len(split), mean=(0, 0, 0), std=(1 / 255,) * 3,
                       train=True, **kwargs)


def placements(loader: BatchLoader, split: Split, fill: str = "reflect") -> dict:
    """{image index: (mirrored, dy, dx)} of one epoch, found by matching each yielded image with
    every window of the reference padding (`F.pad`) of its source image and of its mirror."""
    p = loader.crop_padding
    h, w = split.images.shape[-2:]
    found = {}
    for images, targets in loader:
        for image, i in zip(images, targets.argmax(1).tolist()):
            source = split.images[i:i + 1].float()
            padded = F.pad(source, (p,) * 4, mode="reflect") if fill == "reflect" \
                else F.pad(source, (p,) * 4)
            # (mirrored, dy, dx, C, h, w): every window of the padded image and of its mirror
            windows = torch.cat([padded, padded.flip(-1)]).unfold(2, h, 1).unfold(3, w, 1)
            windows = windows.permute(0, 2, 3, 1, 4, 5)
            matches = (windows == image).flatten(3).all(-1).nonzero().tolist()
            assert len(matches) == 1, f"image {i}: {len(matches)} matching windows"
            found[i] = tuple(matches[0])
    return found


def orientations(loader: BatchLoader, epoch: int) -> dict[int, int]:
    """{image index: 1 if seen mirrored} in `epoch` (crop_padding=0: the image or its mirror)."""
    loader.set_epoch(epoch)
    seen = {}
    for images, targets in loader:
        source = loader.split.images[targets.argmax(1)]
        mirrored = (images == source.flip(-1)).flatten(1).all(1)
        assert (mirrored | (images == source).flatten(1).all(1)).all()
        seen.update(zip(targets.argmax(1).tolist(), mirrored.long().tolist()))
    return seen


# --------------------------------------------------------------------------- alternating flip

def test_alternating_flip_mirrors_each_image_in_every_other_epoch():
    split = random_split(256)
    loader = raw_loader(split, batch_size=32, flip=True, flip_mode="alternating", seed=3)
    epochs = [orientations(loader, e) for e in (1, 2, 3, 4, 5)]
    bits = epochs[0]
    assert sorted(bits) == list(range(256))
    for e, seen in enumerate(epochs, start=1):  # the definition: bit XOR (e is even)
        assert seen == {i: b ^ (e % 2 == 0) for i, b in bits.items()}, e
    # any two consecutive epochs: each image once as it is, once mirrored
    for a, b in zip(epochs, epochs[1:]):
        assert all(a[i] + b[i] == 1 for i in a)
    assert 0.4 < sum(bits.values()) / 256 < 0.6  # a fair coin per image (here 0.5 +- 3 sd)


def test_epoch_one_shows_the_bits_drawn_from_the_seed():
    """airbench flips its stored copy once before epoch 0 and mirrors everything in its odd
    epochs; counting from 1, epoch 1 shows the drawn bits and epoch 2 their inverse. The bits are
    the loader's documented draw: randint(0, 2, (N,)) from a generator seeded seed*100003 - 1."""
    split = random_split(128)
    drawn = torch.randint(0, 2, (128,), generator=torch.Generator().manual_seed(8 * 100_003 - 1))
    loader = raw_loader(split, batch_size=32, flip=True, flip_mode="alternating", seed=8)
    assert orientations(loader, 1) == dict(enumerate(drawn.tolist()))
    assert orientations(loader, 2) == dict(enumerate((1 - drawn).tolist()))


def test_alternating_bits_depend_on_the_seed_only():
    split = random_split(192)
    bits = lambda **kw: orientations(  # noqa: E731
        raw_loader(split, flip=True, flip_mode="alternating", **kw), 1)
    reference = bits(batch_size=32, seed=5)
    # another batch size, another shuffling order (the epoch's permutation): the same bits
    assert bits(batch_size=64, seed=5) == reference
    assert bits(batch_size=48, seed=5) == reference
    shifted = raw_loader(split, batch_size=32, flip=True, flip_mode="alternating", seed=5)
    assert orientations(shifted, 3) == reference  # epoch 3: another order, the bits as in 1
    assert bits(batch_size=32, seed=6) != reference  # another run, other bits


def test_ranks_agree_on_the_bits_of_each_global_batch():
    split = random_split(128)
    common = dict(batch_size=32, flip=True, flip_mode="alternating", crop_padding=2,
                  crop_fill="reflect", seed=9)
    single = raw_loader(split, **common)
    ranks = [raw_loader(split, **common, rank=r, world_size=2) for r in (0, 1)]
    for epoch in (1, 2):
        for loader in (single, *ranks):
            loader.set_epoch(epoch)
        for (x, t), *parts in zip(single, *ranks):
            assert torch.equal(x, torch.cat([p[0] for p in parts]))
            assert torch.equal(t, torch.cat([p[1] for p in parts]))
    per_rank = [orientations(raw_loader(split, batch_size=32, flip=True, rank=r, world_size=2,
                                        flip_mode="alternating", seed=9), 2) for r in (0, 1)]
    alone = orientations(raw_loader(split, batch_size=32, flip=True, flip_mode="alternating",
                                    seed=9), 2)
    assert {**per_rank[0], **per_rank[1]} == alone and not per_rank[0].keys() & per_rank[1].keys()


def test_a_resumed_loader_yields_the_batches_of_the_uninterrupted_one():
    split = random_split(96)
    make = lambda: raw_loader(split, batch_size=32, flip=True,  # noqa: E731
                              flip_mode="alternating", crop_padding=2, crop_fill="reflect",
                              seed=4)
    uninterrupted = make()
    batches = {}
    for epoch in (1, 2, 3, 4):
        uninterrupted.set_epoch(epoch)
        batches[epoch] = list(uninterrupted)
    for k in (2, 3, 4):  # "resume" at epoch k: a new process, a new loader
        resumed = make()
        resumed.set_epoch(k)
        for (xa, ta), (xb, tb) in zip(batches[k], resumed, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ta, tb)


def test_alternating_flip_keeps_a_crop_offset_per_image_per_epoch():
    split = random_split(64)
    loader = raw_loader(split, batch_size=64, flip=True, flip_mode="alternating",
                        crop_padding=2, crop_fill="reflect", seed=1)
    seen = []
    for epoch in (1, 2):
        loader.set_epoch(epoch)
        seen.append(placements(loader, split))
    for i in range(64):
        assert seen[0][i][0] + seen[1][i][0] == 1  # orientations alternate under the crop
    offsets = [{v[1:] for v in s.values()} for s in seen]
    assert all(len(o) > 10 for o in offsets)  # not one offset for the batch: one per image
    assert [seen[0][i][1:] for i in range(64)] != [seen[1][i][1:] for i in range(64)]
    # the crops are those random flipping draws: the flip mode changes only the flips
    random = raw_loader(split, batch_size=64, flip=True, crop_padding=2, crop_fill="reflect",
                        seed=1)
    random.set_epoch(1)
    assert {i: v[1:] for i, v in placements(random, split).items()} == \
        {i: v[1:] for i, v in seen[0].items()}


def test_without_flip_the_mode_flips_nothing():
    split = random_split(64)
    for mode in ("random", "alternating"):
        loader = raw_loader(split, batch_size=32, flip=False, flip_mode=mode, seed=2)
        for epoch in (1, 2):
            assert set(orientations(loader, epoch).values()) == {0}


def test_an_unknown_mode_or_fill_names_the_setting_and_the_choices():
    split = random_split(8)
    with pytest.raises(ValueError, match=r"flip_mode='sometimes'.*random, alternating"):
        raw_loader(split, batch_size=4, flip=True, flip_mode="sometimes")
    with pytest.raises(ValueError, match=r"crop_fill='edge'.*zeros, reflect"):
        raw_loader(split, batch_size=4, crop_padding=2, crop_fill="edge")


# --------------------------------------------------------------------------- reflect padding

@pytest.mark.parametrize("h, w", [(8, 8), (8, 6)])
def test_reflect_fill_is_torch_reflect_padding(h, w):
    images = random_split(4, h, w).images
    for p in range(min(h, w)):
        expected = F.pad(images.float(), (p,) * 4, mode="reflect")
        assert torch.equal(CROP_FILLS["reflect"](images, p).float(), expected), p


def test_reflect_crops_are_windows_of_the_reflect_padded_image_at_every_offset():
    split = random_split(96)
    loader = raw_loader(split, batch_size=96, crop_padding=2, crop_fill="reflect", flip=True,
                        seed=0)
    offsets = set()
    for epoch in range(1, 7):
        loader.set_epoch(epoch)
        offsets |= {v for v in placements(loader, split).values()}  # asserts one match each
    # every offset, the borders (0 and 2p) included, in both orientations
    assert offsets == {(m, y, x) for m in (0, 1) for y in range(5) for x in range(5)}


def test_reflect_padding_must_be_below_the_image_size():
    split = random_split(8, 8, 8)
    raw_loader(split, batch_size=4, crop_padding=7, crop_fill="reflect")
    with pytest.raises(ValueError, match=r"crop_padding=8 with crop_fill=reflect.*below.*8"):
        raw_loader(split, batch_size=4, crop_padding=8, crop_fill="reflect")
    raw_loader(split, batch_size=4, crop_padding=8, crop_fill="zeros")  # zeros: any padding


# --------------------------------------------------------------------------- defaults

def todays_batches(split: Split, batch_size: int, padding: int, seed: int, epoch: int):
    """The loader before these options, written out: per epoch a permutation, then per batch a
    row offset, a column offset and a coin per image, all from one generator of (seed, epoch);
    the window at that offset of the zero-padded image, or of its mirror where the coin says."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(len(split), generator=g)
    h, w = split.images.shape[-2:]
    padded = F.pad(split.images, [padding] * 4)
    for i in range(len(split) // batch_size):
        batch = order[i * batch_size:(i + 1) * batch_size]
        dy = torch.randint(0, 2 * padding + 1, (batch_size,), generator=g)
        dx = torch.randint(0, 2 * padding + 1, (batch_size,), generator=g)
        coin = torch.randint(0, 2, (batch_size,), generator=g)
        sources = [padded[j].flip(-1) if c else padded[j] for j, c in zip(batch, coin)]
        yield torch.stack([s[:, y:y + h, x:x + w] for s, y, x in
                           zip(sources, dy.tolist(), dx.tolist())]).float(), batch


def test_the_defaults_give_todays_batches_bit_for_bit():
    split = random_split(80)
    unset = raw_loader(split, batch_size=16, crop_padding=4, flip=True, seed=7)
    named = raw_loader(split, batch_size=16, crop_padding=4, flip=True, seed=7,
                       crop_fill="zeros", flip_mode="random")
    for epoch in (1, 2):
        unset.set_epoch(epoch)
        named.set_epoch(epoch)
        for (xa, ta), (xb, tb), (x, index) in zip(unset, named,
                                                  todays_batches(split, 16, 4, 7, epoch),
                                                  strict=True):
            assert torch.equal(xa, x) and torch.equal(ta.argmax(1), index)
            assert torch.equal(xa, xb) and torch.equal(ta, tb)


# --------------------------------------------------------------------------- the config keys

def test_the_data_keys_reach_the_training_loader():
    cfg = compose_config(["data=synthetic", "data.num_train=64", "data.crop_padding=2",
                          "data.crop_fill=reflect", "data.flip_mode=alternating"])
    data = instantiate(cfg.data)
    assert (data.crop_fill, data.flip_mode) == ("reflect", "alternating")  # plain strings
    loader = build_loaders(data, TrainerConfig(batch_size=32), seed=3).train
    direct = BatchLoader(data.train, 10, 32, data.mean, data.std, train=True, seed=3,
                         crop_padding=2, crop_fill="reflect", flip=True, flip_mode="alternating")
    for epoch in (1, 2):
        loader.set_epoch(epoch)
        direct.set_epoch(epoch)
        for (xa, ta), (xb, tb) in zip(loader, direct, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ta, tb)


@pytest.mark.parametrize("override, key", [("data.flip_mode=sometimes", "data.flip_mode"),
                                           ("data.crop_fill=edge", "data.crop_fill")])
def test_an_unknown_choice_fails_at_compose_time_naming_the_key(override, key):
    with pytest.raises(ConfigCompositionException) as err:
        compose_config([override])
    message = str(err.value) + str(err.value.__cause__)
    assert key in message
    assert all(v in message for v in ("random", "alternating")) or \
        all(v in message for v in ("zeros", "reflect"))


def test_reflect_padding_of_the_image_size_is_refused_before_the_run():
    validate(compose_config(TINY + ["data.crop_fill=reflect", "data.crop_padding=31"]))
    with pytest.raises(ConfigError, match=r"data\.crop_padding=32 with data\.crop_fill=reflect"):
        validate(compose_config(TINY + ["data.crop_fill=reflect", "data.crop_padding=32"]))
    validate(compose_config(TINY + ["data.crop_padding=32"]))  # zeros: up to the size


def test_the_defaults_keep_the_keys_of_jobs_from_before_the_options():
    new = OmegaConf.to_container(compose_config(["model=resnet20"]), resolve=True)
    old = {**new, "data": {k: v for k, v in new["data"].items()
                           if k not in ("crop_fill", "flip_mode")}}
    assert job_key(old) == job_key(new) and config_differences(old, new) == []
    alternating = {**new, "data": {**new["data"], "flip_mode": "alternating"}}
    assert job_key(alternating) != job_key(new)
    assert config_differences(old, alternating) == ["data.flip_mode: random -> alternating"]
