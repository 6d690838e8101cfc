"""Reproducible read-only root file system images (erofs or squashfs) from a directory.

Public API::

    FILESYSTEMS = ("erofs", "squashfs")
    make_root_image(src_dir, out_path, *, fs="erofs", source_date_epoch=None, uuid=None,
                    all_root=True, exclude=()) -> Path
    scan_tree(src_dir, *, fs="erofs", source_date_epoch=0, all_root=True) -> TreeScan  # uuid, special files
    derive_fs_uuid(src_dir, *, fs="erofs", source_date_epoch=0, all_root=True) -> str
    pad_to_block(path, block=4096) -> int          # new size in bytes

The image is padded with zeros to a multiple of 4096 bytes so that it can be the data device of a
dm-verity tree with 4 KiB data blocks (image_builder.formats.verity refuses unaligned data).

Reproducibility (checked on Debian 12: erofs-utils 1.5-1, squashfs-tools 1:4.5.1-1):

* erofs: ``mkfs.erofs -T<epoch> -U<uuid> [--all-root] --quiet``. ``-T`` sets the build time *and*
  every inode's mtime (compact 32-byte inodes, which carry no own mtime). The directory entries are
  sorted by name by mkfs.erofs itself, so the readdir order of the source (ext4 hash order, tmpfs
  creation order) does not matter: trees created in opposite orders gave identical images. Without
  ``-U`` the UUID is random.
* squashfs: ``mksquashfs SRC OUT -noappend -reproducible -mkfs-time <epoch> -all-time <epoch>
  [-all-root] -quiet -no-progress``.
* Both tools change behaviour when ``SOURCE_DATE_EPOCH`` is in their environment: mkfs.erofs 1.5
  then switches to 64-byte extended inodes and *clamps* mtimes (older files keep their own mtime),
  even for an empty value; mksquashfs 4.5.1 refuses ``-all-time``/``-mkfs-time`` ("SOURCE_DATE_EPOCH
  and command line options can't be used at the same time"). teeform therefore runs them with the
  variable removed (``env -u SOURCE_DATE_EPOCH``) and passes the epoch explicitly, so every file
  gets mtime = SOURCE_DATE_EPOCH whatever the caller's environment.
* Ownership: ``all_root=True`` (default) stores uid/gid 0 for every file (``--all-root`` /
  ``-all-root``), so a build by an unprivileged user (whose extraction cannot chown) gives the same
  image as a build by root. Pass ``all_root=False`` to keep the tree's owners (needs a tree extracted
  as root). Permission bits, symlink targets, xattrs and file contents are always kept.
* The erofs UUID defaults to :func:`derive_fs_uuid`: a hash of the tree's *metadata* (relative paths,
  types, modes, sizes, symlink targets) plus the file system type and epoch. It needs no extra pass
  over file contents; different trees get different UUIDs in practice, identical trees the same one.
* The tree is read in place (no staging copy): mode bits, symlink targets, xattrs and contents come
  from it; owners and mtimes are normalised by the flags above. Device nodes, sockets and FIFOs
  found by :func:`scan_tree` can be left out with ``exclude``.
"""

from __future__ import annotations

import hashlib
import os
import stat
import uuid as uuidlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from teeform.errors import TeeformError
from teeform.fsutil import atomic_output_path
from teeform.fsutil import source_date_epoch as env_source_date_epoch
from teeform.run import find_tool, run

__all__ = ["FILESYSTEMS", "VERITY_BLOCK", "TreeScan", "make_root_image", "derive_fs_uuid", "pad_to_block", "scan_tree"]

#: Root file system types :func:`make_root_image` can produce.
FILESYSTEMS = ("erofs", "squashfs")
#: The image size is padded to a multiple of this (dm-verity data block size, uki-verity.md §5).
VERITY_BLOCK = 4096

_UUID_DOMAIN = b"teeform/rootfs/uuid/v1\0"


@dataclass(frozen=True)
class TreeScan:
    """What one metadata walk of a root tree found (:func:`scan_tree`).

    Attributes:
        uuid: the erofs UUID derived from the tree (see the module docstring), RFC 9562 version 8.
        special_files: relative paths (``/``-separated, file-system encoding as ``os.fsdecode``
            gives them) of device nodes, sockets and FIFOs; they are left out of the image.
        entries: number of entries walked (the root itself not counted).
    """

    uuid: str
    special_files: tuple[str, ...]
    entries: int


def _is_special(mode: int) -> bool:
    return stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISSOCK(mode) or stat.S_ISFIFO(mode)


