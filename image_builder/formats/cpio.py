"""Deterministic writer for the SVR4 "newc" cpio format (the Linux initramfs format).

teeform writes every initramfs it puts into an EIF with this module, so the bytes (and therefore
PCR1/PCR2, ``shared/reference/eif-nitro.md`` §2.2) depend only on the tree, never on the build host.

Format (Linux ``Documentation/driver-api/early-userspace/buffer-format.rst``; GNU cpio manual
"newc"): each entry is a 110-byte ASCII header ``070701`` followed by 13 fields of 8 uppercase hex
digits (ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor,
namesize, check), then the NUL-terminated name, padded with NULs so that header + name is a
multiple of 4 bytes, then the data, padded to a multiple of 4. The archive ends with an entry named
``TRAILER!!!`` (all fields 0 except nlink = 1).

Determinism rules applied by :func:`write_archive`:

* entries are sorted by the bytes of their path (``LC_ALL=C sort`` order; a directory always
  precedes its children because it is a prefix of them);
* every mtime is the one given ``mtime`` (the EIF builder passes SOURCE_DATE_EPOCH); device
  numbers and the check field are 0;
* inode numbers are assigned sequentially from 0 in sorted order; hard links share the number of
  the first link (this is what GNU cpio 2.13 ``--reproducible`` / ``--renumber-inodes`` does);
* nlink: regular files = number of hard links in the archive; directories = 2 + number of
  subdirectories (the POSIX convention GNU cpio copies from the file system); others 1;
* hard links: every link but the last carries size 0 and the last carries the data (GNU cpio's
  newc convention; the kernel's ``maybe_link`` in ``init/initramfs.c`` accepts it);
* no padding after the trailer beyond the 4-byte alignment (GNU cpio additionally pads the archive
  to its 512-byte block size with NULs; the kernel skips NULs between archives).

Ownership is whatever each :class:`TreeEntry` says; the EIF builder passes uid/gid 0 for every
entry, image files included (see :mod:`image_builder.pipelines.build_eif`).

The writer streams: file contents are copied in :data:`teeform.fsutil.CHUNK` pieces from the
opener each entry supplies, so memory does not grow with the archive.
"""

from __future__ import annotations

import enum
import stat
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import BinaryIO

from teeform.errors import TeeformError
from teeform.fsutil import CHUNK

NEWC_MAGIC = b"070701"
HEADER_SIZE = 110
TRAILER_NAME = b"TRAILER!!!"
MAX_FIELD = 0xFFFFFFFF


class EntryKind(enum.StrEnum):
    """File types teeform puts into an initramfs (no device nodes, see :mod:`image_builder.inputs.oci`)."""

    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    FIFO = "fifo"

    @property
    def type_bits(self) -> int:
        """The ``S_IFMT`` bits of ``st_mode`` for this kind (POSIX ``<sys/stat.h>``)."""
        return {
            EntryKind.FILE: stat.S_IFREG,
            EntryKind.DIR: stat.S_IFDIR,
            EntryKind.SYMLINK: stat.S_IFLNK,
            EntryKind.FIFO: stat.S_IFIFO,
        }[self]


Opener = Callable[[], AbstractContextManager[BinaryIO]]


@dataclass(frozen=True)
class TreeEntry:
    """One path of a tree to archive.

    Attributes:
        path: relative path as bytes, ``/``-separated, no leading ``/`` or ``./`` (e.g. ``b"rootfs/bin/sh"``).
        kind: file type.
        mode: permission bits (``0o7777`` mask, including setuid/setgid/sticky). Symlinks are
            always archived as 0777 (what Linux reports for a symlink).
        uid, gid: numeric owner.
        size: content length in bytes for files (ignored otherwise).
        link_target: symlink target bytes (symlinks only).
        opener: returns a context manager yielding a readable binary stream of exactly ``size``
            bytes (files only; may be None when ``size`` is 0).
        link_group: entries with the same non-None ``link_group`` are hard links of one file; they
            must agree on mode, owner and size.
    """

    path: bytes
    kind: EntryKind
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    size: int = 0
    link_target: bytes = b""
    opener: Opener | None = None
    link_group: object | None = None


@dataclass(frozen=True)
class NewcHeader:
    """The numeric fields of one newc header (see the module docstring for the layout)."""

    ino: int
    mode: int
    uid: int
    gid: int
    nlink: int
    mtime: int
    filesize: int
    namesize: int
    devmajor: int = 0
    devminor: int = 0
    rdevmajor: int = 0
    rdevminor: int = 0
    check: int = 0

    def pack(self) -> bytes:
        """Return the 110-byte ASCII header.

        Raises:
            TeeformError: a field does not fit in 32 bits (e.g. a file of 4 GiB or more, which
                newc cannot represent).
        """
        fields = (
            self.ino, self.mode, self.uid, self.gid, self.nlink, self.mtime, self.filesize,
            self.devmajor, self.devminor, self.rdevmajor, self.rdevminor, self.namesize, self.check,
        )
        for value in fields:
            if not 0 <= value <= MAX_FIELD:
                raise TeeformError(f"cpio newc field value {value} does not fit in 32 bits (files must be < 4 GiB)")
        return NEWC_MAGIC + b"".join(b"%08X" % v for v in fields)


