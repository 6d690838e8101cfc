"""Hostile GPTs (issue 7 item 3): every CRC is valid, the fields lie.

A disk is written with :func:`image_builder.formats.gpt.pack_gpt`, then one header or entry field is
rewritten and the CRC32s recomputed with ``zlib`` (UEFI 2.10 §5.3.2: the header CRC covers
``HeaderSize`` bytes with the CRC field zeroed; ``PartitionEntryArrayCRC32`` covers
``NumberOfPartitionEntries * SizeOfPartitionEntry`` bytes), so the reader's checksum checks pass and
only its bounds checks stand between the file and a traceback, a huge seek or a huge read. Each case
must give one :class:`TeeformError` naming the file and the GPT field, and ``teeform measure`` must
exit 2 with one line.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from image_builder.formats import gpt
from teeform.errors import TeeformError

HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")  # UEFI 2.10 table 5-5 (92 bytes)
# field indexes of HEADER
MY_LBA, ALT_LBA, FIRST_USABLE, LAST_USABLE, ENTRY_LBA, COUNT, ESIZE, ECRC = 5, 6, 7, 8, 10, 11, 12, 13
SECTOR = 512


def good_disk(tmp_path: Path) -> tuple[Path, int]:
    specs = [gpt.PartitionSpec("root", gpt.ROOT_X86_64_TYPE, "8aa2f742-95ea-4232-6038-971b0ff0db96", 4096)]
    layout = gpt.plan_layout(specs, disk_guid="01234567-89ab-cdef-0123-456789abcdef")
    t = gpt.pack_gpt(layout)
    p = tmp_path / "disk.raw"
    with open(p, "wb") as fh:
        fh.truncate(layout.size)
        fh.write(t.mbr + t.primary)
        fh.seek(layout.size - len(t.backup))
        fh.write(t.backup)
    return p, layout.size


def _header_at(data: bytearray, lba: int) -> list:
    return list(HEADER.unpack_from(data, lba * SECTOR))


def _put_header(data: bytearray, lba: int, fields: list) -> None:
    fields[3] = 0
    raw = bytearray(HEADER.pack(*fields))
    fields[3] = zlib.crc32(raw)
    HEADER.pack_into(data, lba * SECTOR, *fields)


def rewrite(path: Path, *, header: dict[int, int] | None = None, entry0: dict[str, bytes] | None = None,
            both: bool = True) -> None:
    """Change primary (and backup) header fields and/or entry 0, recomputing every CRC32."""
    data = bytearray(path.read_bytes())
    prim = _header_at(data, 1)
    alt = prim[ALT_LBA]
    back = _header_at(data, alt)
    if entry0:
        for lba in (prim[ENTRY_LBA], back[ENTRY_LBA]):
            off = lba * SECTOR
            if "name" in entry0:
                data[off + 56: off + 128] = entry0["name"].ljust(72, b"\0")
            if "first_last" in entry0:
                data[off + 32: off + 48] = entry0["first_last"]
        n = prim[COUNT] * prim[ESIZE]
        crc = zlib.crc32(bytes(data[prim[ENTRY_LBA] * SECTOR: prim[ENTRY_LBA] * SECTOR + n]))
        prim[ECRC] = back[ECRC] = crc
    for k, v in (header or {}).items():
        prim[k] = v
        if both and k in (COUNT, ESIZE, ECRC):
            back[k] = v
    _put_header(data, 1, prim)
    _put_header(data, alt, back)
    path.write_bytes(bytes(data))


def refused(path: Path) -> TeeformError:
    with pytest.raises(TeeformError) as e:
        gpt.read_disk_layout(path)
    assert e.value.path == str(path)
    assert "\n" not in str(e.value)
    return e.value


def test_good_disk_reads(tmp_path: Path) -> None:
    p, _ = good_disk(tmp_path)
    rewrite(p)  # recomputing CRCs of an unchanged disk changes nothing
    (part,) = gpt.read_gpt(p)
    assert part.name == "root"


@pytest.mark.parametrize("name", [
    "\ud800".encode("utf-16-le", "surrogatepass"),            # lone high surrogate
    "a\udc00b".encode("utf-16-le", "surrogatepass"),          # lone low surrogate
    b"r\0o\0o",                                               # odd length: half a UTF-16 code unit
])
def test_partition_name_with_broken_utf16(tmp_path: Path, name: bytes) -> None:
    p, _ = good_disk(tmp_path)
    rewrite(p, entry0={"name": name if len(name) % 2 == 0 else name + b"\xd8"})
    e = refused(p)
    assert e.field == "gpt.entries[1].name" and "not valid UTF-16" in str(e), str(e)


@pytest.mark.parametrize("lba", [1 << 60, (1 << 64) - 1], ids=["2^60", "2^64-1"])
def test_entry_table_at_huge_lba(tmp_path: Path, lba: int) -> None:
    p, _ = good_disk(tmp_path)
    rewrite(p, header={ENTRY_LBA: lba, ECRC: 0}, both=False)
    e = refused(p)
    assert e.field == "gpt.primary" and "partition entry array" in str(e) and "outside the disk" in str(e), str(e)


def test_entry_table_past_end_of_file_with_empty_crc(tmp_path: Path) -> None:
    """Reading past EOF gives b'' whose CRC32 is 0: a header claiming CRC 0 must still be refused."""
    p, size = good_disk(tmp_path)
    rewrite(p, header={ENTRY_LBA: size // SECTOR + 8, ECRC: 0}, both=False)
    e = refused(p)
    assert e.field == "gpt.primary" and "outside the disk" in str(e), str(e)


def test_entry_table_overlapping_the_header(tmp_path: Path) -> None:
    p, _ = good_disk(tmp_path)
    rewrite(p, header={ENTRY_LBA: 1}, both=False)
    e = refused(p)
    assert e.field == "gpt.primary", str(e)


def test_backup_entry_table_outside_the_disk(tmp_path: Path) -> None:
    p, size = good_disk(tmp_path)
    data = bytearray(p.read_bytes())
    alt = _header_at(data, 1)[ALT_LBA]
    back = _header_at(data, alt)
    back[ENTRY_LBA] = 1 << 62
    _put_header(data, alt, back)
    p.write_bytes(bytes(data))
    e = refused(p)
    assert e.field == "gpt.backup" and "outside the disk" in str(e), str(e)


def test_partition_outside_the_usable_area(tmp_path: Path) -> None:
    p, size = good_disk(tmp_path)
    rewrite(p, entry0={"first_last": struct.pack("<QQ", 2048, (1 << 63) + 5)})
    e = refused(p)
    assert e.field == "gpt.entries[1]" and "usable" in str(e), str(e)
    rewrite(p, entry0={"first_last": struct.pack("<QQ", 4096, 2048)})
    e = refused(p)
    assert e.field == "gpt.entries[1]", str(e)


def test_huge_entry_count_is_refused_without_reading(tmp_path: Path) -> None:
    p, _ = good_disk(tmp_path)
    rewrite(p, header={COUNT: 0xFFFFFFFF})
    e = refused(p)
    assert e.field == "gpt.primary", str(e)


def test_cli_measure_hostile_gpt_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from teeform.cli import main

    p, _ = good_disk(tmp_path)
    rewrite(p, entry0={"name": "\ud800".encode("utf-16-le", "surrogatepass")})
    assert main(["measure", str(p)]) == 2
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert out == "" and lines[0].startswith("error: ") and str(p) in lines[0] and "Traceback" not in err, err
