"""Cloud disk formats (image_builder.formats.diskformats) against qemu-img and GNU tar, run live."""

from __future__ import annotations

import gzip
import json
import os
import struct
import tarfile
from pathlib import Path

import pytest
from conftest import require_tool

from image_builder.formats import diskformats, gpt
from teeform.errors import TeeformError
from teeform.run import run

EPOCH = 1_700_000_000


@pytest.fixture()
def raw_disk(tmp_path: Path) -> Path:
    """A small valid GPT disk (5 MiB) with some non-zero content in a partition."""
    img = tmp_path / "part.img"
    img.write_bytes(os.urandom(1 << 20) + bytes(1 << 20))
    zero = tmp_path / "zero.img"
    zero.write_bytes(bytes(4096))
    layout = gpt.assemble_disk(tmp_path / "disk.raw", esp=zero, root=img, root_verity=zero, roothash="cd" * 32)
    assert layout.size % (1 << 20) == 0
    return tmp_path / "disk.raw"


def _qemu_info(path: Path, fmt: str | None = None) -> dict:
    argv = ["qemu-img", "info", "--output=json"] + (["-f", fmt] if fmt else []) + [str(path)]
    return json.loads(run(argv).stdout)


@pytest.mark.oracle
def test_vhd_matches_qemu_img_force_size(tmp_path: Path, raw_disk: Path) -> None:
    """Our footer == qemu-img's `-O vpc -o subformat=fixed,force_size` footer once its random fields are transplanted."""
    require_tool("qemu-img")
    ours = diskformats.convert(raw_disk, "vhd", tmp_path / "ours.vhd", source_date_epoch=EPOCH)
    size = raw_disk.stat().st_size
    assert ours.stat().st_size == size + 512 and size % (1 << 20) == 0
    theirs = tmp_path / "qemu.vhd"
    run(["qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed,force_size", str(raw_disk), str(theirs)])
    a, b = ours.read_bytes(), theirs.read_bytes()
    assert a[:-512] == b[:-512] == raw_disk.read_bytes()
    fa, fb = bytearray(a[-512:]), bytearray(b[-512:])
    # transplant timestamp (offset 24, 4 bytes) and unique id (offset 68, 16 bytes) into qemu's footer,
    # then recompute its checksum (offset 64) the way the VHD spec defines it
    fb[24:28] = fa[24:28]
    fb[68:84] = fa[68:84]
    fb[64:68] = b"\0\0\0\0"
    fb[64:68] = struct.pack(">I", ~sum(fb) & 0xFFFFFFFF)
    assert bytes(fa) == bytes(fb)
    assert struct.unpack(">I", fa[24:28])[0] == EPOCH - 946684800
    info = _qemu_info(ours, "vpc")
    assert info["format"] == "vpc" and info["virtual-size"] == size
    # reproducible
    again = diskformats.convert(raw_disk, "vhd", tmp_path / "again.vhd", source_date_epoch=EPOCH)
    assert again.read_bytes() == a


@pytest.mark.oracle
def test_vhd_pads_to_mib(tmp_path: Path) -> None:
    require_tool("qemu-img")
    raw = tmp_path / "odd.raw"
    raw.write_bytes(os.urandom(3 * 512))
    vhd = diskformats.convert(raw, "vhd", tmp_path / "odd.vhd", source_date_epoch=0)
    assert vhd.stat().st_size == (1 << 20) + 512
    assert _qemu_info(vhd, "vpc")["virtual-size"] == 1 << 20
    footer = diskformats.parse_vhd_footer(vhd.read_bytes()[-512:])
    assert footer.current_size == footer.original_size == 1 << 20 and footer.disk_type == 2 and footer.timestamp == 0
    with diskformats.open_raw_view(vhd) as view:
        assert view.fmt == "vhd" and view.size == 1 << 20
        with open(view.path, "rb") as fh:
            assert fh.read(3 * 512) == raw.read_bytes()


@pytest.mark.oracle
def test_qcow2(tmp_path: Path, raw_disk: Path) -> None:
    require_tool("qemu-img")
    a = diskformats.convert(raw_disk, "qcow2", tmp_path / "a.qcow2")
    b = diskformats.convert(raw_disk, "qcow2", tmp_path / "b.qcow2")
    assert a.read_bytes() == b.read_bytes()
    info = _qemu_info(a)
    assert info["format"] == "qcow2" and info["virtual-size"] == raw_disk.stat().st_size
    run(["qemu-img", "compare", "-f", "raw", "-F", "qcow2", str(raw_disk), str(a)])
    with diskformats.open_raw_view(a) as view:
        assert view.fmt == "qcow2"
        assert gpt.read_disk_layout(view.path) == gpt.read_disk_layout(raw_disk)
        tmp_raw = view.path
    assert not tmp_raw.exists()


