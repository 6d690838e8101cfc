"""TDX RTMR1/RTMR2 arithmetic and SEV-SNP launch digests.

What is verified here and how:
* the EV_EFI_ACTION / separator digests and one RTMR extend: published constants (uki-verity.md §6);
* predict_rtmr1/predict_rtmr2: against an independent hashlib recomputation of the event list
  written out in this file. The event *sequence* itself (EDK2 TdTcg2Dxe/DxeTpm2MeasureBootLib) is
  UNVERIFIED against a real TD event log - no TDX machine is available;
* gpt_event_data: structure checked against sfdisk's own view of the disk;
* SEV-SNP: our function against the ``sev-snp-measure`` CLI (run as a subprocess) for the same
  inputs, and the CLI against the published OVMF_CODE_4M vector.
"""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import uki_vectors as V
from conftest import require_file, require_tool

from image_builder.measure import tdx
from image_builder.measure.pcr11 import predict_pcr11
from image_builder.measure.snp import SnpInputs, ovmf_sev_sections, predict_snp_launch_digest
from teeform.errors import TeeformError

OVMF_2M = Path("/usr/share/OVMF/OVMF_CODE.fd")
OVMF_4M = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")


# ----------------------------------------------------------------------------------------------- TDX
def test_published_event_constants() -> None:
    # uki-verity.md §6 "Constant SHA-384 digests".
    assert hashlib.sha384(tdx.EFI_CALLING_EFI_APPLICATION).hexdigest() == (
        "77a0dab2312b4e1e57a84d865a21e5b2ee8d677a21012ada819d0a98988078d3d740f6346bfe0abaa938ca20439a8d71")
    assert hashlib.sha384(tdx.SEPARATOR_EVENT_DATA).hexdigest() == (
        "394341b7182cd227c5c6b07ef8000cdfd86136c4292b8e576573ad7ed9ae41019f5818b4b971c9effc60e1ad9f1289f0")
    assert hashlib.sha384(tdx.EFI_EXIT_BOOT_SERVICES_INVOCATION).hexdigest() == (
        "214b0bef1379756011344877743fdc2a5382bac6e70362d624ccf3f654407c1b4badf7d8f9295dd3dabdef65b27677e0")
    assert hashlib.sha384(tdx.EFI_EXIT_BOOT_SERVICES_SUCCEEDED).hexdigest() == (
        "0a2e01c85deae718a530ad8c6d20a84009babe6c8989269e950d8cf440c6e997695e64d455c4174a652cd080f6230b74")
    # uki-verity.md §6: zeros extended once with the TV-2 UKI's Authenticode SHA-384.
    once = tdx.rtmr_extend(bytes(48), bytes.fromhex(V.TV2_AUTHENTICODE["sha384"]))
    assert once.hex() == V.TV2_RTMR_EXTEND_ONCE


def _replay(digests: list[bytes]) -> str:
    value = bytes(48)
    for d in digests:
        value = hashlib.sha384(value + d).digest()
    return value.hex()


def test_rtmr1_matches_independent_recomputation() -> None:
    uki = bytes.fromhex(V.TV2_AUTHENTICODE["sha384"])
    kernel = hashlib.sha384(b"pretend kernel authenticode").digest()
    gpt = b"EFI PART" + bytes(84) + struct.pack("<Q", 1) + bytes(128)
    h = lambda b: hashlib.sha384(b).digest()  # noqa: E731
    # Secure Boot off, disk boot: action, separator, GPT, UKI, kernel, ExitBootServices x2.
    expected = _replay([h(b"Calling EFI Application from Boot Option"), h(b"\0\0\0\0"), h(gpt), uki, kernel,
                        h(b"Exit Boot Services Invocation"), h(b"Exit Boot Services Returned with Success")])
    p = tdx.predict_rtmr1(uki.hex(), linux_authenticode_sha384=kernel.hex(), gpt_event_data=gpt)
    assert p.value == expected
    assert [e.pcr for e in p.events] == [4, 4, 5, 4, 4, 5, 5]
    assert any("UNVERIFIED" in a.upper() for a in p.assumptions)
    # Secure Boot on, no GPT event.
    expected_sb = _replay([h(b"Calling EFI Application from Boot Option"), h(b"\0\0\0\0"), uki,
                           h(b"Exit Boot Services Invocation"), h(b"Exit Boot Services Returned with Success")])
    assert tdx.predict_rtmr1(uki.hex(), secure_boot=True).value == expected_sb
    with pytest.raises(TeeformError):
        tdx.predict_rtmr1(uki.hex(), linux_authenticode_sha384=kernel.hex(), secure_boot=True)
    with pytest.raises(TeeformError, match="96 hex"):
        tdx.predict_rtmr1("abcd")