def scan_tree(
    src_dir: os.PathLike[str] | str, *, fs: str = "erofs", source_date_epoch: int = 0, all_root: bool = True
) -> TreeScan:
    """Walk ``src_dir`` once (``lstat`` only, no file contents, symlinks not followed).

    The UUID hashes, per entry in sorted order (names compared as bytes, parents before children):
    relative path, ``st_mode`` (octal), size of regular files (else 0), uid/gid unless ``all_root``,
    symlink target; special files are not part of it (they are not part of the image either).

    Raises:
        TeeformError: ``src_dir`` cannot be listed.
    """
    h = hashlib.sha256(_UUID_DOMAIN + f"{fs}\0{source_date_epoch}\0{int(all_root)}\0".encode())
    specials: list[str] = []
    count = 0
    root = os.fsencode(os.fspath(src_dir))
    stack: list[bytes] = [b""]
    while stack:
        rel_dir = stack.pop()
        abs_dir = os.path.join(root, rel_dir) if rel_dir else root
        try:
            with os.scandir(abs_dir) as it:
                names = sorted(e.name for e in it)
        except OSError as exc:
            raise TeeformError(f"cannot list directory: {exc.strerror}", path=os.fsdecode(abs_dir)) from exc
        subdirs: list[bytes] = []
        for name in names:
            rel = rel_dir + b"/" + name if rel_dir else name
            st = os.lstat(os.path.join(root, rel))
            count += 1
            if _is_special(st.st_mode):
                specials.append(os.fsdecode(rel))
                continue
            fields = [rel, b"%o" % st.st_mode, b"%d" % (st.st_size if stat.S_ISREG(st.st_mode) else 0)]
            if not all_root:
                fields += [b"%d" % st.st_uid, b"%d" % st.st_gid]
            if stat.S_ISLNK(st.st_mode):
                fields.append(os.readlink(os.path.join(root, rel)))
            elif stat.S_ISDIR(st.st_mode):
                subdirs.append(rel)
            h.update(b"\0".join(fields) + b"\n")
        stack.extend(reversed(subdirs))  # depth first, in sorted order
    raw = bytearray(h.digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x80
    raw[8] = (raw[8] & 0x3F) | 0x80
    return TreeScan(str(uuidlib.UUID(bytes=bytes(raw))), tuple(specials), count)


def derive_fs_uuid(
    src_dir: os.PathLike[str] | str, *, fs: str = "erofs", source_date_epoch: int = 0, all_root: bool = True
) -> str:
    """Return the UUID :func:`scan_tree` derives from the tree's metadata (see the module docstring)."""
    return scan_tree(src_dir, fs=fs, source_date_epoch=source_date_epoch, all_root=all_root).uuid


def pad_to_block(path: os.PathLike[str] | str, block: int = VERITY_BLOCK) -> int:
    """Extend ``path`` with zero bytes to a multiple of ``block`` bytes (sparse); return the new size."""
    size = os.stat(path).st_size
    new = -(-size // block) * block
    if new != size:
        os.truncate(path, new)
    return new


def _without_sde(tool: str, reason: str) -> list[str]:
    """argv prefix that runs ``tool`` with SOURCE_DATE_EPOCH removed from its environment."""
    return ["env", "-u", "SOURCE_DATE_EPOCH", find_tool(tool, reason=reason) or tool]


def make_root_image(
    src_dir: os.PathLike[str] | str,
    out_path: os.PathLike[str] | str,
    *,
    fs: str = "erofs",
    source_date_epoch: int | None = None,
    uuid: str | None = None,
    all_root: bool = True,
    exclude: Sequence[str] = (),
) -> Path:
    """Pack directory ``src_dir`` into a read-only ``fs`` image at ``out_path`` (written atomically).

    Args:
        src_dir: the root tree (not modified).
        out_path: output image; padded with zeros to a multiple of 4096 bytes.
        fs: ``"erofs"`` (default; uncompressed) or ``"squashfs"`` (gzip, mksquashfs default).
        source_date_epoch: timestamp (s since the epoch, UTC) for every inode and the superblock;
            default :func:`teeform.fsutil.source_date_epoch` ($SOURCE_DATE_EPOCH or 0).
        uuid: erofs file system UUID (default :func:`derive_fs_uuid`); squashfs has none, so it must
            be None for squashfs.
        all_root: store uid/gid 0 for every file (default) instead of the tree's owners.
        exclude: paths relative to ``src_dir`` (``/``-separated, no leading ``/``) to leave out, e.g.
            :attr:`TreeScan.special_files` (``mkfs.erofs --exclude-path=``, exact literal paths;
            ``mksquashfs -e``, paths relative to the source, erofs-utils 1.5 / squashfs-tools 4.5.1).

    Returns:
        ``Path(out_path)``.

    Raises:
        TeeformError: ``src_dir`` is not a directory, unknown ``fs``, bad ``uuid``, or the tool failed.
        ToolMissingError: mkfs.erofs / mksquashfs is not installed.
    """
    src = Path(src_dir)
    if not src.is_dir():
        raise TeeformError("root file system source is not a directory", path=src)
    if fs not in FILESYSTEMS:
        raise TeeformError(f"unknown root file system type {fs!r}", field="fs", hint=f"use one of {', '.join(FILESYSTEMS)}")
    epoch = env_source_date_epoch() if source_date_epoch is None else source_date_epoch
    if epoch < 0:
        raise TeeformError(f"source_date_epoch must be >= 0, got {epoch}", field="source_date_epoch")
    with atomic_output_path(out_path) as tmp:
        if fs == "erofs":
            fs_uuid = uuid or derive_fs_uuid(src, fs=fs, source_date_epoch=epoch, all_root=all_root)
            try:
                fs_uuid = str(uuidlib.UUID(fs_uuid))
            except ValueError as exc:
                raise TeeformError(f"erofs UUID {fs_uuid!r} is not a UUID", field="uuid") from exc
            argv = [*_without_sde("mkfs.erofs", "build the erofs root image"),
                    f"-T{epoch}", f"-U{fs_uuid}", "--quiet"]  # fmt: skip
            if all_root:
                argv.append("--all-root")
            argv += [f"--exclude-path={x}" for x in exclude]
            run([*argv, str(tmp), str(src)])
        else:
            if uuid is not None:
                raise TeeformError("squashfs has no file system UUID", field="uuid")
            tmp.unlink()  # mksquashfs -noappend wants to create it
            argv = [*_without_sde("mksquashfs", "build the squashfs root image"), str(src), str(tmp),
                    "-noappend", "-reproducible", "-mkfs-time", str(epoch), "-all-time", str(epoch),
                    "-quiet", "-no-progress"]  # fmt: skip
            if all_root:
                argv.append("-all-root")
            if exclude:
                argv += ["-e", *exclude]  # must be the last option (mksquashfs(1))
            run(argv)
        pad_to_block(tmp)
    return Path(out_path)
