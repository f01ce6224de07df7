"""``python -m cifar_tricks.models [--readme README.md]``: the markdown table of registered models.

With ``--readme`` the table replaces the block between the README's model-table markers, so the
README's table is always this command's output.
"""

import argparse
import re
from pathlib import Path

from . import model_table

START, END = "<!-- model-table:start -->", "<!-- model-table:end -->"


def replace_table(text: str, table: str) -> str:
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"no {START} ... {END} block to replace")
    return pattern.sub(lambda _: f"{START}\n{table}\n{END}", text)


def main() -> None:
    parser = argparse.ArgumentParser(description="Markdown table of the registered models.")
    parser.add_argument("--readme", type=Path, help="rewrite the model table block of this file")
    args = parser.parse_args()
    table = model_table()
    if args.readme:
        args.readme.write_text(replace_table(args.readme.read_text(), table))
    else:
        print(table)


if __name__ == "__main__":
    main()
