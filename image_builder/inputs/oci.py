"""OCI image input: open, verify and safely flatten container images (no Docker daemon needed).

Accepted inputs
---------------
* an **OCI image layout directory** (``oci-layout`` + ``index.json`` + ``blobs/<alg>/<hex>``;
  OCI image-spec v1.1 ``image-layout.md``), e.g. from ``skopeo copy ... oci:DIR`` or
  :mod:`image_builder.inputs.demo_image`;
* a **``docker save`` tarball** (uncompressed), either the newer OCI-in-tar format (Docker >= 25:
  ``oci-layout`` + ``index.json`` inside the tar; preferred when present) or the legacy format
  (``manifest.json`` listing ``Config`` and ``Layers``; moby ``image/spec/v1.2.md``).

An image index is followed (nested indexes too). Attestation manifests (platform
``unknown/unknown``) are skipped. If several images remain, ``platform`` picks one
(``"linux/amd64"``, ``"linux/arm64/v8"``); without it, the single image, else the single
``linux/amd64`` one, else a :class:`~teeform.errors.TeeformError` listing the choices.

Layers may be tar, tar+gzip or tar+zstd (gzip inflated by ISA-L, ``isal.igzip.IGzipFile`` of
python-isal, about 3.7x faster than the standard library's ``gzip`` and the same bytes, which it
falls back to without the wheel; zstd through the ``zstd`` CLI: the compressed blob is first copied
to a temporary file while its digest is checked, then decompressed with ``zstd -d``). Compression
is recognised from the blob's magic bytes.

Verification
------------
Every blob is hashed while it is read: the index/manifest/config against their descriptors, each
layer blob against its descriptor digest and size, and each layer's uncompressed stream against the
config's ``rootfs.diff_ids`` entry (for legacy docker archives, which have no descriptors, only
this diff_id check applies and the config is checked against its file name). A mismatch raises a
:class:`TeeformError` naming the layer. Layer contents are copied into a private spool file
while they are verified, and only the spooled (verified) bytes are ever used afterwards; except
for an *uncompressed* layer blob of an image layout directory, whose bytes are the tar stream
itself: its file contents are read in place later (no second copy of a large layer), from a
duplicate of the file descriptor that was verified, and the blob's ``fstat`` signature (device,
inode, size, mtime, ctime) must be unchanged after hashing and again at
:meth:`FlatTree.check_unchanged`, which callers run after using the contents and before
publishing anything made from them (a ``write(2)`` to the file updates its ctime).

With ``flatten(..., defer_verification=True)`` (the EIF build) such an in-place blob is not hashed
while it is parsed: only its tar headers are read (seeking over the contents), and its digest,
size and diff_id are checked later by :class:`_LayerCheck`, on a background thread after
:meth:`FlatTree.start_verification` or at the latest in :meth:`FlatTree.check_unchanged`; the
caller must not publish anything made from the tree before that returns. A blob that does not
parse is checked at once (so corruption reads as a digest mismatch). Compressed layers, zstd
layers and ``docker save`` archives are always verified while they are read.

Flattening (OCI image-spec ``layer.md``)
----------------------------------------
Layers are applied in order to an in-memory tree of metadata: ``.wh.<name>`` deletes ``<name>``
from lower layers, ``.wh..wh..opq`` hides every lower-layer entry of its directory, a
non-directory replaces whatever was at its path (a directory with its subtree), a directory over a
directory only updates its metadata. Missing parent directories are created (0755, root).

Safety checks (our own; ``tarfile`` is used only as a parser and ``TarFile.extract*`` is never
called, so its extraction filters play no part). The build is refused, before anything is
written, when a layer member:

* has an absolute path or a ``..`` component;
* is a symlink whose target, resolved lexically from the link's directory (absolute targets from
  the image root), climbs above the image root (e.g. ``a/l -> ../../etc``). Absolute targets
  inside the image (``/bin/sh -> /bin/busybox``) are normal and allowed;
* is a hard link whose target is absolute, contains ``..``, does not exist yet, or is not a
  regular file;
* lies under a path that an earlier member made a symlink or a non-directory (we never follow
  symlinks while flattening; containerd would resolve them inside the root instead);
* is a character or block device node (a device node could expose hardware to the application;
  the enclave's ``/dev`` is a devtmpfs mounted by init anyway);
* has an unknown tar type, or is an aufs ``.wh..wh.*`` entry other than the opaque marker.
* has a header value nothing downstream can represent: a NUL in its name or link target, a path
  over :data:`MAX_MEMBER_PATH` bytes (PATH_MAX), a component over 255 bytes (NAME_MAX), more than
  :data:`MAX_TREE_DEPTH` levels, a negative size (or a size on a non-file), a uid/gid outside
  ``uid_t``, a non-finite or out-of-range PAX ``mtime`` (``inf``, ``nan``, ``1e400``), or an
  extended header over :data:`MAX_TAR_EXT_HEADER` bytes.

Hostile metadata (limits; every failure is one :class:`TeeformError` naming the file and field):
``oci-layout`` at most :data:`MAX_OCI_LAYOUT` bytes; ``index.json``, manifests, configs and
``manifest.json`` at most :data:`MAX_JSON_BLOB` bytes each, parsed with
:func:`teeform.safeload.loads_json` (nesting <= 64, integers <= 20 digits, no NaN, no lone
surrogates); descriptor fields must have the types of image-spec ``descriptor.md`` "Properties"
(annotations: string values) and legacy ``RepoTags``/``Layers`` must be arrays of strings (moby
``image/spec/v1.2.md``). Blobs, archives and ``--image`` must be regular files (a FIFO or
``/dev/zero`` is refused before it is read); a ``docker save`` archive may list at most
:data:`MAX_ARCHIVE_MEMBERS` members.

FIFOs are **accepted**: they grant no access to anything, unprivileged users can create them, and
cpio/the kernel handle them (``init/initramfs.c`` ``do_name``).

API used by the EIF builder and the VM image builder
----------------------------------------------------
``open_image(path, platform=None) -> OciImage``
    parse and verify index/manifest/config (no layer is read yet).
``flatten(image, work_dir=None, defer_verification=False) -> FlatTree``
    stream, verify (or, deferred, only index) and flatten every layer; the result is a context
    manager owning a spool file.
    ``FlatTree.entries()`` yields :class:`FlatEntry` in path-byte order; ``FlatTree.open(entry)``
    streams a file's content.
``extract_rootfs(image_path, dest_dir, platform=None) -> OciImage``
    materialise the flattened tree into an empty directory: directories, regular files, symlinks,
    hard links, FIFOs; permission bits; owners only when running as root; mtimes clamped to
    SOURCE_DATE_EPOCH.
``select_command(config) -> (cmd, env)``
    the argv and environment nitro-cli would put into ``/cmd`` and ``/env``.
"""

from __future__ import annotations

import contextlib
import enum
import gzip
import hashlib
import io
import os
import re
import shutil
import tarfile
import tempfile
import threading
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast

from teeform.errors import TeeformError
from teeform.fsutil import CHUNK, source_date_epoch
from teeform.hashlanes import HashLanes
from teeform.safeload import loads_json, open_regular

MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_LEGACY_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
INDEX_TYPES = (MT_OCI_INDEX, MT_DOCKER_LIST)
MANIFEST_TYPES = (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST)
#: Layer media types we can apply (compression is detected from magic bytes anyway).
LAYER_TYPES = (
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar.zstd",
    MT_LEGACY_LAYER,
)
MAX_JSON_BLOB = 16 << 20  # index/manifest/config larger than this are refused
#: ``oci-layout`` is one tiny object (image-spec ``image-layout.md`` "oci-layout file").
MAX_OCI_LAYOUT = 64 << 10
#: Longest member path accepted in a layer: Linux PATH_MAX (4096, ``include/uapi/linux/limits.h``,
#: counting the terminating NUL) minus the ``rootfs/`` prefix the EIF's customer ramdisk adds.
MAX_MEMBER_PATH = 4096 - 1 - len("rootfs/")
#: Longest path component (Linux NAME_MAX, ``include/uapi/linux/limits.h``), in bytes.
MAX_NAME = 255
#: Deepest directory nesting accepted (teeform's own limit): CPython's default recursion limit is
#: 1,000 frames (``sys.getrecursionlimit()``) and ``shutil.copytree``/``shutil.rmtree`` and Python
#: 3.11's ``os.walk`` recurse once per level, so a 1,100-level tree would end in ``RecursionError``.
MAX_TREE_DEPTH = 512
#: Longest symlink / hard-link target (PATH_MAX - 1: ``readlink`` and ``symlinkat`` refuse longer).
MAX_LINK_TARGET = 4095
#: Largest tar extended header (PAX ``x``/``g``, GNU long name/link) we let ``tarfile`` read into
#: memory; real ones are a few hundred bytes (POSIX.1-2008 ``pax`` "pax Extended Header").
MAX_TAR_EXT_HEADER = 1 << 20
#: Most members a ``docker save`` archive may list (its index is held in memory; real ones hold a
#: few dozen: one directory and a few files per layer).
MAX_ARCHIVE_MEMBERS = 100_000
#: Largest uid/gid accepted from a tar header (``uid_t`` is 32 bits; (uid_t)-1 means "no change").
MAX_ID = 0xFFFFFFFE
#: mtimes from a layer must be finite and fit a signed 64-bit ``time_t`` (PAX ``mtime`` is a decimal
#: with a fraction, so ``inf``/``nan``/``1e400`` parse as floats in ``tarfile``).
MAX_MTIME = (1 << 63) - 1
_DIGEST_RE = re.compile(r"^(sha256|sha512):([0-9a-f]+)$")
_DIGEST_LEN = {"sha256": 64, "sha512": 128}
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