def _pad4(n: int) -> int:
    return (-n) % 4


class NewcWriter:
    """Low-level streaming newc writer: one :meth:`add` per entry, then :meth:`finish`.

    ``fh`` is any writable binary file object; :attr:`offset` counts the bytes written.
    """

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self.offset = 0
        self._finished = False

    def _write(self, data: bytes) -> None:
        self._fh.write(data)
        self.offset += len(data)

    def add(self, name: bytes, header: NewcHeader, data: BinaryIO | bytes | None = None) -> None:
        """Write one entry: header, name + NUL + padding, ``header.filesize`` data bytes, padding.

        ``data`` is the content (bytes, or a stream from which exactly ``filesize`` bytes are read).

        Raises:
            TeeformError: the name contains NUL, or the stream ends before ``filesize`` bytes.
        """
        if b"\0" in name:
            raise TeeformError(f"cpio entry name {name!r} contains a NUL byte")
        if header.namesize != len(name) + 1:
            raise ValueError("namesize must be len(name) + 1")
        self._write(header.pack() + name + b"\0" + b"\0" * _pad4(HEADER_SIZE + len(name) + 1))
        remaining = header.filesize
        if isinstance(data, bytes):
            if len(data) != remaining:
                raise ValueError("data length does not match filesize")
            self._write(data)
            remaining = 0
        elif remaining:
            if data is None:
                raise ValueError("entry has a size but no data")
            while remaining:
                chunk = data.read(min(CHUNK, remaining))
                if not chunk:
                    raise TeeformError(
                        f"cpio entry {name.decode('utf-8', 'replace')!r}: content ended "
                        f"{remaining} bytes early (expected {header.filesize} bytes)"
                    )
                self._write(chunk)
                remaining -= len(chunk)
        self._write(b"\0" * _pad4(header.filesize))

    def finish(self) -> int:
        """Write the ``TRAILER!!!`` entry; return the total archive size in bytes."""
        if not self._finished:
            trailer = NewcHeader(ino=0, mode=0, uid=0, gid=0, nlink=1, mtime=0, filesize=0,
                                 namesize=len(TRAILER_NAME) + 1)
            self.add(TRAILER_NAME, trailer)
            self._finished = True
        return self.offset


@dataclass(frozen=True)
class ArchiveStats:
    """What :func:`write_archive` wrote: entry count (without trailer), content bytes, archive size."""

    entries: int
    content_bytes: int
    size: int


def write_archive(fh: BinaryIO, entries: Iterable[TreeEntry], *, mtime: int) -> ArchiveStats:
    """Write ``entries`` as one deterministic newc archive (rules in the module docstring).

    Args:
        fh: writable binary stream (a temporary file for ramdisks; never held in memory here).
        entries: the tree; order does not matter, paths must be unique.
        mtime: seconds since 1970-01-01 UTC, stored for every entry.

    Returns:
        :class:`ArchiveStats`.

    Raises:
        TeeformError: duplicate or malformed paths, inconsistent hard-link groups, a field that
            does not fit newc's 32-bit fields, or a content stream shorter than its size.
    """
    return plan_archive(entries, mtime=mtime).write(fh)


