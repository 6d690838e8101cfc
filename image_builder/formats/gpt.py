"""GPT disk images per the Discoverable Partitions Specification: ESP + root + root-verity.

Public API::

    ESP_TYPE, ROOT_X86_64_TYPE, ROOT_X86_64_VERITY_TYPE      # partition type GUIDs (str)
    FLAG_READ_ONLY = 1 << 60
    verity_partition_uuids(roothash: str) -> tuple[str, str]  # (root, root-verity) PARTUUIDs, pure
    derive_disk_guid(roothash: str) -> str                    # pure
    derive_esp_uuid(roothash: str) -> str                     # pure
    PartitionSpec(name, type_guid, partuuid, size, attributes=0)          # frozen
    Partition(number, name, type_guid, partuuid, first_lba, last_lba, attributes)  # frozen
    DiskLayout(disk_guid, sectors, first_usable_lba, last_usable_lba, partitions)  # frozen
    plan_layout(specs, *, disk_guid) -> DiskLayout            # pure, 1 MiB alignment
    pack_gpt(layout) -> GptBytes(mbr, primary, backup)        # pure
    assemble_disk(out_path, *, esp, root, root_verity, roothash, disk_guid=None) -> DiskLayout
    read_gpt(path, *, size=None) -> list[Partition]
    read_disk_layout(path, *, size=None) -> DiskLayout        # also checks both headers and CRCs

Format facts (UEFI Specification 2.10, §5.2.3 "Protective MBR" and §5.3 "GUID Partition Table
(GPT) Disk Layout", tables 5-5, 5-6, 5-7): 512-byte logical blocks; protective MBR in LBA 0 with one
record of type 0xEE from LBA 1 covering the disk (size capped at 0xFFFFFFFF) and signature 0xAA55;
the primary header in LBA 1 and 128 entries of 128 bytes in LBAs 2..33; the backup entries in the
33 LBAs before the last, the backup header in the last LBA; all integers little-endian; GUIDs in
the mixed-endian EFI_GUID layout (``uuid.UUID(s).bytes_le``, uki-verity.md §5); CRC32 is the
ISO-HDLC CRC (``zlib.crc32``) over the 92-byte header with its CRC field zeroed, and over the whole
entry array.

Discoverable Partitions Specification (uapi-group/specifications
``specs/discoverable_partitions_specification.md``; uki-verity.md §5):

* types: ESP ``c12a7328-f81f-11d2-ba4b-00a0c93ec93b``, root (x86-64)
  ``4f68bce3-e8cd-4db1-96e7-fbcaf984b709``, root verity (x86-64) ``2c7357ed-ebd2-46d9-aec1-23d437ec2bf5``.
* "the root partition's UUID is chosen to match the first 128 bit of the root hash, and the matching
  Verity partition UUID ... the last 128 bit" (DPS "Verity"); systemd-repart copies the bytes
  verbatim (uki-verity.md §5: ``memcpy``), and systemd-veritysetup-generator formats them in string
  order 8-4-4-4-12, e.g. roothash ``8aa2f742…0a8e`` -> ``8aa2f742-95ea-4232-6038-971b0ff0db96`` and
  ``b3e2319a-c9a5-d3fc-18fd-5e9cd7230a8e``. No version/variant bits are forced.
* attribute bit 60 (read-only) "it is recommended to set it unconditionally for the Verity ... partition
  types" (DPS "Partition Attribute Flags"); teeform sets it on root and root-verity.

Layout decisions (teeform's own): partitions in the order ESP, root, root-verity, each starting on a
1 MiB boundary (first at LBA 2048); each partition exactly as long as its image (rounded up to 512
bytes); the disk ends on a 1 MiB boundary with at least 33 free LBAs for the backup table (so the raw
size is already what Azure's fixed VHD wants, uki-verity.md §8). Partition names are the DPS
identifiers ``esp``, ``root-x86-64``, ``root-x86-64-verity``.

The disk GUID and the ESP's PARTUUID are derived from the roothash (:func:`derive_disk_guid`,
:func:`derive_esp_uuid`): sfdisk/sgdisk would pick random ones, which changes the GPT and therefore
PCR 5 on every build (measured-boot.md "Pitfalls"). With these derivations, PCR 5 depends only on
the roothash and the three partition sizes.
"""

from __future__ import annotations

import hashlib
import os
import struct
import uuid as uuidlib
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from teeform.errors import TeeformError
from teeform.fsutil import atomic_output