#: What a corrupt deflate stream raises besides EOFError/BadGzipFile (ISA-L's IsalError, else zlib.error).
_GzipError: type[Exception]
try:  # python-isal (Intel ISA-L): gzip layers inflate about 3.7x faster than with zlib (the same bytes)
    from isal.igzip import IGzipFile as _GzipReader
    from isal.isal_zlib import error as _isal_error

    _GzipError = cast("type[Exception]", _isal_error)  # the stub types it as an instance; it is a class
except ImportError:  # pragma: no cover - a platform without the wheel: the standard library's
    _GzipReader = gzip.GzipFile  # type: ignore[misc,assignment]
    _GzipError = zlib.error


# ----------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Platform:
    """An OCI platform (image-spec ``image-index.md``): ``os``/``architecture``[/``variant``]."""

    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``"linux/amd64"`` or ``"linux/arm64/v8"``.

        Raises:
            TeeformError: not of the form os/arch[/variant].
        """
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise TeeformError(f"invalid platform {text!r}", field="--platform", hint="use os/arch[/variant], e.g. linux/amd64")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    def matches(self, other: Platform) -> bool:
        """True when os and architecture agree, and the variant too if ``self`` names one."""
        return (self.os, self.architecture) == (other.os, other.architecture) and (
            self.variant is None or self.variant == other.variant
        )

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor (image-spec ``descriptor.md``).

    ``digest`` is ``"<alg>:<hex>"`` or None for a legacy docker-archive layer (no descriptor
    exists; the config's diff_id is checked instead). ``size`` is in bytes (None when unknown).
    ``location`` is where the blob lives in its store (``blobs/sha256/<hex>`` or a tar member name).
    """

    media_type: str
    digest: str | None
    size: int | None
    location: str
    platform: Platform | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def short(self) -> str:
        """``sha256:0123456789ab`` (first 12 hex digits) or the location, for messages."""
        return self.digest[: self.digest.index(":") + 13] if self.digest else self.location


class BlobStore(Protocol):
    """Where an image's blobs are read from (a layout directory or a ``docker save`` tar)."""

    source: Path

    def open(self, location: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """Open the blob at ``location`` for streaming reads."""
        ...

    def exists(self, location: str) -> bool:
        """True when ``location`` names a blob."""
        ...


@dataclass(frozen=True)
class OciImage:
    """A parsed and verified image (its layers are read only by :func:`flatten`).

    Attributes:
        source: the layout directory or tar file.
        format: ``"oci-layout"``, ``"docker-archive (OCI)"`` or ``"docker-archive (legacy)"``.
        manifest_digest: ``sha256:<hex>`` of the image manifest, None for legacy docker archives.
        manifest_size: manifest size in bytes (None for legacy archives).
        config_digest: ``sha256:<hex>`` of the config blob (the image ID).
        config: the parsed config JSON (image-spec ``config.md``).
        layers: layer descriptors, lowest first.
        diff_ids: ``rootfs.diff_ids`` from the config (uncompressed layer digests), same order.
        platform: from the config (``os``, ``architecture``, ``variant``).
        ref_name: the image reference recorded in the index or archive (e.g.
            ``docker.io/library/busybox:latest``), or None.
    """

    source: Path
    format: str
    manifest_digest: str | None
    manifest_size: int | None
    config_digest: str
    config: Mapping[str, Any]
    layers: tuple[Descriptor, ...]
    diff_ids: tuple[str, ...]
    platform: Platform
    ref_name: str | None
    store: BlobStore = field(compare=False, repr=False)

    @property
    def identity_digest(self) -> str:
        """The digest that identifies the image: the manifest digest, else the config digest."""
        return self.manifest_digest or self.config_digest

    @property
    def default_name(self) -> str | None:
        """A file-name-safe name from :attr:`ref_name` (repository basename, no tag/digest), or None."""
        return image_name_from_ref(self.ref_name)


def image_name_from_ref(ref: str | None) -> str | None:
    """``"docker.io/library/busybox:1.36@sha256:..." -> "busybox"``; None if nothing usable.

    The result matches ``[A-Za-z0-9][A-Za-z0-9._-]*`` (safe as a file name).
    """
    if not ref:
        return None
    ref = ref.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    name = last.split(":", 1)[0]
    if ":" in last and "/" not in ref and not name:
        return None
    name = re.sub(r"[^A-Za-z0-9._-]", "-", name).lstrip(".-_")
    return name or None


# --------------------------------------------------------------------------------- blob stores


class _HashingReader(io.RawIOBase):
    """Pass-through reader that hashes and counts every byte read from ``inner``.

    With ``lanes`` (a :class:`teeform.hashlanes.HashLanes`), the hash updates run on lane ``lane``
    while the caller goes on parsing and spooling; call ``lanes.wait()`` before reading
    :attr:`hasher`. ``algorithm=None`` only counts (used when another reader already hashes the
    same bytes).
    """

    def __init__(self, inner: BinaryIO, algorithm: str | None = "sha256", *, lanes: HashLanes | None = None,
                 lane: int = 0) -> None:
        super().__init__()
        self._inner = inner
        self.hasher = hashlib.new(algorithm) if algorithm else None
        self.count = 0
        self._lanes = lanes
        self._lane = lane

    def readable(self) -> bool:
        return True

    def sync(self) -> None:
        """Wait until every byte read so far has been hashed (see :attr:`hasher`)."""
        if self._lanes is not None:
            self._lanes.wait()

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size if size is not None and size >= 0 else CHUNK)
        if size is None or size < 0:
            parts = [data]
            while data:
                data = self._inner.read(CHUNK)
                parts.append(data)
            data = b"".join(parts)
        if self.hasher is not None and data:
            if self._lanes is not None:
                self._lanes.submit(self._lane, self.hasher.update, data)
            else:
                self.hasher.update(data)
        self.count += len(data)
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        """Read (and hash) everything left in ``inner``."""
        while self.read(CHUNK):
            pass


class _PrefixReader(io.RawIOBase):
    """Replays ``prefix`` and then continues with ``inner`` (used after sniffing magic bytes)."""

    def __init__(self, prefix: bytes, inner: BinaryIO) -> None:
        super().__init__()
        self._prefix = prefix
        self._inner = inner

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self._prefix:
            n = min(len(b), len(self._prefix))
            b[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._inner.read(len(b))
        b[: len(data)] = data
        return len(data)


class _TarInput:
    """Forward-only, low-copy file object over a layer's (uncompressed) tar stream, for
    ``tarfile.TarFile(fileobj=..., mode="r")``.

    It behaves like the ``_Stream`` that ``tarfile.open(mode="r|")`` builds (reads in order, seeks
    only forward), so member parsing is unchanged; :meth:`read_piece` hands out file contents in
    the pieces ``inner`` returned, without the join-and-slice copies ``_Stream`` makes for every
    read (about a third of the flattening time for a 1 GiB layer before).

    With ``size`` (the byte length of ``inner``, a seekable regular file read from offset 0), a
    forward seek past the buffered bytes is one ``inner.seek`` instead of reading the skipped
    bytes (used when nothing needs to see them: a layer whose digest is checked later,
    :class:`_LayerCheck`); a seek past ``size`` stops at ``size``, as reading would at the end.
    """

    def __init__(self, inner: BinaryIO, size: int | None = None) -> None:
        self._inner = inner
        self._size = size
        # Seeking over contents: only headers are read, so read little more than a header at a time.
        self._read_size = CHUNK if size is None else 64 << 10
        self._buf = b""
        self._pos = 0  # index of the next unread byte in _buf
        self._off = 0  # stream offset of _buf[_pos]

    def tell(self) -> int:
        return self._off

    def read_piece(self, limit: int) -> bytes:
        """Up to ``limit`` (>= 1) bytes; ``b""`` only at the end of the stream."""
        if self._pos >= len(self._buf):
            self._buf, self._pos = self._inner.read(self._read_size), 0
            if not self._buf:
                return b""
        take = min(limit, len(self._buf) - self._pos)
        out = self._buf if (self._pos == 0 and take == len(self._buf)) else self._buf[self._pos : self._pos + take]
        self._pos += take
        self._off += take
        return out

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            parts = []
            while piece := self.read_piece(CHUNK):
                parts.append(piece)
            return b"".join(parts)
        parts = []
        got = 0
        while got < size and (piece := self.read_piece(size - got)):
            parts.append(piece)
            got += len(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        if whence != os.SEEK_SET:
            raise io.UnsupportedOperation("a layer stream only seeks to absolute positions")
        if pos < self._off:
            back = self._off - pos
            if back > self._pos:
                raise io.UnsupportedOperation("a layer stream cannot seek backwards")
            self._pos -= back
            self._off = pos
        if self._size is not None and pos - self._off > len(self._buf) - self._pos:
            target = min(pos, self._size)
            self._inner.seek(target)
            self._buf, self._pos, self._off = b"", 0, target
            return self._off
        while self._off < pos:
            if not self.read_piece(pos - self._off):
                break
        return self._off


class _Section(io.RawIOBase):
    """A read-only window ``[offset, offset + size)`` of an open file (for members of a tar)."""

    def __init__(self, fh: BinaryIO, offset: int, size: int) -> None:
        super().__init__()
        self._fh = fh
        self._pos = offset
        self._end = offset + size

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), self._end - self._pos)
        if n <= 0:
            return 0
        got = os.preadv(self._fh.fileno(), [memoryview(b)[:n]], self._pos)  # straight into b, no extra copy
        self._pos += got
        return got


