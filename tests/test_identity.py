"""A job is its configuration: the same job is found again whatever the spelling of its command
line, and settings that cannot change a result are not part of it (identity.py)."""
from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from cifar_tricks.identity import (
    NON_RESULT_KEYS,
    config_differences,
    folder_name,
    job_key,
    job_overrides,
)
from conftest import TINY, compose_config, train_in_process


def key_of(overrides: list[str]) -> str:
    return job_key(OmegaConf.to_container(compose_config(overrides), resolve=True))


@pytest.mark.parametrize("setting", [
    "data.root=/elsewhere", "data.download=false", "trainer.device=cpu",
    "trainer.num_threads=1", "trainer.compile=true", "trainer.channels_last=true",
    "trainer.eval_batch_size=7", "trainer.progress=log", "trainer.log_every=3",
    "trainer.checkpoint=false", "optimized_metric=val_acc", "lr_find.num_iter=5"])
def test_settings_that_cannot_change_a_result_leave_the_job_the_same(setting):
    assert setting.split("=")[0].startswith(NON_RESULT_KEYS)
    assert key_of(["model=resnet20", setting]) == key_of(["model=resnet20"])


@pytest.mark.parametrize("setting", [
    "optim.lr=0.05", "seed=1", "trainer.epochs=3", "trainer.precision=bf16",
    "trainer.limit_eval_batches=2", "data.fraction=0.5", "aug=[cutout]", "trick=[ema]"])
def test_settings_that_change_a_result_make_another_job(setting):
    assert key_of(["model=resnet20", setting]) != key_of(["model=resnet20"])


def test_the_order_of_same_stage_augmentations_is_part_of_the_job():
    # cutout and random erasing are both "erase" stage ops: the list order is the order applied
    assert key_of(["aug=[cutout,random_erase]"]) != key_of(["aug=[random_erase,cutout]"])


@pytest.mark.parametrize("spellings, canonical", [
    ([[], ["seed=0"], ["model=wideresnet"], ["optim.lr=1e-1"], ["data.root=/x"],
      ["trainer.device=cpu", "trainer.num_threads=2"]], []),
    ([["optim.lr=0.05"], ["optim.lr=5e-2", "seed=0"], ["seed=0", "optim.lr=0.050"]],
     ["optim.lr=0.05"]),
    ([["aug=cutout"], ["aug=[cutout]"], ["aug=[cutout]", "data.root=/y"]], ["aug=[cutout]"]),
    # what an experiment sets anyway is no part of the name
    ([["experiment=smoke"], ["experiment=smoke", "optim.lr=0.02"],
      ["experiment=smoke", "model=lenet", "seed=0"]], ["experiment=smoke"]),
    ([["experiment=smoke", "optim.lr=0.1"]], ["experiment=smoke", "optim.lr=0.1"]),
    ([["model=efficientnetb0", "+model.act_layer=silu"]],
     ["model.act_layer=silu", "model=efficientnetb0"]),
])
def test_every_spelling_of_a_job_gets_one_canonical_name(spellings, canonical):
    for overrides in spellings:
        assert job_overrides(overrides) == canonical, overrides
        assert key_of(overrides) == key_of(spellings[0])


def test_folder_names_are_flat_and_short():
    assert folder_name([]) == "defaults"
    assert folder_name(["data.root=/a/b", "seed=1"]) == "data.root=_a_b,seed=1"
    long = folder_name([f"k{i}=v" for i in range(60)])
    assert len(long) == 120 and long != folder_name([f"k{i}=v" for i in range(61)])
    # file systems limit bytes: a non-Latin value is cut by its UTF-8 length, on a character
    cyrillic = folder_name(["model.note=" + "ж" * 100])  # 2 bytes a letter
    assert len(cyrillic.encode()) <= 120 and cyrillic.startswith("model.note=жж")
    assert cyrillic.encode().decode() == cyrillic


def test_resuming_ignores_exactly_the_non_result_settings():
    old = OmegaConf.to_container(compose_config(["model=resnet20"]), resolve=True)
    new = OmegaConf.to_container(compose_config(
        ["model=resnet20", "data.root=/x", "trainer.eval_batch_size=9", "trainer.num_threads=1",
         "trainer.device=cpu"]), resolve=True)
    assert config_differences(old, new) == []
    changed = OmegaConf.to_container(compose_config(["model=resnet20", "optim.lr=0.3"]),
                                     resolve=True)
    assert config_differences(old, changed) == ["optim.lr: 0.1 -> 0.3"]


def test_a_run_resumed_with_another_eval_batch_size_is_then_skipped_by_the_original(tmp_path):
    """Resume with a setting that may change, then rerun the original command: it skips."""
    original = TINY + ["trainer.epochs=2"]
    train_in_process(original, tmp_path)
    summary = tmp_path / "summary.json"
    finished = json.loads(summary.read_text())
    summary.write_text(json.dumps({**finished, "status": "running"}))  # as if killed
    checkpoint = tmp_path / "checkpoints" / "last.pt"
    import torch

    state = torch.load(checkpoint, weights_only=True)
    state["epoch"], state["history"] = 1, state["history"][:1]  # killed after epoch 1
    torch.save(state, checkpoint)
    train_in_process(original + ["trainer.eval_batch_size=64"], tmp_path)  # resumes
    resumed = json.loads(summary.read_text())
    assert resumed["status"] == "completed" and resumed["epochs"] == 2
    before = summary.read_bytes()
    train_in_process(original, tmp_path)  # the original command: the same job, finished
    assert summary.read_bytes() == before


# Keys computed by commit 7feea27, before data.labels, trainer.save_best, the logger group and
# eval.* existed: jobs of sweeps made then must be found again (skipped, resumed) today.
KEYS_BEFORE_LATER_SETTINGS = {
    ("model=resnet20",): "16793d68b2b20139",
    ("data=cifar100", "model=resnet20"): "177c3744557680fb",
    ("experiment=smoke",): "f128de6034be3bf8",
}


@pytest.mark.parametrize("overrides", list(KEYS_BEFORE_LATER_SETTINGS))
def test_settings_added_later_keep_the_keys_of_older_jobs(overrides):
    assert key_of(list(overrides)) == KEYS_BEFORE_LATER_SETTINGS[overrides]


def test_a_config_without_an_added_setting_reads_as_one_at_its_default():
    new = OmegaConf.to_container(compose_config(["data=cifar100", "model=resnet20"]),
                                 resolve=True)
    old = json.loads(json.dumps(new))
    del old["data"]["labels"]  # a checkpoint's config from before data.labels existed
    assert config_differences(old, new) == []
    coarse = json.loads(json.dumps(new))
    coarse["data"]["labels"] = "coarse"
    assert config_differences(old, coarse) == ["data.labels: fine -> coarse"]
    assert job_key(coarse) != job_key(new)