__all__ = [
    "SECTOR",
    "ALIGN",
    "ESP_TYPE",
    "ROOT_X86_64_TYPE",
    "ROOT_X86_64_VERITY_TYPE",
    "FLAG_READ_ONLY",
    "verity_partition_uuids",
    "derive_disk_guid",
    "derive_esp_uuid",
    "PartitionSpec",
    "Partition",
    "DiskLayout",
    "GptBytes",
    "plan_layout",
    "pack_gpt",
    "assemble_disk",
    "read_gpt",
    "read_disk_layout",
]

SECTOR = 512  #: logical block size in bytes (the only one supported)
ALIGN = 1 << 20  #: partition start and disk size alignment in bytes
ENTRY_SIZE = 128  #: bytes per partition entry (UEFI 2.10 table 5-7)
NUM_ENTRIES = 128  #: entries in the array (16 KiB = 32 LBAs, the minimum the spec requires)
_ENTRY_LBAS = NUM_ENTRIES * ENTRY_SIZE // SECTOR  # 32
_HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")  # UEFI 2.10 table 5-5, 92 bytes
_ENTRY = struct.Struct("<16s16sQQQ72s")  # UEFI 2.10 table 5-6, 128 bytes
_SIGNATURE = b"EFI PART"
_REVISION = 0x00010000

ESP_TYPE = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
ROOT_X86_64_TYPE = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"
ROOT_X86_64_VERITY_TYPE = "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5"
FLAG_READ_ONLY = 1 << 60  #: DPS SD_GPT_FLAG_READ_ONLY

_DISK_DOMAIN = b"teeform/gpt/disk-guid/v1\0"
_ESP_DOMAIN = b"teeform/gpt/esp-partuuid/v1\0"
_COPY_CHUNK = 4 << 20


# --------------------------------------------------------------------------- identifiers (pure)


def _roothash_bytes(roothash: str) -> bytes:
    try:
        raw = bytes.fromhex(roothash)
    except ValueError:
        raw = b""
    if len(raw) < 32:
        raise TeeformError(f"roothash {roothash!r} is not a hex digest of at least 256 bits", field="roothash")
    return raw


def verity_partition_uuids(roothash: str) -> tuple[str, str]:
    """Return (root PARTUUID, root-verity PARTUUID): the first and last 16 bytes of the roothash. Pure.

    Source: DPS "Verity" section; systemd-repart ``memcpy`` (uki-verity.md §5).
    """
    raw = _roothash_bytes(roothash)
    return str(uuidlib.UUID(bytes=raw[:16])), str(uuidlib.UUID(bytes=raw[-16:]))


def _derived(domain: bytes, roothash: str) -> str:
    b = bytearray(hashlib.sha256(domain + _roothash_bytes(roothash)).digest()[:16])
    b[6] = (b[6] & 0x0F) | 0x80  # RFC 9562 version 8 ("custom")
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    return str(uuidlib.UUID(bytes=bytes(b)))


def derive_disk_guid(roothash: str) -> str:
    """Disk GUID: first 16 bytes of SHA-256(``b"teeform/gpt/disk-guid/v1\\0"`` || roothash bytes), version 8. Pure."""
    return _derived(_DISK_DOMAIN, roothash)


def derive_esp_uuid(roothash: str) -> str:
    """ESP PARTUUID: first 16 bytes of SHA-256(``b"teeform/gpt/esp-partuuid/v1\\0"`` || roothash bytes), version 8. Pure."""
    return _derived(_ESP_DOMAIN, roothash)


# --------------------------------------------------------------------------- layout (pure)


@dataclass(frozen=True)
class PartitionSpec:
    """A partition to place: ``size`` in bytes (rounded up to 512), GUIDs as 8-4-4-4-12 strings."""

    name: str
    type_guid: str
    partuuid: str
    size: int
    attributes: int = 0