class LayoutStore:
    """Blobs of an OCI image layout directory (``blobs/<alg>/<hex>``)."""

    def __init__(self, root: Path) -> None:
        self.source = root

    def _path(self, location: str) -> Path:
        p = self.source / location
        if ".." in Path(location).parts or Path(location).is_absolute():
            raise TeeformError(f"blob location {location!r} leaves the layout directory", path=self.source)
        return p

    def exists(self, location: str) -> bool:
        return self._path(location).is_file()

    @contextlib.contextmanager
    def open(self, location: str) -> Iterator[BinaryIO]:
        p = self._path(location)
        if not p.exists() and not p.is_symlink():
            raise TeeformError(f"blob {location} is missing", path=self.source,
                               hint="the layout is incomplete; re-export the image")
        with open_regular(p, what=f"blob {location}") as fh:
            yield fh


class TarStore:
    """Members of an uncompressed tar (``docker save`` output), read in place without extraction.

    Symlink and hard-link members (``docker save`` uses them for duplicate layers) are resolved to
    their target member, at most 8 hops, within the archive.
    """

    def __init__(self, path: Path) -> None:
        self.source = path
        self._members: dict[str, tarfile.TarInfo] = {}
        try:
            with open_regular(path, what="image archive") as fh, tarfile.open(fileobj=fh, mode="r:", tarinfo=_BoundedTarInfo) as tf:
                for m in tf:
                    if len(self._members) >= MAX_ARCHIVE_MEMBERS:
                        raise TeeformError(f"the archive has more than {MAX_ARCHIVE_MEMBERS} members", path=path,
                                           hint="pass a single-image `docker save` archive")
                    self._members[_norm_member(m.name)] = m
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            raise TeeformError(f"not a readable tar archive: {exc}", path=path,
                               hint="pass an OCI layout directory or an uncompressed `docker save -o image.tar` archive") from exc

    def names(self) -> set[str]:
        """Normalised member names (no ``./`` prefix)."""
        return set(self._members)

    def _resolve(self, location: str) -> tarfile.TarInfo:
        name = _norm_member(location)
        for _ in range(8):
            m = self._members.get(name)
            if m is None:
                raise TeeformError(f"archive member {location!r} is missing", path=self.source)
            if m.isreg():
                return m
            if m.issym():
                base = name.rsplit("/", 1)[0] if "/" in name else ""
                name = _norm_member(os.path.normpath(os.path.join(base, m.linkname)))
            elif m.islnk():
                name = _norm_member(m.linkname)
            else:
                break
        raise TeeformError(f"archive member {location!r} is not a regular file", path=self.source)

    def exists(self, location: str) -> bool:
        try:
            self._resolve(location)
        except TeeformError:
            return False
        return True

    @contextlib.contextmanager
    def open(self, location: str) -> Iterator[BinaryIO]:
        m = self._resolve(location)
        with open_regular(self.source, what="image archive") as fh:
            yield io.BufferedReader(_Section(fh, m.offset_data, m.size), CHUNK)  # type: ignore[arg-type]


class _BoundedTarInfo(tarfile.TarInfo):
    """``tarfile.TarInfo`` that refuses extended headers larger than :data:`MAX_TAR_EXT_HEADER`.

    ``tarfile`` reads a PAX/GNU extended header's whole content into memory (``TarInfo._proc_pax``,
    ``_proc_gnulong``), so a header claiming gigabytes would exhaust memory, and in stream mode a
    bogus size is "skipped" by reading block after block past the end of the stream (a hang).
    """

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        if self.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                         tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK) and self.size > MAX_TAR_EXT_HEADER:
            raise tarfile.HeaderError(f"extended header of {self.size} bytes (limit {MAX_TAR_EXT_HEADER})")
        return super()._proc_member(tarfile_)  # type: ignore[misc]


