"""Datasets, splits and the on-device batch loader, checked against their definitions."""
from __future__ import annotations

import urllib.error

import pytest
import torch
import torch.nn.functional as F

from cifar_tricks.data import BatchLoader, Split, cifar10, cifar100, stratified_split, synthetic
from cifar_tricks.errors import DatasetNotFoundError
from conftest import write_fake_cifar

STATS = dict(mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))


def identity_loader(split: Split, **kwargs) -> BatchLoader:
    """Normalisation that leaves pixel values as they are: (x - 0) * 1."""
    return BatchLoader(split, num_classes=10, mean=(0, 0, 0), std=(1 / 255,) * 3, **kwargs)


def indexed_split(n: int, h: int = 8) -> Split:
    """Image i is the constant i (so a batch tells which samples it holds); label i % 10."""
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, h, h).contiguous()
    return Split(images, torch.arange(n) % 10)


# ------------------------------------------------------------------------------- CIFAR files

def test_cifar_pickles_are_read_channel_first_with_their_labels(tmp_path):
    arrays = write_fake_cifar(tmp_path, "cifar10")
    data = cifar10(str(tmp_path), num_classes=10, **STATS)
    raw, labels = arrays["data_batch_1"]
    # the official layout: 1024 red bytes, then green, then blue, each row-major 32x32
    assert torch.equal(data.train.images[0, 0].flatten(), torch.from_numpy(raw[0, :1024]))
    assert torch.equal(data.train.images[0, 2, 31], torch.from_numpy(raw[0, 3072 - 32:]))
    assert data.train.labels[:len(labels)].tolist() == labels
    assert len(data.train) == 50_000 and len(data.test) == 10_000 and data.val is None
    assert data.train.images.dtype == torch.uint8


def test_cifar100_reads_fine_labels(tmp_path):
    arrays = write_fake_cifar(tmp_path, "cifar100")
    data = cifar100(str(tmp_path), num_classes=100, **STATS)
    assert data.train.labels.tolist() == arrays["train"][1]
    assert data.num_classes == 100


def test_missing_dataset_offline_names_the_folder(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        cifar10(str(tmp_path), num_classes=10, download=False, **STATS)
    message = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "data_batch_1" in message and "data.root" in message


def test_failed_download_says_why_and_where_to_put_the_files(tmp_path, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(DatasetNotFoundError) as err:
        cifar10(str(tmp_path), num_classes=10, download=True, **STATS)
    assert "download failed" in str(err.value) and "Name or service not known" in str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in str(err.value)


def test_a_reencoded_copy_with_other_bytes_loads(tmp_path):
    # No md5 check: any files in the right layout load (the shared JPEG copy has other bytes).
    write_fake_cifar(tmp_path, "cifar10", seed=1)
    assert len(cifar10(str(tmp_path), num_classes=10, **STATS).train) == 50_000


# ------------------------------------------------------------------------------- splits

def test_stratified_split_keeps_class_shares_and_is_reproducible():
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    chosen, rest = stratified_split(labels, 20, seed=3)
    assert labels[chosen].bincount().tolist() == [12, 6, 2]
    assert sorted(torch.cat([chosen, rest]).tolist()) == list(range(100))
    assert torch.equal(chosen, stratified_split(labels, 20, seed=3)[0])
    assert not torch.equal(chosen, stratified_split(labels, 20, seed=4)[0])


def test_stratified_split_quotas_add_up_with_remainders():
    labels = torch.tensor([0] * 5 + [1] * 5 + [2] * 5)
    chosen, _ = stratified_split(labels, 7, seed=0)
    assert len(chosen) == 7 and sorted(labels[chosen].bincount().tolist()) == [2, 2, 3]


def test_fraction_subsets_train_only_and_val_is_held_out():
    data = synthetic(num_train=1000, num_test=300, val_size=200, fraction=0.5)
    assert len(data.val) == 200 and len(data.train) == 400 and len(data.test) == 300
    assert data.train.labels.bincount().tolist() == [40] * 10
    assert data.val.labels.bincount().tolist() == [20] * 10
    full = synthetic(num_train=1000, num_test=300)
    train_rows = {tuple(x.flatten()[:64].tolist()) for x in data.train.images}
    val_rows = {tuple(x.flatten()[:64].tolist()) for x in data.val.images}
    full_rows = {tuple(x.flatten()[:64].tolist()) for x in full.train.images}
    assert not train_rows & val_rows and (train_rows | val_rows) <= full_rows


def test_the_val_split_does_not_depend_on_the_fraction():
    a = synthetic(num_train=500, val_size=100, fraction=1.0)
    b = synthetic(num_train=500, val_size=100, fraction=0.3)
    assert torch.equal(a.val.images, b.val.images)


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.5])
def test_fraction_outside_unit_interval_is_refused(fraction):
    with pytest.raises(ValueError, match=r"^fraction=.*outside \(0, 1\]"):
        synthetic(num_train=100, fraction=fraction)