@dataclass(frozen=True)
class Partition:
    """One used GPT entry. LBAs are 512-byte sectors; ``last_lba`` is inclusive (UEFI table 5-6).

    Attributes:
        number: 1-based entry index (``/dev/vdaN``).
        name: partition name (UTF-16LE on disk, at most 36 characters).
        type_guid, partuuid: lowercase 8-4-4-4-12.
        first_lba, last_lba: inclusive sector range.
        attributes: the 64-bit attribute field (bit 60 = read-only).
    """

    number: int
    name: str
    type_guid: str
    partuuid: str
    first_lba: int
    last_lba: int
    attributes: int = 0

    @property
    def offset(self) -> int:
        """Byte offset of the partition in the disk."""
        return self.first_lba * SECTOR

    @property
    def size(self) -> int:
        """Partition size in bytes."""
        return (self.last_lba - self.first_lba + 1) * SECTOR

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the manifest (offsets and sizes in bytes)."""
        return {
            "number": self.number, "name": self.name, "type": self.type_guid, "partuuid": self.partuuid,
            "first_lba": self.first_lba, "last_lba": self.last_lba, "offset": self.offset, "size": self.size,
            "attributes": f"0x{self.attributes:016x}",
        }  # fmt: skip


@dataclass(frozen=True)
class DiskLayout:
    """A whole GPT disk: ``sectors`` 512-byte LBAs, partitions in entry order."""

    disk_guid: str
    sectors: int
    first_usable_lba: int
    last_usable_lba: int
    partitions: tuple[Partition, ...]

    @property
    def size(self) -> int:
        """Disk size in bytes."""
        return self.sectors * SECTOR

    def by_type(self, type_guid: str) -> Partition:
        """The first partition of ``type_guid``. Raises TeeformError when absent."""
        for p in self.partitions:
            if p.type_guid == type_guid.lower():
                return p
        raise TeeformError(f"the disk has no partition of type {type_guid}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the manifest."""
        return {
            "disk_guid": self.disk_guid, "size": self.size, "sector_size": SECTOR,
            "partitions": [p.to_dict() for p in self.partitions],
        }  # fmt: skip


