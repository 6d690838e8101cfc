"""File helpers shared by every builder: atomic writes and streaming digests.

Nothing here loads a whole file into memory: digests read in :data:`CHUNK` sized pieces.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

CHUNK = 1 << 20  # 1 MiB read size for streaming hashes


@contextlib.contextmanager
def atomic_output_path(path: os.PathLike[str] | str, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary *path* next to ``path`` for an external tool to write; rename it over ``path`` on success.

    For tools that take an output file name (mkfs.erofs, mkfs.vfat, qemu-img). The temporary file
    exists (empty) when yielded. On success it is fsync'ed, gets permission bits ``mode`` and is
    renamed over ``path``; on any exception it is removed and ``path`` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_output(path: os.PathLike[str] | str, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Open a temporary file next to ``path`` for binary writing; rename it over ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left untouched (it is never
    half-written). The file is fsync'ed before the rename and gets permission bits ``mode``
    (see :func:`atomic_output_path`, which this wraps).

    Yields:
        a binary file object open for reading and writing (``w+b``).
    """
    with atomic_output_path(path, mode) as tmp, open(tmp, "w+b") as fh:  # read-write, as callers may read back
        yield fh


def atomic_write_bytes(path: os.PathLike[str] | str, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically (temp file + rename), with permission bits ``mode``."""
    with atomic_output(path, mode) as fh:
        fh.write(data)


def atomic_write_text(path: os.PathLike[str] | str, text: str, mode: int = 0o644) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (temp file + rename)."""
    atomic_write_bytes(path, text.encode("utf-8"), mode)


#: Bytes written between two writeback hints of :class:`DirectWriter` when it writes through the page cache.
WRITEBACK_EVERY = 32 << 20
#: Size of one :class:`DirectWriter` buffer (bytes); a multiple of :data:`DIRECT_ALIGN`.
DIRECT_BLOCK = 4 << 20
#: Alignment :class:`DirectWriter` keeps for O_DIRECT file offsets, lengths and buffer addresses
#: (bytes). open(2), "O_DIRECT": they must be multiples of the file system's logical block size
#: (``statx(2)`` ``stx_dio_offset_align``), 512 or 4096 on common devices; 4096 covers both.
DIRECT_ALIGN = 4096


class DirectWriter:
    """Sequential binary writer for one large output file that bypasses the page cache
    (``O_DIRECT``) and writes on a background thread while the caller goes on producing and
    hashing data. Used for the EIF (:func:`image_builder.pipelines.build_eif.write_eif_file`).

    Why: a buffered write of a 1 GiB file costs the machine 0.5-0.9 CPU-seconds in the kernel
    (copying into the page cache, allocating pages, writing back buffer heads; measured here over
    ``/proc/stat``), a direct write of the same bytes from page-aligned buffers about 0.15 s (the
    device reads our buffers by DMA). On a 2-core build that time goes back to the hash lanes, and
    the build does not push other files out of the page cache.

    How: :meth:`write` copies the bytes into one of ``depth`` page-aligned anonymous ``mmap``
    buffers of ``block`` bytes; each full buffer is written at its file offset with ``os.pwrite``
    (which releases the GIL) by a worker thread and then reused, so at most ``depth * block``
    bytes are held. :meth:`close` writes the last partial buffer: its aligned prefix directly, the
    rest (a file's tail need not be a block multiple, a direct write must) after clearing
    ``O_DIRECT`` with ``fcntl(F_SETFL)``, then restores the descriptor's flags. It does not fsync.

    Fallback: where ``O_DIRECT`` cannot be set (``fcntl`` refuses it: a file system without direct
    I/O, a pipe; not Linux), the start position is not aligned, or the first direct write fails with
    ``EINVAL``, the same buffers are written with plain ``pwrite``, and every ``writeback_every``
    bytes ``posix_fadvise(POSIX_FADV_DONTNEED)`` is called from the start of the range before to
    the current end: on Linux that starts writeback of the dirty pages without waiting
    (``mm/fadvise.c``) and drops the pages already written back, so the fsync before the rename
    waits only for the last few MiB. The bytes in the file are the same either way.

    The descriptor must be open for writing; the writer owns its position until :meth:`close`,
    which leaves it at the end of the data. Sequential only: :meth:`seek` anywhere but the
    current position raises ``io.UnsupportedOperation``.

    Raises:
        OSError: from :meth:`write` or :meth:`close`: the first error the worker met (ENOSPC, EIO,
            ...); nothing after it is written.
    """

    def __init__(self, fd: int, *, block: int = DIRECT_BLOCK, depth: int = 3,
                 writeback_every: int = WRITEBACK_EVERY) -> None:
        import mmap
        import queue

        if block <= 0 or block % DIRECT_ALIGN:
            raise ValueError(f"block must be a positive multiple of {DIRECT_ALIGN}")
        self._fd = fd
        self._block = block
        self._every = max(1, writeback_every)
        self._start = self._offset = os.lseek(fd, 0, os.SEEK_CUR)
        self._flags = _fcntl_flags(fd)
        #: True while writes go around the page cache (read it after :meth:`close` for the mode used).
        self.direct = self._offset % DIRECT_ALIGN == 0 and self._set_direct(True)
        self._free: queue.Queue[mmap.mmap] = queue.Queue()
        for _ in range(max(1, depth)):
            self._free.put(mmap.mmap(-1, block))
        self._todo: queue.Queue[tuple[mmap.mmap, int, int] | None] = queue.Queue()
        self._error: BaseException | None = None
        self._hinted = self._previous = self._offset
        self._cur = self._free.get()
        self._fill = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="teeform-direct-write", daemon=True)
        self._thread.start()

    def _set_direct(self, on: bool) -> bool:
        """Set (or clear) O_DIRECT on the descriptor; False when that is not possible."""
        flag = getattr(os, "O_DIRECT", 0)
        if not flag or self._flags is None:
            return False
        import fcntl

        try:
            fcntl.fcntl(self._fd, fcntl.F_SETFL, (self._flags | flag) if on else (self._flags & ~flag))
        except OSError:
            return False
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Copy ``data`` into the buffers, queuing each full one; returns ``len(data)``."""
        if self._closed:
            raise ValueError("write to a closed DirectWriter")
        view = memoryview(data).cast("B")
        n = len(view)
        i = 0
        while i < n:
            k = min(self._block - self._fill, n - i)
            self._cur[self._fill:self._fill + k] = view[i:i + k]
            self._fill += k
            i += k
            if self._fill == self._block:
                self._queue()
        return n

    def _queue(self) -> None:
        if self._error is not None:
            raise self._error
        self._todo.put((self._cur, self._fill, self._offset))
        self._offset += self._fill
        self._cur = self._free.get()
        self._fill = 0

    def _run(self) -> None:
        while (item := self._todo.get()) is not None:
            buf, n, offset = item
            if self._error is None:
                try:
                    self._write_at(buf, n, offset)
                except BaseException as exc:  # re-raised on the caller's thread
                    self._error = exc
            self._free.put(buf)

    def _write_at(self, buf: Any, n: int, offset: int) -> None:
        with memoryview(buf) as view:
            if self.direct:
                aligned = n - n % DIRECT_ALIGN
                try:
                    _pwrite_all(self._fd, view[:aligned], offset)
                except OSError as exc:
                    import errno

                    if exc.errno != errno.EINVAL or offset != self._start:
                        raise
                    self._set_direct(False)  # the file system takes no direct writes after all
                    self.direct = False
                    self._write_at(buf, n, offset)
                    return
                if aligned < n:  # the file's tail, through the page cache
                    self._set_direct(False)
                    self.direct = False
                    _pwrite_all(self._fd, view[aligned:n], offset + aligned)
                return
            _pwrite_all(self._fd, view[:n], offset)
            end = offset + n
            if end - self._hinted >= self._every and hasattr(os, "posix_fadvise"):
                with contextlib.suppress(OSError, ValueError):
                    os.posix_fadvise(self._fd, self._previous, end - self._previous, os.POSIX_FADV_DONTNEED)
                self._previous, self._hinted = self._hinted, end

    @property
    def error(self) -> BaseException | None:
        """The first error of a write to the file (the one :meth:`write`/:meth:`close` raise), if any;
        lets a caller tell an output failure (ENOSPC, EIO) from an error of its own inputs."""
        return None if isinstance(self._error, _Aborted) else self._error

    def tell(self) -> int:
        """The file position after everything given to :meth:`write` (bytes)."""
        return self._offset + self._fill

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Allowed only as a no-op (to the current position): the writer is sequential."""
        import io

        here = self.tell()
        target = {os.SEEK_SET: offset, os.SEEK_CUR: here + offset}.get(whence)
        if target != here:
            raise io.UnsupportedOperation("DirectWriter only writes sequentially")
        return here

    def flush(self) -> None:
        """No-op: full buffers are queued as they fill, the rest is written by :meth:`close`."""

    def fileno(self) -> int:
        """The descriptor written to."""
        return self._fd

    def close(self) -> None:
        """Write what is left, wait for the worker, restore the descriptor's flags and leave its
        position at the end of the data (no fsync). Raises the worker's first error, if any."""
        if self._closed:
            return
        self._closed = True
        if self._fill and self._error is None:
            self._todo.put((self._cur, self._fill, self._offset))
            self._offset += self._fill
            self._fill = 0
        self._stop()
        os.lseek(self._fd, self._offset, os.SEEK_SET)
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        """Stop after an error elsewhere: nothing still buffered or queued is written."""
        if not self._closed:
            self._closed = True
            self._error = self._error or _Aborted("DirectWriter aborted")
            self._stop()

    def _stop(self) -> None:
        self._todo.put(None)
        self._thread.join()
        if self.direct:
            self._set_direct(False)

    def __enter__(self) -> DirectWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class _Aborted(OSError):
    """Marks a :class:`DirectWriter` stopped by :meth:`DirectWriter.abort` (not a write failure)."""