@pytest.mark.parametrize("val_size", [-1, 100, 10_000])
def test_val_size_larger_than_train_is_refused(val_size):
    with pytest.raises(ValueError, match=r"^val_size=.*up to 90"):
        synthetic(num_train=100, val_size=val_size)


def test_synthetic_classes_are_separable():
    # nearest class mean on raw pixels already beats chance by far: the signal is real
    data = synthetic(num_train=500, num_test=200)
    x = data.train.images.float().flatten(1)
    means = torch.stack([x[data.train.labels == c].mean(0) for c in range(10)])
    pred = torch.cdist(data.test.images.float().flatten(1), means).argmin(1)
    assert (pred == data.test.labels).float().mean() > 0.9


# ------------------------------------------------------------------------------- loader

def test_eval_batches_are_the_normalised_images_in_order():
    data = synthetic(num_train=100, num_test=70)
    loader = BatchLoader(data.test, 10, 32, data.mean, data.std, train=False)
    batches = list(loader)
    assert [len(x) for x, _ in batches] == [32, 32, 6]  # eval keeps the last partial batch
    images = torch.cat([x for x, _ in batches])
    mean, std = torch.tensor(data.mean).view(1, 3, 1, 1), torch.tensor(data.std).view(1, 3, 1, 1)
    torch.testing.assert_close(images, (data.test.images.float() / 255 - mean) / std)
    targets = torch.cat([t for _, t in batches])
    assert torch.equal(targets, F.one_hot(data.test.labels, 10).float())


def test_each_epoch_visits_every_sample_once_in_a_new_order():
    split = indexed_split(96)
    loader = identity_loader(split, batch_size=32, train=True, seed=5)
    seen = []
    for epoch in (1, 2):
        loader.set_epoch(epoch)
        ids = torch.cat([x[:, 0, 0, 0] for x, _ in loader]).long()
        assert sorted(ids.tolist()) == list(range(96))
        seen.append(ids)
    assert not torch.equal(seen[0], seen[1])


def test_targets_follow_their_images():
    split = indexed_split(64)
    for images, targets in identity_loader(split, batch_size=16, train=True):
        assert torch.equal(targets.argmax(1), images[:, 0, 0, 0].long() % 10)


def test_same_seed_and_epoch_give_the_same_batches():
    data = synthetic(num_train=128)
    make = lambda: BatchLoader(data.train, 10, 32, data.mean, data.std, train=True,  # noqa: E731
                               crop_padding=4, flip=True, seed=7)
    a, b = make(), make()
    a.set_epoch(3)
    b.set_epoch(3)
    for (xa, ta), (xb, tb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ta, tb)


def test_ranks_take_disjoint_shards_that_cover_the_epoch():
    split = indexed_split(128)
    shards = []
    for rank in (0, 1):  # batch_size is the global batch: 32 = 2 ranks x 16
        loader = identity_loader(split, batch_size=32, train=True, seed=1, rank=rank, world_size=2)
        loader.set_epoch(4)
        assert len(loader) == 4
        shards.append(set(torch.cat([x[:, 0, 0, 0] for x, _ in loader]).long().tolist()))
    assert not shards[0] & shards[1] and shards[0] | shards[1] == set(range(128))