def _align_up(n: int, a: int) -> int:
    return -(-n // a) * a


def plan_layout(specs: Sequence[PartitionSpec], *, disk_guid: str) -> DiskLayout:
    """Place ``specs`` in order, each starting on a 1 MiB boundary; size the disk. Pure.

    Raises:
        TeeformError: empty/oversized partition, bad GUID, name longer than 36 characters, or more
            than 128 partitions.
    """
    if len(specs) > NUM_ENTRIES:
        raise TeeformError(f"at most {NUM_ENTRIES} partitions fit in the GPT")
    align_lbas = ALIGN // SECTOR
    lba = align_lbas
    parts: list[Partition] = []
    for i, s in enumerate(specs, start=1):
        if s.size <= 0:
            raise TeeformError(f"partition {s.name!r} is empty", field=s.name)
        if len(s.name) > 36:
            raise TeeformError(f"partition name {s.name!r} is longer than 36 characters", field=s.name)
        nsec = _align_up(s.size, SECTOR) // SECTOR
        parts.append(Partition(i, s.name, _norm_guid(s.type_guid), _norm_guid(s.partuuid), lba, lba + nsec - 1,
                               s.attributes))  # fmt: skip
        lba = _align_up(lba + nsec, align_lbas)
    end = parts[-1].last_lba + 1 if parts else align_lbas
    sectors = _align_up(end + _ENTRY_LBAS + 1, align_lbas)
    return DiskLayout(_norm_guid(disk_guid), sectors, 2 + _ENTRY_LBAS, sectors - 2 - _ENTRY_LBAS, tuple(parts))


def _norm_guid(g: str) -> str:
    try:
        return str(uuidlib.UUID(g))
    except ValueError as exc:
        raise TeeformError(f"{g!r} is not a GUID") from exc


# --------------------------------------------------------------------------- encoding (pure)


@dataclass(frozen=True)
class GptBytes:
    """Encoded tables: ``mbr`` (LBA 0), ``primary`` (LBA 1..33), ``backup`` (last 33 LBAs)."""

    mbr: bytes
    primary: bytes
    backup: bytes


def _chs(lba: int) -> bytes:
    """CHS triple for ``lba`` with 255 heads x 63 sectors, or FF FF FF when beyond cylinder 1023 (UEFI §5.2.3)."""
    heads, spt = 255, 63
    cyl = lba // (heads * spt)
    if cyl > 1023:
        return b"\xff\xff\xff"
    head = (lba // spt) % heads
    sector = lba % spt + 1
    return bytes([head, (sector & 0x3F) | ((cyl >> 2) & 0xC0), cyl & 0xFF])


def _protective_mbr(sectors: int) -> bytes:
    """UEFI 2.10 table 5-4: one 0xEE record from LBA 1, SizeInLBA = min(disk - 1, 0xFFFFFFFF)."""
    last = min(sectors - 1, 0xFFFFFFFF)
    # BootIndicator 0, StartingCHS 0x000200, OSType 0xEE, EndingCHS, StartingLBA 1, SizeInLBA
    record = b"\x00" + b"\x00\x02\x00" + b"\xee" + _chs(last) + struct.pack("<II", 1, last)
    mbr = bytearray(SECTOR)
    mbr[446:462] = record
    mbr[510:512] = b"\x55\xaa"
    return bytes(mbr)


def _entries(layout: DiskLayout) -> bytes:
    out = bytearray(NUM_ENTRIES * ENTRY_SIZE)
    for p in layout.partitions:
        name = p.name.encode("utf-16-le").ljust(72, b"\0")
        raw = _ENTRY.pack(uuidlib.UUID(p.type_guid).bytes_le, uuidlib.UUID(p.partuuid).bytes_le, p.first_lba,
                          p.last_lba, p.attributes, name)  # fmt: skip
        out[(p.number - 1) * ENTRY_SIZE : p.number * ENTRY_SIZE] = raw
    return bytes(out)


def _header(layout: DiskLayout, *, my_lba: int, alt_lba: int, entries_lba: int, entries_crc: int) -> bytes:
    fields = [_SIGNATURE, _REVISION, _HEADER.size, 0, 0, my_lba, alt_lba, layout.first_usable_lba,
              layout.last_usable_lba, uuidlib.UUID(layout.disk_guid).bytes_le, entries_lba, NUM_ENTRIES,
              ENTRY_SIZE, entries_crc]  # fmt: skip
    crc = zlib.crc32(_HEADER.pack(*fields))
    fields[3] = crc
    return _HEADER.pack(*fields).ljust(SECTOR, b"\0")


def pack_gpt(layout: DiskLayout) -> GptBytes:
    """Encode the protective MBR, the primary and the backup GPT for ``layout``. Pure."""
    entries = _entries(layout)
    crc = zlib.crc32(entries)
    last = layout.sectors - 1
    primary = _header(layout, my_lba=1, alt_lba=last, entries_lba=2, entries_crc=crc) + entries
    backup_entries_lba = last - _ENTRY_LBAS
    backup = entries + _header(layout, my_lba=last, alt_lba=1, entries_lba=backup_entries_lba, entries_crc=crc)
    return GptBytes(_protective_mbr(layout.sectors), primary, backup)


# --------------------------------------------------------------------------- I/O


def _copy_sparse(src: Path, out_fd: int, offset: int) -> None:
    """Copy ``src`` into the pre-sized ``out_fd`` at ``offset`` in chunks, leaving zero runs as holes."""
    from image_builder.formats.diskformats import pwrite_sparse

    with open(src, "rb") as fh:
        pos = offset
        while chunk := fh.read(_COPY_CHUNK):
            pwrite_sparse(out_fd, chunk, pos)
            pos += len(chunk)


def assemble_disk(
    out_path: os.PathLike[str] | str,
    *,
    esp: os.PathLike[str] | str,
    root: os.PathLike[str] | str,
    root_verity: os.PathLike[str] | str,
    roothash: str,
    disk_guid: str | None = None,
) -> DiskLayout:
    """Write a raw GPT disk with ESP, root and root-verity partitions to ``out_path`` (atomically, sparse).

    Args:
        out_path: the raw disk image (size a multiple of 1 MiB).
        esp: FAT image (:func:`image_builder.pipelines.esp.make_esp`).
        root: root file system image (the dm-verity data device).
        root_verity: dm-verity hash device (:func:`image_builder.formats.verity.build_hash_tree`).
        roothash: hex root hash; gives the root/root-verity PARTUUIDs and the derived GUIDs.
        disk_guid: override the derived disk GUID.

    Returns:
        the :class:`DiskLayout` written (for the manifest and PCR 5 reasoning).

    Raises:
        TeeformError: a missing/empty image or a malformed roothash.
    """
    root_uuid, verity_uuid = verity_partition_uuids(roothash)
    images = {"esp": Path(esp), "root": Path(root), "root_verity": Path(root_verity)}
    sizes = {}
    for key, p in images.items():
        try:
            sizes[key] = p.stat().st_size
        except OSError as exc:
            raise TeeformError(f"{key} image not readable: {exc.strerror}", path=p) from exc
    specs = [
        PartitionSpec("esp", ESP_TYPE, derive_esp_uuid(roothash), sizes["esp"]),
        PartitionSpec("root-x86-64", ROOT_X86_64_TYPE, root_uuid, sizes["root"], FLAG_READ_ONLY),
        PartitionSpec("root-x86-64-verity", ROOT_X86_64_VERITY_TYPE, verity_uuid, sizes["root_verity"], FLAG_READ_ONLY),
    ]
    layout = plan_layout(specs, disk_guid=disk_guid or derive_disk_guid(roothash))
    tables = pack_gpt(layout)
    with atomic_output(out_path) as fh:
        fd = fh.fileno()
        os.ftruncate(fd, layout.size)
        os.pwrite(fd, tables.mbr, 0)
        os.pwrite(fd, tables.primary, SECTOR)
        for part, key in zip(layout.partitions, ("esp", "root", "root_verity"), strict=True):
            _copy_sparse(images[key], fd, part.offset)
        os.pwrite(fd, tables.backup, layout.size - len(tables.backup))
    return layout


def _parse_header(raw: bytes, path: os.PathLike[str] | str, which: str) -> tuple:
    fields = list(_HEADER.unpack(raw[: _HEADER.size]))
    if fields[0] != _SIGNATURE:
        raise TeeformError(f"no GPT {which} header (signature 'EFI PART' missing)", path=path, field=f"gpt.{which}")
    if fields[2] < _HEADER.size or fields[2] > SECTOR:
        raise TeeformError(f"GPT {which} header size {fields[2]} is invalid", path=path, field=f"gpt.{which}")
    crc = fields[3]
    check = bytearray(raw[: fields[2]])
    check[16:20] = b"\0\0\0\0"
    if zlib.crc32(check) != crc:
        raise TeeformError(f"GPT {which} header CRC32 mismatch", path=path, field=f"gpt.{which}")
    return tuple(fields)


def _entry_name(raw: bytes, path: os.PathLike[str] | str, number: int) -> str:
    """The ``PartitionName`` of an entry: UTF-16LE code units up to the first NUL unit (UEFI 2.10
    table 5-6, 36 units). Units after the terminator are ignored; a lone surrogate before it is an
    error naming the entry (``gpt.entries[N].name``)."""
    units = len(raw) // 2
    end = next((i for i in range(units) if raw[2 * i: 2 * i + 2] == b"\0\0"), units)
    try:
        return raw[: 2 * end].decode("utf-16-le")
    except UnicodeDecodeError as exc:
        raise TeeformError(f"GPT partition {number} name is not valid UTF-16 (byte {exc.start}: {exc.reason})",
                           path=path, field=f"gpt.entries[{number}].name") from None


def _parse_entries(raw: bytes, count: int, esize: int, path: os.PathLike[str] | str = "<disk>",
                   usable: tuple[int, int] = (0, (1 << 64) - 1)) -> tuple[Partition, ...]:
    """Decode the used entries of an entry array (``raw`` holds ``count * esize`` bytes).

    Raises:
        TeeformError: a name that is not UTF-16 (:func:`_entry_name`), or a partition whose
            ``StartingLBA..EndingLBA`` is empty or leaves the header's usable area ``usable``
            (UEFI 2.10 §5.3.3: partitions lie within FirstUsableLBA..LastUsableLBA).
    """
    parts = []
    for i in range(count):
        e = raw[i * esize : i * esize + ENTRY_SIZE]
        tguid, puuid, first, last, attrs, name = _ENTRY.unpack(e)
        if tguid == bytes(16):
            continue
        if not usable[0] <= first <= last <= usable[1]:
            raise TeeformError(f"GPT partition {i + 1} spans LBA {first}..{last}, not within the usable area "
                               f"{usable[0]}..{usable[1]}", path=path, field=f"gpt.entries[{i + 1}]")
        parts.append(Partition(i + 1, _entry_name(name, path, i + 1), str(uuidlib.UUID(bytes_le=tguid)),
                               str(uuidlib.UUID(bytes_le=puuid)), first, last, attrs))  # fmt: skip
    return tuple(parts)


def _check_array_bounds(lba: int, length: int, size: int, header_lba: int, path: os.PathLike[str] | str,
                        which: str) -> None:
    """An entry array of ``length`` bytes at ``lba`` must lie inside the ``size``-byte disk, after the
    protective MBR and off its header's LBA (checked before any seek: a hostile header may say 2^64-1)."""
    if lba < 2 or lba == header_lba or lba * SECTOR + length > size:
        raise TeeformError(f"GPT {which} partition entry array at LBA {lba} ({length} bytes) lies outside the disk "
                           f"({size // SECTOR} sectors) or on a header", path=path, field=f"gpt.{which}")


def read_disk_layout(path: os.PathLike[str] | str, *, size: int | None = None) -> DiskLayout:
    """Read and check the GPT of a raw disk image (512-byte sectors).

    ``size`` limits the disk to the first ``size`` bytes of the file (default: the whole file); use
    :func:`image_builder.formats.diskformats.open_raw_view` to get the raw part of a VHD/qcow2/GCE image.

    Checks: protective MBR signature, both headers' signature and CRC32, both entry arrays' CRC32,
    that the headers point at each other, and that the two arrays are identical. Because a hostile
    disk can carry valid CRCs over lying fields, every LBA is bounds-checked before it is used
    (UEFI 2.10 §5.3.2-5.3.3): the usable area lies inside the disk, both entry arrays lie inside the
    disk and off their header (an array "at LBA 2^60" or past the end of the file is refused before
    any seek; a read past EOF would give ``b""``, whose CRC32 is 0), every used partition lies inside
    the usable area, and names are UTF-16LE up to the first NUL (a lone surrogate is refused).
    The reads are bounded: two sectors, two entry arrays of at most 16 MiB, one backup sector.

    Raises:
        TeeformError: naming the file and the failing structure (``field`` = ``gpt.primary`` etc.).
    """
    try:
        if size is None:
            size = os.stat(path).st_size
        with open(path, "rb") as fh:
            head = fh.read(SECTOR * 2)
            if len(head) < SECTOR * 2 or size % SECTOR:
                raise TeeformError("too small or not a whole number of 512-byte sectors for a GPT disk", path=path)
            if head[510:512] != b"\x55\xaa":
                raise TeeformError("no MBR boot signature 0x55AA in LBA 0", path=path, field="mbr")
            prim = _parse_header(head[SECTOR:], path, "primary")
            _sig, _rev, _hsz, _crc, _res, my, alt, first_use, last_use, dguid, elba, count, esize, ecrc = prim
            if my != 1 or esize < ENTRY_SIZE or count * esize > 1 << 24:
                raise TeeformError("GPT primary header fields are inconsistent", path=path, field="gpt.primary")
            if not 2 <= first_use <= last_use < size // SECTOR:
                raise TeeformError(f"GPT usable area LBA {first_use}..{last_use} is not inside the disk "
                                   f"({size // SECTOR} sectors)", path=path, field="gpt.primary")
            _check_array_bounds(elba, count * esize, size, 1, path, "primary")
            fh.seek(elba * SECTOR)
            entries = fh.read(count * esize)
            if len(entries) != count * esize:
                raise TeeformError("GPT primary partition entry array is cut short by the end of the file", path=path,
                                   field="gpt.entries")
            if zlib.crc32(entries) != ecrc:
                raise TeeformError("GPT primary partition entry array CRC32 mismatch", path=path, field="gpt.entries")
            if alt * SECTOR >= size or alt <= 1:
                raise TeeformError("GPT backup header lies beyond the end of the image", path=path, field="gpt.backup")
            fh.seek(alt * SECTOR)
            back_raw = fh.read(SECTOR)
            if len(back_raw) < _HEADER.size:
                raise TeeformError("GPT backup header is cut short by the end of the file", path=path, field="gpt.backup")
            back = _parse_header(back_raw, path, "backup")
            if back[5] != alt or back[6] != 1 or back[13] != ecrc:
                raise TeeformError("GPT backup header does not match the primary", path=path, field="gpt.backup")
            _check_array_bounds(back[10], count * esize, size, alt, path, "backup")
            fh.seek(back[10] * SECTOR)
            if fh.read(count * esize) != entries:
                raise TeeformError("GPT backup partition entry array differs", path=path, field="gpt.backup")
    except OSError as exc:
        raise TeeformError(f"cannot read disk image: {exc.strerror}", path=path) from exc
    return DiskLayout(str(uuidlib.UUID(bytes_le=dguid)), size // SECTOR, first_use, last_use,
                      _parse_entries(entries, count, esize, path, (first_use, last_use)))  # fmt: skip


def read_gpt(path: os.PathLike[str] | str, *, size: int | None = None) -> list[Partition]:
    """Return the used partitions of the raw disk image ``path`` (after :func:`read_disk_layout`'s checks)."""
    return list(read_disk_layout(path, size=size).partitions)
