"""``python -m cifar_tricks.models [--readme README.md]``: the markdown table of registered models.

With ``--readme`` the table replaces the README's model-table block, so the README's table is
always this command's output.
"""

import argparse
from pathlib import Path

from ..readme import markers, replace_block
from . import model_table

BLOCK = "model-table"
START, END = markers(BLOCK)


def main() -> None:
    parser = argparse.ArgumentParser(description="Markdown table of the registered models.")
    parser.add_argument("--readme", type=Path, help="rewrite the model table block of this file")
    args = parser.parse_args()
    table = model_table()
    if args.readme:
        args.readme.write_text(replace_block(args.readme.read_text(), BLOCK, table))
    else:
        print(table)


if __name__ == "__main__":
    main()