def test_the_ranks_together_see_the_batches_of_one_process():
    """Data parallel training sees, batch for batch, the images one process sees, with the same
    crops and flips: the global batch is split, not resampled."""
    data = synthetic(num_train=96)
    common = dict(num_classes=10, batch_size=32, mean=data.mean, std=data.std, train=True,
                  crop_padding=4, flip=True, seed=5)
    single = BatchLoader(data.train, **common)
    ranks = [BatchLoader(data.train, **common, rank=r, world_size=2) for r in (0, 1)]
    for loader in (single, *ranks):
        loader.set_epoch(2)
    for (x, t), *parts in zip(single, *ranks):
        assert torch.equal(x, torch.cat([p[0] for p in parts]))
        assert torch.equal(t, torch.cat([p[1] for p in parts]))


def test_evaluation_over_ranks_covers_every_image_once():
    split = indexed_split(101)  # not divisible by the ranks
    seen = []
    for rank in range(3):
        loader = identity_loader(split, batch_size=16, train=False, rank=rank, world_size=3)
        seen += torch.cat([x[:, 0, 0, 0] for x, _ in loader]).long().tolist()
    assert sorted(seen) == list(range(101))


def test_drop_last_and_limit_batches():
    split = indexed_split(100)
    assert len(identity_loader(split, batch_size=32, train=True)) == 3
    assert len(identity_loader(split, batch_size=32, train=False)) == 4
    limited = identity_loader(split, batch_size=32, train=True, limit_batches=2)
    assert len(limited) == 2 and len(list(limited)) == 2


def windows_of(image: torch.Tensor, padding: int) -> list[torch.Tensor]:
    """Every crop and flipped crop of the zero-padded image: the reference RandomCrop + flip."""
    h, w = image.shape[-2:]
    padded = F.pad(image, [padding] * 4)
    offsets = range(2 * padding + 1)
    crops = [padded[:, y:y + h, x:x + w] for y in offsets for x in offsets]
    return crops + [c.flip(-1) for c in crops]


def test_crop_and_flip_give_a_window_of_the_padded_image_per_sample():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 12, 12), dtype=torch.uint8, generator=g)
    split = Split(images, torch.arange(64) % 10)
    loader = identity_loader(split, batch_size=64, train=True, crop_padding=2, flip=True)
    batch, _ = next(iter(loader))
    drawn = []
    for out in batch:
        matches = [(i, k) for i in range(64) for k, win in enumerate(windows_of(images[i], 2))
                   if torch.equal(win.float(), out)]
        assert matches, "an output is not a crop/flip of any input"
        drawn.append(matches[0][1])
    # per-sample randomness: the batch draws many different offsets and both flip states
    assert len(set(drawn)) > 20
    assert any(k >= 25 for k in drawn) and any(k < 25 for k in drawn)


def test_crop_offsets_and_flips_are_uniform():
    split = Split(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), torch.zeros(1, dtype=torch.long))
    loader = BatchLoader(split, 10, 1, (0, 0, 0), (1 / 255,) * 3, train=True, crop_padding=1,
                         flip=True)
    g = torch.Generator().manual_seed(0)
    # pad 1 around a 4x4 zero image: mark the source so each (dy, dx, flip) gives a distinct crop
    loader._source = torch.arange(2 * 3 * 36, dtype=torch.float).view(2, 3, 6, 6)
    counts: dict[tuple, int] = {}
    for _ in range(3600):
        crop = loader._crop_flip(torch.zeros(1, dtype=torch.long), g)[0, 0, 0, 0].item()
        counts[crop] = counts.get(crop, 0) + 1
    assert len(counts) == 2 * 9  # 3x3 offsets x 2 flips
    assert max(counts.values()) / min(counts.values()) < 1.6


