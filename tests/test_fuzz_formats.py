"""Property-based fuzzing of the byte-format readers (issue 7 item 3): GPT, dm-verity superblocks and
PE headers either parse or raise :class:`~teeform.errors.TeeformError`; nothing else escapes (no
``struct.error``, ``OverflowError``, ``UnicodeDecodeError``, ``ValueError`` from a seek...).

Inputs are mutations of valid structures: for the GPT, header fields set to boundary values
(0, 1, 2^32-1, 2^60, 2^64-1, the disk size in sectors +- 1) and entry bytes edited, with every CRC32
recomputed so the bounds checks, not the checksums, are exercised; for the superblock and PE,
byte edits of a superblock written by the project and of the systemd-stub the set-up fetched
(``sd254.stub`` in the inputs lock). Each test is bounded (``max_examples``) and takes a few seconds.
"""

from __future__ import annotations

import os
import struct
import tempfile
import zlib
from pathlib import Path

from conftest import locked
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fuzz_cli_parsers import byte_edits

from image_builder.formats import gpt, pe, verity
from teeform.errors import TeeformError

FUZZ = settings(max_examples=int(os.environ.get("TEEFORM_FUZZ_EXAMPLES", "150")), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")  # UEFI 2.10 table 5-5
SECTOR = 512


def _good_disk() -> bytes:
    specs = [gpt.PartitionSpec("root", gpt.ROOT_X86_64_TYPE, "8aa2f742-95ea-4232-6038-971b0ff0db96", 4096),
             gpt.PartitionSpec("esp", gpt.ESP_TYPE, "11111111-2222-3333-4444-555555555555", 4096)]
    layout = gpt.plan_layout(specs, disk_guid="01234567-89ab-cdef-0123-456789abcdef")
    t = gpt.pack_gpt(layout)
    data = bytearray(layout.size)
    data[: len(t.mbr) + len(t.primary)] = t.mbr + t.primary
    data[layout.size - len(t.backup):] = t.backup
    return bytes(data)


GOOD_DISK = _good_disk()
SECTORS = len(GOOD_DISK) // SECTOR
BOUNDARY = st.sampled_from([0, 1, 2, 33, 34, SECTORS - 34, SECTORS - 1, SECTORS, SECTORS + 1, 2**32 - 1, 2**60,
                            2**63, 2**64 - 1])


def _reseal(data: bytearray, lba: int) -> None:
    fields = list(HEADER.unpack_from(data, lba * SECTOR))
    fields[3] = 0
    fields[3] = zlib.crc32(HEADER.pack(*fields))
    HEADER.pack_into(data, lba * SECTOR, *fields)


def _mutated_disk(header_edits: list[tuple[int, int]], entry_edits: list[tuple[int, bytes]], backup_too: bool) -> bytes:
    data = bytearray(GOOD_DISK)
    prim = list(HEADER.unpack_from(data, SECTOR))
    alt = prim[6]
    for off, blob in entry_edits:  # entry array edits, then the array CRCs in both headers
        start = prim[10] * SECTOR + off
        data[start: start + len(blob)] = blob
        bstart = (SECTORS - 33) * SECTOR + off
        data[bstart: bstart + len(blob)] = blob
    crc = zlib.crc32(bytes(data[prim[10] * SECTOR: prim[10] * SECTOR + prim[11] * prim[12]]))
    for lba in (1, alt):
        fields = list(HEADER.unpack_from(data, lba * SECTOR))
        fields[13] = crc
        HEADER.pack_into(data, lba * SECTOR, *fields)
    for index, value in header_edits:
        for lba in ((1, alt) if backup_too else (1,)):
            fields = list(HEADER.unpack_from(data, lba * SECTOR))
            limit = 2**32 - 1 if index in (1, 2, 11, 12, 13) else 2**64 - 1
            fields[index] = min(value, limit)
            HEADER.pack_into(data, lba * SECTOR, *fields)
    _reseal(data, 1)
    if alt * SECTOR + SECTOR <= len(data):
        _reseal(data, alt)
    return bytes(data)


@FUZZ
@given(header_edits=st.lists(st.tuples(st.sampled_from([2, 5, 6, 7, 8, 10, 11, 12]), BOUNDARY), max_size=3),
       entry_edits=st.lists(st.tuples(st.integers(0, 2 * 128 - 1), st.binary(min_size=1, max_size=16)), max_size=3),
       backup_too=st.booleans())
def test_gpt_reader_with_valid_crcs_over_lying_fields(header_edits, entry_edits, backup_too) -> None:
    disk = _mutated_disk(header_edits, entry_edits, backup_too)
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "disk.raw"
        p.write_bytes(disk)
        try:
            layout = gpt.read_disk_layout(p)
        except TeeformError as exc:
            assert exc.path == str(p) and "\n" not in exc.message
            return
    for part in layout.partitions:
        assert layout.first_usable_lba <= part.first_lba <= part.last_lba <= layout.last_usable_lba


@FUZZ
@given(raw=byte_edits(verity.pack_superblock(
    verity.VerityParams(salt=b"s" * 32, uuid="12345678-1234-1234-1234-123456789abc"), 1000)))
def test_verity_superblock_parser(raw: bytes) -> None:
    try:
        sb = verity.parse_superblock(raw)
        sb.params()
    except TeeformError as exc:
        assert exc.message and "\n" not in exc.message
        return
    assert sb.hash_name in verity.SUPPORTED_HASHES


STUB_HEAD = locked("sd254.stub").read_bytes()[:4096]


@FUZZ
@given(head=byte_edits(STUB_HEAD))
def test_pe_header_parser(head: bytes) -> None:
    try:
        h = pe.parse_pe_headers(head)
    except TeeformError as exc:
        assert exc.message and "\n" not in exc.message
        return
    assert len(h.sections) <= pe.MAX_SECTIONS
