"""NitroTPM / OVMF PCR 4 prediction (image_builder/measure/pcr4.py) against independent oracles.

Oracles, none of them the code under test:

* the published SHA-384 digests of the EV_EFI_ACTION string and the separator (uki-verity.md §6,
  copied there from EDK2/TCG event logs);
* the Authenticode digests of the UKI and of its kernel from Debian's ``pesign -h`` (SHA-256) and
  ``osslsigncode verify`` (SHA-384), the kernel extracted from the UKI with ``objcopy -O binary
  --only-section=.linux`` (binutils);
* AWS's published algorithm, aws/NitroTPM-Tools@c598a10 ``nitro-tpm-pcr-compute/src/main.rs``
  ``pcr4``: zero PCR, extend H(action), H(00000000), Authenticode(UKI), and Authenticode(.linux)
  unless ``stub >= 258 || stub >= 252 && secure_boot`` - replayed here with ``hashlib``.

The boot itself (the other oracle: OVMF measuring into swtpm) is tests/test_boot.py.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest
import uki_vectors as V
from conftest import require_file, require_tool

from image_builder.formats.uki import UkiInputs, build_uki
from image_builder.measure import pcr4
from image_builder.measure.vm import predict_vm_measurements
from teeform.errors import TeeformError

# uki-verity.md §6 "Constant SHA-384 digests".
ACTION_SHA384 = ("77a0dab2312b4e1e57a84d865a21e5b2ee8d677a21012ada819d0a98988078d3"
                 "d740f6346bfe0abaa938ca20439a8d71")
SEPARATOR_SHA384 = ("394341b7182cd227c5c6b07ef8000cdfd86136c4292b8e576573ad7ed9ae4101"
                    "9f5818b4b971c9effc60e1ad9f1289f0")


def aws_pcr4(bank: str, uki_ac: str, linux_ac: str | None, stub: int, sb: bool) -> str:
    """nitro-tpm-pcr-compute's pcr4(), transcribed (the tool computes SHA-384; the sha256 bank is the
    same sequence with the TPM's other hash, PFP §3.3.4.5)."""
    h = lambda b: hashlib.new(bank, b).digest()  # noqa: E731
    events = [h(b"Calling EFI Application from Boot Option"), h(bytes(4)), bytes.fromhex(uki_ac)]
    skip_kernel = stub >= 258 or (stub >= 252 and sb)
    if not skip_kernel:
        assert linux_ac is not None
        events.append(bytes.fromhex(linux_ac))
    value = bytes(hashlib.new(bank).digest_size)
    for e in events:
        value = hashlib.new(bank, value + e).digest()
    return value.hex()


def pesign_sha256(path: Path) -> str:
    out = subprocess.run([require_tool("pesign"), "-h", "-i", str(path)], capture_output=True, text=True,
                         check=True).stdout
    m = re.search(r"hash: ([0-9a-f]{64})", out)
    assert m, out
    return m.group(1)


def osslsigncode_sha384(src: Path, tmp: Path, key: Path, cert: Path) -> str:
    """Sign a copy with SHA-384 and read the digest osslsigncode computes (signing does not change it)."""
    tool = require_tool("osslsigncode")
    signed = tmp / (src.name + ".signed")
    subprocess.run([tool, "sign", "-h", "sha384", "-certs", str(cert), "-key", str(key), "-in", str(src),
                    "-out", str(signed)], check=True, capture_output=True)
    out = subprocess.run([tool, "verify", "-in", str(signed)], capture_output=True, text=True)
    m = re.search(r"Calculated message digest : ([0-9A-F]{96})", out.stdout + out.stderr)
    assert m, out.stdout + out.stderr
    return m.group(1).lower()


