"""The tree passes the linter configured in pyproject.toml (ruff: pycodestyle, pyflakes, import
sorting, bugbear; line length 100), so style holds in CI, not only on a developer's machine."""
from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_ruff_check_passes_on_the_tree():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(ROOT)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"ruff check . found:\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}"