def test_rtmr2_only_for_256_and_later() -> None:
    sections = dict(V.TV1_FILES)
    assert tdx.predict_rtmr2(sections, 252) is None and tdx.predict_rtmr2(sections, 254) is None
    assert "not predicted" in tdx.rtmr2_not_measured_note(252)
    p = tdx.predict_rtmr2(sections, 257)
    assert p is not None
    # Independent: the 257 stub's PCR 11 events in SHA-384, replayed into a zero RTMR.
    order = [".linux", ".osrel", ".cmdline", ".initrd"]
    digests = []
    for name in order:
        digests += [hashlib.sha384(name.encode() + b"\0").digest(), hashlib.sha384(sections[name]).digest()]
    assert p.value == _replay(digests) == predict_pcr11(sections, 257, "sha384").value


def test_pcr4_chain() -> None:
    uki = hashlib.sha256(b"u").hexdigest()
    h = lambda b: hashlib.sha256(b).digest()  # noqa: E731
    value = bytes(32)
    for d in (h(b"Calling EFI Application from Boot Option"), h(b"\0\0\0\0"), bytes.fromhex(uki)):
        value = hashlib.sha256(value + d).digest()
    # No kernel event: Secure Boot on with a >= 252 stub (image_builder/measure/pcr4.py, event 4).
    from image_builder.measure import pcr4

    assert pcr4.predict_pcr4(uki, None, bank="sha256", stub_version=254, secure_boot=True,
                             firmware=pcr4.FIRMWARE_OVMF).value == value.hex()


@pytest.mark.oracle
def test_gpt_event_data_against_sfdisk(tmp_path: Path) -> None:
    sfdisk = require_tool("sfdisk")
    disk = tmp_path / "disk.raw"
    with open(disk, "wb") as fh:
        fh.truncate(8 << 20)
    script = ("label: gpt\nlabel-id: 11111111-2222-3333-4444-555555555555\n"
              "start=2048, size=4096, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=AAAAAAAA-0000-0000-0000-000000000001\n"
              "start=6144, size=8192, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, uuid=AAAAAAAA-0000-0000-0000-000000000002\n")
    subprocess.run([sfdisk, "-q", str(disk)], input=script.encode(), check=True)
    data = tdx.gpt_event_data(disk)
    table = json.loads(subprocess.run([sfdisk, "--json", str(disk)], capture_output=True, check=True).stdout)
    parts = table["partitiontable"]["partitions"]
    assert len(data) == 92 + 8 + 128 * len(parts)
    assert data[:8] == b"EFI PART" and struct.unpack_from("<Q", data, 92)[0] == len(parts) == 2
    assert uuid.UUID(bytes_le=data[56:72]) == uuid.UUID(table["partitiontable"]["id"])
    for i, part in enumerate(parts):
        entry = data[100 + 128 * i:100 + 128 * (i + 1)]
        assert uuid.UUID(bytes_le=entry[:16]) == uuid.UUID(part["type"])
        assert uuid.UUID(bytes_le=entry[16:32]) == uuid.UUID(part["uuid"])
        assert struct.unpack_from("<Q", entry, 32)[0] == part["start"]
    with pytest.raises(TeeformError, match="EFI PART"):
        zero = tmp_path / "zero.raw"
        zero.write_bytes(bytes(4096))
        tdx.gpt_event_data(zero)


# ------------------------------------------------------------------------------------------- SEV-SNP
def sev_snp_measure_cli(*args: str) -> str:
    exe = Path(sys.executable).parent / "sev-snp-measure"
    if not exe.exists():
        exe = Path(require_tool("sev-snp-measure"))
    out = subprocess.run([str(exe), "--mode", "snp", *args], capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1]


@pytest.mark.oracle
def test_snp_firmware_only_equals_cli() -> None:
    ovmf = require_file(OVMF_2M, "Debian OVMF_CODE.fd")
    assert "SNP_SECRETS" in ovmf_sev_sections(ovmf) and "SNP_KERNEL_HASHES" not in ovmf_sev_sections(ovmf)
    for vcpus, vtype in ((1, "EPYC-v4"), (4, "EPYC-Milan")):
        ours = predict_snp_launch_digest(SnpInputs(ovmf=ovmf, vcpus=vcpus, vcpu_type=vtype))
        assert ours.launch_digest == sev_snp_measure_cli("--vcpus", str(vcpus), "--vcpu-type", vtype,
                                                         "--ovmf", str(ovmf))
        assert any("firmware only" in a for a in ours.assumptions)