@pytest.fixture(scope="module")
def kernel_uki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A UKI of the bookworm 252 stub around the pinned Debian kernel, and its oracle digests."""
    d = tmp_path_factory.mktemp("pcr4")
    stub = require_file(V.STUB_252, "bookworm systemd-stub")
    kernel = require_file(V.DEBIAN_KERNEL, "Debian kernel")
    uki = d / "uki.efi"
    build_uki(UkiInputs(stub=stub, linux=kernel, initrd=None, cmdline=b"console=ttyS0 panic=-1", osrel=b"ID=x\n"), uki)
    inner = d / "linux.efi"
    subprocess.run([require_tool("objcopy"), "-O", "binary", "--only-section=.linux", str(uki), str(inner)], check=True)
    openssl = require_tool("openssl")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "k.pem"),
                    "-out", str(d / "c.pem"), "-days", "1", "-subj", "/CN=teeform pcr4 test"], check=True,
                   capture_output=True)
    key, cert = d / "k.pem", d / "c.pem"
    return {
        "uki": uki,
        "uki_ac": {"sha256": pesign_sha256(uki), "sha384": osslsigncode_sha384(uki, d, key, cert)},
        "linux_ac": {"sha256": pesign_sha256(inner), "sha384": osslsigncode_sha384(inner, d, key, cert)},
    }


def test_constant_events_are_the_published_digests() -> None:
    p = pcr4.predict_pcr4("ab" * 48, "cd" * 48, bank="sha384", stub_version=252)
    assert [e.event_type for e in p.events] == ["EV_EFI_ACTION", "EV_SEPARATOR", "EV_EFI_BOOT_SERVICES_APPLICATION",
                                                "EV_EFI_BOOT_SERVICES_APPLICATION"]
    assert p.events[0].digest == ACTION_SHA384 and p.events[1].digest == SEPARATOR_SHA384
    assert [e.digest for e in p.events[2:]] == ["ab" * 48, "cd" * 48]


@pytest.mark.parametrize(("stub", "sb", "measured"), [
    (252, False, True), (254, False, True), (257, False, True),   # LoadImage() without override
    (252, True, False), (257, True, False),                       # security override (systemd PR #24777)
    (258, False, False), (259, True, False),                      # direct call (systemd PR #37372)
    (251, True, True),                                            # before the override existed
])
def test_kernel_rule_is_awss(stub: int, sb: bool, measured: bool) -> None:
    """The table is nitro-tpm-pcr-compute's ``skip_kernel_measurement`` expression, case by case."""
    assert pcr4.kernel_measured_by_firmware(stub, sb) is measured
    p = pcr4.predict_pcr4("11" * 32, "22" * 32, bank="sha256", stub_version=stub, secure_boot=sb)
    assert p.kernel_measured is measured and len(p.events) == (4 if measured else 3)
    assert p.value == aws_pcr4("sha256", "11" * 32, "22" * 32, stub, sb)


@pytest.mark.oracle
@pytest.mark.parametrize("bank", ["sha256", "sha384"])
@pytest.mark.parametrize("firmware", pcr4.FIRMWARE_PROFILES)
def test_real_uki_against_pesign_osslsigncode_and_aws_algorithm(kernel_uki, bank: str, firmware: str) -> None:
    uki: Path = kernel_uki["uki"]  # type: ignore[assignment]
    uki_ac, linux_ac = kernel_uki["uki_ac"][bank], kernel_uki["linux_ac"][bank]  # type: ignore[index]
    for sb in (False, True):
        got = pcr4.predict_pcr4_from_uki(uki.read_bytes(), stub_version=252, secure_boot=sb, firmware=firmware)[bank]
        assert got.value == aws_pcr4(bank, uki_ac, linux_ac, 252, sb), (bank, sb)
        assert got.firmware == firmware and len(got.value) == 2 * hashlib.new(bank).digest_size
    assert pcr4.predict_pcr4_from_uki(uki.read_bytes(), stub_version=258)[bank].value == \
        aws_pcr4(bank, uki_ac, None, 258, False)


@pytest.mark.oracle
def test_vm_prediction_carries_pcr4(kernel_uki) -> None:
    uki: Path = kernel_uki["uki"]  # type: ignore[assignment]
    pred = predict_vm_measurements(uki)
    for bank in ("sha256", "sha384"):
        want = aws_pcr4(bank, kernel_uki["uki_ac"][bank], kernel_uki["linux_ac"][bank], 252, False)  # type: ignore[index]
        assert pred["measurements"][f"pcr4_{bank}"] == want
        details = pred["details"]["pcr4"][bank]
        assert details["firmware"] == "aws-nitro" and details["kernel_measured"] is True
        assert [e["type"] for e in details["events"]][-1] == "EV_EFI_BOOT_SERVICES_APPLICATION"
    sb = predict_vm_measurements(uki, secure_boot=True)["measurements"]
    assert sb["pcr4_sha384"] == aws_pcr4("sha384", kernel_uki["uki_ac"]["sha384"], None, 252, True)  # type: ignore[index]


