"""The preview package's layering (pyproject.toml ``[tool.importlinter]``, contracts ``preview-*``): only
``teeform.preview.runner`` imports pulumi, only ``teeform.preview.crossguard`` imports pulumi_policy,
cloud plug-ins import neither the runner, the emulation, the mocks nor the renderer. A forbidden import
in another module breaks the contract (checked on a copy of the package with one added import)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONTRACTS = ["preview-runner-owns-pulumi", "preview-crossguard-owns-pulumi-policy", "preview-clouds-are-leaves"]


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("lint-imports")
    args = [str(exe), "--no-cache"] + [a for c in CONTRACTS for a in ("--contract", c)]
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)


def test_preview_contracts_are_kept():
    proc = lint_imports(REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("KEPT") == len(CONTRACTS)


@pytest.mark.parametrize(
    "module, line",
    [("render.py", "import pulumi.runtime"), ("mocks.py", "import pulumi_policy"), ("clouds/aws.py", "import teeform.preview.runner")],
)
def test_a_forbidden_import_breaks_a_contract(tmp_path, module, line):
    for name in ("teeform", "image_builder", "components"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "teeform" / "preview" / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    proc = lint_imports(tmp_path)
    assert proc.returncode != 0 and "BROKEN" in proc.stdout, proc.stdout + proc.stderr
