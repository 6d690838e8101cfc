"""Proof by boot: a teeform VM image boots under QEMU + OVMF + swtpm, and its root is dm-verity.

The oracle is the machine itself: the guest's vTPM PCR 11, read back from
``/sys/class/tpm/tpm0/pcr-sha256/11`` by ``image_builder/pipelines/guest/boot-probe.sh`` (the image's
``/sbin/init``), must equal the manifest's predicted ``pcr11_sha256``; PCR 4 in the sha256 and
sha384 banks must equal ``pcr4_sha256``/``pcr4_sha384`` and the firmware's PCR 4 events (its TCG2 event
log, read by tests/tcg_eventlog.py) must be the predicted ones (image_builder/measure/pcr4.py, OVMF
profile: EV_EFI_ACTION, separator, UKI Authenticode, kernel Authenticode); ``/`` must be mounted from the
``root`` dm-verity mapping on the disk's root and root-verity partitions; and a disk with one flipped
byte in the root file system must fail verity instead of running the probe.

Set-up (image_builder/pipelines/qemu_boot.py; vTPM wiring as in QEMU ``docs/specs/tpm.rst`` "The QEMU TPM
emulator device" with ``swtpm socket --tpm2``): ``-accel tcg`` unless KVM is really usable
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
from pathlib import Path

import pytest
from conftest import locked, require_tool

from image_builder.pipelines import qemu_boot
from image_builder.pipelines.qemu_boot import Boot

pytestmark = pytest.mark.integration



def boot_disk(disk: Path, workdir: Path) -> Boot:
    """Boot ``disk`` once (image_builder.pipelines.qemu_boot); a missing qemu/swtpm/OVMF skips locally, fails in CI."""
    require_tool("qemu-system-x86_64")
    require_tool("swtpm")
    boot = qemu_boot.boot_disk(disk, workdir, ovmf_code=locked("ovmf.code-4m"), ovmf_vars=locked("ovmf.vars-4m"))
    print(f"boot of {disk.name}: {boot.seconds:.1f} s, qemu exit {boot.returncode}, -accel {boot.accel}")
    return boot


def make_probe_rootfs(dest: Path) -> Path:
    """A busybox-static root whose /sbin/init is the boot probe (image_builder/pipelines/guest/boot-probe.sh)."""
    require_tool("busybox")
    return qemu_boot.make_probe_rootfs(dest)


def build(tmp: Path, stub: Path, name: str):  # -> tuple[BuildResult, Manifest]
    from image_builder.pipelines.build_vm import BuildConfig, build_vm_image
    from teeform.manifest import load_manifest

    kernel = locked("kernel.vmlinuz")
    rootfs = make_probe_rootfs(tmp / "rootfs")
    cfg = BuildConfig(rootfs=rootfs, kernel=kernel, stub=stub, out=tmp / "out", name=name, version="1",
                      source_date_epoch=1700000000)
    result = build_vm_image(cfg)
    return result, load_manifest(result.manifest)


@pytest.fixture(scope="module")
def image252(tmp_path_factory: pytest.TempPathFactory):
    for t in ("qemu-system-x86_64", "swtpm", "busybox", "veritysetup", "mkfs.erofs"):
        require_tool(t)
    locked("ovmf.code-4m")
    locked("ovmf.vars-4m")
    tmp = tmp_path_factory.mktemp("boot252")
    t0 = time.monotonic()
    result, manifest = build(tmp, locked("bookworm.stub"), "probe252")
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


@pytest.fixture(scope="module")
def boot252(image252, tmp_path_factory: pytest.TempPathFactory) -> Boot:
    """One boot of the 252-stub image, shared by the PCR 11 and PCR 4 tests (each boot costs ~20 s)."""
    tmp, result, manifest = image252
    return boot_disk(result.disk, tmp_path_factory.mktemp("boot252-run"))


def test_boot_pcr11_matches_manifest_and_root_is_verity(image252, boot252: Boot) -> None:
    tmp, result, manifest = image252
    b = boot252
    assert "TEEFORM-PROBE-BEGIN" in b.log, "the image did not reach its /sbin/init" + b.tail()
    _assert_verity_root(b)
    observed = b.probe.get("PCR11_SHA256", "").lower()
    assert observed == manifest.measurements["pcr11_sha256"], (
        f"PCR 11 observed {observed}, predicted {manifest.measurements['pcr11_sha256']}" + b.tail())
    # PCR 4 of this boot: test_boot_pcr4_matches_manifest.
    # No command-line override, credentials or sysexts: PCR 12 and 13 are never extended (uki-verity.md §1.4).
    assert b.probe.get("PCR12_SHA256", "").strip("0") == "", b.tail()
    assert f"roothash {manifest.measurements['roothash']}" in b.log, b.tail()


def assert_pcr4(b: Boot, manifest, stub_version: int) -> None:
    """PCR 4 of the vTPM equals the manifest's ``pcr4_sha256``/``pcr4_sha384`` (Secure Boot off) and
    the firmware's event log holds exactly the predicted PCR 4 events of the OVMF profile.

    The sha384 bank is compared when the vTPM exposes it (swtpm 0.7.1 activates sha1, sha256, sha384
    and sha512 by default, measured-boot.md); in CI its absence fails, it never skips silently.
    """
    from tcg_eventlog import from_serial, parse

    from image_builder.measure import pcr4

    assert "TEEFORM-PROBE-END" in b.log, "the probe did not finish" + b.tail()
    m = manifest.measurements
    for bank in ("sha256", "sha384"):
        observed = b.probe.get(f"PCR4_{bank.upper()}", "").lower()
        assert observed, f"the guest printed no {bank} PCR 4 (vTPM without that bank?)" + b.tail()
        assert observed == m[f"pcr4_{bank}"], f"PCR 4 {bank} observed {observed}, predicted {m[f'pcr4_{bank}']}" + b.tail()
    assert b.probe.get("PCR12_SHA384", "").strip("0") == "", "PCR 12 sha384 is not all zeros" + b.tail()
    # Event by event: the manifest's PCR 4 event log (aws-nitro profile) is what OVMF logged, and the
    # OVMF profile over the same digests gives the observed value.
    raw = from_serial(b.log)
    assert raw is not None, "the probe printed no event log" + b.tail()
    logged = [e for e in parse(raw) if e.pcr == 4]
    for bank in ("sha256", "sha384"):
        predicted = manifest.details["prediction"]["pcr4"][bank]["events"]
        assert [(e.event_type, e.digests[bank]) for e in logged] == [(e["type"], e["digest"]) for e in predicted], (
            f"PCR 4 event log ({bank}) differs from the manifest's prediction" + b.tail())
        kernel = predicted[3]["digest"] if len(predicted) > 3 else None
        ovmf = pcr4.predict_pcr4(m[f"uki_authenticode_{bank}"], kernel, bank=bank, stub_version=stub_version,
                                 firmware=pcr4.FIRMWARE_OVMF)
        assert ovmf.value == b.probe[f"PCR4_{bank.upper()}"].lower()
    assert logged[0].data == pcr4.EV_EFI_ACTION_CALLING and logged[1].data == bytes(4), logged[:2]


def test_boot_pcr4_matches_manifest(image252, boot252: Boot) -> None:
    """NitroTPM PCR 4 prediction, proven for the OVMF firmware profile (image_builder/measure/pcr4.py)."""
    tmp, result, manifest = image252
    assert_pcr4(boot252, manifest, 252)


def _pcr7_secure_boot_off(bank: str) -> str:
    """PCR 7 with Secure Boot off and an empty variable store, transcribed from aws/NitroTPM-Tools@c598a10
    ``nitro-tpm-pcr-compute/src/main.rs`` ``pcr7``/``variable_hash`` (UEFI_VARIABLE_DATA: VariableName GUID,
    UnicodeNameLength u64, VariableDataLength u64, UTF-16LE name, data; PFP §3.3.4.8 / §10.2.7)."""
    import hashlib
    import struct
    import uuid

    def var(guid: str, name: str, data: bytes) -> bytes:
        return hashlib.new(bank, uuid.UUID(guid).bytes_le + struct.pack("<QQ", len(name), len(data))
                           + name.encode("utf-16-le") + data).digest()

    glob, sec = "8be4df61-93ca-11d2-aa0d-00e098032b8c", "d719b2cb-3d3a-4596-a3bc-dad00e67656f"
    value = bytes(hashlib.new(bank).digest_size)
    for d in (var(glob, "SecureBoot", b"\0"), var(glob, "PK", b""), var(glob, "KEK", b""), var(sec, "db", b""),
              var(sec, "dbx", b""), hashlib.new(bank, bytes(4)).digest()):
        value = hashlib.new(bank, value + d).digest()
    return value.hex()


def test_boot_pcr7_is_the_platform_constant_with_secure_boot_off(boot252: Boot) -> None:
    """Why teeform records no PCR 7 (docs/nitrotpm.md): with Secure Boot off and an empty variable store
    (Debian's OVMF_VARS_4M.fd; what nitro-tpm-pcr-compute assumes without --PK) PCR 7 is the same for every
    image - the AWS tool's formula - so it pins nothing of ours and cannot replace PCR 12."""
    b = boot252
    assert b.probe.get("PCR7_SHA256", "").lower() == _pcr7_secure_boot_off("sha256"), b.tail()
    assert b.probe.get("PCR7_SHA384", "").lower() == _pcr7_secure_boot_off("sha384"), b.tail()


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
    for t in ("qemu-system-x86_64", "swtpm", "busybox", "veritysetup", "mkfs.erofs"):
        require_tool(t)
    result, manifest = build(tmp_path, locked("sd254.stub"), "probe254")
    b = boot_disk(result.disk, tmp_path / "boot")
    _assert_verity_root(b)
    observed = b.probe.get("PCR11_SHA256", "").lower()
    assert observed == manifest.measurements["pcr11_sha256"], (
        f"PCR 11 observed {observed}, predicted {manifest.measurements['pcr11_sha256']}" + b.tail())
    assert_pcr4(b, manifest, 254)
