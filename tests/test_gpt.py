"""ESP images (image_builder.pipelines.esp) and GPT disks (image_builder.formats.gpt), read back with sgdisk, sfdisk, mtools, blkid."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
from conftest import require_tool

from image_builder.formats import gpt, verity
from image_builder.pipelines import esp
from teeform.errors import TeeformError
from teeform.run import run

EPOCH = 1_700_000_000


@pytest.fixture()
def uki(tmp_path: Path) -> Path:
    p = tmp_path / "uki.efi"
    p.write_bytes(b"MZ" + os.urandom(3_000_000))
    return p


@pytest.fixture()
def disk_parts(tmp_path: Path, uki: Path) -> dict[str, Path | str]:
    """ESP + 3 MiB root image + its verity hash device, and the roothash."""
    require_tool("mkfs.vfat")
    require_tool("mcopy")
    e = esp.make_esp(uki, tmp_path / "esp.img", source_date_epoch=EPOCH)
    root = tmp_path / "root.img"
    root.write_bytes(os.urandom(3 << 20) + bytes(8192))
    res = verity.build_hash_tree(root, tmp_path / "root.verity", verity.params_for_image(root))
    return {"esp": e, "root": root, "verity": tmp_path / "root.verity", "roothash": res.roothash}


def _assemble(parts: dict[str, Path | str], out: Path) -> gpt.DiskLayout:
    return gpt.assemble_disk(out, esp=parts["esp"], root=parts["root"], root_verity=parts["verity"],
                             roothash=str(parts["roothash"]))  # fmt: skip


# --- identifiers ---------------------------------------------------------------------------------


def test_verity_partition_uuids_reference_vector() -> None:
    """uki-verity.md §5: roothash 8aa2f742… -> data 8aa2f742-95ea-4232-6038-971b0ff0db96, hash b3e2319a-… (systemd)."""
    root = "8aa2f74295ea42326038971b0ff0db96b3e2319ac9a5d3fc18fd5e9cd7230a8e"
    assert gpt.verity_partition_uuids(root) == (
        "8aa2f742-95ea-4232-6038-971b0ff0db96",
        "b3e2319a-c9a5-d3fc-18fd-5e9cd7230a8e",
    )
    with pytest.raises(TeeformError, match="roothash"):
        gpt.verity_partition_uuids("abc")
    assert gpt.derive_disk_guid(root) == gpt.derive_disk_guid(root.upper())
    assert gpt.derive_disk_guid(root) != gpt.derive_esp_uuid(root)


# --- ESP -----------------------------------------------------------------------------------------


@pytest.mark.integration
def test_esp_is_reproducible_and_readable(tmp_path: Path, uki: Path) -> None:
    require_tool("mkfs.vfat")
    require_tool("mcopy")
    for oracle in ("mdir", "fsck.vfat", "blkid"):
        require_tool(oracle)
    a = esp.make_esp(uki, tmp_path / "a.img", source_date_epoch=EPOCH)
    time.sleep(1.1)  # FAT times have 2 s resolution; make sure "now" moved on
    os.utime(uki, (EPOCH + 999, EPOCH + 999))
    b = esp.make_esp(uki, tmp_path / "b.img", source_date_epoch=EPOCH)
    assert a.read_bytes() == b.read_bytes()
    assert a.stat().st_size == esp.default_size_mib(uki.stat().st_size) << 20
    c = esp.make_esp(uki, tmp_path / "c.img", source_date_epoch=EPOCH + 60)
    assert c.read_bytes() != a.read_bytes()
    # read back with the oracles
    run(["mcopy", "-i", str(a), "::/EFI/BOOT/BOOTX64.EFI", str(tmp_path / "back.efi")], env={"MTOOLS_SKIP_CHECK": "1"})
    assert (tmp_path / "back.efi").read_bytes() == uki.read_bytes()
    listing = run(["mdir", "-i", str(a), "::/EFI/BOOT"], env={"TZ": "UTC"}).stdout.decode()
    assert re.search(r"BOOTX64\s+EFI\s+3\s?000\s?002\s+2023-11-14\s+22:13", listing), listing
    run(["fsck.vfat", "-n", str(a)])
    info = run(["blkid", "-p", "-o", "export", str(a)]).stdout.decode()
    volid = esp.derive_volume_id(__import__("hashlib").sha256(uki.read_bytes()).hexdigest())
    assert f"UUID={volid[:4].upper()}-{volid[4:].upper()}" in info
    assert "LABEL=ESP" in info and "VERSION=FAT32" in info


@pytest.mark.integration
def test_esp_extra_files_and_errors(tmp_path: Path, uki: Path) -> None:
    require_tool("mkfs.vfat")
    require_tool("mcopy")
    conf = tmp_path / "loader.conf"
    conf.write_text("timeout 0\n")
    img = esp.make_esp(uki, tmp_path / "e.img", size_mib=40, source_date_epoch=0, volume_id="0badcafe",
                       label="TEEFORM", extra_files={"loader/loader.conf": conf})  # fmt: skip
    assert img.stat().st_size == 40 << 20
    run(["mcopy", "-i", str(img), "::/loader/loader.conf", str(tmp_path / "back")], env={"MTOOLS_SKIP_CHECK": "1"})
    assert (tmp_path / "back").read_text() == "timeout 0\n"
    with pytest.raises(TeeformError, match="too small"):
        esp.make_esp(uki, tmp_path / "x.img", size_mib=8)
    big = tmp_path / "big.efi"
    with open(big, "wb") as fh:
        fh.write(os.urandom(40 << 20))
    with pytest.raises(TeeformError):  # mcopy: disk full
        esp.make_esp(big, tmp_path / "x.img", size_mib=34)
    with pytest.raises(TeeformError, match="not found"):
        esp.make_esp(tmp_path / "missing.efi", tmp_path / "x.img")
    assert not list(tmp_path.glob("*x.img*"))


# --- GPT disk ------------------------------------------------------------------------------------


@pytest.mark.oracle
def test_disk_read_back_by_sfdisk_and_sgdisk(tmp_path: Path, disk_parts: dict) -> None:
    require_tool("sfdisk")
    require_tool("sgdisk")
    disk = tmp_path / "disk.raw"
    layout = _assemble(disk_parts, disk)
    assert layout.size % (1 << 20) == 0 and disk.stat().st_size == layout.size
    root_uuid, verity_uuid = gpt.verity_partition_uuids(disk_parts["roothash"])

    # sgdisk -v: a valid GPT (CRCs, backup, protective MBR, overlaps)
    verify = run(["sgdisk", "-v", str(disk)]).stdout.decode()
    assert "No problems found" in verify, verify

    # sfdisk --json: types, UUIDs, names, offsets, sizes, attributes, disk GUID
    table = json.loads(run(["sfdisk", "--json", str(disk)]).stdout)["partitiontable"]
    assert table["label"] == "gpt" and table["sectorsize"] == 512
    assert table["id"].lower() == layout.disk_guid == gpt.derive_disk_guid(disk_parts["roothash"])
    want = [
        (gpt.ESP_TYPE, gpt.derive_esp_uuid(disk_parts["roothash"]), "esp", disk_parts["esp"], None),
        (gpt.ROOT_X86_64_TYPE, root_uuid, "root-x86-64", disk_parts["root"], "GUID:60"),
        (gpt.ROOT_X86_64_VERITY_TYPE, verity_uuid, "root-x86-64-verity", disk_parts["verity"], "GUID:60"),
    ]
    assert len(table["partitions"]) == 3
    for got, (typ, uuid, name, image, attrs), mine in zip(table["partitions"], want, layout.partitions, strict=True):
        assert got["type"].lower() == typ
        assert got["uuid"].lower() == uuid == mine.partuuid
        assert got["name"] == name
        assert got.get("attrs") == attrs
        assert got["start"] % 2048 == 0 and got["start"] == mine.first_lba
        assert got["size"] * 512 == Path(image).stat().st_size == mine.size

    # sgdisk -i: the same from an independent parser, including the attribute word
    info = run(["sgdisk", "-i", "2", str(disk)]).stdout.decode()
    assert f"Partition GUID code: {gpt.ROOT_X86_64_TYPE.upper()}" in info
    assert f"Partition unique GUID: {root_uuid.upper()}" in info
    assert "Attribute flags: 1000000000000000" in info
    assert "Partition name: 'root-x86-64'" in info

    # partition contents are the images, byte for byte
    with open(disk, "rb") as fh:
        for part, (_t, _u, _n, image, _a) in zip(layout.partitions, want, strict=True):
            fh.seek(part.offset)
            assert fh.read(part.size) == Path(image).read_bytes()

    # our reader agrees with the writer, and the verity pair verifies in place
    assert gpt.read_disk_layout(disk) == layout
    r, v = layout.by_type(gpt.ROOT_X86_64_TYPE), layout.by_type(gpt.ROOT_X86_64_VERITY_TYPE)
    assert verity.verify_hash_tree(disk, disk, data_offset=r.offset, hash_offset=v.offset) == disk_parts["roothash"]

    # mtools sees the UKI inside the ESP partition of the disk
    listing = run(["mdir", "-i", f"{disk}@@{layout.partitions[0].offset}", "::/EFI/BOOT"],
                  env={"MTOOLS_SKIP_CHECK": "1"}).stdout.decode()  # fmt: skip
    assert "BOOTX64" in listing


@pytest.mark.integration
def test_disk_rebuild_identical_and_sparse(tmp_path: Path, disk_parts: dict) -> None:
    _assemble(disk_parts, tmp_path / "a.raw")
    _assemble(disk_parts, tmp_path / "b.raw")
    a, b = tmp_path / "a.raw", tmp_path / "b.raw"
    assert a.read_bytes() == b.read_bytes()
    assert a.stat().st_blocks * 512 < a.stat().st_size // 2  # the ESP's free space stays a hole


@pytest.mark.oracle
def test_read_gpt_of_a_disk_made_by_sfdisk(tmp_path: Path) -> None:
    """Our reader on a table written by an independent tool (sfdisk), with chosen GUIDs and names."""
    require_tool("sfdisk")
    disk = tmp_path / "s.raw"
    with open(disk, "wb") as fh:
        fh.truncate(64 << 20)
    script = (
        "label: gpt\nlabel-id: 01234567-89AB-CDEF-0123-456789ABCDEF\n"
        f"start=2048, size=20480, type={gpt.ESP_TYPE}, uuid=11111111-2222-3333-4444-555555555555, name=\"EFI boot\"\n"
        f"start=22528, size=8, type={gpt.ROOT_X86_64_TYPE}, uuid=8aa2f742-95ea-4232-6038-971b0ff0db96, "
        "name=\"root\", attrs=\"GUID:60\"\n"
    )
    run(["sfdisk", "-q", str(disk)], input=script.encode())
    layout = gpt.read_disk_layout(disk)
    assert layout.disk_guid == "01234567-89ab-cdef-0123-456789abcdef"
    assert layout.partitions == (
        gpt.Partition(1, "EFI boot", gpt.ESP_TYPE, "11111111-2222-3333-4444-555555555555", 2048, 22527, 0),
        gpt.Partition(2, "root", gpt.ROOT_X86_64_TYPE, "8aa2f742-95ea-4232-6038-971b0ff0db96", 22528, 22535,
                      gpt.FLAG_READ_ONLY),
    )  # fmt: skip
    assert layout.sectors == (64 << 20) // 512


def test_read_gpt_rejects_corruption(tmp_path: Path) -> None:
    specs = [gpt.PartitionSpec("a", gpt.ROOT_X86_64_TYPE, "8aa2f742-95ea-4232-6038-971b0ff0db96", 4096)]
    layout = gpt.plan_layout(specs, disk_guid="01234567-89ab-cdef-0123-456789abcdef")
    t = gpt.pack_gpt(layout)
    good = tmp_path / "g.raw"
    with open(good, "wb") as fh:
        fh.truncate(layout.size)
        fh.write(t.mbr + t.primary)
        fh.seek(layout.size - len(t.backup))
        fh.write(t.backup)
    assert gpt.read_gpt(good) == list(layout.partitions)

    def corrupt(offset: int, match: str) -> None:
        bad = tmp_path / "b.raw"
        data = bytearray(good.read_bytes())
        data[offset] ^= 0xFF
        bad.write_bytes(bytes(data))
        with pytest.raises(TeeformError, match=match):
            gpt.read_gpt(bad)

    corrupt(510, "0x55AA")
    corrupt(512 + 60, "primary header CRC32")
    corrupt(1024 + 40, "entry array CRC32")
    corrupt(layout.size - 512 + 60, "backup header CRC32")
    corrupt(layout.size - len(t.backup) + 3, "backup partition entry array differs")


def test_plan_layout_alignment_and_errors() -> None:
    specs = [gpt.PartitionSpec("x", gpt.ESP_TYPE, "11111111-2222-3333-4444-555555555555", (1 << 20) + 1),
             gpt.PartitionSpec("y", gpt.ESP_TYPE, "11111111-2222-3333-4444-555555555556", 1 << 20)]  # fmt: skip
    lay = gpt.plan_layout(specs, disk_guid="01234567-89ab-cdef-0123-456789abcdef")
    assert [p.first_lba for p in lay.partitions] == [2048, 6144]
    assert lay.partitions[0].size == (1 << 20) + 512  # rounded up to whole sectors only
    assert lay.sectors * 512 % (1 << 20) == 0 and lay.last_usable_lba == lay.sectors - 34
    assert lay.sectors - 1 - lay.partitions[-1].last_lba >= 33
    with pytest.raises(TeeformError, match="empty"):
        gpt.plan_layout([gpt.PartitionSpec("z", gpt.ESP_TYPE, specs[0].partuuid, 0)], disk_guid=lay.disk_guid)
    with pytest.raises(TeeformError, match="36"):
        gpt.plan_layout([gpt.PartitionSpec("n" * 37, gpt.ESP_TYPE, specs[0].partuuid, 1)], disk_guid=lay.disk_guid)


def test_assemble_missing_image_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "e").write_bytes(bytes(4096))
    with pytest.raises(TeeformError, match="not readable"):
        gpt.assemble_disk(tmp_path / "d.raw", esp=tmp_path / "e", root=tmp_path / "missing", root_verity=tmp_path / "e",
                          roothash="ab" * 32)  # fmt: skip
    assert not list(tmp_path.glob("*d.raw*"))


@pytest.mark.oracle
@pytest.mark.parametrize("size", [70 << 20, 20 << 30], ids=["70MiB-chs", "20GiB-ffffff"])
def test_protective_mbr_equals_sgdisk(tmp_path: Path, size: int) -> None:
    """LBA 0 byte-for-byte as `sgdisk -o` writes it (ending CHS computed, or FF FF FF past cylinder 1023)."""
    require_tool("sgdisk")
    disk = tmp_path / "o.raw"
    with open(disk, "wb") as fh:
        fh.truncate(size)
    run(["sgdisk", "-o", str(disk)])
    layout = gpt.DiskLayout("01234567-89ab-cdef-0123-456789abcdef", size // 512, 34, size // 512 - 34, ())
    with open(disk, "rb") as fh:
        assert fh.read(512) == gpt.pack_gpt(layout).mbr


@pytest.mark.oracle
def test_tables_byte_identical_to_sgdisk(tmp_path: Path, disk_parts: dict) -> None:
    """sgdisk, given the same disk GUID, ranges, types, UUIDs, names and attribute bit, writes the very same
    protective MBR, primary GPT (LBA 0-33) and backup GPT (last 33 LBAs)."""
    require_tool("sgdisk")
    disk = tmp_path / "ours.raw"
    layout = _assemble(disk_parts, disk)
    theirs = tmp_path / "sgdisk.raw"
    with open(theirs, "wb") as fh:
        fh.truncate(layout.size)
    argv = ["sgdisk", "-o", "-U", layout.disk_guid]
    for p in layout.partitions:
        n = p.number
        argv += [f"-n{n}:{p.first_lba}:{p.last_lba}", f"-t{n}:{p.type_guid}", f"-u{n}:{p.partuuid}", f"-c{n}:{p.name}"]
        if p.attributes & gpt.FLAG_READ_ONLY:
            argv.append(f"-A{n}:set:60")
    run([*argv, str(theirs)])
    head, tail = 34 * 512, 33 * 512
    with open(disk, "rb") as a, open(theirs, "rb") as b:
        assert a.read(head) == b.read(head)
        a.seek(layout.size - tail)
        b.seek(layout.size - tail)
        assert a.read() == b.read()
