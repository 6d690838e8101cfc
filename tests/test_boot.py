"""Proof by boot: a teeform VM image boots under QEMU + OVMF + swtpm, and its root is dm-verity.

The oracle is the machine itself: the guest's vTPM PCR 11, read back from
``/sys/class/tpm/tpm0/pcr-sha256/11`` by ``image_builder/guest/boot-probe.sh`` (the image's
``/sbin/init``), must equal the manifest's predicted ``pcr11_sha256``; ``/`` must be mounted from the
``root`` dm-verity mapping on the disk's root and root-verity partitions; and a disk with one flipped
byte in the root file system must fail verity instead of running the probe.

Set-up follows shared/reference/measured-boot.md: ``-accel tcg`` unless KVM is really usable
(``/dev/kvm`` read-write *and* the CPU advertises vmx/svm: on the reference host ``/dev/kvm`` exists
but KVM hangs, so the device alone is not enough; ``TEEFORM_BOOT_ACCEL=tcg|kvm`` overrides), qemu
wrapped in ``timeout``, ``-nodefaults``, a fresh copy of OVMF_VARS per boot, swtpm (TPM 2.0) on a
unix socket. Each boot is bounded (BOOT_TIMEOUT, ~20 s is typical on 2 TCG cores, so the three
boots stay well under 5 minutes); the serial log is saved in the test's tmp dir and every assertion
message shows its path, qemu's exit status (124 = killed by the time limit) and the log's tail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import CACHE, REPO, require_file, require_tool

pytestmark = pytest.mark.integration

KERNEL_DIR = CACHE / "debian" / "kernel"
STUB_252 = Path("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
STUB_254 = CACHE / "sd254" / "usr" / "lib" / "systemd" / "boot" / "efi" / "linuxx64.efi.stub"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
PROBE = REPO / "image_builder" / "guest" / "boot-probe.sh"
BOOT_TIMEOUT = int(os.environ.get("TEEFORM_BOOT_TIMEOUT", "120"))  # seconds per boot (~20 s on 2 TCG cores)


def boot_accel() -> str:
    """``kvm`` when KVM is usable (see module docstring), else ``tcg``; ``TEEFORM_BOOT_ACCEL`` overrides."""
    forced = os.environ.get("TEEFORM_BOOT_ACCEL")
    if forced:
        return forced
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "tcg"
    has_virt = any(f in flags.split() for f in ("vmx", "svm"))
    return "kvm" if has_virt and os.access("/dev/kvm", os.R_OK | os.W_OK) else "tcg"


@dataclass
class Boot:
    """One boot: the serial log text, its path, the probe's key=value facts, qemu's exit status, seconds."""

    log: str
    log_path: Path
    probe: dict[str, str]
    returncode: int
    seconds: float
    accel: str = "tcg"

    def tail(self, n: int = 40) -> str:
        status = (f"killed after the {BOOT_TIMEOUT} s time limit" if self.returncode == 124
                  else f"qemu exit status {self.returncode}")
        return (f"\n--- boot: {self.seconds:.1f} s, {status}, -accel {self.accel}; serial log {self.log_path} "
                f"(last {n} lines) ---\n" + "\n".join(self.log.splitlines()[-n:]))


def boot_disk(disk: Path, workdir: Path) -> Boot:
    """Boot ``disk`` (raw) once under QEMU TCG + OVMF + swtpm and return what the serial console said."""
    qemu = require_tool("qemu-system-x86_64")
    swtpm = require_tool("swtpm")
    workdir.mkdir(parents=True, exist_ok=True)
    tpmdir = workdir / "tpm"
    shutil.rmtree(tpmdir, ignore_errors=True)
    tpmdir.mkdir()
    vars_copy = workdir / "OVMF_VARS.fd"
    shutil.copyfile(OVMF_VARS, vars_copy)  # fresh variables every boot (measured-boot.md, pitfalls)
    sock = tpmdir / "sock"
    tpm = subprocess.Popen(
        [swtpm, "socket", "--tpm2", "--tpmstate", f"dir={tpmdir}", "--ctrl", f"type=unixio,path={sock}",
         "--log", f"file={tpmdir / 'swtpm.log'},level=1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    log_path = workdir / "serial.log"
    accel = boot_accel()
    t0 = time.monotonic()
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.05)
        argv = [
            "timeout", str(BOOT_TIMEOUT), qemu, "-accel", accel, "-machine", "q35", "-m", "1024", "-smp", "2",
            "-nographic", "-display", "none", "-nodefaults", "-serial", f"file:{log_path}", "-monitor", "none",
            "-drive", f"if=pflash,format=raw,unit=0,file={OVMF_CODE},readonly=on",
            "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}",
            "-chardev", f"socket,id=chrtpm,path={sock}", "-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
            "-device", "tpm-tis,tpmdev=tpm0",
            "-drive", f"file={disk},format=raw,if=virtio",
            "-no-reboot",
        ]
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=BOOT_TIMEOUT + 30)
    finally:
        tpm.terminate()
        try:
            tpm.wait(timeout=10)
        except subprocess.TimeoutExpired:
            tpm.kill()
    seconds = time.monotonic() - t0
    log = log_path.read_bytes().decode("utf-8", "replace") if log_path.exists() else ""
    if proc.stdout:
        log += "\n[qemu stdout/stderr]\n" + proc.stdout.decode("utf-8", "replace")
    probe: dict[str, str] = {}
    for line in log.splitlines():
        line = line.strip()
        if line.startswith("TEEFORM-PROBE ") and "=" in line:
            k, v = line[len("TEEFORM-PROBE "):].split("=", 1)
            probe.setdefault(k, v.strip())
    print(f"boot of {disk.name}: {seconds:.1f} s, qemu exit {proc.returncode}, -accel {accel}, serial log {log_path}")
    return Boot(log, log_path, probe, proc.returncode, seconds, accel)


def make_probe_rootfs(dest: Path) -> Path:
    """A busybox-static root whose /sbin/init is the boot probe."""
    busybox = require_tool("busybox")
    (dest / "bin").mkdir(parents=True)
    (dest / "sbin").mkdir()
    shutil.copy2(busybox, dest / "bin" / "busybox")
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for a in applets:
        if a != "busybox":
            os.symlink("busybox", dest / "bin" / a)
    shutil.copy2(PROBE, dest / "sbin" / "init")
    os.chmod(dest / "sbin" / "init", 0o755)
    return dest


def build(tmp: Path, stub: Path, name: str):  # -> tuple[BuildResult, Manifest]
    from image_builder.build_vm import BuildConfig, build_vm_image
    from teeform.manifest import load_manifest

    kernels = sorted((KERNEL_DIR / "boot").glob("vmlinuz-*"))
    kernel = require_file(kernels[0] if kernels else KERNEL_DIR / "boot" / "vmlinuz", "Debian kernel")
    rootfs = make_probe_rootfs(tmp / "rootfs")
    cfg = BuildConfig(rootfs=rootfs, kernel=kernel, stub=stub, out=tmp / "out", name=name, version="1",
                      source_date_epoch=1700000000)
    result = build_vm_image(cfg)
    return result, load_manifest(result.manifest)


@pytest.fixture(scope="module")
def image252(tmp_path_factory: pytest.TempPathFactory):
    for t in ("qemu-system-x86_64", "swtpm", "busybox", "veritysetup", "mkfs.erofs"):
        require_tool(t)
    require_file(STUB_252, "systemd-boot-efi 252 stub")
    require_file(OVMF_CODE, "OVMF code")
    require_file(OVMF_VARS, "OVMF variables template")
    tmp = tmp_path_factory.mktemp("boot252")
    t0 = time.monotonic()
    result, manifest = build(tmp, STUB_252, "probe252")
    print(f"build (252 stub): {time.monotonic() - t0:.1f} s")
    return tmp, result, manifest


def _assert_verity_root(b: Boot) -> None:
    p = b.probe
    assert "TEEFORM-PROBE-END" in b.log, "the probe did not finish" + b.tail()
    assert p.get("ROOT_MOUNT", "").split()[:3] == ["/dev/mapper/root", "/", "erofs"], p.get("ROOT_MOUNT") + b.tail()
    assert "ro" in p["ROOT_MOUNT"].split()[3].split(","), b.tail()
    assert p.get("DM_NAME") == "root", b.tail()
    assert p.get("DM_UUID", "").startswith("CRYPT-VERITY-"), b.tail()  # set by libcryptsetup for verity
    assert sorted(p.get("DM_SLAVES", "").split()) == ["vda2", "vda3"], b.tail()
    major, minor = (int(x) for x in p["DM_DEV"].split(":"))
    assert int(p["ROOT_ST_DEV"]) == os.makedev(major, minor), "/ is not on the dm device" + b.tail()


def test_boot_pcr11_matches_manifest_and_root_is_verity(image252, tmp_path: Path) -> None:
    tmp, result, manifest = image252
    b = boot_disk(result.disk, tmp_path / "boot")
    assert "TEEFORM-PROBE-BEGIN" in b.log, "the image did not reach its /sbin/init" + b.tail()
    _assert_verity_root(b)
    observed = b.probe.get("PCR11_SHA256", "").lower()
    assert observed == manifest.measurements["pcr11_sha256"], (
        f"PCR 11 observed {observed}, predicted {manifest.measurements['pcr11_sha256']}" + b.tail())
    # No command-line override, credentials or sysexts: PCR 12 and 13 are never extended (uki-verity.md §1.4).
    assert b.probe.get("PCR12_SHA256", "").strip("0") == "", b.tail()
    assert f"roothash {manifest.measurements['roothash']}" in b.log, b.tail()


def _root_partition(disk: Path) -> tuple[int, int]:
    """(byte offset, byte size) of the root partition, read with sfdisk (an independent GPT reader)."""
    import json

    out = subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True, text=True, check=True).stdout
    table = json.loads(out)["partitiontable"]
    ssz = int(table.get("sectorsize", 512))
    for part in table["partitions"]:
        if part["type"].lower() == "4f68bce3-e8cd-4db1-96e7-fbcaf984b709":  # DPS root x86-64
            return int(part["start"]) * ssz, int(part["size"]) * ssz
    raise AssertionError("no root partition in " + out)


def test_flipped_root_byte_fails_verity(image252, tmp_path: Path) -> None:
    require_tool("sfdisk")
    tmp, result, manifest = image252
    bad = tmp_path / "tampered.raw"
    shutil.copyfile(result.disk, bad)
    start, size = _root_partition(bad)
    # Flip a byte inside /bin/busybox's first block: /sbin/init is a busybox script, so switch_root's
    # exec reads exactly this block. Find it by content (erofs stores uncompressed files block-aligned).
    head = Path(require_tool("busybox")).read_bytes()[:4096]
    with open(bad, "r+b") as fh:
        fh.seek(start)
        part = fh.read(size)
        off = part.find(head)
        assert off >= 0, "busybox's first block not found in the root partition"
        fh.seek(start + off + 100)
        byte = fh.read(1)
        fh.seek(start + off + 100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    b = boot_disk(bad, tmp_path / "boot")
    assert "TEEFORM-PROBE-BEGIN" not in b.log, "a tampered root ran its init" + b.tail()
    assert "device-mapper: verity" in b.log and "is corrupted" in b.log, "no dm-verity error logged" + b.tail()


def test_boot_with_254_stub(tmp_path: Path) -> None:
    """Optional: the systemd 254 stub (bookworm-backports) also measures .uname and .sbat."""
    require_file(STUB_254, "systemd 254 stub (.cache/sd254)")
    for t in ("qemu-system-x86_64", "swtpm", "busybox", "veritysetup", "mkfs.erofs"):
        require_tool(t)
    result, manifest = build(tmp_path, STUB_254, "probe254")
    b = boot_disk(result.disk, tmp_path / "boot")
    _assert_verity_root(b)
    observed = b.probe.get("PCR11_SHA256", "").lower()
    assert observed == manifest.measurements["pcr11_sha256"], (
        f"PCR 11 observed {observed}, predicted {manifest.measurements['pcr11_sha256']}" + b.tail())
