"""Cloud disk formats from a raw disk: fixed VHD (Azure), GCE ``disk.raw`` tarball, qcow2; and reading them back.

Public API::

    FORMATS = ("raw", "vhd", "qcow2", "gce-tar")
    convert(raw_path, fmt, out_path, *, source_date_epoch=None) -> Path
    vhd_footer(current_size, *, timestamp, unique_id) -> bytes          # 512 bytes, pure
    parse_vhd_footer(raw: bytes) -> VhdFooter                            # pure
    detect_format(path) -> str                                           # one of FORMATS (+ "vhd-dynamic")
    open_raw_view(path) -> ContextManager[RawView]                       # RawView(path, size, fmt)
    pwrite_sparse(fd, data, offset) -> None                              # skips 64 KiB zero runs

**Fixed VHD (Azure).** Azure wants a fixed-size VHD whose virtual size is a whole number of MiB
(uki-verity.md §8). A fixed VHD is the raw bytes followed by a 512-byte footer (Microsoft "Virtual
Hard Disk Image Format Specification" 1.0, "Hard Disk Footer Format"; all fields big-endian):
cookie ``conectix``, features 2, version 0x00010000, data offset 0xFFFFFFFFFFFFFFFF (fixed),
timestamp (seconds since 2000-01-01 00:00:00 UTC), creator application, creator version, creator
host OS, original size, current size, geometry (cylinders u16, heads u8, sectors/track u8), disk
type 2 (fixed), checksum (ones' complement of the byte sum of the footer with the checksum field
zeroed), unique id (16 bytes), saved state (1 byte), 427 reserved zero bytes.

teeform writes the footer itself instead of running ``qemu-img convert -O vpc -o
subformat=fixed,force_size`` (Azure's documented recipe) because qemu-img 7.2 puts the current time
and a random unique id into the footer, so two conversions differ (19 bytes, checked). Every other
field is what that qemu-img command writes, so the image is what Azure users normally upload:
creator application ``qem2`` (which also makes qemu read the size from "current size" rather than
from the geometry), creator version 0x00050003, host OS ``Wi2k``, geometry 65535/16/255 (qemu's
``force_size`` value). teeform's timestamp is SOURCE_DATE_EPOCH - 946684800 (0 for earlier epochs)
and the unique id is the first 16 bytes of SHA-256(``b"teeform/vhd/unique-id/v1\\0"`` || SHA-256 of
the raw data incl. padding). tests/test_diskformats.py compares the result with qemu-img's output
with those two fields (and the checksum) transplanted. The raw data is padded with zeros to a
multiple of 1 MiB first (teeform's GPT disks already are, so their backup GPT stays in the last LBA).
Note: ``qemu-img info`` probes a fixed VHD as "raw" (it only recognises the footer copy that
dynamic VHDs have at offset 0); use ``qemu-img info -f vpc``.

**GCE tarball.** Google's import wants ``disk.raw`` inside a gzip'd tar in GNU format
(``tar --format=gnu -Sczf``, uki-verity.md §8). teeform writes it with :mod:`tarfile`
(``GNU_FORMAT``, one member ``disk.raw``, mtime = SOURCE_DATE_EPOCH, uid/gid 0, owner names
``root``, mode 0644) into a :class:`gzip.GzipFile` with ``mtime=0`` and no file name, so the output
is reproducible. The member is stored densely (no GNU sparse map; optional per the brief).

**qcow2.** ``qemu-img convert -f raw -O qcow2 -o compat=1.1,cluster_size=65536`` (options pinned
explicitly); two conversions are byte-identical with qemu-img 7.2 (no timestamps in the qcow2
header; writes are in order unless ``-W`` is given).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import struct
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from teeform.errors import TeeformError
from teeform.fsutil import atomic_output, atomic_output_path
from teeform.fsutil import source_date_epoch as env_source_date_epoch
from teeform.run import run

__all__ = [
    "FORMATS",
    "VHD_ALIGN",
    "pwrite_sparse",
    "VhdFooter",
    "RawView",
    "convert",
    "vhd_footer",
    "parse_vhd_footer",
    "detect_format",
    "open_raw_view",
]

#: Formats :func:`convert` writes (``teeform build vm-image --format``).
FORMATS = ("raw", "vhd", "qcow2", "gce-tar")
#: Azure: the VHD's virtual size must be a multiple of 1 MiB (uki-verity.md §8).
VHD_ALIGN = 1 << 20
GCE_MEMBER = "disk.raw"

_VHD_COOKIE = b"conectix"
_VHD_EPOCH = 946684800  # 2000-01-01T00:00:00Z in Unix time
# cookie features version data_offset timestamp creator_app creator_ver creator_os orig cur
# cyl heads spt disk_type checksum uuid saved_state reserved
_VHD = struct.Struct(">8sIIQI4sI4sQQHBBII16sB427s")
assert _VHD.size == 512
_VHD_FIXED = 2
_UNIQUE_DOMAIN = b"teeform/vhd/unique-id/v1\0"
_CHUNK = 4 << 20
_QCOW2_MAGIC = b"QFI\xfb"


# --------------------------------------------------------------------------- VHD footer (pure)


@dataclass(frozen=True)
class VhdFooter:
    """Decoded VHD footer fields (sizes in bytes, timestamp in seconds since 2000-01-01 UTC)."""

    features: int
    version: int
    data_offset: int
    timestamp: int
    creator_app: bytes
    creator_version: int
    creator_os: bytes
    original_size: int
    current_size: int
    geometry: tuple[int, int, int]
    disk_type: int
    checksum: int
    unique_id: bytes
    saved_state: int


def _vhd_checksum(footer: bytes) -> int:
    return ~sum(footer[:64] + b"\0\0\0\0" + footer[68:]) & 0xFFFFFFFF


def vhd_footer(current_size: int, *, timestamp: int, unique_id: bytes) -> bytes:
    """Return the 512-byte footer of a fixed VHD of ``current_size`` bytes (VHD spec 1.0; qemu-img force_size values). Pure."""
    if current_size % 512:
        raise TeeformError(f"VHD size {current_size} is not a multiple of 512")
    fields = [_VHD_COOKIE, 2, 0x00010000, 0xFFFFFFFFFFFFFFFF, timestamp & 0xFFFFFFFF, b"qem2", 0x00050003, b"Wi2k",
              current_size, current_size, 65535, 16, 255, _VHD_FIXED, 0, unique_id, 0, b""]  # fmt: skip
    raw = _VHD.pack(*fields)
    fields[14] = _vhd_checksum(raw)
    return _VHD.pack(*fields)


def parse_vhd_footer(raw: bytes) -> VhdFooter:
    """Decode and check a 512-byte VHD footer. Pure.

    Raises:
        TeeformError: wrong cookie or checksum.
    """
    if len(raw) != 512 or raw[:8] != _VHD_COOKIE:
        raise TeeformError("no VHD footer (cookie 'conectix' missing)", field="vhd.footer")
    f = _VHD.unpack(raw)
    if f[14] != _vhd_checksum(raw):
        raise TeeformError("VHD footer checksum mismatch", field="vhd.footer.checksum")
    return VhdFooter(f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], (f[10], f[11], f[12]), f[13], f[14], f[15],
                     f[16])  # fmt: skip


# --------------------------------------------------------------------------- writers


_ZERO = bytes(_CHUNK)
_HOLE = 64 << 10  # granularity at which zero runs are skipped inside a non-zero chunk
_ZERO_HOLE = bytes(_HOLE)


def pwrite_sparse(fd: int, data: bytes, offset: int) -> None:
    """``os.pwrite`` ``data`` at ``offset`` but skip 64 KiB-aligned all-zero pieces (the file must already
    be long enough / pre-sized with ``ftruncate``, so skipped pieces read back as zeros)."""
    n = len(data)
    if (data == _ZERO) if n == _CHUNK else not data.strip(b"\0"):
        return
    start = None  # start of the current non-zero run
    for o in range(0, n, _HOLE):
        piece = data[o : o + _HOLE]
        nonzero = piece != _ZERO_HOLE[: len(piece)]
        if nonzero and start is None:
            start = o
        elif not nonzero and start is not None:
            os.pwrite(fd, data[start:o], offset + start)
            start = None
    if start is not None:
        os.pwrite(fd, data[start:], offset + start)


def _stream_sparse(src: Path, out_fd: int, hasher: hashlib._Hash | None = None) -> int:
    """Copy ``src`` to the start of ``out_fd`` (pre-sized or extended afterwards) leaving zero runs as holes."""
    pos = 0
    with open(src, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            if hasher is not None:
                hasher.update(chunk)
            pwrite_sparse(out_fd, chunk, pos)
            pos += len(chunk)
    return pos


def _write_raw(raw: Path, out: Path) -> None:
    with atomic_output(out) as fh:
        size = _stream_sparse(raw, fh.fileno())
        os.ftruncate(fh.fileno(), size)


def _write_vhd(raw: Path, out: Path, epoch: int) -> None:
    h = hashlib.sha256()
    with atomic_output(out) as fh:
        size = _stream_sparse(raw, fh.fileno(), h)
        padded = -(-size // VHD_ALIGN) * VHD_ALIGN
        h.update(bytes(padded - size))
        os.ftruncate(fh.fileno(), padded)
        uid = bytearray(hashlib.sha256(_UNIQUE_DOMAIN + h.digest()).digest()[:16])
        uid[6] = (uid[6] & 0x0F) | 0x80
        uid[8] = (uid[8] & 0x3F) | 0x80
        footer = vhd_footer(padded, timestamp=max(0, epoch - _VHD_EPOCH), unique_id=bytes(uid))
        os.pwrite(fh.fileno(), footer, padded)


def _write_gce_tar(raw: Path, out: Path, epoch: int) -> None:
    info = tarfile.TarInfo(GCE_MEMBER)
    info.size = raw.stat().st_size
    info.mtime = epoch
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    with atomic_output(out) as fh:
        with gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0, compresslevel=6) as gz:
            with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar, open(raw, "rb") as src:
                tar.addfile(info, src)


def _write_qcow2(raw: Path, out: Path) -> None:
    with atomic_output_path(out) as tmp:
        run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", "-o", "compat=1.1,cluster_size=65536",
             str(raw), str(tmp)])  # fmt: skip


def convert(
    raw_path: os.PathLike[str] | str,
    fmt: str,
    out_path: os.PathLike[str] | str,
    *,
    source_date_epoch: int | None = None,
) -> Path:
    """Convert the raw disk ``raw_path`` to ``fmt`` at ``out_path`` (atomically; reproducible).

    Args:
        raw_path: a raw disk image (e.g. from :func:`image_builder.formats.gpt.assemble_disk`).
        fmt: ``"raw"`` (sparse copy), ``"vhd"`` (fixed VHD, size rounded up to 1 MiB + 512-byte
            footer), ``"qcow2"`` or ``"gce-tar"`` (gzip'd GNU tar holding ``disk.raw``).
        out_path: output file.
        source_date_epoch: VHD footer timestamp / tar member mtime (default $SOURCE_DATE_EPOCH or 0).

    Returns:
        ``Path(out_path)``.

    Raises:
        TeeformError: unknown format, unreadable input, or qemu-img failed.
        ToolMissingError: qemu-img is not installed (qcow2 only).
    """
    raw = Path(raw_path)
    if fmt not in FORMATS:
        raise TeeformError(f"unknown disk format {fmt!r}", field="format", hint=f"use one of {', '.join(FORMATS)}")
    if not raw.is_file():
        raise TeeformError("raw disk image not found", path=raw)
    if Path(out_path).resolve() == raw.resolve():
        raise TeeformError("output would overwrite the input disk", path=out_path)
    epoch = env_source_date_epoch() if source_date_epoch is None else source_date_epoch
    out = Path(out_path)
    try:
        if fmt == "raw":
            _write_raw(raw, out)
        elif fmt == "vhd":
            _write_vhd(raw, out, epoch)
        elif fmt == "gce-tar":
            _write_gce_tar(raw, out, epoch)
        else:
            _write_qcow2(raw, out)
    except OSError as exc:
        raise TeeformError(f"cannot write {fmt} image: {exc.strerror or exc}", path=out) from exc
    return out


# --------------------------------------------------------------------------- readers


@dataclass(frozen=True)
class RawView:
    """The raw disk bytes of an image: bytes ``[0, size)`` of ``path``; ``fmt`` is the detected input format."""

    path: Path
    size: int
    fmt: str


def detect_format(path: os.PathLike[str] | str) -> str:
    """Sniff ``path``: ``"qcow2"`` (magic ``QFI\\xfb``), ``"vhd-dynamic"`` (``conectix`` at 0), ``"gce-tar"``
    (gzip magic), ``"vhd"`` (valid fixed-disk footer in the last 512 bytes), else ``"raw"``.

    Raises:
        TeeformError: unreadable file.
    """
    try:
        size = os.stat(path).st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            tail = b""
            if size >= 1024:
                fh.seek(size - 512)
                tail = fh.read(512)
    except OSError as exc:
        raise TeeformError(f"cannot read disk image: {exc.strerror}", path=path) from exc
    if head[:4] == _QCOW2_MAGIC:
        return "qcow2"
    if head == _VHD_COOKIE:
        return "vhd-dynamic"
    if head[:2] == b"\x1f\x8b":
        return "gce-tar"
    if tail[:8] == _VHD_COOKIE:
        with contextlib.suppress(TeeformError):
            if parse_vhd_footer(tail).disk_type == _VHD_FIXED:
                return "vhd"
    return "raw"


@contextlib.contextmanager
def open_raw_view(path: os.PathLike[str] | str) -> Iterator[RawView]:
    """Yield a :class:`RawView` of the raw disk inside ``path`` (for ``teeform measure``).

    raw: the file itself. Fixed VHD: the file without its footer (the footer's checksum, type and
    size are checked). gce-tar: ``disk.raw`` streamed into a temporary file. qcow2 / dynamic VHD:
    ``qemu-img convert`` to a temporary raw file. Temporary files are removed on exit.

    Raises:
        TeeformError: damaged VHD footer, a tarball without ``disk.raw``, or qemu-img failed.
    """
    p = Path(path)
    fmt = detect_format(p)
    if fmt == "raw":
        yield RawView(p, p.stat().st_size, "raw")
        return
    if fmt == "vhd":
        size = p.stat().st_size - 512
        with open(p, "rb") as fh:
            fh.seek(size)
            footer = parse_vhd_footer(fh.read(512))
        if footer.current_size != size:
            raise TeeformError(
                f"VHD footer says {footer.current_size} bytes but {size} bytes precede it", path=p, field="vhd.footer"
            )
        yield RawView(p, size, "vhd")
        return
    with tempfile.TemporaryDirectory(prefix="teeform-raw-") as tmp:
        out = Path(tmp, "disk.raw")
        if fmt == "gce-tar":
            try:
                with tarfile.open(p, mode="r:gz") as tar:
                    member = next((m for m in tar if m.name.lstrip("./") == GCE_MEMBER and m.isfile()), None)
                    if member is None:
                        raise TeeformError(f"the tarball has no regular file {GCE_MEMBER}", path=p)
                    src = tar.extractfile(member)
                    assert src is not None
                    with open(out, "wb") as dst:
                        pos = 0
                        while chunk := src.read(_CHUNK):
                            pwrite_sparse(dst.fileno(), chunk, pos)
                            pos += len(chunk)
                        os.ftruncate(dst.fileno(), pos)
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise TeeformError(f"cannot read GCE tarball: {exc}", path=p) from exc
        else:
            src_fmt = "qcow2" if fmt == "qcow2" else "vpc"
            run(["qemu-img", "convert", "-q", "-f", src_fmt, "-O", "raw", str(p), str(out)])
        yield RawView(out, out.stat().st_size, fmt)
