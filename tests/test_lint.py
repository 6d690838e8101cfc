"""Linters run as tests (style.md guideline 9): ruff over the whole tree with the pyproject.toml rules."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_ruff_clean() -> None:
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", str(REPO)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, "ruff found problems (run `make lint`):\n" + proc.stdout + proc.stderr