def _fcntl_flags(fd: int) -> int | None:
    """The descriptor's status flags (``fcntl(F_GETFL)``), or None where fcntl is missing or fails."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        return None
    try:
        return fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError:
        return None


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    """``os.pwrite`` until all of ``view`` is written at ``offset`` (a write may be short)."""
    done = 0
    while done < len(view):
        n = os.pwrite(fd, view[done:], offset + done)
        if n <= 0:
            raise OSError(f"pwrite wrote {n} bytes at offset {offset + done}")
        done += n


#: The per-run digest cache (see :func:`hash_cache`); None when no run is active.
_HASH_CACHE: dict[tuple[str, int, int, int, int], dict[str, str]] | None = None
_HASH_CACHE_DEPTH = 0
_HASH_CACHE_LOCK = threading.Lock()
#: Files being hashed right now inside a :func:`hash_cache` block: key -> set when the pass ends.
_HASH_RUNNING: dict[tuple[str, int, int, int, int], threading.Event] = {}


@contextlib.contextmanager
def hash_cache() -> Iterator[None]:
    """Within the block, :func:`hash_file` hashes each file at most once per algorithm.

    Entries are keyed by ``(realpath, st_dev, st_ino, st_size, st_mtime_ns)`` of the opened file
    (``os.fstat``), so a file replaced or rewritten during the block (new inode, size or mtime) is
    hashed again. Nested blocks share the outer cache; it is dropped when the outermost block ends.
    Meant for one command run (``teeform preview``: many targets sharing one EIF), not for a
    long-lived process.
    """
    global _HASH_CACHE, _HASH_CACHE_DEPTH
    with _HASH_CACHE_LOCK:
        _HASH_CACHE_DEPTH += 1
        if _HASH_CACHE is None:
            _HASH_CACHE = {}
    try:
        yield
    finally:
        with _HASH_CACHE_LOCK:
            _HASH_CACHE_DEPTH -= 1
            if _HASH_CACHE_DEPTH == 0:
                _HASH_CACHE = None


def hash_file(path: os.PathLike[str] | str, algorithms: Sequence[str] = ("sha256",)) -> dict[str, str]:
    """Stream ``path`` once through each of ``algorithms`` (hashlib names).

    Inside a :func:`hash_cache` block, digests already computed for the same file (same realpath,
    device, inode, size and mtime) are returned without reading it again, and a call that finds the
    same file being hashed by another thread (:func:`prefetch_hash`) waits for that pass instead of
    starting its own.

    Returns:
        ``{algorithm: lowercase hex digest}``.

    Raises:
        TeeformError: the file cannot be read.
    """
    from teeform.errors import TeeformError

    mine: threading.Event | None = None
    key = None
    try:
        with open(path, "rb") as fh:
            cache = _HASH_CACHE
            if cache is not None:
                st = os.fstat(fh.fileno())
                key = (os.path.realpath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
                while True:
                    with _HASH_CACHE_LOCK:
                        known = cache.get(key, {})
                        if all(a in known for a in algorithms):
                            return {a: known[a] for a in algorithms}
                        running = _HASH_RUNNING.get(key)
                        if running is None:
                            mine = _HASH_RUNNING[key] = threading.Event()
                            break
                    running.wait()  # another thread is hashing this file: use its pass if it covers ours
            hashers = {a: hashlib.new(a) for a in algorithms}
            while chunk := fh.read(CHUNK):
                for h in hashers.values():
                    h.update(chunk)
        digests = {a: h.hexdigest() for a, h in hashers.items()}
        if cache is not None and key is not None:
            with _HASH_CACHE_LOCK:
                cache.setdefault(key, {}).update(digests)
        return digests
    except OSError as exc:
        raise TeeformError(f"cannot read file: {exc.strerror}", path=path) from exc
    finally:
        if mine is not None:
            with _HASH_CACHE_LOCK:
                _HASH_RUNNING.pop(key, None)  # type: ignore[arg-type]
            mine.set()


def prefetch_hash(path: os.PathLike[str] | str, algorithms: Sequence[str] = ("sha256",)) -> bool:
    """Inside a :func:`hash_cache` block, start hashing ``path`` on a background thread, so a later
    :func:`hash_file` of the same file and algorithms finds the digests ready (or waits for this
    pass). Hashing releases the GIL, so on two cores this runs beside the caller's Python work (the
    offline preview hashes the EIF while the Pulumi program starts). Errors are left for the later
    :func:`hash_file` to report. Returns False (and does nothing) outside a block.
    """
    if _HASH_CACHE is None:
        return False

    def work() -> None:
        with contextlib.suppress(Exception):
            hash_file(path, algorithms)

    threading.Thread(target=work, name="teeform-prefetch-hash", daemon=True).start()
    return True


#: 9999-12-31T23:59:59Z in seconds since the epoch: the largest SOURCE_DATE_EPOCH accepted
MAX_SOURCE_DATE_EPOCH = 253_402_300_799


def source_date_epoch(default: int | None = None) -> int:
    """Return ``$SOURCE_DATE_EPOCH`` as an int (seconds since 1970-01-01 UTC).

    Falls back to ``default``; if that is None too, to 0 (so builds are reproducible by default).
    Spec: https://reproducible-builds.org/specs/source-date-epoch/

    Raises:
        TeeformError: the variable is set but is not a non-negative integer.
    """
    raw = os.environ.get("SOURCE_DATE_EPOCH")
    if raw is None or raw == "":
        return default if default is not None else 0
    return parse_source_date_epoch(raw)


def parse_source_date_epoch(raw: str) -> int:
    """``raw`` (a ``SOURCE_DATE_EPOCH`` value) as an int, checked as :func:`source_date_epoch` says.

    Raises:
        TeeformError: not ASCII decimal digits, or past :data:`MAX_SOURCE_DATE_EPOCH`.
    """
    from teeform.errors import TeeformError

    # the spec: "an ASCII representation of an integer" (str.isdigit() is also true of "²", which int() refuses);
    # at most 9999-12-31T23:59:59Z, the last second datetime and ISO 8601 dates can show
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12 or int(raw) > MAX_SOURCE_DATE_EPOCH:
        raise TeeformError(
            f"SOURCE_DATE_EPOCH must be a non-negative integer up to {MAX_SOURCE_DATE_EPOCH}, got {raw[:40]!r}",
            hint="export SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)",
        )
    return int(raw)


def ensure_output_dir(path: os.PathLike[str] | str, *, field: str = "--out") -> Path:
    """Create the output directory ``path`` (and its parents) if needed; returns it as a Path.

    Raises:
        TeeformError: ``path`` (or a parent) exists and is not a directory, or cannot be created
            (permissions, read-only file system), naming ``path`` and ``field``.
    """
    from teeform.errors import TeeformError

    out = Path(path)
    if out.exists() and not out.is_dir():
        raise TeeformError("the output path exists and is not a directory", path=out, field=field)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TeeformError(f"cannot create the output directory: {exc.strerror}", path=out, field=field,
                           hint="give --out a directory you can write to") from None
    return out


def display_path(p: str | os.PathLike[str]) -> str:
    """``p`` relative to the current directory when it lies under it (as given otherwise), for messages."""
    try:
        return str(Path(p).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(p)
