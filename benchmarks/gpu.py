"""The GPU benchmark: training and data-path throughput, peak memory, and the speedrun, in one
command that fits in 8 minutes on one GPU.

    python benchmarks/gpu.py --root /path/to/cifar          # root/cifar-10-batches-py, on CUDA
    python benchmarks/gpu.py --smoke --out /tmp/bench       # seconds on a CPU: synthetic data

It writes `gpu.json` (every number, with the command, the date, the hardware and the versions)
and `gpu.md` (the tables) into `--out` (default `benchmarks/results/`), and prints the markdown.

What it measures, each through the project's own objects (`build_run`, the loader, the loop):
- training img/s of resnet18, WRN-28-10 (`wideresnet`) and shake_resnet26_2x64d in bf16 with
  channels_last, eager and `torch.compile`d, with their peak memory: one warm-up epoch of
  `--steps` steps (cuDNN autotuning, compilation) is excluded, then `--steps` timed steps;
- the loader's img/s with `aug=[]`, `[cutout]` and `[autoaugment,random_erase,mixup]`;
- the speedrun (`experiment=speedrun`): `--speedrun-runs` runs after one warm-up run, mean and std
  of test accuracy and training time (the recipe's own timing: training steps only).
The targets are for one H200 and printed beside the numbers; they are not asserted.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from cifar_tricks.build import build, build_augments, build_loaders, build_run
from cifar_tricks.config import compose
from cifar_tricks.precision import autocast_for
from cifar_tricks.repeat import repeat_runs
from cifar_tricks.train import train_one_epoch
from cifar_tricks.tricks.base import TrainState

MODELS = ("resnet18", "wideresnet", "shake_resnet26_2x64d")
AUG_LISTS = ("[]", "[cutout]", "[autoaugment,random_erase,mixup]")
TARGETS = {"resnet18": 50_000, "wideresnet": 8_000, "loader": 1_000_000, "speedrun_s": 2.0,
           "speedrun_acc": 94.0}
RESULTS = Path(__file__).resolve().parent / "results"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def data_overrides(args: argparse.Namespace) -> list[str]:
    if args.smoke:
        return ["data=synthetic", "data.num_train=512", "data.num_test=256", "trainer.device=cpu"]
    return [f"data.root={args.root}", "trainer.device=cuda"]


def training_throughput(model: str, compiled: bool, args: argparse.Namespace) -> dict[str, Any]:
    """Timed training steps of `model` after a warm-up epoch of as many steps."""
    precision = "fp32" if args.smoke else "bf16"
    cfg = compose(data_overrides(args) + [
        f"model={model}", f"trainer.batch_size={args.batch_size}", f"trainer.precision={precision}",
        f"trainer.limit_train_batches={args.steps}", "sched=constant"])
    run = build_run(cfg)
    channels_last = not args.smoke
    if channels_last:
        run.model = run.model.to(memory_format=torch.channels_last)
    net = torch.compile(run.model) if compiled else run.model
    autocast = autocast_for(run.device, precision)
    state = TrainState(epochs=2, steps_per_epoch=len(run.loaders.train))
    if run.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(run.device)
    start = time.perf_counter()
    for epoch in (1, 2):  # epoch 1: warm-up (autotuning, compilation), not timed
        state.epoch = epoch
        run.loaders.train.set_epoch(epoch)
        stats = train_one_epoch(run, net, state, autocast, channels_last, run.loaders.train)
        if epoch == 1:
            warmup = time.perf_counter() - start
    return {"model": model, "compiled": compiled, "img_per_s": stats["img_per_s"],
            "warmup_s": warmup, "params_m": run.params / 1e6,
            "peak_mem_mb": torch.cuda.max_memory_allocated(run.device) / 2**20
            if run.device.type == "cuda" else None}


def loader_throughput(aug: str, args: argparse.Namespace) -> dict[str, Any]:
    """Batches of the training loader (crop, flip, the augmentations, normalisation)."""
    cfg = compose(data_overrides(args) + [f"aug={aug}", f"trainer.batch_size={args.batch_size}"])
    run_device = torch.device(cfg.trainer.device)
    data = build(cfg.data, "data").to(run_device)
    settings = OmegaConf.to_object(cfg.trainer)
    loader = build_loaders(data, settings, seed=0, augments=build_augments(cfg)).train
    loader.set_epoch(1)
    next(iter(loader))  # warm-up: first kernels, allocations
    sync(run_device)
    seen, start = 0, time.perf_counter()
    for epoch in range(2, 2 + args.loader_epochs):
        loader.set_epoch(epoch)
        for images, _ in loader:
            seen += len(images)
    sync(run_device)
    return {"aug": aug, "img_per_s": seen / (time.perf_counter() - start)}


def speedrun(args: argparse.Namespace) -> dict[str, Any]:
    """`--speedrun-runs` runs of the recipe after a warm-up run (cifar_tricks.repeat)."""
    overrides = [f"experiment={args.speedrun_experiment}"] + (
        data_overrides(args) if args.smoke else [f"data.root={args.root}"])
    return {"experiment": args.speedrun_experiment,
            **repeat_runs(overrides, args.speedrun_runs)}


def hardware() -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    return {"device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
            "torch": torch.__version__, "cuda": torch.version.cuda if cuda else None,
            "python": platform.python_version(), "cpu_threads": torch.get_num_threads()}


def markdown(result: dict[str, Any]) -> str:
    hw = result["hardware"]
    lines = [f"Measured {result['date']} on {hw['device']} (torch {hw['torch']}, CUDA "
             f"{hw['cuda']}): `{result['command']}`", "",
             "| model | compiled | train img/s | target | warm-up (s) | peak memory (MB) |",
             "|---|---|---:|---:|---:|---:|"]
    for r in result["training"]:
        memory = f"{r['peak_mem_mb']:,.0f}" if r["peak_mem_mb"] is not None else "—"
        target = f"{TARGETS[r['model']]:,}" if r["model"] in TARGETS else "—"
        lines.append(f"| {r['model']} | {'yes' if r['compiled'] else 'no'} | "
                     f"{r['img_per_s']:,.0f} | {target} | {r['warmup_s']:.1f} | {memory} |")
    lines += ["", "| loader aug | img/s | target |", "|---|---:|---:|"]
    for r in result["loader"]:
        target = f"{TARGETS['loader']:,}" if r["aug"] in ("[]", "[cutout]") else "—"
        lines.append(f"| `{r['aug']}` | {r['img_per_s']:,.0f} | {target} |")
    s = result["speedrun"]
    if s:
        accuracy = "tta_test_acc" if "tta_test_acc_mean" in s else "test_acc"
        lines += ["", f"Speedrun `experiment={s['experiment']}`, {s['runs']} runs after a warm-up "
                  f"run: {accuracy} {s[accuracy + '_mean']:.2f} ± {s[accuracy + '_std']:.2f} % "
                  f"(target {TARGETS['speedrun_acc']}), training time "
                  f"{s['train_time_s_mean']:.2f} ± {s['train_time_s_std']:.2f} s (target <= "
                  f"{TARGETS['speedrun_s']} s)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", help="folder holding cifar-10-batches-py (required on a GPU)")
    parser.add_argument("--smoke", action="store_true",
                        help="a seconds-long CPU run on synthetic data (what the tests run)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--steps", type=int, default=50, help="timed training steps per model")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--loader-epochs", type=int, default=3)
    parser.add_argument("--speedrun-runs", type=int, default=5)
    parser.add_argument("--speedrun-experiment", default="speedrun")
    args = parser.parse_args(argv)
    if args.smoke:  # tiny and CPU-only: checks the script, measures nothing worth reading
        args.steps, args.batch_size, args.loader_epochs = 2, 32, 1
        args.speedrun_runs, args.speedrun_experiment = 2, "smoke"
        models, compiled = ("resnet20",), (False,)
    else:
        if not torch.cuda.is_available():
            parser.error("no CUDA device: run it on a GPU machine, or with --smoke on a CPU")
        if not args.root or not (Path(args.root) / "cifar-10-batches-py").is_dir():
            parser.error("--root must hold cifar-10-batches-py (python ../shared/data/"
                         "prepare_cifar10.py DIR makes it from the shared copy)")
        models, compiled = MODELS, (False, True)
    result: dict[str, Any] = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(["python", "benchmarks/gpu.py", *(argv or sys.argv[1:])]),
        "hardware": hardware(),
        "training": [training_throughput(m, c, args) for m in models for c in compiled],
        "loader": [loader_throughput(aug, args) for aug in AUG_LISTS],
    }
    result["speedrun"] = speedrun(args) if args.speedrun_runs else None
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(result, indent=2))
    (args.out / "gpu.md").write_text(markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