def test_loader_yields_float_images_and_soft_targets_on_the_data_device():
    data = synthetic(num_train=64)
    loader = BatchLoader(data.train, 10, 16, data.mean, data.std, train=True, crop_padding=4,
                         flip=True)
    for images, targets in loader:
        assert images.device == data.train.images.device and images.dtype == torch.float32
        assert targets.shape == (16, 10)


# ------------------------------------------------------------------------------- labels, names
# (imports here: this section was appended to the file)
import json  # noqa: E402
import pickle  # noqa: E402

import numpy as np  # noqa: E402

from cifar_tricks.errors import ConfigError, DatasetError  # noqa: E402
from conftest import run_cli  # noqa: E402

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck"]
COARSE_NAMES = [f"superclass_{i}" for i in range(20)]
FINE_NAMES = [f"fine_{i}" for i in range(100)]


@pytest.fixture(scope="module")
def cifar100_files(tmp_path_factory):
    """The release's train and test pickles, with fine and coarse labels (each fine class in one
    superclass, as in CIFAR-100), written once: {file: (path, data, fine, coarse)}."""
    rng = np.random.default_rng(7)
    superclass = rng.permutation(100) % 20  # fine class -> its coarse class
    source = tmp_path_factory.mktemp("cifar100_source")
    files = {}
    for name, n in (("train", 50_000), ("test", 10_000)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = [int(x) for x in rng.integers(0, 100, n)]
        coarse = [int(superclass[f]) for f in fine]
        with open(source / name, "wb") as fh:
            pickle.dump({b"data": data, b"fine_labels": fine, b"coarse_labels": coarse}, fh)
        files[name] = (source / name, data, fine, coarse)
    return files


def cifar100_folder(root, files, meta: object = None):
    """`root/cifar-100-python/` linking the shared pickles, with `meta` pickled as its meta file
    (the release's names by default)."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, (path, *_) in files.items():
        (folder / name).symlink_to(path)
    if meta is None:
        meta = {b"fine_label_names": [n.encode() for n in FINE_NAMES],
                b"coarse_label_names": [n.encode() for n in COARSE_NAMES]}
    with open(folder / "meta", "wb") as fh:
        pickle.dump(meta, fh)
    return root


def test_cifar100_coarse_labels_are_the_files_coarse_labels_with_their_names(tmp_path,
                                                                             cifar100_files):
    root = cifar100_folder(tmp_path, cifar100_files)
    _, images, _, coarse = cifar100_files["test"]
    data = cifar100(str(root), num_classes=20, labels="coarse", val_size=2000, **STATS)
    assert data.num_classes == 20 and data.classes == COARSE_NAMES
    assert data.test.labels.tolist() == coarse
    assert torch.equal(data.test.images.flatten(1), torch.from_numpy(images))
    # train and the stratified validation split share out the file's coarse labels, each
    # superclass in proportion
    file_counts = torch.bincount(torch.tensor(cifar100_files["train"][3]), minlength=20)
    val_counts = torch.bincount(data.val.labels, minlength=20)
    assert torch.equal(torch.bincount(data.train.labels, minlength=20) + val_counts, file_counts)
    assert torch.allclose(val_counts / 2000, file_counts / 50_000, atol=1e-3)
    fine = cifar100(str(root), num_classes=100, **STATS)  # the default: fine labels
    assert fine.train.labels.tolist() == cifar100_files["train"][2]
    assert fine.classes == FINE_NAMES
    # the names alone, without reading the images (for labelling a trained run's outputs)
    from cifar_tricks.data import cifar_class_names

    assert cifar_class_names("cifar100", str(root), "coarse") == COARSE_NAMES
    assert cifar_class_names("cifar100", str(root)) == FINE_NAMES


def test_cifar10_class_names_come_from_batches_meta_and_default_to_numbers(tmp_path, caplog):
    write_fake_cifar(tmp_path, "cifar10")  # the shared fake has no batches.meta
    assert cifar10(str(tmp_path), num_classes=10, **STATS).classes == \
        [f"class {i}" for i in range(10)]
    assert "batches.meta is missing" in caplog.text
    with open(tmp_path / "cifar-10-batches-py" / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [n.encode() for n in CIFAR10_NAMES],
                     b"num_cases_per_batch": 10000, b"num_vis": 3072}, fh)
    assert cifar10(str(tmp_path), num_classes=10, **STATS).classes == CIFAR10_NAMES
    assert synthetic(num_classes=3, num_train=30, num_test=9).classes == \
        ["class 0", "class 1", "class 2"]


@pytest.mark.parametrize("meta, check", [
    ({b"fine_label_names": [b"x"] * 100}, "no list of 20 class names under b'coarse_label_names'"),
    ({b"coarse_label_names": [b"x"] * 19}, "no list of 20 class names"),
    ([b"not", b"a", b"dict"], "no list of 20 class names"),
])
def test_a_wrong_meta_file_is_refused_naming_it(tmp_path, cifar100_files, meta, check):
    root = cifar100_folder(tmp_path, cifar100_files, meta)
    with pytest.raises(DatasetError) as err:
        cifar100(str(root), num_classes=20, labels="coarse", **STATS)
    assert check in str(err.value) and str(root / "cifar-100-python" / "meta") in str(err.value)


def test_a_planted_meta_file_is_refused_before_its_code_runs(tmp_path, cifar100_files):
    from test_safe_files import Payload

    marker = tmp_path / "marker"
    root = cifar100_folder(tmp_path, cifar100_files, {b"coarse_label_names": Payload(marker)})
    with pytest.raises(DatasetError, match="posix.system"):
        cifar100(str(root), num_classes=20, labels="coarse", **STATS)
    assert not marker.exists()


@pytest.mark.parametrize("overrides, message", [
    (["data=cifar10", "data.labels=coarse"],
     "data.labels=coarse is not a labelling of cifar10, which has fine (10 classes); coarse "
     "labels are read by data=cifar100_coarse"),
    (["data=cifar100", "data.labels=coarse"],
     "data.num_classes=100 does not match the 20 classes of cifar100's coarse labels "
     "(data.labels=coarse): set data.num_classes=20 (data=cifar100_coarse sets both)"),
    (["data=cifar100_coarse", "data.num_classes=100"], "set data.num_classes=20"),
    (["data=cifar10", "data.num_classes=100"], "set data.num_classes=10"),
    (["data=cifar100", "data.labels=medium"], "set data.labels to one of fine, coarse"),
])
def test_labels_that_the_dataset_lacks_or_a_wrong_class_count_are_config_errors(overrides,
                                                                                  message):
    from cifar_tricks.config import compose
    from cifar_tricks.validate import validate

    with pytest.raises(ConfigError) as err:
        validate(compose(overrides))
    assert message in str(err.value)
    validate(compose(["data=cifar100_coarse"]))  # the option itself is consistent


def test_the_dataset_function_refuses_the_same_combinations(tmp_path):
    with pytest.raises(ConfigError, match="data=cifar100_coarse"):
        cifar10(str(tmp_path), num_classes=10, labels="coarse", **STATS)
    with pytest.raises(ConfigError, match="set data.num_classes=20"):
        cifar100(str(tmp_path), num_classes=100, labels="coarse", **STATS)


@pytest.mark.slow
def test_a_run_trains_on_the_coarse_labels_through_the_cli(tmp_path, cifar100_files):
    from cifar_tricks.models import param_count

    root = cifar100_folder(tmp_path / "data", cifar100_files)
    run_dir = tmp_path / "run"
    run_cli("data=cifar100_coarse", f"data.root={root}", "model=lenet", "sched=constant",
            "trainer.epochs=1", "trainer.batch_size=64", "trainer.limit_train_batches=2",
            "trainer.limit_eval_batches=1", "trainer.device=cpu", "trainer.num_threads=1",
            f"hydra.run.dir={run_dir}")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs"] == 1
    assert summary["params"] == param_count("lenet", num_classes=20)  # a 20-way head
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert [v.shape[0] for k, v in state.items() if k.endswith(".bias")][-1] == 20
