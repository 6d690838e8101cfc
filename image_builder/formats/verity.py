"""dm-verity (format 1) hash trees, byte-compatible with ``veritysetup format`` (cryptsetup 2.6.1).

Public API (everything else is private)::

    VerityParams(salt: bytes, uuid: str, data_block_size=4096, hash_block_size=4096,
                 hash_name="sha256", superblock=True)                       # frozen
    derive_salt(data_sha256: bytes | str) -> bytes                           # 32 bytes, pure
    derive_uuid(data_sha256: bytes | str) -> str                             # 8-4-4-4-12, pure
    params_for_image(data_path, *, data_sha256=None, superblock=True) -> VerityParams
    compute_geometry(data_blocks: int, params: VerityParams) -> VerityGeometry   # pure
    pack_superblock(params, data_blocks) -> bytes                            # 512 bytes, pure
    parse_superblock(raw: bytes) -> VeritySuperblock                         # pure
    read_superblock(hash_path, *, offset=0) -> VeritySuperblock
    build_hash_tree(data_path, hash_path, params, *, workers=None) -> VerityResult
        # VerityResult(roothash, salt, uuid, hash_name, data_block_size, hash_block_size, data_blocks,
        #              hash_blocks, hash_device_size, hash_start_block); .dm_table(data_dev, hash_dev)
    verify_hash_tree(data_path, hash_path, *, roothash=None, data_offset=0, hash_offset=0,
                     workers=None) -> str                                    # roothash hex

Format facts (source: /work/shared/reference/uki-verity.md §5, from cryptsetup 2.6.1
``lib/verity/verity.c`` + ``verity_hash.c`` and the kernel's
``Documentation/admin-guide/device-mapper/verity.rst``):

* format ("hash type") 1: each digest is ``H(salt || block)``, stored zero-padded to the next power
  of two (sha256: 32 bytes, no padding); a hash block holds ``2**floor(log2(hash_block_size /
  padded_digest_size))`` digests (128 for sha256 / 4 KiB) and the rest of the block is zero.
* level 0 hashes the data blocks, level k+1 hashes the blocks of level k; the number of levels is
  the smallest L with ``(data_blocks - 1) >> (L * log2(hashes_per_block)) == 0``; level i has
  ``ceil(data_blocks / hashes_per_block**(i+1))`` blocks.
* on disk the top level comes first and the leaves (level 0) last.
* root hash = ``H(salt || the single top-level block)``; with one data block there are no hash
  blocks and root = ``H(salt || data block)``.
* the optional 512-byte little-endian superblock sits at hash offset 0; the tree starts at the next
  hash-block boundary (block 1 for 4 KiB hash blocks), the rest of block 0 is zero.

Data size: ``veritysetup`` silently *floors* the data size to whole data blocks, leaving a partial
tail block unprotected (checked live: a 5000-byte file gives ``Data blocks: 1``). teeform refuses
such input instead (:class:`~teeform.errors.TeeformError`); :mod:`image_builder.pipelines.rootfs` pads images
to a multiple of 4096 bytes.

Salt and UUID: ``veritysetup`` picks both at random, which makes every rebuild differ (the root hash
ends up on the kernel command line, so in PCR 11 / the UKI's Authenticode hash). teeform derives them
from the SHA-256 of the data image (:func:`derive_salt`, :func:`derive_uuid`). The salt is public
anyway (it is in the superblock and in the dm table); its job is to make the tree specific to one
image so that precomputed work (tables of hashes of common blocks, multi-target second-preimage
searches across many devices) does not carry over. A salt derived from the image content still
differs for every distinct image and cannot be known before the image is fixed, and identical images
getting identical salts is exactly what a reproducible build wants. Integrity itself rests on
SHA-256 second-preimage resistance, not on the salt being secret or random.

Performance: level 0 (all but ~1/128 of the work) is hashed by a pool of worker processes over
contiguous leaf ranges; each worker ``preadv``s 4 MiB at a time into a reusable buffer and hashes
4 KiB memoryview slices with a pre-seeded ``hashlib`` object (no per-block allocation of data).
Memory is bounded by ``workers * (_TASK_BYTES / data_block_size * digest_size)`` plus one read buffer
per worker, independent of the image size. See benchmarks/verity_vs_veritysetup.py.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import re
import struct
import tempfile
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from teeform.errors import TeeformError
from teeform.fsutil import atomic_output, hash_file

__all__ = [
    "HASH_TYPE",
    "SUPERBLOCK_SIZE",
    "VerityParams",
    "VerityGeometry",
    "VeritySuperblock",
    "VerityResult",
    "derive_salt",
    "derive_uuid",
    "params_for_image",
    "compute_geometry",
    "pack_superblock",
    "parse_superblock",
    "read_superblock",
    "build_hash_tree",
    "verify_hash_tree",
]

#: dm-verity hash format ("hash type") implemented here: 1 = the normal (non-ChromeOS) format.
HASH_TYPE = 1
#: Size of the on-disk superblock (uki-verity.md §5 table, cryptsetup ``struct verity_sb``).
SUPERBLOCK_SIZE = 512
_SB_MAGIC = b"verity\0\0"
_SB_VERSION = 1
_SB_MAX_SALT = 256
# struct verity_sb, little-endian: signature[8] version u32 hash_type u32 uuid[16] algorithm[32]
# data_block_size u32 hash_block_size u32 data_blocks u64 salt_size u16 pad1[6] salt[256] pad2[168]
_SB_STRUCT = struct.Struct("<8sII16s32sIIQH6s256s168s")
assert _SB_STRUCT.size == SUPERBLOCK_SIZE

#: Hash algorithms accepted in parameters and superblocks: the SHA-1/SHA-2 family, whose names are
#: the same in Python's ``hashlib`` and the Linux crypto API that dm-verity uses (cryptsetup's
#: ``--hash`` passes the name to the kernel; ``sha3_256`` vs the kernel's ``sha3-256`` differ, and
#: ``shake_*`` have no fixed digest size), so a superblock cannot make teeform hash with one
#: algorithm while the kernel uses another.
SUPPORTED_HASHES: tuple[str, ...] = ("sha1", "sha224", "sha256", "sha384", "sha512")
_ALG_NAME = re.compile(rb"[a-z0-9][a-z0-9_-]*")

_SALT_DOMAIN = b"teeform/dm-verity/salt/v1\0"
_UUID_DOMAIN = b"teeform/dm-verity/uuid/v1\0"

_READ_BYTES = 4 << 20  # bytes read per preadv() in a worker
_TASK_BYTES = 64 << 20  # data bytes per worker task (bounds memory for the returned digests)
_PARALLEL_MIN_BYTES = 32 << 20  # below this, hash in-process (pool start-up would dominate)


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class VerityParams:
    """Parameters of a format-1 dm-verity hash tree (the ``veritysetup format`` options).

    Attributes:
        salt: raw salt bytes, 0..256 bytes (``--salt``; cryptsetup's default size is 32).
        uuid: superblock UUID as ``8-4-4-4-12`` hex (``--uuid``); ignored when ``superblock`` is false.
        data_block_size: bytes per data block, a power of two in 512..524288 (``--data-block-size``).
        hash_block_size: bytes per hash block, a power of two in 512..524288 (``--hash-block-size``).
        hash_name: hashlib/cryptsetup algorithm name (``--hash``), one of :data:`SUPPORTED_HASHES`.
        superblock: write the 512-byte superblock at hash offset 0 (false = ``--no-superblock``).

    Raises:
        TeeformError: on any out-of-range value.
    """

    salt: bytes
    uuid: str
    data_block_size: int = 4096
    hash_block_size: int = 4096
    hash_name: str = "sha256"
    superblock: bool = True

    def __post_init__(self) -> None:
        for name in ("data_block_size", "hash_block_size"):
            v = getattr(self, name)
            if v < 512 or v > 512 * 1024 or v & (v - 1):
                raise TeeformError(f"dm-verity {name} must be a power of two in 512..524288, got {v}", field=name)
        if len(self.salt) > _SB_MAX_SALT:
            raise TeeformError(f"dm-verity salt is {len(self.salt)} bytes; at most 256 are allowed", field="salt")
        if self.hash_name not in SUPPORTED_HASHES:
            raise TeeformError(f"dm-verity hash algorithm {self.hash_name!r} is not supported (one of "
                               f"{', '.join(SUPPORTED_HASHES)})", field="hash_name")
        h = hashlib.new(self.hash_name)
        if _pow2_ceil(h.digest_size) > self.hash_block_size:
            raise TeeformError("dm-verity hash block too small for the digest", field="hash_block_size")
        if self.superblock:
            try:
                uuidlib.UUID(self.uuid)
            except ValueError as exc:
                raise TeeformError(f"dm-verity uuid {self.uuid!r} is not a UUID", field="uuid") from exc

    @property
    def digest_size(self) -> int:
        """Digest size in bytes of :attr:`hash_name`."""
        return hashlib.new(self.hash_name).digest_size


def _as_digest(data_sha256: bytes | str) -> bytes:
    raw = bytes.fromhex(data_sha256) if isinstance(data_sha256, str) else bytes(data_sha256)
    if len(raw) != 32:
        raise TeeformError("expected a SHA-256 digest (32 bytes / 64 hex characters) of the data image")
    return raw


def derive_salt(data_sha256: bytes | str) -> bytes:
    """Return the 32-byte salt teeform uses for a data image: ``SHA-256(domain || SHA-256(image))``.

    ``domain`` is ``b"teeform/dm-verity/salt/v1\\0"``. Pure. See the module docstring for why a
    content-derived salt is acceptable (reproducible builds; the salt is public anyway).

    Args:
        data_sha256: SHA-256 of the whole data image, raw (32 bytes) or hex.
    """
    return hashlib.sha256(_SALT_DOMAIN + _as_digest(data_sha256)).digest()


def derive_uuid(data_sha256: bytes | str) -> str:
    """Return the superblock UUID for a data image: the first 16 bytes of ``SHA-256(domain || SHA-256(image))``.

    ``domain`` is ``b"teeform/dm-verity/uuid/v1\\0"``; the version nibble is set to 8 ("custom",
    RFC 9562 §5.8) and the variant bits to RFC 4122's ``10``. Pure. Returned as lowercase
    ``8-4-4-4-12`` (the bytes appear in string order, as libuuid's ``uuid_parse`` stores them).
    """
    raw = bytearray(hashlib.sha256(_UUID_DOMAIN + _as_digest(data_sha256)).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x80
    raw[8] = (raw[8] & 0x3F) | 0x80
    return str(uuidlib.UUID(bytes=bytes(raw)))


def params_for_image(
    data_path: os.PathLike[str] | str, *, data_sha256: str | None = None, superblock: bool = True
) -> VerityParams:
    """Return default (sha256, 4 KiB) :class:`VerityParams` with salt and UUID derived from the image.

    Streams ``data_path`` once for its SHA-256 unless ``data_sha256`` (hex) is given.

    Raises:
        TeeformError: the file cannot be read.
    """
    digest = data_sha256 or hash_file(data_path, ("sha256",))["sha256"]
    return VerityParams(salt=derive_salt(digest), uuid=derive_uuid(digest), superblock=superblock)


# --------------------------------------------------------------------------- geometry (pure)


def _pow2_ceil(n: int) -> int:
    return 1 << (n - 1).bit_length()


@dataclass(frozen=True)
class VerityGeometry:
    """Where everything sits in a hash device (cryptsetup ``verity_hash.c`` ``VERITY_create_or_verify_hash``).

    Attributes:
        data_blocks: number of data blocks hashed.
        digest_size: raw digest size in bytes.
        digest_stride: digest size padded to a power of two (bytes per digest slot in a hash block).
        hashes_per_block: digests per hash block.
        level_blocks: hash blocks per level, level 0 (leaves) first; empty when ``data_blocks == 1``.
        level_offsets: byte offset of each level in the hash device, level 0 first (top level has the
            smallest offset: the top level is stored first).
        tree_offset: byte offset of the first hash block (``hash_block_size`` with a superblock, else 0).
        hash_blocks: total hash blocks (not counting the superblock block).
        hash_device_size: bytes of the hash device ``veritysetup`` writes (superblock block + tree).
    """

    data_blocks: int
    digest_size: int
    digest_stride: int
    hashes_per_block: int
    level_blocks: tuple[int, ...]
    level_offsets: tuple[int, ...]
    tree_offset: int
    hash_blocks: int
    hash_device_size: int


def compute_geometry(data_blocks: int, params: VerityParams) -> VerityGeometry:
    """Compute the hash-tree layout for ``data_blocks`` data blocks. Pure.

    Raises:
        TeeformError: ``data_blocks`` is not positive.
    """
    if data_blocks <= 0:
        raise TeeformError("a dm-verity data device needs at least one data block")
    dsize = params.digest_size
    stride = _pow2_ceil(dsize)
    bits = (params.hash_block_size // stride).bit_length() - 1  # floor(log2(hbs / stride))
    hpb = 1 << bits
    levels = 0
    while bits * levels < 64 and (data_blocks - 1) >> (bits * levels):
        levels += 1
    sizes = [(data_blocks + (1 << ((i + 1) * bits)) - 1) >> ((i + 1) * bits) for i in range(levels)]
    tree_offset = params.hash_block_size if params.superblock else 0
    offsets = [0] * levels
    pos = tree_offset
    for i in range(levels - 1, -1, -1):  # top level first
        offsets[i] = pos
        pos += sizes[i] * params.hash_block_size
    return VerityGeometry(
        data_blocks=data_blocks,
        digest_size=dsize,
        digest_stride=stride,
        hashes_per_block=hpb,
        level_blocks=tuple(sizes),
        level_offsets=tuple(offsets),
        tree_offset=tree_offset,
        hash_blocks=sum(sizes),
        hash_device_size=pos,
    )


# --------------------------------------------------------------------------- superblock (pure)


@dataclass(frozen=True)
class VeritySuperblock:
    """Decoded dm-verity superblock (uki-verity.md §5 table; all integers little-endian).

    Attributes:
        version: superblock version (1).
        hash_type: 0 (ChromeOS) or 1.
        uuid: ``8-4-4-4-12`` string of the 16 raw UUID bytes.
        hash_name: algorithm name (NUL-stripped).
        data_block_size, hash_block_size: bytes.
        data_blocks: number of data blocks.
        salt: raw salt.
    """

    version: int
    hash_type: int
    uuid: str
    hash_name: str
    data_block_size: int
    hash_block_size: int
    data_blocks: int
    salt: bytes

    def params(self) -> VerityParams:
        """The :class:`VerityParams` that reproduce this superblock."""
        return VerityParams(
            salt=self.salt,
            uuid=self.uuid,
            data_block_size=self.data_block_size,
            hash_block_size=self.hash_block_size,
            hash_name=self.hash_name,
            superblock=True,
        )


def pack_superblock(params: VerityParams, data_blocks: int) -> bytes:
    """Return the 512-byte superblock for ``params`` and ``data_blocks`` (uki-verity.md §5). Pure."""
    return _SB_STRUCT.pack(
        _SB_MAGIC,
        _SB_VERSION,
        HASH_TYPE,
        uuidlib.UUID(params.uuid).bytes,
        params.hash_name.encode("ascii"),
        params.data_block_size,
        params.hash_block_size,
        data_blocks,
        len(params.salt),
        b"",
        params.salt,
        b"",
    )


def parse_superblock(raw: bytes) -> VeritySuperblock:
    """Decode a 512-byte dm-verity superblock. Pure.

    Raises:
        TeeformError: wrong magic, version or salt size (``field`` names the superblock field).
    """
    if len(raw) < SUPERBLOCK_SIZE:
        raise TeeformError("too short for a dm-verity superblock (512 bytes)", field="superblock")
    magic, version, htype, u, alg, dbs, hbs, nblocks, salt_size, _, salt, _ = _SB_STRUCT.unpack(raw[:SUPERBLOCK_SIZE])
    if magic != _SB_MAGIC:
        raise TeeformError(
            "no dm-verity superblock (magic 'verity\\0\\0' missing)",
            field="superblock",
            hint="hash devices made with --no-superblock carry no parameters; pass them explicitly",
        )
    if version != _SB_VERSION:
        raise TeeformError(f"unsupported dm-verity superblock version {version}", field="superblock.version")
    if salt_size > _SB_MAX_SALT:
        raise TeeformError(f"dm-verity salt_size {salt_size} > 256", field="superblock.salt_size")
    for name, v in (("data_block_size", dbs), ("hash_block_size", hbs)):
        if v < 512 or v > 512 * 1024 or v & (v - 1):
            raise TeeformError(f"dm-verity {name} must be a power of two in 512..524288, got {v}",
                               field=f"superblock.{name}")
    return VeritySuperblock(
        version=version,
        hash_type=htype,
        uuid=str(uuidlib.UUID(bytes=u)),
        hash_name=_algorithm_name(alg),
        data_block_size=dbs,
        hash_block_size=hbs,
        data_blocks=nblocks,
        salt=salt[:salt_size],
    )


def _algorithm_name(alg: bytes) -> str:
    """The superblock's ``algorithm[32]``: a NUL-terminated, NUL-padded lowercase name (cryptsetup
    writes ``strncpy``-style padding) that must be one of :data:`SUPPORTED_HASHES`.

    Raises:
        TeeformError: ``field="superblock.algorithm"``: no terminator, bytes after the terminator (a
            name such as ``sha256\0x`` that C would read as ``sha256``), non-name bytes, or an
            unsupported algorithm.
    """
    if b"\0" not in alg:
        raise TeeformError("dm-verity superblock algorithm is not NUL-terminated", field="superblock.algorithm")
    name, rest = alg.split(b"\0", 1)
    if rest.strip(b"\0"):
        raise TeeformError(f"dm-verity superblock algorithm {alg.rstrip(bytes(1))!r} holds bytes after its NUL "
                           "terminator", field="superblock.algorithm")
    if not name:
        raise TeeformError("dm-verity superblock algorithm is empty", field="superblock.algorithm")
    if not _ALG_NAME.fullmatch(name):
        raise TeeformError(f"dm-verity superblock algorithm {name!r} is not a lowercase ASCII name",
                           field="superblock.algorithm")
    text = name.decode("ascii")
    if text not in SUPPORTED_HASHES:
        raise TeeformError(f"dm-verity superblock algorithm {text!r} is not supported (one of "
                           f"{', '.join(SUPPORTED_HASHES)})", field="superblock.algorithm")
    return text


def read_superblock(hash_path: os.PathLike[str] | str, *, offset: int = 0) -> VeritySuperblock:
    """Read and decode the superblock at byte ``offset`` (``--hash-offset``) of the hash device ``hash_path``.

    Raises:
        TeeformError: unreadable file or no valid superblock (the error names the file).
    """
    try:
        with open(hash_path, "rb") as fh:
            fh.seek(offset)
            raw = fh.read(SUPERBLOCK_SIZE)
    except OSError as exc:
        raise TeeformError(f"cannot read dm-verity hash device: {exc.strerror}", path=hash_path) from exc
    try:
        return parse_superblock(raw)
    except TeeformError as exc:
        raise TeeformError(exc.message, hint=exc.hint, path=hash_path, field=exc.field) from None


# --------------------------------------------------------------------------- hashing


@dataclass(frozen=True)
class VerityResult:
    """Outcome of :func:`build_hash_tree` / what the manifest records.

    Attributes:
        roothash: root hash, lowercase hex (the ``roothash=`` kernel argument).
        salt: salt, lowercase hex.
        uuid: superblock UUID (``""`` without a superblock).
        hash_name: algorithm (``"sha256"``).
        data_block_size, hash_block_size: bytes.
        data_blocks: number of data blocks hashed.
        hash_blocks: number of hash-tree blocks (without the superblock block).
        hash_device_size: bytes of the written hash device.
        hash_start_block: first tree block in hash-block units (1 with a superblock, else 0).
    """

    roothash: str
    salt: str
    uuid: str
    hash_name: str
    data_block_size: int
    hash_block_size: int
    data_blocks: int
    hash_blocks: int
    hash_device_size: int
    hash_start_block: int

    def dm_table(self, data_dev: str, hash_dev: str) -> str:
        """Return the dm-verity target line ``0 <sectors> verity 1 <data> <hash> ...`` (verity.rst; uki-verity.md §5)."""
        sectors = self.data_blocks * self.data_block_size // 512
        return (
            f"0 {sectors} verity {HASH_TYPE} {data_dev} {hash_dev} {self.data_block_size} {self.hash_block_size} "
            f"{self.data_blocks} {self.hash_start_block} {self.hash_name} {self.roothash} {self.salt or '-'}"
        )


def _hash_blocks_fd(fd: int, offset: int, nblocks: int, block_size: int, seed: hashlib._Hash, stride: int) -> bytes:
    """Return the concatenated (stride-padded) digests ``H(salt || block)`` of ``nblocks`` blocks at ``offset``."""
    pad = b"\0" * (stride - seed.digest_size)
    out: list[bytes] = []
    step = max(block_size, (_READ_BYTES // block_size) * block_size)
    buf = bytearray(step)
    view = memoryview(buf)
    end = offset + nblocks * block_size
    pos = offset
    copy = seed.copy
    while pos < end:
        length = min(step, end - pos)
        got = os.preadv(fd, [view[:length]], pos)
        if got != length:
            raise OSError(5, f"short read at offset {pos + got}")
        digests = []
        for o in range(0, length, block_size):
            h = copy()
            h.update(view[o : o + block_size])
            digests.append(h.digest())
        out.append((pad.join(digests) + pad) if pad else b"".join(digests))
        pos += length
    view.release()
    return b"".join(out)


def _leaf_task(args: tuple[str, int, int, int, bytes, str, int]) -> bytes:
    """Worker: hash a leaf range of the data file (opened by path, so any start method works)."""
    path, offset, nblocks, block_size, salt, hash_name, stride = args
    seed = hashlib.new(hash_name)
    seed.update(salt)
    fd = os.open(path, os.O_RDONLY)
    try:
        return _hash_blocks_fd(fd, offset, nblocks, block_size, seed, stride)
    finally:
        os.close(fd)


def _leaf_tasks(path: str, base: int, data_blocks: int, params: VerityParams, stride: int) -> Iterator[tuple]:
    per = max(1, _TASK_BYTES // params.data_block_size)
    for first in range(0, data_blocks, per):
        n = min(per, data_blocks - first)
        yield (path, base + first * params.data_block_size, n, params.data_block_size, params.salt, params.hash_name, stride)


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _data_blocks_of(data_path: os.PathLike[str] | str, block_size: int) -> int:
    try:
        size = os.stat(data_path).st_size
    except OSError as exc:
        raise TeeformError(f"cannot read dm-verity data image: {exc.strerror}", path=data_path) from exc
    if size == 0:
        raise TeeformError("dm-verity data image is empty", path=data_path)
    if size % block_size:
        raise TeeformError(
            f"dm-verity data image size {size} is not a multiple of the {block_size}-byte data block size",
            path=data_path,
            hint="pad it (e.g. `truncate -s %4096 FILE`); veritysetup would silently leave the tail unprotected",
        )
    return size // block_size


def _write_tree(
    data_path: str, out_fd: int, params: VerityParams, geo: VerityGeometry, workers: int, data_offset: int = 0
) -> bytes:
    """Write superblock + all levels into ``out_fd`` (already sized); return the raw root hash.

    The data blocks are ``geo.data_blocks`` blocks starting at byte ``data_offset`` of ``data_path``.
    """
    seed = hashlib.new(params.hash_name)
    seed.update(params.salt)
    if params.superblock:
        os.pwrite(out_fd, pack_superblock(params, geo.data_blocks), 0)
    if not geo.level_blocks:  # one data block: root = H(salt || data block)
        fd = os.open(data_path, os.O_RDONLY)
        try:
            return _hash_blocks_fd(fd, data_offset, 1, params.data_block_size, seed, geo.digest_size)
        finally:
            os.close(fd)

    # Level 0 (leaves): parallel over contiguous leaf ranges, written in order by this process.
    pos = geo.level_offsets[0]
    tasks = _leaf_tasks(data_path, data_offset, geo.data_blocks, params, geo.digest_stride)
    total = geo.data_blocks * params.data_block_size
    if workers > 1 and total >= _PARALLEL_MIN_BYTES:
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
        with ctx.Pool(workers) as pool:
            for chunk in pool.imap(_leaf_task, tasks):
                os.pwrite(out_fd, chunk, pos)
                pos += len(chunk)
    else:
        for t in tasks:
            chunk = _leaf_task(t)
            os.pwrite(out_fd, chunk, pos)
            pos += len(chunk)

    # Upper levels: level i+1 hashes the hash blocks of level i (read back from out_fd; small).
    hbs = params.hash_block_size
    per = max(1, _TASK_BYTES // hbs)
    for lvl in range(1, len(geo.level_blocks)):
        src, nsrc, dst = geo.level_offsets[lvl - 1], geo.level_blocks[lvl - 1], geo.level_offsets[lvl]
        for first in range(0, nsrc, per):
            n = min(per, nsrc - first)
            chunk = _hash_blocks_fd(out_fd, src + first * hbs, n, hbs, seed, geo.digest_stride)
            os.pwrite(out_fd, chunk, dst)
            dst += len(chunk)
    top = geo.level_offsets[-1]
    return _hash_blocks_fd(out_fd, top, 1, hbs, seed, geo.digest_size)


def build_hash_tree(
    data_path: os.PathLike[str] | str,
    hash_path: os.PathLike[str] | str,
    params: VerityParams,
    *,
    workers: int | None = None,
) -> VerityResult:
    """Compute the dm-verity hash tree of ``data_path`` and write the hash device to ``hash_path``.

    Equivalent to ``veritysetup format DATA HASH --hash=<hash_name> --salt=<hex> --uuid=<uuid>
    --data-block-size=.. --hash-block-size=..`` (plus ``--no-superblock`` when ``params.superblock``
    is false): same root hash, byte-identical hash device (tested live against cryptsetup 2.6.1).
    ``hash_path`` is written atomically (temp file + rename); it is never half-written.

    Args:
        data_path: the data image; its size must be a positive multiple of ``data_block_size``.
        hash_path: output hash device (superblock block, then levels top first, leaves last).
        params: tree parameters (see :func:`params_for_image` for reproducible defaults).
        workers: worker processes for the leaf level (default: CPUs available to this process).

    Raises:
        TeeformError: unreadable, empty or unaligned data image; write failure.
    """
    geo = compute_geometry(_data_blocks_of(data_path, params.data_block_size), params)
    nworkers = workers if workers is not None else _default_workers()
    try:
        with atomic_output(hash_path) as fh:
            fd = fh.fileno()
            os.ftruncate(fd, geo.hash_device_size)
            root = _write_tree(os.fspath(data_path), fd, params, geo, nworkers)
    except OSError as exc:
        raise TeeformError(f"dm-verity hash tree failed: {exc.strerror or exc}", path=hash_path) from exc
    return VerityResult(
        roothash=root.hex(),
        salt=params.salt.hex(),
        uuid=params.uuid if params.superblock else "",
        hash_name=params.hash_name,
        data_block_size=params.data_block_size,
        hash_block_size=params.hash_block_size,
        data_blocks=geo.data_blocks,
        hash_blocks=geo.hash_blocks,
        hash_device_size=geo.hash_device_size,
        hash_start_block=geo.tree_offset // params.hash_block_size,
    )


def verify_hash_tree(
    data_path: os.PathLike[str] | str,
    hash_path: os.PathLike[str] | str,
    *,
    roothash: str | None = None,
    data_offset: int = 0,
    hash_offset: int = 0,
    workers: int | None = None,
) -> str:
    """Check a data image against its hash device (with superblock) and return the root hash (hex).

    Reads the parameters from the superblock at ``hash_offset``, rebuilds the tree into a temporary
    file and compares every byte of the stored tree (like ``veritysetup verify``, which also checks
    every hash block). ``data_offset``/``hash_offset`` (bytes) let the caller point both at partitions
    inside one disk image (``teeform measure disk.raw``); the data area may be longer than the
    superblock's ``data_blocks`` (e.g. a partition rounded up to 1 MiB): only the covered blocks count.

    Raises:
        TeeformError: no/invalid superblock, the data area is shorter than the superblock says, any
            hash block differs (naming block and level), or ``roothash`` is given and differs.
    """
    sb = read_superblock(hash_path, offset=hash_offset)
    if sb.hash_type != HASH_TYPE:
        raise TeeformError(f"dm-verity hash type {sb.hash_type} is not supported (only 1)", path=hash_path,
                           field="superblock.hash_type")
    try:
        params = sb.params()
    except TeeformError as exc:
        raise TeeformError(exc.message, hint=exc.hint, path=hash_path, field=f"superblock.{exc.field}") from None
    try:
        size = os.stat(data_path).st_size - data_offset
    except OSError as exc:
        raise TeeformError(f"cannot read dm-verity data image: {exc.strerror}", path=data_path) from exc
    if sb.data_blocks <= 0 or size < sb.data_blocks * sb.data_block_size:
        raise TeeformError(
            f"data area is {size} bytes but the superblock covers {sb.data_blocks} blocks of {sb.data_block_size}",
            path=data_path,
        )
    geo = compute_geometry(sb.data_blocks, params)
    nworkers = workers if workers is not None else _default_workers()
    with tempfile.TemporaryDirectory(prefix="teeform-verity-") as tmp:
        fresh = Path(tmp, "hash")
        with open(fresh, "w+b") as fh:
            os.ftruncate(fh.fileno(), geo.hash_device_size)
            try:
                root = _write_tree(os.fspath(data_path), fh.fileno(), params, geo, nworkers, data_offset).hex()
            except OSError as exc:
                raise TeeformError(f"cannot read dm-verity data image: {exc.strerror or exc}", path=data_path) from exc
        _compare_tree(hash_path, hash_offset, fresh, geo, params.hash_block_size)
    if roothash is not None and roothash.lower() != root:
        raise TeeformError(f"dm-verity root hash is {root}, expected {roothash.lower()}", path=hash_path)
    return root


def _compare_tree(stored: os.PathLike[str] | str, base: int, fresh: Path, geo: VerityGeometry, hbs: int) -> None:
    try:
        stored_size = os.stat(stored).st_size - base
    except OSError as exc:
        raise TeeformError(f"cannot read dm-verity hash device: {exc.strerror}", path=stored) from exc
    if stored_size < geo.hash_device_size:
        raise TeeformError(f"hash device is {stored_size} bytes, the tree needs {geo.hash_device_size}", path=stored)
    # Compare level by level from the leaves up, so a mismatch names the first bad data block.
    with open(stored, "rb") as a, open(fresh, "rb") as b:
        for level, (off, nblocks) in enumerate(zip(geo.level_offsets, geo.level_blocks, strict=True)):
            pos, end = off, off + nblocks * hbs
            a.seek(base + pos)
            b.seek(pos)
            while pos < end:
                n = min(_READ_BYTES, end - pos)
                x, y = a.read(n), b.read(n)
                if x != y:
                    bad = pos + next(i for i in range(n) if x[i] != y[i])
                    where = f"hash block {bad // hbs} (tree level {level}, 0 = leaves)"
                    if level == 0:
                        slot = ((bad - off) // hbs) * geo.hashes_per_block + ((bad - off) % hbs) // geo.digest_stride
                        where += f", covering data block {slot}"
                    raise TeeformError(
                        f"dm-verity {where} does not match the data image",
                        path=stored,
                        hint="the data image changed after the hash tree was built, or the two do not belong together",
                    )
                pos += n
