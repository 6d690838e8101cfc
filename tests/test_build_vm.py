"""Tests for ``teeform build vm-image`` (image_builder/pipelines/build_vm.py) and ``teeform measure disk``
(image_builder/pipelines/disk.py).

Oracles: ``veritysetup verify`` / ``veritysetup dump`` (cryptsetup 2.6.1) on the partitions cut out
of the disk, ``sfdisk --json`` (partition types and PARTUUIDs), ``objcopy`` + ``systemd-measure
calculate --phase=`` (PCR 11, systemd 252), ``mdir``/``mcopy`` (the UKI on the ESP), ``qemu-img
info`` (the converted formats). The boot itself is tests/test_boot.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import locked, require_file, require_tool

from image_builder.pipelines import build_vm as bv
from teeform.errors import TeeformError

DPS_ROOT = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"
DPS_ROOT_VERITY = "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5"
ESP_TYPE = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
SDE = 1700000000


def _kernel() -> Path:
    return locked("kernel.vmlinuz")


def _stub() -> Path:
    return locked("bookworm.stub")  # Debian bookworm's systemd-boot-efi 252 stub


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
    base = dict(rootfs=tmp / "rootfs", kernel=_kernel(), stub=_stub(), out=out,
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


def _ovmf_2m() -> Path:
    return locked("ovmf.code")  # Debian ovmf OVMF_CODE.fd


def _ovmf_4m() -> Path:
    return locked("ovmf.code-4m")


def test_snp_options_fail_before_work(tmp_path: Path) -> None:
    (tmp_path / "rootfs").mkdir()
    # uki-verity.md §7: bookworm's OVMF_CODE_4M.fd has no SEV metadata at all -> refused up front.
    with pytest.raises(TeeformError, match="no SEV metadata") as ei:
        bv.check_config(_config(tmp_path, tmp_path / "out", ovmf=_ovmf_4m()))
    assert ei.value.field == "--ovmf"
    with pytest.raises(TeeformError, match="unknown vCPU type") as ei:
        bv.check_config(_config(tmp_path, tmp_path / "out", ovmf=_ovmf_2m(),
                                vcpu_type="Pentium"))
    assert ei.value.field == "--vcpu-type"
    assert not (tmp_path / "out").exists()


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
    # The UKI (read with pefile, independent of teeform's PE code): the stub's fixed TimeDateStamp
    # (0 for bookworm's 252 stub), no trailing data after the last section, size a multiple of 8.
    import pefile

    pe = pefile.PE(str(r.uki), fast_load=True)
    size = r.uki.stat().st_size
    assert pe.FILE_HEADER.TimeDateStamp == 0 and pe.FILE_HEADER.PointerToSymbolTable == 0
    assert max(s.PointerToRawData + s.SizeOfRawData for s in pe.sections) == size and size % 8 == 0
    assert [s.Name.rstrip(b"\0").decode() for s in pe.sections][-5:] == [".osrel", ".cmdline", ".uname", ".linux", ".initrd"]
    # Each value records what it assumes.
    assert set(m.details["measurement_assumptions"]) == set(m.measurements)
    assert any("systemd-stub 252" in a for a in m.details["measurement_assumptions"]["pcr11_sha384"])
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
@pytest.mark.oracle
def test_manifest_pcr4_is_awss_algorithm_over_pesign_digests(built, tmp_path: Path) -> None:
    """pcr4_sha256 = nitro-tpm-pcr-compute's PCR 4 sequence over pesign's Authenticode of the UKI and of
    its .linux (extracted with objcopy); details record the events and the aws-nitro profile."""
    from test_pcr4 import aws_pcr4, pesign_sha256

    _, cfg, r, m = built
    inner = tmp_path / "linux.efi"
    subprocess.run([require_tool("objcopy"), "-O", "binary", "--only-section=.linux", str(r.uki), str(inner)], check=True)
    assert m.measurements["pcr4_sha256"] == aws_pcr4("sha256", pesign_sha256(r.uki), pesign_sha256(inner), 252, False)
    assert len(m.measurements["pcr4_sha384"]) == 96
    d = m.details["prediction"]["pcr4"]["sha384"]
    assert d["firmware"] == "aws-nitro" and d["kernel_measured"] is True and len(d["events"]) == 4
    assert any("nitro-tpm-pcr-compute" in a for a in m.details["measurement_assumptions"]["pcr4_sha384"])


@pytest.mark.integration
@pytest.mark.parametrize("fmt", ["raw", "vhd", "qcow2", "gce-tar"])
def test_measure_disk_agrees_with_manifest(built, fmt: str) -> None:
    from image_builder.pipelines import disk

    _, cfg, r, m = built
    path = cfg.out / m.details["formats"][fmt]["file_name"]
    rep = disk.measure_report(path)
    assert rep.kind == "disk"
    assert rep.measurements["roothash"] == m.measurements["roothash"]
    assert rep.measurements["AuthenticodeSha256"] == m.measurements["uki_authenticode_sha256"]
    assert rep.measurements["PCR11_sha256"] == m.measurements["pcr11_sha256"]
    assert rep.measurements["PCR4_sha384"] == m.measurements["pcr4_sha384"]
    assert rep.facts["RoothashMatchesCmdline"] is True


@pytest.mark.integration
def test_measure_disk_rejects_tampered_root(built, tmp_path: Path) -> None:
    from image_builder.pipelines import disk

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
                   "--stub", str(_stub()), "--out", str(out), "--name", "cli", "--cmdline", "quiet"])
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
    from image_builder.inputs import demo_image
    from image_builder.pipelines import disk
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


@pytest.mark.integration
@pytest.mark.oracle
def test_snp_direct_boot_digest_equals_sev_snp_measure_cli(tmp_path: Path) -> None:
    """With an OVMF that has SNP_KERNEL_HASHES, snp_launch_digest is the direct boot of the image's kernel,
    initrd and .cmdline; the oracle is the sev-snp-measure command line on the files the build wrote."""
    import sys

    from test_tdx_snp import synthetic_kernel_hashes_ovmf

    for t in ("busybox", "veritysetup", "mkfs.erofs", "mkfs.vfat", "mcopy", "objcopy"):
        require_tool(t)
    ovmf = synthetic_kernel_hashes_ovmf(_ovmf_2m(), tmp_path / "ovmf-kh.fd")
    _rootfs(tmp_path / "rootfs")
    r = bv.build_vm_image(_config(tmp_path, tmp_path / "out", ovmf=ovmf, vcpus=2, vcpu_type="EPYC-Milan",
                                  cmdline_extra="quiet"))
    from teeform.manifest import load_manifest

    m = load_manifest(r.manifest)
    assert r.initrd == tmp_path / "out" / "img.initrd"
    # The initrd written for the direct boot is the UKI's .initrd, byte for byte (objcopy extracts it).
    sec = tmp_path / "sec.initrd"
    subprocess.run(["objcopy", "-O", "binary", "--only-section=.initrd", str(r.uki), str(sec)], check=True)
    assert sec.read_bytes() == r.initrd.read_bytes()
    exe = Path(sys.executable).parent / "sev-snp-measure"
    if not exe.exists():
        exe = Path(require_tool("sev-snp-measure"))
    cli = subprocess.run(
        [str(exe), "--mode", "snp", "--vcpus", "2", "--vcpu-type", "EPYC-Milan", "--ovmf", str(ovmf),
         "--kernel", str(_kernel()), "--initrd", str(r.initrd), "--append", m.details["cmdline"]],
        capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    assert m.measurements["snp_launch_digest"] == cli
    snp = m.details["prediction"]["snp_launch_digest"]
    assert snp["direct_boot"] == {"kernel": _kernel().name, "initrd": "img.initrd", "append": m.details["cmdline"]}
    assert m.details["cmdline"].startswith(f"roothash={m.measurements['roothash']} ")  # so the digest pins the root
    # Each value records what it assumes.
    assumptions = m.details["measurement_assumptions"]
    assert set(assumptions) == set(m.measurements)
    assert all(assumptions[k] for k in m.measurements)
    fw_sha = hashlib.sha256(ovmf.read_bytes()).hexdigest()
    assert any(fw_sha in a for a in assumptions["snp_launch_digest"])
    assert any("EPYC-Milan" in a and "2 vCPU" in a for a in assumptions["snp_launch_digest"])
    stub_sha = hashlib.sha256(_stub().read_bytes()).hexdigest()
    assert any("systemd-stub 252" in a and stub_sha in a for a in assumptions["pcr11_sha256"])
    assert any(m.details["verity"]["salt"] in a for a in assumptions["roothash"])


@pytest.mark.integration
@pytest.mark.oracle
def test_snp_firmware_only_digest_without_kernel_hashes(tmp_path: Path) -> None:
    """Debian's OVMF_CODE.fd has SEV metadata but no SNP_KERNEL_HASHES: firmware-only digest, no initrd output."""
    import sys

    for t in ("busybox", "veritysetup", "mkfs.erofs", "mkfs.vfat", "mcopy"):
        require_tool(t)
    ovmf = _ovmf_2m()
    _rootfs(tmp_path / "rootfs")
    r = bv.build_vm_image(_config(tmp_path, tmp_path / "out", ovmf=ovmf, vcpus=1, vcpu_type="EPYC-v4"))
    from teeform.manifest import load_manifest

    m = load_manifest(r.manifest)
    assert r.initrd is None and not (tmp_path / "out" / "img.initrd").exists()
    exe = Path(sys.executable).parent / "sev-snp-measure"
    if not exe.exists():
        exe = Path(require_tool("sev-snp-measure"))
    cli = subprocess.run([str(exe), "--mode", "snp", "--vcpus", "1", "--vcpu-type", "EPYC-v4", "--ovmf", str(ovmf)],
                         capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    assert m.measurements["snp_launch_digest"] == cli
    assert m.details["prediction"]["snp_launch_digest"]["direct_boot"] is None
    assert any("firmware only" in a for a in m.details["measurement_assumptions"]["snp_launch_digest"])


@pytest.mark.parametrize("container", ["oci-layout", "docker-archive"])
@pytest.mark.parametrize(("entry", "message"), [
    (("../evil", "file", "x"), r"member '\.\./evil': path contains '\.\.'"),
    (("/etc/passwd", "file", "x"), r"member '/etc/passwd': absolute path"),
    (("bin/escape", "symlink", "../../../etc/shadow"), r"member 'bin/escape': symlink target .* escapes the image root"),
    (("etc/h", "hardlink", "/etc/passwd"), r"member 'etc/h': hardlink target '/etc/passwd' escapes"),
    (("dev/sda", "blk", ""), r"member 'dev/sda': block device node"),
])
def test_hostile_layers_refused_by_build_vm_image(tmp_path: Path, capsys, container: str, entry: tuple,
                                                  message: str) -> None:
    """Same input hardening as the EIF path: `teeform build vm-image --rootfs` refuses a hostile layer
    with one error line (no traceback) and leaves --out empty. The refusal rules are image_builder.inputs.oci's
    (tests/test_oci.py); here they are reached through the vm-image command."""
    import re

    for t in ("busybox", "veritysetup", "mkfs.erofs", "mkfs.vfat", "mcopy"):
        require_tool(t)
    from image_builder.inputs.demo_image import (
        LayerEntry,
        image_config,
        layer_blob,
        write_docker_archive,
        write_oci_layout,
    )
    from teeform.cli import main

    path, kind, extra = entry
    good = [LayerEntry("bin/", "dir"), LayerEntry("etc/", "dir"), LayerEntry("sbin/", "dir"),
            LayerEntry("sbin/init", "file", b"#!/bin/sh\n", mode=0o755)]
    bad = [LayerEntry(path, kind, extra.encode() if kind == "file" else b"",
                      target=extra if kind in ("symlink", "hardlink") else "")]
    blobs = [layer_blob(tmp_path / "blobs", good, mtime=0), layer_blob(tmp_path / "blobs", bad, mtime=0)]
    config = image_config([b.diff_id for b in blobs], cmd=["/sbin/init"], created=0)
    if container == "oci-layout":
        image = tmp_path / "image"
        write_oci_layout(image, blobs, config)
    else:
        image = tmp_path / "image.tar"
        write_docker_archive(image, blobs, config, fmt="legacy")
    out = tmp_path / "out"
    capsys.readouterr()
    status = main(["build", "vm-image", "--rootfs", str(image), "--kernel", str(_kernel()),
                   "--stub", str(_stub()), "--out", str(out)])
    err = capsys.readouterr().err
    assert status != 0
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and re.search(message, errors[0]), err
    assert "layer 2/2" in errors[0], err
    assert "Traceback" not in err
    assert list(out.iterdir()) == []  # no staging directory, no partial disk


@pytest.mark.integration
def test_measure_disk_with_boot_loader_and_uki_in_efi_linux(built, tmp_path: Path) -> None:
    """The systemd-boot / mkosi layout: BOOTX64.EFI is systemd-boot, the UKI is EFI/Linux/<name>.efi.
    The ESP is rewritten with mtools (independent of teeform's ESP writer)."""
    from image_builder.pipelines import disk

    boot = require_file(Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi"), "systemd-boot (systemd-boot-efi)")
    require_tool("mmd")
    _, _, r, m = built
    d = tmp_path / "sdboot.raw"
    shutil.copyfile(r.disk, d)
    esp = _partitions(d)[ESP_TYPE]
    img = f"{d}@@{int(esp['start']) * 512}"
    env = {**os.environ, "MTOOLSRC": "/dev/null"}
    subprocess.run(["mcopy", "-o", "-i", img, str(boot), "::/EFI/BOOT/BOOTX64.EFI"], check=True, env=env)
    subprocess.run(["mmd", "-i", img, "::/EFI/Linux"], check=True, env=env)
    subprocess.run(["mcopy", "-i", img, str(r.uki), "::/EFI/Linux/img-1.efi"], check=True, env=env)
    rep = disk.measure_report(d)
    assert rep.facts["UkiPath"] == "EFI/Linux/img-1.efi"
    assert rep.measurements["roothash"] == m.measurements["roothash"]
    assert rep.measurements["PCR11_sha256"] == m.measurements["pcr11_sha256"]
    assert rep.measurements["AuthenticodeSha384"] == m.measurements["uki_authenticode_sha384"]
    assert "RTMR1" not in rep.measurements and any("boot loader" in n for n in rep.notes)
    assert "PCR4_sha384" not in rep.measurements  # the loader is measured into PCR 4 as well
    # A second UKI makes the choice ambiguous: refused with one error naming both.
    subprocess.run(["mcopy", "-i", img, str(r.uki), "::/EFI/Linux/img-2.efi"], check=True, env=env)
    with pytest.raises(TeeformError, match="several UKIs"):
        disk.measure_report(d)
