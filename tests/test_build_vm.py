"""Tests for ``teeform build vm-image`` (image_builder/build_vm.py) and ``teeform measure disk``
(image_builder/disk.py).

Oracles: ``veritysetup verify`` / ``veritysetup dump`` (cryptsetup 2.6.1) on the partitions cut out
of the disk, ``sfdisk --json`` (partition types and PARTUUIDs), ``objcopy`` + ``systemd-measure
calculate --phase=`` (PCR 11, systemd 252), ``mdir``/``mcopy`` (the UKI on the ESP), ``qemu-img
info`` (the converted formats). The boot itself is tests/test_boot.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import CACHE, require_file, require_tool

from image_builder import build_vm as bv
from teeform.errors import TeeformError

KERNEL_DIR = CACHE / "debian" / "kernel"
STUB_252 = Path("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
DPS_ROOT = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"
DPS_ROOT_VERITY = "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5"
ESP_TYPE = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
SDE = 1700000000


def _kernel() -> Path:
    found = sorted((KERNEL_DIR / "boot").glob("vmlinuz-*")) if KERNEL_DIR.exists() else []
    return require_file(found[0] if found else KERNEL_DIR / "boot" / "vmlinuz", "Debian kernel (.cache/debian/kernel)")


def _rootfs(dest: Path) -> Path:
    busybox = require_tool("busybox")
    (dest / "bin").mkdir(parents=True)
    (dest / "sbin").mkdir()
    shutil.copy2(busybox, dest / "bin" / "busybox")
    for a in ("sh", "cat", "echo", "poweroff", "mount"):
        os.symlink("busybox", dest / "bin" / a)
    (dest / "sbin" / "init").write_text("#!/bin/sh\necho hello\npoweroff -f\n")
    os.chmod(dest / "sbin" / "init", 0o755)
    (dest / "etc").mkdir()
    (dest / "etc" / "hostname").write_text("teeform\n")
    return dest


def _config(tmp: Path, out: Path, **kw) -> bv.BuildConfig:
    base = dict(rootfs=tmp / "rootfs", kernel=_kernel(), stub=require_file(STUB_252, "systemd 252 stub"), out=out,
                name="img", version="1", source_date_epoch=SDE)
    base.update(kw)
    return bv.BuildConfig(**base)


def _partitions(disk: Path) -> dict[str, dict]:
    out = subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True, text=True, check=True).stdout
    table = json.loads(out)["partitiontable"]
    return {p["type"].lower(): p for p in table["partitions"]}


def _cut(disk: Path, part: dict, dest: Path) -> Path:
    with open(disk, "rb") as src, open(dest, "wb") as dst:
        src.seek(int(part["start"]) * 512)
        left = int(part["size"]) * 512
        while left:
            chunk = src.read(min(left, 1 << 20))
            dst.write(chunk)
            left -= len(chunk)
    return dest


# ----------------------------------------------------------------------------- config checks (fast)
def test_kernel_cmdline_puts_roothash_first() -> None:
    assert bv.kernel_cmdline("ab" * 32, "erofs", " quiet  loglevel=3 ") == (
        f"roothash={'ab' * 32} rootfstype=erofs console=ttyS0 panic=-1 quiet loglevel=3")


@pytest.mark.parametrize(("kw", "field"), [
    ({"formats": ("raw", "vmdk")}, "--format"),
    ({"fs": "ext4"}, "--fs"),
    ({"name": "../evil"}, "--name"),
    ({"cmdline_extra": "roothash=00"}, "--cmdline"),
    ({"cmdline_extra": "a\nb"}, "--cmdline"),
    ({"os_release": Path("/nonexistent/os-release")}, "--os-release"),
    ({"rootfs": Path("/nonexistent/rootfs")}, "--rootfs"),
])
def test_bad_options_fail_before_work(tmp_path: Path, kw: dict, field: str) -> None:
    (tmp_path / "rootfs").mkdir()
    with pytest.raises(TeeformError) as ei:
        bv.check_config(_config(tmp_path, tmp_path / "out", **kw))
    assert ei.value.field == field


def test_missing_init_leaves_out_untouched(tmp_path: Path) -> None:
    require_tool("mkfs.erofs")
    root = _rootfs(tmp_path / "rootfs")
    (root / "sbin" / "init").unlink()
    out = tmp_path / "out"
    with pytest.raises(TeeformError, match="no /sbin/init") as ei:
        bv.build_vm_image(_config(tmp_path, out))
    assert ei.value.field == "--rootfs"
    assert list(out.iterdir()) == []  # the staging directory is gone too


# ----------------------------------------------------------------------------- full builds
@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    for t in ("busybox", "veritysetup", "mkfs.erofs", "mkfs.vfat", "mcopy", "sfdisk", "qemu-img"):
        require_tool(t)
    tmp = tmp_path_factory.mktemp("build")
    _rootfs(tmp / "rootfs")
    cfg = _config(tmp, tmp / "out1", formats=("raw", "vhd", "qcow2", "gce-tar"))
    r1 = bv.build_vm_image(cfg)
    from teeform.manifest import load_manifest

    return tmp, cfg, r1, load_manifest(r1.manifest)


@pytest.mark.integration
def test_two_builds_are_byte_identical(built) -> None:
    import dataclasses

    tmp, cfg, r1, _ = built
    # A second copy of the same tree, created later (other mtimes, inode numbers, readdir order).
    other = _rootfs(tmp / "rootfs-again")
    os.utime(other / "sbin" / "init", (1, 1))
    r2 = bv.build_vm_image(dataclasses.replace(cfg, rootfs=other, out=tmp / "out2", formats=("raw", "vhd", "qcow2")))
    assert r1.uki.read_bytes() == r2.uki.read_bytes()
    assert r1.disk.read_bytes() == r2.disk.read_bytes()
    for fmt in ("vhd", "qcow2"):
        assert r1.formats[fmt].read_bytes() == r2.formats[fmt].read_bytes(), fmt
    assert r1.measurements == r2.measurements


@pytest.mark.integration
def test_outputs_and_manifest(built) -> None:
    tmp, cfg, r, m = built
    assert sorted(p.name for p in cfg.out.iterdir()) == sorted(
        ["img.raw", "img.vhd", "img.qcow2", "img.tar.gz", "img.efi", "img.manifest.json"])
    assert m.kind.value == "vm-image" and m.artifact.file_name == "img.raw"
    assert m.artifact.size == r.disk.stat().st_size
    assert set(m.details["formats"]) == {"raw", "vhd", "qcow2", "gce-tar"}
    roles = {i.role for i in m.inputs}
    assert {"kernel", "stub", "rootfs", "modules", "cmdline", "os-release"} <= roles
    assert m.details["cmdline"].startswith(f"roothash={m.measurements['roothash']} ")
    # qemu-img probes a fixed VHD as raw (its footer copy at offset 0 exists only for dynamic VHDs),
    # so the VHD is opened with -f vpc; a wrong footer makes qemu-img fail or report another size.
    for fmt, opts in (("qcow2", []), ("vhd", ["-f", "vpc"])):
        path = cfg.out / m.details["formats"][fmt]["file_name"]
        info = json.loads(subprocess.run(["qemu-img", "info", *opts, "--output=json", str(path)],
                                         capture_output=True, text=True, check=True).stdout)
        assert info["format"] == {"qcow2": "qcow2", "vhd": "vpc"}[fmt]
        assert info["virtual-size"] == r.disk.stat().st_size


@pytest.mark.integration
@pytest.mark.oracle
def test_disk_layout_and_verity_match_veritysetup(built, tmp_path: Path) -> None:
    _, _, r, m = built
    parts = _partitions(r.disk)
    assert {ESP_TYPE, DPS_ROOT, DPS_ROOT_VERITY} <= set(parts)
    rh = m.measurements["roothash"]
    # Discoverable Partitions Specification: PARTUUIDs are the first/last 128 bits of the root hash.
    assert parts[DPS_ROOT]["uuid"].lower().replace("-", "") == rh[:32]
    assert parts[DPS_ROOT_VERITY]["uuid"].lower().replace("-", "") == rh[32:]
    data = _cut(r.disk, parts[DPS_ROOT], tmp_path / "root.img")
    hashdev = _cut(r.disk, parts[DPS_ROOT_VERITY], tmp_path / "verity.img")
    subprocess.run(["veritysetup", "verify", str(data), str(hashdev), rh], check=True, capture_output=True)
    dump = subprocess.run(["veritysetup", "dump", str(hashdev)], capture_output=True, text=True, check=True).stdout
    assert m.details["verity"]["salt"] in dump


@pytest.mark.integration
@pytest.mark.oracle
def test_uki_on_esp_and_pcr11_match_systemd_measure(built, tmp_path: Path) -> None:
    require_tool("objcopy")
    measure = require_tool("systemd-measure")
    _, _, r, m = built
    esp = _cut(r.disk, _partitions(r.disk)[ESP_TYPE], tmp_path / "esp.img")
    uki = tmp_path / "BOOTX64.EFI"
    subprocess.run(["mcopy", "-n", "-i", str(esp), "::/EFI/BOOT/BOOTX64.EFI", str(uki)], check=True,
                   env={**os.environ, "MTOOLSRC": "/dev/null"})
    assert uki.read_bytes() == r.uki.read_bytes()
    args = []
    for s in ("linux", "osrel", "cmdline", "initrd"):
        sec = tmp_path / f"sec.{s}"
        subprocess.run(["objcopy", "-O", "binary", f"--only-section=.{s}", str(uki), str(sec)], check=True)
        args.append(f"--{s}={sec}")
    out = subprocess.run([measure, "calculate", *args, "--bank=sha256", "--bank=sha384", "--phase="],
                         capture_output=True, text=True, check=True).stdout
    got = dict(line.split("=", 1) for line in out.split() if line.startswith("11:"))
    assert got["11:sha256"] == m.measurements["pcr11_sha256"]
    assert got["11:sha384"] == m.measurements["pcr11_sha384"]
    assert (tmp_path / "sec.cmdline").read_text() == m.details["cmdline"]


@pytest.mark.integration
@pytest.mark.parametrize("fmt", ["raw", "vhd", "qcow2", "gce-tar"])
def test_measure_disk_agrees_with_manifest(built, fmt: str) -> None:
    from image_builder import disk

    _, cfg, r, m = built
    path = cfg.out / m.details["formats"][fmt]["file_name"]
    rep = disk.measure_report(path)
    assert rep.kind == "disk"
    assert rep.measurements["roothash"] == m.measurements["roothash"]
    assert rep.measurements["AuthenticodeSha256"] == m.measurements["uki_authenticode_sha256"]
    assert rep.measurements["PCR11_sha256"] == m.measurements["pcr11_sha256"]
    assert rep.facts["RoothashMatchesCmdline"] is True


@pytest.mark.integration
def test_measure_disk_rejects_tampered_root(built, tmp_path: Path) -> None:
    from image_builder import disk

    _, _, r, _ = built
    bad = tmp_path / "bad.raw"
    shutil.copyfile(r.disk, bad)
    part = _partitions(bad)[DPS_ROOT]
    with open(bad, "r+b") as fh:
        fh.seek(int(part["start"]) * 512 + 4096 + 17)
        b = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([b[0] ^ 1]))
    with pytest.raises(TeeformError, match="dm-verity"):
        disk.measure_report(bad)


@pytest.mark.integration
def test_cli_build_and_measure(tmp_path: Path, capsys) -> None:
    for t in ("busybox", "veritysetup", "mkfs.erofs", "mkfs.vfat", "mcopy", "sfdisk"):
        require_tool(t)
    from teeform.cli import main

    _rootfs(tmp_path / "rootfs")
    out = tmp_path / "out"
    status = main(["build", "vm-image", "--rootfs", str(tmp_path / "rootfs"), "--kernel", str(_kernel()),
                   "--stub", str(STUB_252), "--out", str(out), "--name", "cli", "--cmdline", "quiet"])
    assert status == 0, capsys.readouterr().err
    text = capsys.readouterr()
    assert "pcr11_sha256" in text.out and "teeform: make_verity" in text.err
    assert main(["measure", str(out / "cli.raw")]) == 0
    assert "roothash" in capsys.readouterr().out


def test_special_files_are_left_out_of_a_directory_rootfs(tmp_path: Path, capsys) -> None:
    root = _rootfs(tmp_path / "rootfs")
    os.mkfifo(root / "etc" / "initctl")  # copying it naively would block forever
    cfg = _config(tmp_path, tmp_path / "out")
    stage = tmp_path / "stage"
    stage.mkdir()
    ctx = bv.BuildContext(config=cfg, staging=stage)
    bv.make_rootfs(ctx)
    assert not (stage / "rootfs" / "etc" / "initctl").exists()
    assert (stage / "rootfs" / "etc" / "hostname").read_text() == "teeform\n"
    for d in bv.MOUNT_POINTS:  # added for the initrd's mount --move
        assert (stage / "rootfs" / d).is_dir()
    assert "skipping special file" in capsys.readouterr().err


@pytest.mark.integration
def test_oci_layout_input(tmp_path: Path) -> None:
    for t in ("busybox", "veritysetup", "mkfs.erofs", "mkfs.vfat", "mcopy"):
        require_tool(t)
    from image_builder import demo_image, disk
    from teeform.manifest import load_manifest

    digests = demo_image.build_demo_image(tmp_path / "oci", busybox=Path(require_tool("busybox")))
    # The demo image has no /sbin/init: name the init on the command line.
    cfg = _config(tmp_path, tmp_path / "out", rootfs=tmp_path / "oci", cmdline_extra="init=/bin/sh")
    r = bv.build_vm_image(cfg)
    m = load_manifest(r.manifest)
    rootfs_input = next(i for i in m.inputs if i.role == "rootfs")
    assert rootfs_input.sha256 == digests["manifest"].removeprefix("sha256:")
    assert m.details["cmdline"].endswith(" init=/bin/sh")
    assert disk.measure_report(r.disk).measurements["roothash"] == m.measurements["roothash"]
