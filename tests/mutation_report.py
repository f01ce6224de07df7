"""Write tests/MUTATION.md from the results of `mutmut run` (mutants/**/*.py.meta).

    mutmut run --max-children 2          # hours on 2 cores; stops and resumes where it left off
    python tests/mutation_report.py      # the kill rate per core module, the survivors listed

A mutant is caught when a test fails on it (killed), or it times out or crashes. The kill rate is
caught / (caught + survived + no tests) over the mutants checked so far, leaving out those listed
as equivalent in tests/mutation_equivalent.txt (one `mutant-name  # why` per line: a change no
behaviour can show, such as a log message's wording or a cache size). Run from the repository root.
"""
from __future__ import annotations

import datetime
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTANTS = ROOT / "mutants" / "src"
EQUIVALENT = ROOT / "tests" / "mutation_equivalent.txt"
OUT = ROOT / "tests" / "MUTATION.md"

CAUGHT = {"killed", "timeout", "segfault"}
AREAS = ("augment", "tricks", "optim", "data", "train", "run_folder", "report", "losses")


def status_of(exit_code) -> str:
    from mutmut.stats import status_by_exit_code  # mutmut's own mapping of its exit codes

    return status_by_exit_code[exit_code]


def equivalent_mutants() -> dict[str, str]:
    found = {}
    if EQUIVALENT.exists():
        for line in EQUIVALENT.read_text().splitlines():
            name, _, why = line.partition("#")
            if name.strip():
                found[name.strip()] = why.strip()
    return found


def area_of(meta: Path) -> str:
    parts = meta.relative_to(MUTANTS / "cifar_tricks").with_suffix("").with_suffix("").parts
    return parts[0] if parts[0] in AREAS else "/".join(parts)


def collect() -> tuple[dict[str, Counter], dict[str, list[str]]]:
    equivalent = equivalent_mutants()
    counts: dict[str, Counter] = defaultdict(Counter)
    survivors: dict[str, list[str]] = defaultdict(list)
    for meta in sorted(MUTANTS.rglob("*.py.meta")):
        area = area_of(meta)
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            status = "equivalent" if name in equivalent else status_of(code)
            counts[area][status] += 1
            if status in ("survived", "no tests"):
                survivors[area].append(f"{name} ({status})")
    return counts, survivors


def rate(c: Counter) -> str:
    caught = sum(c[s] for s in CAUGHT)
    judged = caught + c["survived"] + c["no tests"]
    return f"{100 * caught / judged:.1f}%" if judged else "-"


def main() -> None:
    if not MUTANTS.exists():
        sys.exit("no mutants/ folder: run `mutmut run` first")
    counts, survivors = collect()
    total = sum(counts.values(), Counter())
    columns = ["killed", "timeout", "survived", "no tests", "equivalent", "not checked"]
    lines = [
        "# Mutation testing: how many seeded bugs the tests catch",
        "",
        f"Written by `python tests/mutation_report.py` on {datetime.date.today()} from the "
        "results of `mutmut run` (configuration: `[tool.mutmut]` in pyproject.toml). Kill rate "
        "= caught / (caught + survived + no tests) over the mutants checked so far; `not "
        "checked` mutants were not reached by the run yet.",
        "",
        "| module | mutants | " + " | ".join(columns) + " | kill rate |",
        "|---|---:|" + "---:|" * len(columns) + "---:|",
    ]
    for area in sorted(counts, key=lambda a: (a not in AREAS, a)):
        c = counts[area]
        lines.append(f"| {area} | {sum(c.values())} | "
                     + " | ".join(str(c[k]) for k in columns) + f" | {rate(c)} |")
    lines.append(f"| **all** | {sum(total.values())} | "
                 + " | ".join(str(total[k]) for k in columns) + f" | {rate(total)} |")
    lines += ["", "## Survivors by function", "",
              "Each line: a function and how many of its mutants survived (or reached no test). "
              "`mutmut show <name>` prints a mutant's diff.", ""]
    for area in sorted(survivors):
        by_function = Counter(name.split("__mutmut_")[0] for name in survivors[area])
        lines.append(f"- **{area}**: " + ", ".join(
            f"`{fn.split('.', 2)[-1]}` {n}" for fn, n in by_function.most_common()))
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT}: {rate(total)} of {sum(total.values())} mutants "
          f"({total['not checked']} not checked yet)")


if __name__ == "__main__":
    main()