@pytest.mark.oracle
def test_gce_tar(tmp_path: Path, raw_disk: Path) -> None:
    require_tool("tar")
    a = diskformats.convert(raw_disk, "gce-tar", tmp_path / "a.tar.gz", source_date_epoch=EPOCH)
    b = diskformats.convert(raw_disk, "gce-tar", tmp_path / "b.tar.gz", source_date_epoch=EPOCH)
    assert a.read_bytes() == b.read_bytes()
    head = a.read_bytes()[:10]
    assert head[:3] == b"\x1f\x8b\x08" and head[3] == 0 and head[4:8] == b"\0\0\0\0"  # no FNAME, mtime 0 (RFC 1952)
    # GNU tar lists exactly disk.raw, owned by root, with the epoch as mtime
    listing = run(["tar", "--numeric-owner", "-tvzf", str(a)], env={"TZ": "UTC"}).stdout.decode().splitlines()
    assert len(listing) == 1
    assert listing[0].split()[1] == "0/0" and listing[0].endswith(" disk.raw")
    assert f" {raw_disk.stat().st_size} 2023-11-14 22:13 " in listing[0]
    # GNU format: "ustar  \0" magic (GNU tar's oldgnu header) in the first header block
    with gzip.open(a, "rb") as gz:
        assert gz.read(512)[257:265] == b"ustar  \0"
    out = tmp_path / "x"
    out.mkdir()
    run(["tar", "-xzf", str(a), "-C", str(out)])
    assert (out / "disk.raw").read_bytes() == raw_disk.read_bytes()
    with diskformats.open_raw_view(a) as view:
        assert view.fmt == "gce-tar" and view.path.read_bytes() == raw_disk.read_bytes()
    with tarfile.open(a) as t:
        assert t.getnames() == ["disk.raw"]


def test_raw_copy_and_detection(tmp_path: Path, raw_disk: Path) -> None:
    c = diskformats.convert(raw_disk, "raw", tmp_path / "copy.raw")
    assert c.read_bytes() == raw_disk.read_bytes()
    assert c.stat().st_blocks * 512 < c.stat().st_size  # holes kept
    assert diskformats.detect_format(c) == "raw"
    with diskformats.open_raw_view(c) as view:
        assert view.path == c and view.size == c.stat().st_size


def test_read_gpt_through_vhd_view(tmp_path: Path, raw_disk: Path) -> None:
    vhd = diskformats.convert(raw_disk, "vhd", tmp_path / "d.vhd")
    assert diskformats.detect_format(vhd) == "vhd"
    with diskformats.open_raw_view(vhd) as view:
        assert gpt.read_disk_layout(view.path, size=view.size) == gpt.read_disk_layout(raw_disk)


def test_errors(tmp_path: Path, raw_disk: Path) -> None:
    with pytest.raises(TeeformError, match="unknown disk format"):
        diskformats.convert(raw_disk, "vmdk", tmp_path / "x")
    with pytest.raises(TeeformError, match="not found"):
        diskformats.convert(tmp_path / "missing", "vhd", tmp_path / "x")
    with pytest.raises(TeeformError, match="overwrite"):
        diskformats.convert(raw_disk, "raw", raw_disk)
    vhd = diskformats.convert(raw_disk, "vhd", tmp_path / "d.vhd")
    data = bytearray(vhd.read_bytes())
    data[-512 + 40] ^= 1  # current size field: checksum now wrong -> no longer detected as a VHD
    bad = tmp_path / "bad.vhd"
    bad.write_bytes(bytes(data))
    assert diskformats.detect_format(bad) == "raw"
    with pytest.raises(TeeformError, match="checksum"):
        diskformats.parse_vhd_footer(bytes(data[-512:]))
    (tmp_path / "t.tar.gz").write_bytes(gzip.compress(b"not a tar" * 100))
    with pytest.raises(TeeformError, match="GCE tarball"):
        with diskformats.open_raw_view(tmp_path / "t.tar.gz"):
            pass