def _norm_member(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/")


# ------------------------------------------------------------------------------ JSON blobs


def _check_digest(digest: Any, where: str, source: Path) -> tuple[str, str]:
    m = _DIGEST_RE.match(digest) if isinstance(digest, str) else None
    if not m or len(m.group(2)) != _DIGEST_LEN[m.group(1)]:
        raise TeeformError(f"{where}: unsupported or malformed digest {digest!r}", path=source,
                           hint="teeform accepts sha256 and sha512 digests")
    return m.group(1), m.group(2)


def _read_verified(store: BlobStore, desc: Descriptor, what: str) -> bytes:
    """Read a small JSON blob and check its digest and size against ``desc``."""
    if desc.size is not None and desc.size > MAX_JSON_BLOB:
        raise TeeformError(f"{what} {desc.short} is {desc.size} bytes, larger than the {MAX_JSON_BLOB} byte limit",
                           path=store.source)
    with store.open(desc.location) as fh:
        data = fh.read(MAX_JSON_BLOB + 1)
    if len(data) > MAX_JSON_BLOB:
        raise TeeformError(f"{what} {desc.location} is larger than {MAX_JSON_BLOB} bytes", path=store.source)
    if desc.digest is not None:
        alg, hexd = _check_digest(desc.digest, what, store.source)
        got = hashlib.new(alg, data).hexdigest()
        if got != hexd:
            raise TeeformError(f"{what} digest mismatch: descriptor says {desc.digest}, content hashes to {alg}:{got}",
                               path=store.source, field=desc.location)
    if desc.size is not None and desc.size != len(data):
        raise TeeformError(f"{what} size mismatch: descriptor says {desc.size} bytes, blob has {len(data)}",
                           path=store.source, field=desc.location)
    return data


def _parse_json(data: bytes, what: str, source: Path) -> Any:
    """Parse an index/manifest/config with :func:`teeform.safeload.loads_json` (depth 64, integers of
    at most 20 digits, no NaN/Infinity, no lone surrogates); the error names ``source`` and ``what``."""
    return loads_json(data, source=f"{source}: {what}")


def _read_small(store: BlobStore, location: str, limit: int, what: str) -> bytes:
    """Read the whole blob ``location`` if it holds at most ``limit`` bytes."""
    with store.open(location) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise TeeformError(f"{what} is larger than the {limit}-byte limit", path=store.source, field=location)
    return data


def _string(value: Any, where: str, source: Path, *, optional: bool = False) -> str | None:
    """``value`` if it is a string (or None when ``optional``), else a TeeformError naming ``where``."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise TeeformError(f"{where}: expected a string, got {_json_type(value)}", path=source)
    return value


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "true/false", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _descriptor(obj: Any, where: str, source: Path) -> Descriptor:
    """Check a descriptor's fields against their types in image-spec ``descriptor.md`` "Properties"
    (``mediaType`` string, ``digest`` string, ``size`` int64 >= 0, ``annotations`` string-to-string
    map) and ``image-index.md`` (``platform.os``/``architecture``/``variant`` strings)."""
    if not isinstance(obj, dict):
        raise TeeformError(f"{where}: descriptor must be a JSON object", path=source)
    digest = obj.get("digest")
    alg, hexd = _check_digest(digest, where, source)
    size = obj.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise TeeformError(f"{where}: descriptor size must be a non-negative integer", path=source)
    media_type = _string(obj.get("mediaType", ""), f"{where}.mediaType", source) or ""
    plat = obj.get("platform")
    platform = None
    if plat is not None:
        if not isinstance(plat, dict):
            raise TeeformError(f"{where}.platform: expected an object, got {_json_type(plat)}", path=source)
        p_os = _string(plat.get("os"), f"{where}.platform.os", source, optional=True)
        p_arch = _string(plat.get("architecture"), f"{where}.platform.architecture", source, optional=True)
        p_var = _string(plat.get("variant"), f"{where}.platform.variant", source, optional=True)
        if p_os and p_arch:
            platform = Platform(p_os, p_arch, p_var or None)
    ann = obj.get("annotations")
    if ann is None:
        ann = {}
    if not isinstance(ann, dict):
        raise TeeformError(f"{where}.annotations: expected an object, got {_json_type(ann)}", path=source)
    for k, v in ann.items():
        _string(v, f"{where}.annotations[{k!r}]", source)
    return Descriptor(media_type, digest, size, f"blobs/{alg}/{hexd}", platform, dict(ann))


# ------------------------------------------------------------------------------- open_image


@dataclass(frozen=True)
class _Candidate:
    desc: Descriptor
    ref: str | None


def open_image(path: os.PathLike[str] | str, *, platform: str | None = None) -> OciImage:
    """Open an OCI layout directory or ``docker save`` tar and verify its index, manifest and config.

    Args:
        path: the layout directory or tar file.
        platform: ``os/arch[/variant]`` to pick from a multi-platform index (see module docstring).

    Returns:
        an :class:`OciImage` (layers not read yet).

    Raises:
        TeeformError: missing/unreadable input, not an image, ambiguous choice of image, digest
            or size mismatch of index/manifest/config, unsupported media type, or a config
            without ``rootfs.diff_ids`` matching the layers.
    """
    src = Path(path)
    want = Platform.parse(platform) if platform else None
    if src.is_dir():
        if not (src / "oci-layout").is_file() or not (src / "index.json").is_file():
            raise TeeformError("not an OCI image layout (needs `oci-layout` and `index.json`)", path=src,
                               hint="export one with `skopeo copy docker-daemon:IMG oci:DIR`, or pass a `docker save` tar")
        store: BlobStore = LayoutStore(src)
        return _open_oci(store, "oci-layout", want)
    if not src.exists():
        raise TeeformError("image not found", path=src, field="--image")
    with open_regular(src, what="image (OCI layout directory or docker-archive tar)") as fh:
        head = fh.read(4)
    if head.startswith(GZIP_MAGIC) or head == ZSTD_MAGIC:
        raise TeeformError("compressed image archives are not accepted", path=src,
                           hint="decompress it first (`gunzip`/`zstd -d`): `docker save` writes an uncompressed tar")
    tstore = TarStore(src)
    names = tstore.names()
    if "index.json" in names and "oci-layout" in names:
        return _open_oci(tstore, "docker-archive (OCI)", want)
    if "manifest.json" in names:
        return _open_legacy(tstore, want)
    raise TeeformError("tar archive is neither an OCI layout nor a `docker save` archive (no index.json or manifest.json)",
                       path=src)


def _expand_index(store: BlobStore, data: bytes, where: str, depth: int, out: list[_Candidate]) -> None:
    index = _parse_json(data, where, store.source)
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise TeeformError(f"{where} has no `manifests` list", path=store.source)
    for i, raw in enumerate(index["manifests"]):
        desc = _descriptor(raw, f"{where} manifests[{i}]", store.source)
        if desc.media_type in INDEX_TYPES:
            if depth >= 4:
                raise TeeformError(f"{where}: image indexes nested more than 4 deep", path=store.source)
            sub = _read_verified(store, desc, "image index")
            _expand_index(store, sub, f"index {desc.short}", depth + 1, out)
        elif desc.media_type in MANIFEST_TYPES or desc.media_type == "":
            if desc.annotations.get("vnd.docker.reference.type") == "attestation-manifest":
                continue
            if desc.platform is not None and desc.platform.os == "unknown":
                continue
            ref = desc.annotations.get("io.containerd.image.name")
            if ref is None:  # the OCI annotation is often just a tag ("latest"): use it only if it names a repository
                ann = desc.annotations.get("org.opencontainers.image.ref.name", "")
                ref = ann if (":" in ann or "/" in ann) else None
            out.append(_Candidate(desc, ref))
        # other media types (e.g. artifacts) are not images: ignored


def _open_oci(store: BlobStore, fmt: str, want: Platform | None) -> OciImage:
    layout = _parse_json(_read_small(store, "oci-layout", MAX_OCI_LAYOUT, "oci-layout"), "oci-layout", store.source)
    version = layout.get("imageLayoutVersion") if isinstance(layout, dict) else None
    if not isinstance(version, str) or not version.startswith("1."):
        raise TeeformError("oci-layout: unsupported imageLayoutVersion (need 1.x)", path=store.source)
    index_bytes = _read_small(store, "index.json", MAX_JSON_BLOB, "index.json")
    cands: list[_Candidate] = []
    _expand_index(store, index_bytes, "index.json", 0, cands)
    if not cands:
        raise TeeformError("index.json lists no image manifest", path=store.source)
    # Choose by the descriptors' platform first, so manifests of other platforms (whose blobs a
    # single-platform `docker save` may not include) are never read; load the rest to learn theirs.
    target = want or Platform("linux", "amd64")
    if len(cands) == 1:
        loaded = [_load_manifest(store, fmt, cands[0])]
    else:
        loaded = [_load_manifest(store, fmt, c) for c in cands
                  if c.desc.platform is None or target.matches(c.desc.platform)]
    chosen = [im for im in loaded if target.matches(im.platform)]
    if len(cands) == 1 and want is None:
        chosen = loaded
    available = sorted({str(c.desc.platform) for c in cands if c.desc.platform} | {str(im.platform) for im in loaded})
    if not chosen:
        if want is not None:
            raise TeeformError(f"no image for platform {want} (available: {', '.join(available)})",
                               path=store.source, field="--platform")
        raise TeeformError(f"the image index lists {len(cands)} images and none is linux/amd64 "
                           f"(available: {', '.join(available)})", path=store.source,
                           hint="choose one with --platform os/arch[/variant]")
    if len(chosen) > 1:
        listing = ", ".join(" ".join(x for x in (str(im.platform), im.ref_name, im.manifest_digest) if x) for im in chosen)
        raise TeeformError(f"the image index lists {len(chosen)} matching images: {listing}", path=store.source,
                           hint="choose one with --platform os/arch[/variant], or export a single image")
    return chosen[0]


def _load_manifest(store: BlobStore, fmt: str, cand: _Candidate) -> OciImage:
    desc = cand.desc
    data = _read_verified(store, desc, "image manifest")
    man = _parse_json(data, f"manifest {desc.short}", store.source)
    if not isinstance(man, dict) or man.get("schemaVersion") != 2:
        raise TeeformError(f"manifest {desc.short}: schemaVersion must be 2", path=store.source)
    mt = _string(man.get("mediaType", desc.media_type), f"manifest {desc.short} mediaType", store.source)
    if mt and mt not in MANIFEST_TYPES:
        raise TeeformError(f"manifest {desc.short}: unsupported media type {mt!r}", path=store.source)
    cfg_desc = _descriptor(man.get("config"), f"manifest {desc.short} config", store.source)
    layers_raw = man.get("layers")
    if not isinstance(layers_raw, list):
        raise TeeformError(f"manifest {desc.short} has no `layers` list", path=store.source)
    layers = []
    for i, raw in enumerate(layers_raw):
        ld = _descriptor(raw, f"manifest {desc.short} layers[{i}]", store.source)
        if ld.media_type not in LAYER_TYPES:
            raise TeeformError(f"layer {i + 1} ({ld.short}): unsupported media type {ld.media_type!r}",
                               path=store.source, hint="only tar, tar+gzip and tar+zstd layers can be flattened")
        layers.append(ld)
    config, config_digest = _load_config(store, cfg_desc, len(layers))
    return OciImage(
        source=store.source, format=fmt, manifest_digest=desc.digest, manifest_size=desc.size,
        config_digest=config_digest, config=config, layers=tuple(layers),
        diff_ids=tuple(config["rootfs"]["diff_ids"]), platform=_config_platform(config, store.source),
        ref_name=cand.ref, store=store,
    )


def _load_config(store: BlobStore, desc: Descriptor, nlayers: int) -> tuple[dict[str, Any], str]:
    data = _read_verified(store, desc, "image config")
    config = _parse_json(data, f"image config {desc.short}", store.source)
    if not isinstance(config, dict):
        raise TeeformError(f"image config {desc.short} must be a JSON object", path=store.source)
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or len(diff_ids) != nlayers:
        raise TeeformError(
            f"image config {desc.short}: rootfs.diff_ids must list one digest per layer "
            f"({nlayers} layers, {len(diff_ids) if isinstance(diff_ids, list) else 'no'} diff_ids)",
            path=store.source)
    for i, d in enumerate(diff_ids):
        _check_digest(d, f"image config rootfs.diff_ids[{i}]", store.source)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return config, digest


def _config_platform(config: Mapping[str, Any], source: Path) -> Platform:
    os_, arch = config.get("os"), config.get("architecture")
    if not isinstance(os_, str) or not isinstance(arch, str):
        raise TeeformError("image config lacks `os`/`architecture`", path=source)
    variant = _string(config.get("variant"), "image config variant", source, optional=True)
    return Platform(os_, arch, variant or None)


def _open_legacy(store: TarStore, want: Platform | None) -> OciImage:
    entries = _parse_json(_read_small(store, "manifest.json", MAX_JSON_BLOB, "manifest.json"), "manifest.json",
                          store.source)
    if not isinstance(entries, list) or not entries:
        raise TeeformError("manifest.json must be a non-empty JSON array", path=store.source)
    all_tags: list[list[str]] = []
    for i, e in enumerate(entries):  # moby image/spec/v1.2.md: "RepoTags": array of strings (or null)
        raw_tags = e.get("RepoTags") if isinstance(e, dict) else None
        if raw_tags is not None and not isinstance(raw_tags, list):
            raise TeeformError(f"manifest.json[{i}].RepoTags: expected an array of strings, got {_json_type(raw_tags)}",
                               path=store.source)
        all_tags.append([_string(t, f"manifest.json[{i}].RepoTags[{j}]", store.source) or ""
                         for j, t in enumerate(raw_tags or [])])
    if len(entries) > 1:
        tags = [", ".join(t or ["<untagged>"]) for t in all_tags]
        raise TeeformError(f"the archive holds {len(entries)} images ({'; '.join(tags)})", path=store.source,
                           hint="save a single image: `docker save -o one.tar IMAGE`")
    entry = entries[0]
    if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) or not isinstance(entry.get("Layers"), list):
        raise TeeformError("manifest.json entry needs `Config` and `Layers`", path=store.source)
    cfg_name = entry["Config"]
    stem = cfg_name.rsplit("/", 1)[-1].removesuffix(".json")
    cfg_digest = f"sha256:{stem}" if re.fullmatch(r"[0-9a-f]{64}", stem) else None
    layers = tuple(Descriptor(MT_LEGACY_LAYER, None, None, _string(name, f"manifest.json[0].Layers[{i}]", store.source) or "")
                   for i, name in enumerate(entry["Layers"]))
    config, digest = _load_config(store, Descriptor("application/vnd.docker.container.image.v1+json", cfg_digest, None, cfg_name),
                                  len(layers))
    platform = _config_platform(config, store.source)
    if want is not None and not want.matches(platform):
        raise TeeformError(f"the image is for {platform}, not {want}", path=store.source, field="--platform")
    tags = all_tags[0]
    return OciImage(
        source=store.source, format="docker-archive (legacy)", manifest_digest=None, manifest_size=None,
        config_digest=digest, config=config, layers=layers, diff_ids=tuple(config["rootfs"]["diff_ids"]),
        platform=platform, ref_name=tags[0] if tags else None, store=store,
    )


# ------------------------------------------------------------------------------ cmd and env


def select_command(config: Mapping[str, Any], *, source: os.PathLike[str] | str | None = None) -> tuple[list[str], list[str]]:
    """Return ``(cmd, env)`` as nitro-cli's ``build-enclave`` puts them into ``/cmd`` and ``/env``.

    Source: aws-nitro-enclaves-cli ``enclave_build/src/docker.rs`` ``DockerUtil::extract_image``
    (commit 4bb21706d64c45ee1d1392f6a9cab4ddc3f9f332), where absent and JSON ``null`` are both
    "None":

    * if the config has both ``Cmd`` and ``Env``: ``(Cmd, Env)``; ``Entrypoint`` is ignored;
    * otherwise, if it has ``Entrypoint``: ``(Entrypoint, Env or [])``;
    * otherwise: error.

    Note the quirk: an image with ``Cmd`` but no ``Env`` falls back to ``Entrypoint``.
    ``shared/reference/eif-nitro.md`` §3.2 summarises this as "Cmd if present, else Entrypoint";
    the two differ only for images without ``Env``.

    ``source`` (the image path) is named in errors.

    Raises:
        TeeformError: neither rule yields a command, or a value is not a list of strings.
    """
    cfg = config.get("config") or {}
    if not isinstance(cfg, dict):
        raise TeeformError("image config field `config` must be an object", path=source, field="config")

    def strings(key: str) -> list[str] | None:
        value = cfg.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise TeeformError(f"image config `config.{key}` must be a list of strings", path=source,
                               field=f"config.{key}")
        for v in value:
            if "\n" in v or "\0" in v:
                raise TeeformError(f"image config `config.{key}` entry {v!r} contains a newline or NUL, "
                                   "which /cmd and /env (one entry per line) cannot carry", path=source,
                                   field=f"config.{key}")
        return value

    cmd, env, entrypoint = strings("Cmd"), strings("Env"), strings("Entrypoint")
    if cmd is not None and env is not None:
        return cmd, env
    if entrypoint is not None:
        return entrypoint, env or []
    raise TeeformError("the image config has no usable Cmd or Entrypoint", path=source, field="config.Cmd",
                       hint="nitro-cli needs Cmd (with Env) or Entrypoint; add CMD [...] (and ENV) to the Dockerfile")


# ---------------------------------------------------------------------------------- flatten


class EntryKind(enum.StrEnum):
    """File types a flattened tree can contain."""

    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    FIFO = "fifo"


@dataclass
class _Inode:
    ident: int
    mode: int
    uid: int
    gid: int
    mtime: int
    offset: int
    size: int
    source: int = -1  # -1: the spool; else the index of an in-place layer blob (_InPlaceBlob)


class _InPlaceBlob:
    """An uncompressed layer blob of an image layout whose file contents are read where they are.

    Holds its own duplicate of the verified file descriptor (a rename or replacement of the path
    does not affect it) and the ``fstat`` signature taken before the first byte was hashed:
    device, inode, size, mtime and ctime (ns). Any write to the file changes its ctime
    (POSIX ``write(2)``: "mark for update the last data modification and last file status
    change timestamps"), so :meth:`check` notices a blob modified after it was opened (within
    the file system's timestamp granularity, a few ms for Linux's coarse clock; unlinking or
    renaming over the blob changes its ctime too and is refused the same way).
    """

    def __init__(self, fh: BinaryIO, where: str, source: Path) -> None:
        self.fh = os.fdopen(os.dup(fh.fileno()), "rb", buffering=0)
        self.where = where
        self.source = source
        self.signature = self._signature()

    def _signature(self) -> tuple[int, ...]:
        st = os.fstat(self.fh.fileno())
        return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns

    def check(self) -> None:
        """Raise :class:`TeeformError` if the blob changed since it was opened."""
        if self._signature() != self.signature:
            raise TeeformError(f"{self.where}: the layer blob changed while the image was being built",
                               path=self.source, hint="do not modify the image while teeform reads it")

    def close(self) -> None:
        self.fh.close()


def _check_layer_digests(desc: Descriptor, diff_id: str, blob_digest: str, count: int, diff_digest: str | None,
                         where: str, source: Path) -> None:
    """Compare a layer blob's digest (``"alg:hex"``) and byte count with its descriptor and, when
    ``diff_digest`` is given, the uncompressed stream's digest with ``diff_id``.

    Raises:
        TeeformError: digest, size or diff_id mismatch, naming the layer.
    """
    if desc.digest is not None:
        if blob_digest != desc.digest:
            raise TeeformError(f"{where}: digest mismatch: descriptor says {desc.digest}, blob hashes to {blob_digest}",
                               path=source, hint="the image is corrupt or was tampered with; re-export it")
        if desc.size is not None and count != desc.size:
            raise TeeformError(f"{where}: size mismatch: descriptor says {desc.size} bytes, blob has {count}",
                               path=source)
    if diff_digest is not None and diff_digest != diff_id:
        raise TeeformError(f"{where}: diff_id mismatch: config says {diff_id}, uncompressed layer hashes to {diff_digest}",
                           path=source, hint="the image is corrupt or was tampered with; re-export it")


class _LayerCheck:
    """The deferred digest check of one uncompressed layer blob read in place (``flatten(...,
    defer_verification=True)``): :meth:`run` hashes the whole blob, from the verified descriptor
    (:class:`_InPlaceBlob`) with ``os.preadv`` (so it shares no file position with the content
    readers), and checks it like the inline path does: the descriptor digest and size, and the
    ``diff_id`` (the same bytes: the blob is the tar stream), then the blob's ``fstat`` signature.
    :meth:`cancel` makes a running :meth:`run` stop at its next chunk.
    """

    def __init__(self, blob: _InPlaceBlob, desc: Descriptor, diff_id: str, where: str, source: Path) -> None:
        self.blob, self.desc, self.diff_id, self.where, self.source = blob, desc, diff_id, where, source
        self._cancelled = False

    def cancel(self) -> None:
        """Stop a running :meth:`run` (it then raises nothing and checks nothing)."""
        self._cancelled = True

    def run(self) -> None:
        """Hash and check the blob (see the class docstring).

        Raises:
            TeeformError: digest, size or diff_id mismatch, an unreadable blob, or a blob that changed.
        """
        alg = self.desc.digest.split(":", 1)[0] if self.desc.digest else "sha256"
        dalg = self.diff_id.split(":", 1)[0]
        hashers = {alg: hashlib.new(alg)}
        hashers.setdefault(dalg, hashlib.new(dalg))
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        fd = self.blob.fh.fileno()
        count = 0
        try:
            while not self._cancelled:
                n = os.preadv(fd, [buf], count)
                if not n:
                    break
                for h in hashers.values():
                    h.update(view[:n])
                count += n
        except OSError as exc:
            raise TeeformError(f"{self.where}: cannot read the layer blob: {exc.strerror}", path=self.source) from exc
        if self._cancelled:
            return
        _check_layer_digests(self.desc, self.diff_id, f"{alg}:{hashers[alg].hexdigest()}", count,
                             f"{dalg}:{hashers[dalg].hexdigest()}", self.where, self.source)
        self.blob.check()


@dataclass
class _Node:
    kind: EntryKind
    mode: int
    uid: int
    gid: int
    mtime: int
    layer: int
    children: dict[str, _Node] | None = None
    target: str = ""
    inode: _Inode | None = None


@dataclass(frozen=True)
class FlatEntry:
    """One path of the flattened image.

    Attributes:
        path: relative ``/``-separated path without leading ``/`` (e.g. ``"bin/sh"``); non-UTF-8
            bytes are kept as surrogate escapes (``os.fsencode(path)`` gives the original bytes).
        kind: file type.
        mode: permission bits (``0o7777``) from the layer tar.
        uid, gid: numeric owner from the layer tar.
        mtime: modification time from the layer tar (seconds since the epoch, not clamped).
        size: content bytes (files), else 0.
        link_target: symlink target (symlinks), else ``""``.
        inode: for files, an id shared by all hard links of the same file; None otherwise.
    """

    path: str
    kind: EntryKind
    mode: int
    uid: int
    gid: int
    mtime: int
    size: int = 0
    link_target: str = ""
    inode: int | None = None
    _offset: int = field(default=0, repr=False, compare=False)
    _source: int = field(default=-1, repr=False, compare=False)


class FlatTree:
    """The result of :func:`flatten`: a tree of metadata plus a spool file holding file contents.

    Use as a context manager (or call :meth:`close`) to delete the spool. Attributes ``image``
    (the :class:`OciImage`), ``file_count`` and ``content_bytes`` describe it.
    """

    def __init__(self, image: OciImage, root: _Node, spool: BinaryIO, file_count: int, content_bytes: int,
                 blobs: list[_InPlaceBlob] | None = None, pending: list[_LayerCheck] | None = None) -> None:
        self.image = image
        self._root = root
        self._spool = spool
        self._blobs = list(blobs or [])
        self._pending = list(pending or [])
        self._worker: threading.Thread | None = None
        self._error: BaseException | None = None
        self.file_count = file_count
        self.content_bytes = content_bytes

    @property
    def pending_bytes(self) -> int:
        """Bytes of layer blobs whose digest check is still to run (``flatten(defer_verification=True)``)."""
        return sum(c.blob.signature[2] for c in self._pending)

    def start_verification(self) -> None:
        """Run the deferred layer digest checks on a background thread (hashlib releases the GIL, so
        on two cores this overlaps other work); :meth:`check_unchanged` waits for it and raises its error.
        A no-op without deferred checks or when already started."""
        if not self._pending or self._worker is not None:
            return

        def work() -> None:
            try:
                for check in self._pending:
                    check.run()
            except BaseException as exc:  # re-raised by check_unchanged on the caller's thread
                self._error = exc

        self._worker = threading.Thread(target=work, name="teeform-layer-verify", daemon=True)
        self._worker.start()

    def _finish_verification(self) -> None:
        if self._pending:
            if self._worker is None:
                for check in self._pending:
                    check.run()
            else:
                self._worker.join()
                if self._error is not None:
                    raise self._error
            self._pending = []

    def __enter__(self) -> FlatTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Delete the spool file and close the in-place layer blobs (stopping a running
        :meth:`start_verification` first: it reads their descriptors)."""
        if self._worker is not None:
            for check in self._pending:
                check.cancel()
            self._worker.join()
        self._spool.close()
        for b in self._blobs:
            b.close()

    def check_unchanged(self) -> None:
        """Finish the deferred layer digest checks, if any (waiting for :meth:`start_verification`, or
        running them here), then check that no layer blob read in place changed since it was verified.
        Call after using the contents, before publishing what was made from them: with
        ``defer_verification`` nothing made from the tree may be published before this returns.

        Raises:
            TeeformError: a digest, size or diff_id mismatch, or naming the layer whose blob changed.
        """
        self._finish_verification()
        for b in self._blobs:
            b.check()

    def entries(self) -> Iterator[FlatEntry]:
        """Yield every path (not the root itself), sorted by the bytes of the path."""
        stack: list[tuple[str, _Node]] = [("", self._root)]
        out: list[FlatEntry] = []
        while stack:
            prefix, node = stack.pop()
            for name, child in (node.children or {}).items():
                path = f"{prefix}{name}"
                if child.kind is EntryKind.FILE:
                    ino = child.inode
                    assert ino is not None
                    out.append(FlatEntry(path, EntryKind.FILE, ino.mode, ino.uid, ino.gid, ino.mtime, ino.size,
                                         inode=ino.ident, _offset=ino.offset, _source=ino.source))
                else:
                    out.append(FlatEntry(path, child.kind, child.mode, child.uid, child.gid, child.mtime,
                                         link_target=child.target))
                if child.kind is EntryKind.DIR:
                    stack.append((path + "/", child))
        out.sort(key=lambda e: os.fsencode(e.path))
        yield from out

    def open(self, entry: FlatEntry) -> contextlib.AbstractContextManager[BinaryIO]:
        """Return a context manager yielding a stream of the file's ``entry.size`` content bytes."""
        if entry.kind is not EntryKind.FILE:
            raise ValueError("only regular files have content")

        fh = self._spool if entry._source < 0 else self._blobs[entry._source].fh

        @contextlib.contextmanager
        def _cm() -> Iterator[BinaryIO]:
            yield io.BufferedReader(_Section(fh, entry._offset, entry.size), CHUNK)  # type: ignore[arg-type]

        return _cm()


class _Flattener:
    """Applies layers one by one to a :class:`_Node` tree (see the module docstring for the rules)."""

    def __init__(self, image: OciImage, spool: BinaryIO, *, defer_verification: bool = False) -> None:
        self.image = image
        self.spool = spool
        self.defer_verification = defer_verification
        self.pending: list[_LayerCheck] = []
        self.root = _Node(EntryKind.DIR, 0o755, 0, 0, 0, -1, children={})
        self.next_inode = 0
        self.spool_size = 0
        self.content_bytes = 0
        self.blobs: list[_InPlaceBlob] = []
        self._in_place: int = -1  # index into blobs while the current layer is read in place, else -1

    # -- errors
    def _err(self, layer: int, member: str, message: str) -> TeeformError:
        desc = self.image.layers[layer]
        return TeeformError(f"layer {layer + 1}/{len(self.image.layers)} ({desc.short}): member {member!r}: {message}",
                            path=self.image.source,
                            hint="the image contains content teeform refuses to put into an enclave; rebuild the image without it")

    # -- path helpers
    def _split(self, layer: int, name: str) -> list[str]:
        if name.startswith("/"):
            raise self._err(layer, name, "absolute path")
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise self._err(layer, name, "path contains '..'")
        if len(parts) > MAX_TREE_DEPTH:
            raise self._err(layer, name[:64] + "...", f"path is {len(parts)} directories deep, over the "
                            f"{MAX_TREE_DEPTH}-level limit")
        return parts

    def _lookup(self, parts: Sequence[str]) -> _Node | None:
        node = self.root
        for p in parts:
            if node.kind is not EntryKind.DIR or node.children is None:
                return None
            nxt = node.children.get(p)
            if nxt is None:
                return None
            node = nxt
        return node

    def _parent(self, layer: int, member: str, parts: Sequence[str]) -> _Node:
        node = self.root
        for i, p in enumerate(parts):
            assert node.children is not None
            nxt = node.children.get(p)
            if nxt is None:
                nxt = _Node(EntryKind.DIR, 0o755, 0, 0, 0, layer, children={})
                node.children[p] = nxt
            elif nxt.kind is EntryKind.SYMLINK:
                raise self._err(layer, member, f"parent {'/'.join(parts[: i + 1])!r} is a symlink; "
                                "teeform does not follow symlinks while flattening")
            elif nxt.kind is not EntryKind.DIR:
                raise self._err(layer, member, f"parent {'/'.join(parts[: i + 1])!r} is not a directory")
            node = nxt
        return node

    @staticmethod
    def _symlink_escapes(parent: Sequence[str], target: str) -> bool:
        stack = [] if target.startswith("/") else list(parent)
        for comp in target.split("/"):
            if comp in ("", "."):
                continue
            if comp == "..":
                if not stack:
                    return True
                stack.pop()
            else:
                stack.append(comp)
        return False

    def _prune_lower(self, node: _Node, layer: int) -> None:
        stack = [node]  # iterative: a tree may be ~2,000 levels deep (MAX_MEMBER_PATH), past Python's recursion limit
        while stack:
            n = stack.pop()
            assert n.children is not None
            for name, child in list(n.children.items()):
                if child.layer != layer:
                    del n.children[name]
                elif child.kind is EntryKind.DIR:
                    stack.append(child)

    def _check_member(self, layer: int, m: tarfile.TarInfo) -> None:
        """Refuse header values the flattener, the cpio writer or the kernel cannot represent (see the
        limits at the top of this module): NUL in a name (it would cut a cpio name short), names and
        components over PATH_MAX/NAME_MAX, negative or (for non-files) non-zero sizes, ids outside
        ``uid_t``, and non-finite or out-of-range PAX mtimes."""
        for label, value in (("path", m.name), ("link target", m.linkname)):
            if "\0" in value:
                raise self._err(layer, m.name, f"{label} contains a NUL byte")
        raw = os.fsencode(m.name)
        if len(raw) > MAX_MEMBER_PATH:
            raise self._err(layer, m.name[:64] + "...", f"path is {len(raw)} bytes, over the {MAX_MEMBER_PATH}-byte "
                            "limit (PATH_MAX 4096 with the enclave's rootfs/ prefix)")
        longest = max((len(c) for c in raw.split(b"/")), default=0)
        if longest > MAX_NAME:
            raise self._err(layer, m.name[:64] + "...", f"a path component is {longest} bytes, over NAME_MAX ({MAX_NAME})")
        if len(os.fsencode(m.linkname)) > MAX_LINK_TARGET:
            raise self._err(layer, m.name, f"link target is over {MAX_LINK_TARGET} bytes (PATH_MAX)")
        if m.size < 0:
            raise self._err(layer, m.name, f"negative size {m.size}")
        if m.size and not m.isreg():
            raise self._err(layer, m.name, f"a {'directory' if m.isdir() else 'non-file'} member with a size of "
                            f"{m.size} bytes")
        for label, ident in (("uid", m.uid), ("gid", m.gid)):
            if not isinstance(ident, int) or not 0 <= ident <= MAX_ID:
                raise self._err(layer, m.name, f"{label} {ident!r} is outside 0..{MAX_ID}")
        mt = m.mtime
        if not isinstance(mt, int | float) or mt != mt or not -MAX_MTIME <= mt <= MAX_MTIME:
            raise self._err(layer, m.name, f"mtime {mt!r} is not a finite 64-bit time (PAX mtime)")

    def _discard(self, layer: int, m: tarfile.TarInfo, tf: tarfile.TarFile) -> None:
        """Read and drop a regular member's content (so a bogus size fails here instead of making
        ``tarfile`` "skip" it by reading past the end of the stream forever)."""
        src = tf.extractfile(m)
        assert src is not None
        remaining = m.size
        while remaining:
            chunk = src.read(min(CHUNK, remaining))
            if not chunk:
                raise self._err(layer, m.name, "file content is truncated")
            remaining -= len(chunk)

    # -- one member
    def apply(self, layer: int, m: tarfile.TarInfo, tf: tarfile.TarFile) -> None:
        self._check_member(layer, m)
        parts = self._split(layer, m.name)
        if not parts:
            return  # the layer's root directory entry ("./")
        base = parts[-1]
        if base.startswith(".wh."):
            if m.isreg() and m.size:
                self._discard(layer, m, tf)
            parent = self._lookup(parts[:-1])
            if parent is None or parent.kind is not EntryKind.DIR:
                return
            if base == ".wh..wh..opq":
                self._prune_lower(parent, layer)
                return
            if base.startswith(".wh..wh."):
                raise self._err(layer, m.name, "unsupported aufs whiteout metadata")
            victim = base[4:]
            if victim in ("", ".", ".."):
                raise self._err(layer, m.name, "malformed whiteout")
            assert parent.children is not None
            existing = parent.children.get(victim)
            if existing is not None and existing.layer != layer:
                del parent.children[victim]
            return
        parent = self._parent(layer, m.name, parts[:-1])
        assert parent.children is not None
        existing = parent.children.get(base)
        mode, uid, gid, mtime = m.mode & 0o7777, m.uid, m.gid, int(m.mtime)
        if m.isdir():
            if existing is not None and existing.kind is EntryKind.DIR:
                existing.mode, existing.uid, existing.gid, existing.mtime, existing.layer = mode, uid, gid, mtime, layer
            else:
                parent.children[base] = _Node(EntryKind.DIR, mode, uid, gid, mtime, layer, children={})
        elif m.isreg():
            fileobj = tf.fileobj
            if self._in_place >= 0 and isinstance(fileobj, _TarInput) and m.sparse is None:
                # Uncompressed layer of a layout: the content stays in the blob (offset_data is its
                # offset there); reading past it still feeds the digest check.
                inode = _Inode(self.next_inode, mode, uid, gid, mtime, m.offset_data, m.size, self._in_place)
                if fileobj.seek(m.offset_data + m.size) != m.offset_data + m.size:
                    raise self._err(layer, m.name, "file content is truncated")
            else:
                inode = _Inode(self.next_inode, mode, uid, gid, mtime, self.spool_size, m.size)
                read = self._content_reader(tf, m)
                remaining = m.size
                while remaining:
                    chunk = read(min(CHUNK, remaining))
                    if not chunk:
                        raise self._err(layer, m.name, "file content is truncated")
                    self.spool.write(chunk)
                    remaining -= len(chunk)
                self.spool_size += m.size
            self.next_inode += 1
            self.content_bytes += m.size
            parent.children[base] = _Node(EntryKind.FILE, mode, uid, gid, mtime, layer, inode=inode)
        elif m.issym():
            if not m.linkname:
                raise self._err(layer, m.name, "symlink with an empty target")
            if self._symlink_escapes(parts[:-1], m.linkname):
                raise self._err(layer, m.name, f"symlink target {m.linkname!r} escapes the image root")
            parent.children[base] = _Node(EntryKind.SYMLINK, 0o777, uid, gid, mtime, layer, target=m.linkname)
        elif m.islnk():
            if m.linkname.startswith("/") or ".." in m.linkname.split("/"):
                raise self._err(layer, m.name, f"hardlink target {m.linkname!r} escapes the image root")
            tparts = [p for p in m.linkname.split("/") if p not in ("", ".")]
            target = self._lookup(tparts) if tparts else None
            if target is None:
                raise self._err(layer, m.name, f"hardlink target {m.linkname!r} does not exist")
            if target.kind is not EntryKind.FILE:
                raise self._err(layer, m.name, f"hardlink target {m.linkname!r} is not a regular file")
            if target is not existing:
                parent.children[base] = _Node(EntryKind.FILE, target.mode, target.uid, target.gid, target.mtime,
                                              layer, inode=target.inode)
        elif m.isfifo():
            parent.children[base] = _Node(EntryKind.FIFO, mode, uid, gid, mtime, layer)
        elif m.ischr() or m.isblk():
            kind = "character" if m.ischr() else "block"
            raise self._err(layer, m.name, f"{kind} device node ({m.devmajor}:{m.devminor}) is not allowed in an image")
        else:
            raise self._err(layer, m.name, f"unsupported tar member type {m.type!r}")

    @staticmethod
    def _content_reader(tf: tarfile.TarFile, m: tarfile.TarInfo) -> Any:
        """``read(n)`` for member ``m``'s content: straight from the :class:`_TarInput` (no copies)
        for a plain member, through ``extractfile`` for a GNU sparse one (which needs its map)."""
        fileobj = tf.fileobj
        if isinstance(fileobj, _TarInput) and m.sparse is None:
            fileobj.seek(m.offset_data)
            return fileobj.read_piece
        src = tf.extractfile(m)
        assert src is not None
        return src.read

    # -- one layer
    def apply_layer(self, layer: int, work_dir: Path) -> None:
        desc = self.image.layers[layer]
        diff_id = self.image.diff_ids[layer]
        where = f"layer {layer + 1}/{len(self.image.layers)} ({desc.short})"
        alg = desc.digest.split(":", 1)[0] if desc.digest else "sha256"
        with contextlib.ExitStack() as stack:
            # Hash updates run on worker lanes (hashlib releases the GIL) while this thread parses
            # the tar and writes the spool: lane 0 the blob digest, lane 1 the diff_id digest.
            blob_fh = stack.enter_context(self.image.store.open(desc.location))
            in_place = isinstance(self.image.store, LayoutStore) and blob_fh.tell() == 0
            if in_place and self.defer_verification and desc.digest is not None:
                head = blob_fh.read(4)
                blob_fh.seek(0)
                if head != ZSTD_MAGIC and not head.startswith(GZIP_MAGIC):
                    self._apply_deferred(layer, blob_fh, desc, diff_id, where, stack)
                    return
            lanes = stack.enter_context(HashLanes())
            blob = _InPlaceBlob(blob_fh, where, self.image.source) if in_place else None
            raw = _HashingReader(blob_fh, alg, lanes=lanes, lane=0)
            magic = raw.read(4)
            compressed = True
            if magic == ZSTD_MAGIC:
                stream, raw = self._zstd(raw, magic, desc, where, work_dir, stack)
            else:
                base: BinaryIO = io.BufferedReader(_PrefixReader(magic, raw), CHUNK)  # type: ignore[arg-type]
                compressed = magic.startswith(GZIP_MAGIC)
                stream = cast(BinaryIO, _GzipReader(fileobj=base, mode="rb")) if compressed else base
            dalg = diff_id.split(":", 1)[0]
            # An uncompressed layer's tar stream is the blob itself, byte for byte (both readers are
            # drained to the end), so with the same algorithm its diff_id digest is the blob digest.
            same_bytes = not compressed and dalg == alg
            if blob is not None and not compressed and magic != ZSTD_MAGIC:
                # The tar stream is the blob byte for byte: file contents are read in place later.
                self.blobs.append(blob)
                self._in_place = len(self.blobs) - 1
                stack.callback(self._end_in_place)
            elif blob is not None:
                blob.close()
                blob = None
            dec = _HashingReader(stream, None if same_bytes else dalg, lanes=lanes, lane=1)
            parse_error: Exception | None = None
            try:
                # TarFile over a forward-only stream parses exactly as tarfile.open(mode="r|") does;
                # _BoundedTarInfo checks every header (PAX numbers, names, depth) as it is read.
                with tarfile.TarFile(fileobj=_TarInput(dec), mode="r", tarinfo=_BoundedTarInfo) as tf:  # type: ignore[arg-type]
                    for m in tf:
                        self.apply(layer, m, tf)
                dec.drain()
            except TeeformError:
                raise
            except (tarfile.TarError, EOFError, zlib.error, _GzipError, gzip.BadGzipFile, OSError, ValueError) as exc:
                parse_error = exc
            with contextlib.suppress(Exception):
                raw.drain()
            lanes.wait()
            if same_bytes:
                dec.hasher = raw.hasher
            self._verify(desc, diff_id, raw, dec if parse_error is None else None, where)
            if parse_error is not None:
                raise TeeformError(f"{where}: not a valid tar stream: {parse_error}", path=self.image.source)
            if blob is not None:
                blob.check()  # not written to while it was hashed

    def _end_in_place(self) -> None:
        self._in_place = -1

    def _apply_deferred(self, layer: int, blob_fh: BinaryIO, desc: Descriptor, diff_id: str, where: str,
                        stack: contextlib.ExitStack) -> None:
        """An uncompressed layout blob with ``defer_verification``: parse only the tar headers (seeking
        over file contents, which stay in the blob) and queue its digest check (:class:`_LayerCheck`).
        A blob that does not parse is checked at once, so a corrupt blob is reported as a digest
        mismatch rather than as a bad tar stream."""
        blob = _InPlaceBlob(blob_fh, where, self.image.source)
        self.blobs.append(blob)
        self._in_place = len(self.blobs) - 1
        stack.callback(self._end_in_place)
        check = _LayerCheck(blob, desc, diff_id, where, self.image.source)
        try:
            size = os.fstat(blob_fh.fileno()).st_size
            with tarfile.TarFile(fileobj=_TarInput(blob_fh, size=size), mode="r",  # type: ignore[arg-type]
                                 tarinfo=_BoundedTarInfo) as tf:
                for m in tf:
                    self.apply(layer, m, tf)
        except TeeformError:
            raise
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            check.run()
            raise TeeformError(f"{where}: not a valid tar stream: {exc}", path=self.image.source) from None
        self.pending.append(check)

    def _verify(self, desc: Descriptor, diff_id: str, raw: _HashingReader, dec: _HashingReader | None, where: str) -> None:
        """Check the blob against its descriptor and (when ``dec`` is given) the uncompressed stream against ``diff_id``."""
        raw.sync()
        assert raw.hasher is not None
        diff_digest = None
        if dec is not None:
            dec.sync()
            assert dec.hasher is not None
            diff_digest = f"{dec.hasher.name}:{dec.hasher.hexdigest()}"
        _check_layer_digests(desc, diff_id, f"{raw.hasher.name}:{raw.hasher.hexdigest()}", raw.count, diff_digest,
                             where, self.image.source)

    def _zstd(self, raw: _HashingReader, magic: bytes, desc: Descriptor, where: str, work_dir: Path,
              stack: contextlib.ExitStack) -> tuple[BinaryIO, _HashingReader]:
        """Copy the zstd blob to a temp file (hashing it), verify it, then decompress it with ``zstd -d``.

        Returns the decompressed stream and ``raw`` (now at end of file, so draining it is a no-op).
        """
        from teeform.run import find_tool, run

        find_tool("zstd", reason=f"decompress the zstd-compressed {where}")
        fd, name = tempfile.mkstemp(prefix="teeform-layer-", suffix=".zst", dir=work_dir)
        comp = Path(name)
        plain = comp.with_suffix(".tar")
        stack.callback(lambda: comp.unlink(missing_ok=True))
        stack.callback(lambda: plain.unlink(missing_ok=True))
        with os.fdopen(fd, "wb") as out:
            out.write(magic)
            while chunk := raw.read(CHUNK):
                out.write(chunk)
        self._verify(desc, "", raw, None, where)  # the compressed blob, before zstd ever sees it
        run(["zstd", "-d", "-q", "-f", "-o", str(plain), str(comp)])
        comp.unlink()
        return stack.enter_context(open(plain, "rb")), raw


def flatten(image: OciImage, work_dir: os.PathLike[str] | str | None = None, *,
            progress: Any = None, defer_verification: bool = False) -> FlatTree:
    """Stream, verify and flatten every layer of ``image`` (rules in the module docstring).

    Args:
        image: from :func:`open_image`.
        work_dir: where the spool file (and decompressed zstd layers) go; default ``$TMPDIR``.
            Needs free space for the image's file contents.
        progress: optional callable ``progress(message: str)`` for per-layer status lines.
        defer_verification: for uncompressed layer blobs of an image layout (read in place), parse
            only their tar headers now and check their digests later: on a background thread
            after :meth:`FlatTree.start_verification`, else in :meth:`FlatTree.check_unchanged`,
            which the caller must run before publishing anything made from the tree (the EIF
            build overlaps the check with its write pass). Other layers are verified here as usual.

    Returns:
        a :class:`FlatTree` (close it, or use it as a context manager, to delete the spool).

    Raises:
        TeeformError: a hostile member, a digest/size/diff_id mismatch, or an unreadable layer;
            nothing is left behind in that case.
    """
    wd = Path(work_dir) if work_dir is not None else Path(tempfile.gettempdir())
    spool = tempfile.TemporaryFile(dir=wd, prefix="teeform-spool-")
    fl = _Flattener(image, spool, defer_verification=defer_verification)  # type: ignore[arg-type]
    try:
        for i, desc in enumerate(image.layers):
            if progress:
                progress(f"layer {i + 1}/{len(image.layers)} {desc.short} ({_human(desc.size)})")
            fl.apply_layer(i, wd)
        spool.flush()
        files = len({id(n.inode) for n in _walk(fl.root) if n.inode is not None})
        return FlatTree(image, fl.root, spool, files, fl.content_bytes, fl.blobs, fl.pending)  # type: ignore[arg-type]
    except BaseException:
        spool.close()
        for b in fl.blobs:
            b.close()
        raise


def _walk(node: _Node) -> Iterator[_Node]:
    """Every node below ``node`` (iterative: trees may be deeper than Python's recursion limit)."""
    stack = [node]
    while stack:
        for child in (stack.pop().children or {}).values():
            yield child
            if child.kind is EntryKind.DIR:
                stack.append(child)


def _human(n: int | None) -> str:
    if n is None:
        return "size unknown"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


# ---------------------------------------------------------------------------- extract_rootfs


def extract_rootfs(image_path: os.PathLike[str] | str, dest_dir: os.PathLike[str] | str, *,
                   platform: str | None = None, work_dir: os.PathLike[str] | str | None = None,
                   progress: Any = None) -> OciImage:
    """Materialise the flattened image into the empty (or absent) directory ``dest_dir``.

    Creates directories, regular files, symlinks, hard links and FIFOs with their permission bits
    (``dest_dir`` itself gets mode 0755 whatever the umask, so the result does not depend on it);
    sets numeric owners only when running as root (euid 0); sets every mtime to
    ``min(layer mtime, SOURCE_DATE_EPOCH)`` (directories last, deepest first). Files are created
    with ``O_EXCL | O_NOFOLLOW`` and parents are always directories this function created, so no
    write can leave ``dest_dir``.

    Returns:
        the :class:`OciImage` that was extracted.

    Raises:
        TeeformError: ``dest_dir`` is not empty, or any :func:`open_image`/:func:`flatten`
            error (in which case ``dest_dir`` is left empty).
    """
    dest = Path(dest_dir)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise TeeformError("destination must be an empty directory", path=dest)
    image = open_image(image_path, platform=platform)
    sde = source_date_epoch()
    is_root = os.geteuid() == 0
    with flatten(image, work_dir, progress=progress) as tree:
        dest.mkdir(parents=True, exist_ok=True)
        os.chmod(dest, 0o755)  # fixed, not the umask's mode (the root itself is no entry of the tree)
        try:
            try:
                _materialise(tree, dest, sde, is_root)
                tree.check_unchanged()
            except OSError as exc:  # e.g. ENAMETOOLONG once dest_dir's own path is added
                raise TeeformError(f"cannot create {os.fsdecode(exc.filename or '')!r}: {exc.strerror or exc}",
                                   path=image.source, field="rootfs") from None
        except BaseException:
            for child in dest.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            raise
    return image


def _materialise(tree: FlatTree, dest: Path, sde: int, is_root: bool) -> None:
    first_link: dict[int, Path] = {}
    dirs: list[tuple[Path, FlatEntry]] = []
    for e in tree.entries():
        p = dest / e.path
        t = min(e.mtime, sde)
        if e.kind is EntryKind.DIR:
            p.mkdir(mode=0o700)
            dirs.append((p, e))
            continue
        if e.kind is EntryKind.FILE:
            assert e.inode is not None
            if e.inode in first_link:
                os.link(first_link[e.inode], p)
                continue
            first_link[e.inode] = p
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out, tree.open(e) as src:
                shutil.copyfileobj(src, out, CHUNK)
            os.chmod(p, e.mode)
        elif e.kind is EntryKind.SYMLINK:
            os.symlink(e.link_target, p)
        elif e.kind is EntryKind.FIFO:
            os.mkfifo(p, e.mode & 0o777)
            os.chmod(p, e.mode)
        if is_root:
            os.lchown(p, e.uid, e.gid)
            if e.kind is not EntryKind.SYMLINK:
                os.chmod(p, e.mode)  # chown clears setuid/setgid
        os.utime(p, (t, t), follow_symlinks=False)
    for p, e in reversed(dirs):
        if is_root:
            os.lchown(p, e.uid, e.gid)
        os.chmod(p, e.mode)
        t = min(e.mtime, sde)
        os.utime(p, (t, t), follow_symlinks=False)
