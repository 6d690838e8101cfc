"""Shared pytest fixtures and the missing-tool policy.

A test that needs an external tool calls :func:`require_tool`. On a developer's laptop a missing tool
skips the test; in CI (``CI`` or ``TEEFORM_REQUIRE_TOOLS`` set to a true value) it fails, so CI can
never pass by skipping (DEVELOPERS.md: "a missing tool must fail the run there").

Inputs fetched by ``scripts/setup.sh`` (Debian kernel, systemd stubs, ukify/systemd-measure 254,
busybox-static, OVMF) are looked up in its lock record with :func:`locked` (``teeform/inputs_lock.py``),
never by guessed file names or versions. Data the repository carries lives under ``tests/fixtures/``.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

from teeform.errors import TeeformError
from teeform.inputs_lock import InputsLock, LockedInput, load_lock
from teeform.run import find_tool

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
NITRO_FIXTURES = FIXTURES / "nitro"  # provenance: tests/fixtures/nitro/README.md
CACHE = REPO / ".cache"


def tools_required() -> bool:
    """True in CI: missing tools and inputs are failures, not skips."""
    val = os.environ.get("TEEFORM_REQUIRE_TOOLS", os.environ.get("CI", ""))
    return val.lower() in ("1", "true", "yes")


def require_tool(name: str) -> str:
    """Return the path of ``name``; skip the test when absent (fail in CI)."""
    path = find_tool(name, required=False)
    if path is None:
        msg = f"tool {name!r} is not installed (run scripts/setup.sh)"
        if tools_required():
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def require_file(path: Path, what: str) -> Path:
    """Return ``path``; skip the test when it does not exist (fail in CI)."""
    if not path.exists():
        msg = f"{what} not found at {path} (run scripts/setup.sh)"
        if tools_required():
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@functools.cache
def _load_lock() -> InputsLock | str:
    try:
        return load_lock(REPO)
    except TeeformError as exc:
        return f"{exc} ({exc.hint})" if exc.hint else str(exc)


def inputs_lock() -> InputsLock:
    """The set-up's lock record; when it is missing the test is skipped (fails in CI), saying to run setup.sh."""
    lock = _load_lock()
    if isinstance(lock, str):
        if tools_required():
            pytest.fail(lock)
        pytest.skip(lock)
    return lock


def locked_input(name: str) -> LockedInput:
    """Input ``name`` of the lock record (``"kernel.vmlinuz"``, ``"bookworm.stub"``, ...), present on disk."""
    entry = inputs_lock().get(name)
    require_file(entry.path, f"{name} ({entry.package} {entry.version})")
    return entry


def locked(name: str) -> Path:
    """The path of input ``name`` (see :func:`locked_input`)."""
    return locked_input(name).path


@pytest.fixture(scope="session")
def nitro_fixtures() -> Path:
    """The directory of real Nitro attestation documents (tests/fixtures/nitro, see its README)."""
    assert (NITRO_FIXTURES / "expected.json").is_file(), f"{NITRO_FIXTURES} is part of the repository"
    return NITRO_FIXTURES


def busybox_rootfs(tmp: Path) -> Path:
    """``tmp/rootfs``: the smallest bootable root for `teeform build vm-image` tests: Debian's busybox-static
    as ``/bin/busybox`` and ``/bin/sh``, and an ``/sbin/init`` that powers off."""
    import os
    import shutil

    root = tmp / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "sbin").mkdir()
    shutil.copy2(require_tool("busybox"), root / "bin" / "busybox")
    os.symlink("busybox", root / "bin" / "sh")
    (root / "sbin" / "init").write_text("#!/bin/sh\npoweroff -f\n")
    os.chmod(root / "sbin" / "init", 0o755)
    return root
