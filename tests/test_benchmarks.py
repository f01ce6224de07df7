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
    assert run["runs"] == len(run["test_accs"]) == 2  # the warm-up run is not counted
    assert run["test_acc_mean"] == pytest.approx(statistics.mean(run["test_accs"]))
    assert run["test_acc_std"] == pytest.approx(statistics.stdev(run["test_accs"]))
    table = (tmp_path / "gpu.md").read_text()
    assert f"| resnet20 | no | {stored['training'][0]['img_per_s']:,.0f} |" in table
    assert f"{run['test_acc_mean']:.2f} ± {run['test_acc_std']:.2f} %" in table


def test_the_gpu_benchmark_refuses_to_run_without_a_gpu_or_data(capsys):
    benchmark = load_benchmark()
    with pytest.raises(SystemExit):
        benchmark.main([])  # no --smoke: needs CUDA (absent here) and --root
    err = capsys.readouterr().err  # no CUDA: it names --smoke; on a GPU machine: --root
    assert ("--smoke" in err) if not torch.cuda.is_available() else ("--root" in err)