def rtmr1_replay(uki_ac: str, linux_ac: str | None) -> str:
    """RTMR1 of a TD booting the UKI without a GPT event (measured-boot.md; tests/test_tdx_snp.py):
    action, separator, Authenticode(UKI), [Authenticode(.linux)], ExitBootServices x2, with hashlib."""
    h = lambda b: hashlib.sha384(b).digest()  # noqa: E731
    events = [h(b"Calling EFI Application from Boot Option"), h(bytes(4)), bytes.fromhex(uki_ac)]
    events += [bytes.fromhex(linux_ac)] if linux_ac is not None else []
    events += [h(b"Exit Boot Services Invocation"), h(b"Exit Boot Services Returned with Success")]
    value = bytes(48)
    for e in events:
        value = hashlib.sha384(value + e).digest()
    return value.hex()


@pytest.mark.oracle
def test_vm_prediction_puts_the_kernel_digest_into_rtmr1_exactly_where_pcr4_has_it(kernel_uki) -> None:
    """The one kernel Authenticode digest feeds both PCR 4 and RTMR1 (TDVF's PCR 2-6 events): with
    Secure Boot off both have the kernel event, with it on neither; also through the pure
    ``predict_uki``, which ignores a kernel digest the firmware would not measure."""
    from image_builder.formats.uki import read_uki_layout
    from image_builder.measure.vm import predict_uki

    uki: Path = kernel_uki["uki"]  # type: ignore[assignment]
    uki_ac, linux_ac = kernel_uki["uki_ac"], kernel_uki["linux_ac"]
    for sb in (False, True):
        m = predict_vm_measurements(uki, secure_boot=sb)["measurements"]
        assert m["rtmr1"] == rtmr1_replay(uki_ac["sha384"], None if sb else linux_ac["sha384"]), sb  # type: ignore[index]
        assert m["pcr4_sha384"] == aws_pcr4("sha384", uki_ac["sha384"], linux_ac["sha384"], 252, sb)  # type: ignore[index]
        pure = predict_uki(read_uki_layout(uki), authenticode=uki_ac, stub_version=252,  # type: ignore[arg-type]
                           stub_version_source="given", gpt_event_data=None, secure_boot=sb,
                           linux_authenticode=linux_ac)  # type: ignore[arg-type]
        assert (pure["measurements"]["rtmr1"], pure["measurements"]["pcr4_sha256"]) == \
            (m["rtmr1"], m["pcr4_sha256"]), sb


def test_non_pe_kernel_is_not_predicted(tmp_path: Path) -> None:
    """A ``.linux`` that is not a PE image cannot be LoadImage()d: no PCR 4 value, a reason instead."""
    files = V.write_tv2_inputs(tmp_path)
    out = tmp_path / "fake.efi"
    build_uki(UkiInputs(stub=require_file(V.STUB_252, "bookworm systemd-stub"), linux=files["linux"], initrd=None,
                        cmdline=b"x", osrel=b"ID=x\n"), out)
    pred = predict_vm_measurements(out)
    assert "pcr4_sha256" not in pred["measurements"] and "not a PE image" in pred["details"]["pcr4"]
    with pytest.raises(TeeformError, match=r"\.linux"):
        pcr4.predict_pcr4_from_uki(out.read_bytes(), stub_version=252)
    # With Secure Boot on the kernel is not measured, so the fake kernel does not matter.
    assert "pcr4_sha384" in predict_vm_measurements(out, secure_boot=True)["measurements"]


def test_bad_inputs_name_the_field() -> None:
    with pytest.raises(TeeformError, match="linux_authenticode") as e:
        pcr4.predict_pcr4("00" * 32, None, bank="sha256", stub_version=252)
    assert e.value.field == "linux_authenticode"
    with pytest.raises(TeeformError, match="96 hex digits"):
        pcr4.predict_pcr4("00" * 32, None, bank="sha384", stub_version=258)
    with pytest.raises(TeeformError, match="unknown PCR bank"):
        pcr4.predict_pcr4("00" * 20, None, bank="sha1", stub_version=258)
    with pytest.raises(TeeformError, match="firmware profile"):
        pcr4.predict_pcr4("00" * 32, None, bank="sha256", stub_version=258, firmware="seabios")
    with pytest.raises(TeeformError, match="PE"):
        pcr4.predict_pcr4_from_uki(b"MZ" + bytes(100), stub_version=258)