@pytest.mark.oracle
def test_snp_cli_published_vector_and_4m_has_no_metadata() -> None:
    ovmf = require_file(OVMF_4M, "Debian OVMF_CODE_4M.fd")
    # uki-verity.md §7: OVMF_CODE_4M.fd, 1 vCPU, EPYC-v4 -> 68d8e64d... (CLI). That build has no SEV
    # metadata section at all, so teeform refuses it instead of returning a digest no guest can have.
    assert sev_snp_measure_cli("--vcpus", "1", "--vcpu-type", "EPYC-v4", "--ovmf", str(ovmf)) == (
        "68d8e64d29b9823e790b0a4c94d8b6cba4bf4322df2197c09eb0942ed07fe8a0f922ed49fe9fbfb33150e2bd858c8a70")
    assert ovmf_sev_sections(ovmf) == ()
    with pytest.raises(TeeformError, match="no SEV metadata"):
        predict_snp_launch_digest(SnpInputs(ovmf=ovmf, vcpus=1))


def synthetic_kernel_hashes_ovmf(src: Path, dst: Path) -> Path:
    """Copy ``src`` and retype its SNP_SECRETS metadata page as SNP_KERNEL_HASHES (0x10).

    A test-only firmware: Debian ships no AmdSev build (uki-verity.md §7), but this lets the
    direct-boot path (kernel/initrd/cmdline hash table) be compared with the CLI.
    """
    data = bytearray(src.read_bytes())
    footer_guid = uuid.UUID("96b582de-1fb2-45f7-baea-a366c55a082d").bytes_le
    meta_guid = uuid.UUID("dc886566-984a-4798-a75e-5585a7bf67cc").bytes_le
    # OVMF footer table (sev-snp-measure ovmf.py): entries {data, u16 size, guid} end 32 bytes before EOF.
    footer = len(data) - 32 - 18
    footer_size, guid = struct.unpack_from("<H16s", data, footer)
    assert guid == footer_guid
    pos, table_start = footer, footer - (footer_size - 18)
    while pos - 18 >= table_start:
        size, guid = struct.unpack_from("<H16s", data, pos - 18)
        if guid == meta_guid:
            (off_from_end,) = struct.unpack_from("<I", data, pos - size)
            hdr = len(data) - off_from_end
            assert data[hdr:hdr + 4] == b"ASEV"
            (count,) = struct.unpack_from("<I", data, hdr + 12)
            for i in range(count):
                item = hdr + 16 + 12 * i
                if struct.unpack_from("<I", data, item + 8)[0] == 2:  # SNP_SECRETS
                    struct.pack_into("<I", data, item + 8, 0x10)
                    dst.write_bytes(bytes(data))
                    return dst
        pos -= size
    raise AssertionError("no SEV metadata in " + str(src))


@pytest.mark.oracle
def test_snp_direct_boot_equals_cli(tmp_path: Path) -> None:
    ovmf = synthetic_kernel_hashes_ovmf(require_file(OVMF_2M, "Debian OVMF_CODE.fd"), tmp_path / "ovmf-kh.fd")
    assert "SNP_KERNEL_HASHES" in ovmf_sev_sections(ovmf)
    kernel = require_file(V.DEBIAN_KERNEL, "Debian kernel")
    initrd = tmp_path / "initrd"
    initrd.write_bytes(bytes(range(256)) * 40)
    ours = predict_snp_launch_digest(SnpInputs(ovmf=ovmf, vcpus=2, vcpu_type="EPYC-Genoa", kernel=kernel,
                                               initrd=initrd, cmdline="console=ttyS0 quiet"))
    cli = sev_snp_measure_cli("--vcpus", "2", "--vcpu-type", "EPYC-Genoa", "--ovmf", str(ovmf), "--kernel", str(kernel),
                              "--initrd", str(initrd), "--append", "console=ttyS0 quiet")
    assert ours.launch_digest == cli
    other = predict_snp_launch_digest(SnpInputs(ovmf=ovmf, vcpus=2, vcpu_type="EPYC-Genoa", kernel=kernel,
                                                initrd=initrd, cmdline="console=ttyS0 init=/bin/sh"))
    assert other.launch_digest != ours.launch_digest  # the cmdline is covered


def test_snp_input_errors(tmp_path: Path) -> None:
    ovmf = require_file(OVMF_2M, "Debian OVMF_CODE.fd")
    with pytest.raises(TeeformError, match="SNP_KERNEL_HASHES"):
        predict_snp_launch_digest(SnpInputs(ovmf=ovmf, vcpus=1, kernel=ovmf))
    with pytest.raises(TeeformError, match="vCPU type"):
        predict_snp_launch_digest(SnpInputs(ovmf=ovmf, vcpus=1, vcpu_type="Pentium"))
    with pytest.raises(TeeformError, match="at least 1"):
        predict_snp_launch_digest(SnpInputs(ovmf=ovmf, vcpus=0))
    with pytest.raises(TeeformError, match="not found"):
        predict_snp_launch_digest(SnpInputs(ovmf=tmp_path / "nope.fd", vcpus=1))
