"""``python -m cifar_tricks.models [TEXT] [--num-classes N] [--flops] [--readme README.md]``.

Prints the markdown table of the registered models whose name or family contains TEXT (all
without it): model, family, parameters. Parameters are counted on builds that skip weight
initialisation, so the whole zoo takes about a second; ``--flops`` adds each model's forward
GFLOPs, counted by running each listed model on shapes only (about 9 s for the zoo on a CPU).

With ``--readme`` the full table, FLOPs included, replaces the README's model-table block, so
the README's table is always this command's output.
"""

from __future__ import annotations

import argparse
import gc
from pathlib import Path

from ..readme import markers, replace_block
from . import model_table, select_models

BLOCK = "model-table"
START, END = markers(BLOCK)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m cifar_tricks.models",
        description="Markdown table of the registered models: family and parameters "
                    "(instant), forward GFLOPs with --flops.")
    parser.add_argument("text", nargs="?", default="",
                        help="list only models whose name or family contains this text "
                             "(case-insensitive), e.g. resnet")
    parser.add_argument("--num-classes", type=int, default=10,
                        help="classes of the model head the parameters are counted for "
                             "(default 10; 100 for CIFAR-100, 20 for its coarse labels)")
    parser.add_argument("--flops", action="store_true",
                        help="also count forward GFLOPs of one 32x32 image (each listed model "
                             "runs on shapes only: about 9 s for the whole zoo on a CPU)")
    parser.add_argument("--readme", type=Path,
                        help="rewrite the model-table block of this file with the full table "
                             "(every model, 10 classes, GFLOPs)")
    args = parser.parse_args(argv)
    if args.readme:
        if args.text or args.num_classes != 10:
            parser.error("--readme writes the full table (every model, 10 classes): drop the "
                         "filter text and --num-classes")
        args.readme.write_text(replace_block(args.readme.read_text(), BLOCK, model_table()))
        return
    if args.num_classes < 1:
        parser.error(f"--num-classes {args.num_classes}: give a positive number of classes, "
                     f"e.g. --num-classes 100")
    if not select_models(args.text):
        parser.error(f"no registered model has {args.text!r} in its name or family; run "
                     f"`python -m cifar_tricks.models` for the list")
    # Building the zoo makes many short-lived objects, and each garbage collection they trigger
    # rescans the ~200,000 that importing torch left: 0.5 s of the listing. Their memory is
    # freed by reference counting anyway.
    enabled = gc.isenabled()
    gc.disable()
    try:
        table = model_table(args.num_classes, flops=args.flops, pattern=args.text)
    finally:
        if enabled:
            gc.enable()
    print(table)


if __name__ == "__main__":
    main()
