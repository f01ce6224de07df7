"""benchmarks/gpu.py runs end to end: `--smoke` on a CPU, as the GPU command would (the numbers
it writes are the ones it measured, in both outputs)."""
from __future__ import annotations

import importlib.util
import json
import statistics

import pytest
import torch

from conftest import ROOT


def load_benchmark():
    spec = importlib.util.spec_from_file_location("gpu_benchmark", ROOT / "benchmarks" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_gpu_benchmark_runs_with_smoke_and_writes_json_and_markdown(tmp_path):
    result = load_benchmark().main(["--smoke", "--out", str(tmp_path)])
    stored = json.loads((tmp_path / "gpu.json").read_text())
    assert stored == json.loads(json.dumps(result))
    assert [(r["model"], r["compiled"]) for r in stored["training"]] == [("resnet20", False)]
    assert all(r["img_per_s"] > 0 and r["warmup_s"] > 0 for r in stored["training"])
    assert [r["aug"] for r in stored["loader"]] == \
        ["[]", "[cutout]", "[autoaugment,random_erase,mixup]"]
    run = stored["speedrun"]
    assert run["runs"] == len(run["test_acc"]) == 2  # the warm-up run is not counted
    assert run["test_acc_mean"] == pytest.approx(statistics.mean(run["test_acc"]))
    assert run["test_acc_std"] == pytest.approx(statistics.stdev(run["test_acc"]))
    table = (tmp_path / "gpu.md").read_text()
    assert f"| resnet20 | no | {stored['training'][0]['img_per_s']:,.0f} |" in table
    assert f"{run['test_acc_mean']:.2f} ± {run['test_acc_std']:.2f} %" in table


def test_the_gpu_benchmark_refuses_to_run_without_a_gpu_or_data(capsys):
    benchmark = load_benchmark()
    with pytest.raises(SystemExit):
        benchmark.main([])  # no --smoke: needs CUDA (absent here) and --root
    err = capsys.readouterr().err  # no CUDA: it names --smoke; on a GPU machine: --root
    assert ("--smoke" in err) if not torch.cuda.is_available() else ("--root" in err)


def test_repeat_runs_counts_the_runs_after_the_warm_up_run(tmp_path):
    from cifar_tricks.repeat import WARMUP_SEED, repeat_runs
    from conftest import TINY

    result = repeat_runs([*TINY, "trainer.limit_train_batches=2"], runs=2, out=tmp_path)
    folders = sorted(p.name for p in tmp_path.iterdir())
    assert folders == sorted([f"seed={WARMUP_SEED}", "seed=0", "seed=1"])
    counted = [json.loads((tmp_path / f"seed={s}" / "summary.json").read_text()) for s in (0, 1)]
    assert result["runs"] == 2
    assert result["test_acc"] == [s["test_acc"] for s in counted]  # not the warm-up run's
    assert result["train_time_s"] == [s["train_time_s"] for s in counted]
    assert result["test_acc_mean"] == pytest.approx(statistics.mean(result["test_acc"]))
    assert "tta_test_acc_mean" not in result  # this recipe has no test-time augmentation


def test_repeat_runs_applies_the_warm_up_overrides_to_the_warm_up_run_only(tmp_path):
    from cifar_tricks.repeat import WARMUP_SEED, repeat_runs
    from conftest import TINY

    repeat_runs([*TINY, "trainer.limit_train_batches=1", "trainer.epochs=2"], runs=1,
                out=tmp_path, warmup_overrides=["trainer.epochs=1"])
    epochs = {seed: len((tmp_path / f"seed={seed}" / "metrics.csv").read_text().splitlines()) - 1
              for seed in (WARMUP_SEED, 0)}
    assert epochs == {WARMUP_SEED: 1, 0: 2}
