"""The speedrun recipe trained N times after a warm-up run: mean ± std of accuracy and time.

    python benchmarks/speedrun.py --runs 5 data.root=/datasets
    python benchmarks/speedrun.py --runs 3 --experiment speedrun_cpu --warmup-epochs 1 \
        data.root=/datasets

Any further argument is a run.py override. Accuracy is the final test accuracy and, where the
recipe evaluates with test-time augmentation, the TTA accuracy (airbench's reported number);
time is the training steps only (`train_time_s`: no evaluation, no checkpoints, no compilation).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from cifar_tricks.repeat import repeat_runs


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--experiment", default="speedrun")
    parser.add_argument("--warmup-epochs", type=int,
                        help="train the warm-up run for this many epochs (default: the recipe's)")
    parser.add_argument("--out", type=Path, help="keep the run folders here (default: discard)")
    parser.add_argument("overrides", nargs="*", help="run.py overrides, e.g. data.root=...")
    args = parser.parse_args(argv)
    warmup = [f"trainer.epochs={args.warmup_epochs}"] if args.warmup_epochs else []
    result = repeat_runs([f"experiment={args.experiment}", *args.overrides], args.runs, args.out,
                         warmup_overrides=warmup)
    lines = [f"{args.experiment}, {result['runs']} runs after a warm-up run:"]
    for key, label, unit in (("test_acc", "test accuracy", "%"),
                             ("tta_test_acc", "TTA test accuracy", "%"),
                             ("train_time_s", "training time", "s"),
                             ("compile_time_s", "compile time", "s")):
        if f"{key}_mean" in result:
            lines.append(f"  {label:18s} {result[key + '_mean']:.3f} ± {result[key + '_std']:.3f} "
                         f"{unit}   (runs: {', '.join(f'{v:.3f}' for v in result[key])})")
    print("\n".join(lines))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
