"""File helpers shared by every builder: atomic writes and streaming digests.

Nothing here loads a whole file into memory: digests read in :data:`CHUNK` sized pieces.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

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


def hash_file(path: os.PathLike[str] | str, algorithms: Sequence[str] = ("sha256",)) -> dict[str, str]:
    """Stream ``path`` once through each of ``algorithms`` (hashlib names).

    Returns:
        ``{algorithm: lowercase hex digest}``.

    Raises:
        TeeformError: the file cannot be read.
    """
    from teeform.errors import TeeformError

    hashers = {a: hashlib.new(a) for a in algorithms}
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                for h in hashers.values():
                    h.update(chunk)
    except OSError as exc:
        raise TeeformError(f"cannot read file: {exc.strerror}", path=path) from exc
    return {a: h.hexdigest() for a, h in hashers.items()}


def source_date_epoch(default: int | None = None) -> int:
    """Return ``$SOURCE_DATE_EPOCH`` as an int (seconds since 1970-01-01 UTC).

    Falls back to ``default``; if that is None too, to 0 (so builds are reproducible by default).
    Spec: https://reproducible-builds.org/specs/source-date-epoch/

    Raises:
        TeeformError: the variable is set but is not a non-negative integer.
    """
    from teeform.errors import TeeformError

    raw = os.environ.get("SOURCE_DATE_EPOCH")
    if raw is None or raw == "":
        return default if default is not None else 0
    if not raw.isdigit():
        raise TeeformError(
            f"SOURCE_DATE_EPOCH must be a non-negative integer, got {raw!r}",
            hint="export SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)",
        )
    return int(raw)


def display_path(p: str | os.PathLike[str]) -> str:
    """``p`` relative to the current directory when it lies under it (as given otherwise), for messages."""
    try:
        return str(Path(p).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(p)
