"""tests/PROMISES.md maps each README promise to the tests that check it: every test it names
exists, and every README section has its table (renaming or deleting a test, or adding a
section, fails here until the map is updated)."""
from __future__ import annotations

import ast
import re

from conftest import ROOT

MAP = ROOT / "tests" / "PROMISES.md"


def test_every_test_named_in_the_promise_map_exists():
    text = MAP.read_text()
    named = set(re.findall(r"tests/(\w+\.py)::(\w+)", text))
    assert len(named) > 100
    defined: dict[str, set[str]] = {}
    for file, test in sorted(named):
        if file not in defined:
            tree = ast.parse((ROOT / "tests" / file).read_text())
            defined[file] = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert test in defined[file], f"tests/PROMISES.md names tests/{file}::{test}, which " \
                                      f"does not exist: update the map"


def test_every_readme_section_has_a_table_of_its_promises():
    sections = re.findall(r"^## (.+)$", (ROOT / "README.md").read_text(), flags=re.M)
    mapped = re.findall(r"^## (.+)$", MAP.read_text(), flags=re.M)
    assert mapped == sections
    for table in MAP.read_text().split("\n## ")[1:]:
        rows = [r for r in table.splitlines()
                if r.startswith("| ") and not r.startswith("| promise")]
        assert rows and all("tests/" in r for r in rows), table.splitlines()[0]
