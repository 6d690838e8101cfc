"""teeform.fsutil.EagerWriteback: same bytes as a plain write, writeback hints over the expected
ranges (recorded by replacing os.posix_fadvise), and a failing hint turns the hints off."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from teeform.fsutil import EagerWriteback


def test_bytes_unchanged_and_hint_ranges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int, int]] = []
    monkeypatch.setattr(os, "posix_fadvise", lambda fd, off, n, advice: calls.append((off, n, advice)), raising=False)
    chunks = [os.urandom(4000) for _ in range(10)]
    with open(tmp_path / "out", "w+b") as fh:
        w = EagerWriteback(fh, every=10_000)  # type: ignore[arg-type]
        for c in chunks:
            assert w.write(c) == len(c)
        w.flush()
    assert (tmp_path / "out").read_bytes() == b"".join(chunks)
    # Hints when >= 10,000 bytes were written since the last one (at 12,000, 24,000 and 36,000), each
    # from the start of the range before (whose pages are clean by then) to the current position.
    dn = os.POSIX_FADV_DONTNEED
    assert calls == [(0, 12_000, dn), (0, 24_000, dn), (12_000, 24_000, dn)]


def test_seek_restarts_the_ranges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "posix_fadvise", lambda fd, off, n, advice: calls.append((off, n)), raising=False)
    with open(tmp_path / "out", "w+b") as fh:
        w = EagerWriteback(fh, every=100)  # type: ignore[arg-type]
        w.write(b"x" * 50)
        assert w.seek(1000) == 1000 and w.tell() == 1000
        w.write(b"y" * 150)
    assert calls == [(1000, 150)]
    data = (tmp_path / "out").read_bytes()
    assert data[:50] == b"x" * 50 and data[1000:] == b"y" * 150 and len(data) == 1150


def test_a_failing_hint_is_skipped_and_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def refuse(fd: int, off: int, n: int, advice: int) -> None:
        calls.append(off)
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(os, "posix_fadvise", refuse, raising=False)
    with open(tmp_path / "out", "w+b") as fh:
        w = EagerWriteback(fh, every=10)  # type: ignore[arg-type]
        for _ in range(5):
            w.write(b"z" * 20)
    assert (tmp_path / "out").read_bytes() == b"z" * 100 and len(calls) == 1


def test_default_interval_hints_after_32_mib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "posix_fadvise", lambda fd, off, n, advice: calls.append((off, n)), raising=False)
    mib = bytes(1 << 20)
    with open(tmp_path / "out", "w+b") as fh:
        w = EagerWriteback(fh)  # type: ignore[arg-type]
        for _ in range(31):
            w.write(mib)
        assert calls == []
        w.write(mib)
    assert calls == [(0, 32 << 20)]
