"""teeform.fsutil.DirectWriter: the bytes a plain write gives, for every size around the block and
alignment edges, in both modes (O_DIRECT and the page-cache fallback); the descriptor's flags and
position afterwards; the fallbacks (fcntl refusing O_DIRECT, a first direct write refused with
EINVAL, an unaligned start); writeback hints in the fallback (recorded by replacing
os.posix_fadvise); a worker error raised on the caller's thread with nothing written after it."""

from __future__ import annotations

import errno
import fcntl
import io
import os
import random
from pathlib import Path

import pytest

from teeform import fsutil
from teeform.fsutil import DIRECT_ALIGN, DirectWriter

BLOCK = 4 * DIRECT_ALIGN  # small buffers, so a few KiB cross several buffer and alignment edges


def _write(path: Path, chunks: list[bytes], **kw: object) -> DirectWriter:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        w = DirectWriter(fd, block=BLOCK, depth=2, **kw)  # type: ignore[arg-type]
        for c in chunks:
            assert w.write(c) == len(c)
        assert w.tell() == sum(map(len, chunks))
        w.close()
        assert os.lseek(fd, 0, os.SEEK_CUR) == sum(map(len, chunks))
        assert not fcntl.fcntl(fd, fcntl.F_GETFL) & getattr(os, "O_DIRECT", 0)  # flags restored
    finally:
        os.close(fd)
    return w


def _supports_direct(path: Path) -> bool:
    try:
        fd = os.open(path / "probe", os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
    except OSError:
        return False
    os.close(fd)
    return True


@pytest.mark.parametrize("size", [0, 1, DIRECT_ALIGN - 1, DIRECT_ALIGN, DIRECT_ALIGN + 1, BLOCK - 1, BLOCK,
                                  BLOCK + 1, 3 * BLOCK, 3 * BLOCK + 517])
def test_bytes_equal_a_plain_write_at_every_edge(tmp_path: Path, size: int) -> None:
    data = random.Random(size).randbytes(size)
    rng = random.Random(size + 1)
    chunks, i = [], 0
    while i < size:  # uneven pieces, some larger than a buffer
        k = rng.choice([1, 7, 100, DIRECT_ALIGN, BLOCK + 3])
        chunks.append(data[i:i + k])
        i += k
    w = _write(tmp_path / "out", chunks)
    assert (tmp_path / "out").read_bytes() == data
    if _supports_direct(tmp_path) and size >= DIRECT_ALIGN:
        # A file system with direct I/O took the aligned part directly; only an unaligned tail (or
        # nothing) went through the page cache, which is what `direct` False after close reports.
        assert w.direct is (size % DIRECT_ALIGN == 0)


def test_memoryview_and_bytearray_inputs(tmp_path: Path) -> None:
    data = os.urandom(BLOCK + 100)
    _write(tmp_path / "out", [bytearray(data[:50]), memoryview(data)[50:]])
    assert (tmp_path / "out").read_bytes() == data


def test_fallback_when_fcntl_refuses_o_direct_hints_writeback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DirectWriter, "_set_direct", lambda self, on: False)
    calls: list[tuple[int, int, int]] = []
    monkeypatch.setattr(os, "posix_fadvise", lambda fd, off, n, advice: calls.append((off, n, advice)), raising=False)
    data = os.urandom(6 * BLOCK + 5)
    w = _write(tmp_path / "out", [data], writeback_every=2 * BLOCK)
    assert w.direct is False
    assert (tmp_path / "out").read_bytes() == data
    # A hint each time 2 buffers were written since the last, from the start of the range before.
    dn = os.POSIX_FADV_DONTNEED
    assert calls == [(0, 2 * BLOCK, dn), (0, 4 * BLOCK, dn), (2 * BLOCK, 4 * BLOCK, dn)]


def test_fallback_when_the_first_direct_write_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # fcntl accepts O_DIRECT but the first direct write fails with EINVAL (as on file systems that
    # check alignment or support only at write time): the writer goes on through the page cache.
    state = {"direct": False}
    real = fsutil._pwrite_all
    refused: list[int] = []

    def set_direct(self: DirectWriter, on: bool) -> bool:
        state["direct"] = on
        return True

    def pwrite_all(fd: int, view: memoryview, offset: int) -> None:
        if state["direct"]:
            refused.append(offset)
            raise OSError(errno.EINVAL, "Invalid argument")
        real(fd, view, offset)

    monkeypatch.setattr(DirectWriter, "_set_direct", set_direct)
    monkeypatch.setattr(fsutil, "_pwrite_all", pwrite_all)
    data = os.urandom(3 * BLOCK + 9)
    w = _write(tmp_path / "out", [data])
    assert refused == [0] and w.direct is False and state["direct"] is False
    assert (tmp_path / "out").read_bytes() == data


def test_unaligned_start_is_written_through_the_page_cache(tmp_path: Path) -> None:
    path = tmp_path / "out"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"head")
        w = DirectWriter(fd, block=BLOCK)
        assert w.direct is False
        w.write(b"x" * (BLOCK + 1))
        w.close()
    finally:
        os.close(fd)
    assert path.read_bytes() == b"head" + b"x" * (BLOCK + 1)


def test_worker_error_is_raised_and_nothing_after_it_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = fsutil._pwrite_all

    def pwrite_all(fd: int, view: memoryview, offset: int) -> None:
        if offset >= BLOCK:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, view, offset)

    monkeypatch.setattr(fsutil, "_pwrite_all", pwrite_all)
    path = tmp_path / "out"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        w = DirectWriter(fd, block=BLOCK, depth=1)
        with pytest.raises(OSError) as info:
            for _ in range(20):
                w.write(b"y" * BLOCK)
            w.close()
        assert info.value.errno == errno.ENOSPC and w.error is info.value  # an output failure, as such
        w.abort()  # idempotent after the error
    finally:
        os.close(fd)
    assert path.read_bytes() == b"y" * BLOCK  # the first buffer only


def test_abort_writes_nothing_more(tmp_path: Path) -> None:
    path = tmp_path / "out"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with pytest.raises(RuntimeError), DirectWriter(fd, block=BLOCK) as w:
            w.write(b"z" * 100)  # still buffered
            raise RuntimeError("the producer failed")
        with pytest.raises(ValueError):
            w.write(b"more")
        assert w.error is None  # stopped, not failed: the producer's error is the one to report
    finally:
        os.close(fd)
    assert path.read_bytes() == b""


def test_sequential_only(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "out", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with DirectWriter(fd, block=BLOCK) as w:
            w.write(b"abc")
            assert w.seek(3) == 3 and w.seek(0, os.SEEK_CUR) == 3
            with pytest.raises(io.UnsupportedOperation):
                w.seek(0)
    finally:
        os.close(fd)


def test_block_must_be_aligned() -> None:
    with pytest.raises(ValueError, match="multiple"):
        DirectWriter(0, block=1000)
