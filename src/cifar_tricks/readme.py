"""The README's generated blocks: each lies between `<!-- NAME:start -->` and `<!-- NAME:end -->`
and is the output of a command, so the README never disagrees with the code.

    python -m cifar_tricks.readme README.md              # every block
    python -m cifar_tricks.models --readme README.md     # the model table alone
"""
from __future__ import annotations

import re

__all__ = ["markers", "read_block", "replace_block"]


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def _pattern(name: str) -> re.Pattern:
    start, end = markers(name)
    return re.compile(re.escape(start) + "\n?(.*?)\n?" + re.escape(end), re.S)


def read_block(text: str, name: str) -> str:
    """The block's current contents (stripped); ValueError when the markers are missing."""
    match = _pattern(name).search(text)
    if match is None:
        raise ValueError(f"no {' ... '.join(markers(name))} block in the text")
    return match.group(1).strip()


def replace_block(text: str, name: str, body: str) -> str:
    """`text` with the block's contents replaced by `body`."""
    read_block(text, name)  # the markers must exist
    start, end = markers(name)
    return _pattern(name).sub(lambda _: f"{start}\n{body}\n{end}", text)


def generated_blocks(with_models: bool = True) -> dict[str, str]:
    """Every generated block's contents, by block name (the model table takes ~10 s: it counts
    every model's FLOPs)."""
    from .config import SETTINGS_TABLES, settings_table

    blocks = {name: settings_table(*spec) for name, spec in SETTINGS_TABLES.items()}
    blocks["deviations-table"] = deviations_table()
    if with_models:
        from .models import model_table

        blocks["model-table"] = model_table()
    return blocks


def deviations_table() -> str:
    """Every place a stored ablation departs from what the seed's code ran, from the seed
    tables (conf/seed_tables/): the shared ones once, then each table's own."""
    import yaml

    from .report.compare import SEED_TABLES
    from .report.tables import markdown_table

    rows = [["all", d["what"], d["seed"], d["ours"], d["why"]]
            for d in yaml.safe_load((SEED_TABLES / "_common.yaml").read_text())["deviations"]]
    for path in sorted(SEED_TABLES.glob("[!_]*.yaml")):
        table = yaml.safe_load(path.read_text())
        rows += [[f"`{path.stem}` (§{table['section']})", d["what"], d["seed"], d["ours"],
                  d["why"]] for d in table.get("deviations", [])]
    return markdown_table(["ablation", "what", "the seed's code", "here", "why"], rows)


def main(argv: list[str] | None = None) -> None:
    """`python -m cifar_tricks.readme README.md`: rewrite every generated block of the file."""
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="python -m cifar_tricks.readme",
                                     description="Regenerate the README's generated tables.")
    parser.add_argument("readme", type=Path, help="the file whose blocks to rewrite")
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    for name, body in generated_blocks().items():
        text = replace_block(text, name, body)
    args.readme.write_text(text)
    print(f"rewrote {', '.join(generated_blocks(with_models=False))}, model-table in "
          f"{args.readme}")


if __name__ == "__main__":
    main()