class ArchivePlan:
    """A validated, sorted archive whose byte size is known before any byte is written.

    :func:`plan_archive` checks the paths and hard-link groups and computes :attr:`size` (bytes,
    trailer included) from the entry sizes alone, so a caller can write the archive straight into
    a container that needs its length first (an EIF section header, ``eif-nitro.md`` §1.3) instead
    of spooling it to a temporary file. :meth:`write` then streams it (once per plan is typical;
    it may be called again and gives the same bytes if the contents have not changed).

    Attributes:
        entries: number of entries (trailer not counted).
        content_bytes: file content bytes (each hard-link group counted once).
        size: total archive size in bytes.
    """

    def __init__(self, items: list[TreeEntry], mtime: int) -> None:
        self._items = items
        self._mtime = mtime
        # nlink for directories: 2 + direct subdirectories.
        self._subdirs: dict[bytes, int] = {}
        for e in items:
            if e.kind is EntryKind.DIR and b"/" in e.path:
                parent = e.path.rsplit(b"/", 1)[0]
                self._subdirs[parent] = self._subdirs.get(parent, 0) + 1
        # hard-link groups: count, last member (carries the data).
        self._group_count: dict[object, int] = {}
        self._group_last: dict[object, int] = {}
        for i, e in enumerate(items):
            if e.link_group is not None:
                if e.kind is not EntryKind.FILE:
                    raise TeeformError(f"cpio: hard link {e.path!r} must be a regular file")
                self._group_count[e.link_group] = self._group_count.get(e.link_group, 0) + 1
                self._group_last[e.link_group] = i
        size = content = 0
        for i, e in enumerate(items):
            n = self._data_size(i, e)
            size += HEADER_SIZE + len(e.path) + 1 + _pad4(HEADER_SIZE + len(e.path) + 1) + n + _pad4(n)
            if e.kind is EntryKind.FILE:
                content += n
        trailer = HEADER_SIZE + len(TRAILER_NAME) + 1
        self.entries = len(items)
        self.content_bytes = content
        self.size = size + trailer + _pad4(trailer)

    def _data_size(self, i: int, e: TreeEntry) -> int:
        """Bytes of data stored after entry ``i``'s name (0 for all hard links but the last)."""
        if e.kind is EntryKind.FILE:
            return e.size if e.link_group is None or self._group_last[e.link_group] == i else 0
        if e.kind is EntryKind.SYMLINK:
            return len(e.link_target)
        return 0

    def write(self, fh: BinaryIO) -> ArchiveStats:
        """Stream the archive to ``fh``; returns :class:`ArchiveStats` (``size`` equals :attr:`size`).

        Raises:
            TeeformError: see :func:`write_archive`, or a file whose content stream is longer or
                shorter than its planned size.
        """
        items, mtime = self._items, self._mtime
        group_ino: dict[object, int] = {}
        group_meta: dict[object, tuple[int, int, int, int]] = {}
        writer = NewcWriter(fh)
        next_ino = 0
        content = 0
        for i, e in enumerate(items):
            if e.link_group is not None and e.link_group in group_ino:
                ino = group_ino[e.link_group]
                if group_meta[e.link_group] != (e.mode, e.uid, e.gid, e.size):
                    raise TeeformError(f"cpio: hard link {e.path!r} disagrees with its group on mode/owner/size")
            else:
                ino = next_ino
                next_ino += 1
                if e.link_group is not None:
                    group_ino[e.link_group] = ino
                    group_meta[e.link_group] = (e.mode, e.uid, e.gid, e.size)
            perm = 0o777 if e.kind is EntryKind.SYMLINK else (e.mode & 0o7777)
            mode = e.kind.type_bits | perm
            size = self._data_size(i, e)
            if e.kind is EntryKind.FILE:
                nlink = self._group_count.get(e.link_group, 1) if e.link_group is not None else 1
            elif e.kind is EntryKind.DIR:
                nlink = 2 + self._subdirs.get(e.path, 0)
            elif e.kind is EntryKind.SYMLINK:
                if not e.link_target:
                    raise TeeformError(f"cpio: symlink {e.path!r} has an empty target")
                nlink = 1
            else:
                nlink = 1
            header = NewcHeader(ino=ino, mode=mode, uid=e.uid, gid=e.gid, nlink=nlink, mtime=mtime,
                                filesize=size, namesize=len(e.path) + 1)
            if e.kind is EntryKind.SYMLINK:
                writer.add(e.path, header, e.link_target)
            elif size:
                if e.opener is None:
                    raise ValueError(f"file entry {e.path!r} has a size but no opener")
                with e.opener() as stream:
                    writer.add(e.path, header, stream)
                content += size
            else:
                writer.add(e.path, header)
        total = writer.finish()
        if total != self.size:  # pragma: no cover - sizes are fixed by the entries; guards the plan's arithmetic
            raise TeeformError(f"cpio: wrote {total} bytes, planned {self.size}")
        return ArchiveStats(entries=len(items), content_bytes=content, size=total)


def plan_archive(entries: Iterable[TreeEntry], *, mtime: int) -> ArchivePlan:
    """Sort and validate ``entries`` and compute the archive size without writing (see :class:`ArchivePlan`).

    Args:
        entries: the tree; order does not matter, paths must be unique.
        mtime: seconds since 1970-01-01 UTC, stored for every entry.

    Raises:
        TeeformError: duplicate or malformed paths, or a hard link that is not a regular file.
    """
    items = sorted(entries, key=lambda e: e.path)
    for prev, cur in zip(items, items[1:], strict=False):
        if prev.path == cur.path:
            raise TeeformError(f"cpio: duplicate path {cur.path.decode('utf-8', 'replace')!r}")
    for e in items:
        if not e.path or e.path.startswith(b"/") or e.path.endswith(b"/") or b"\0" in e.path:
            raise TeeformError(f"cpio: invalid entry path {e.path!r}")
        if any(part in (b"", b".", b"..") for part in e.path.split(b"/")):
            raise TeeformError(f"cpio: invalid entry path {e.path!r}")
    return ArchivePlan(items, mtime)
