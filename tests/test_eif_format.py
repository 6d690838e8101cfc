"""EIF format (image_builder.formats.eif): published vectors, independent recomputation, malformed files.

Golden values:
* PCR3/PCR4 examples: AWS Nitro Enclaves User Guide, "Where to get an enclave's measurements"
  (eif-nitro.md §7.1);
* PCR2 of an EIF without an application ramdisk, 21b9efbc...: published by QOS
  (src/integration/mock/dist/aws-x86_64.pcrs), Sui Nautilus and others (eif-nitro.md §7.2);
* CRC-32/ISO-HDLC check value 0xCBF43926 (eif-nitro.md §1.5, §7.7).
Everything else is recomputed in the test with hashlib/zlib/struct from byte offsets, never taken
from teeform's own output.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zlib
from pathlib import Path

import pytest

from image_builder.formats import eif
from image_builder.formats.eif import SectionSource, SectionType
from teeform.errors import TeeformError
from teeform.timefmt import rfc3339

PCR2_EMPTY = ("21b9efbc184807662e966d34f390821309eeac6802309798826296bf3e8bec7c"
              "10edb30948c90ba67310f7b964fc500a")


def test_pcr3_pcr4_published_examples() -> None:
    # UG: PCR3 = SHA384(0^48 || role ARN), PCR4 = SHA384(0^48 || instance ID), raw strings extended.
    assert eif.pcr_extend(eif.PCR_ZERO, b"arn:aws:iam::123456789012:role/Webserver").hex() == (
        "78fce75db17cd4e0a3fb8dad3ad128ca5e77edbb2b2c7f75329dccd99aa5f6ef4fc1f1a452e315b9e98f9e312e6921e6")
    assert eif.pcr_extend(eif.PCR_ZERO, b"i-1234567890abcdef0").hex() == (
        "08f996b5d43e047a9eb51e7f548bfee7e164fd7dc8f65541f2ac09d6545ac812719327281c401a67a10fcba87ae79ce0")


def test_crc_check_value_and_combine() -> None:
    assert eif.crc32(b"123456789") == 0xCBF43926
    rnd = os.urandom(5000)
    for cut in (0, 1, 544, 2047, 5000):
        a, b = rnd[:cut], rnd[cut:]
        assert eif.crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(rnd)


def _sections(ramdisks: list[bytes], kernel: bytes = b"KERNEL" * 100, cmdline: bytes = b"console=ttyS0",
              metadata: bytes = b'{"ImageName":"t"}') -> list[SectionSource]:
    out = [SectionSource(SectionType.KERNEL, data=kernel), SectionSource(SectionType.CMDLINE, data=cmdline),
           SectionSource(SectionType.METADATA, data=metadata)]
    return out + [SectionSource(SectionType.RAMDISK, data=r) for r in ramdisks]


def _write(path: Path, sections: list[SectionSource], **kw: object) -> eif.EifWriteResult:
    with open(path, "w+b") as fh:
        return eif.write_eif(fh, sections, **kw)  # type: ignore[arg-type]


def _parse_independently(data: bytes) -> list[tuple[int, bytes]]:
    """Walk the section headers from byte 548 with struct, as the IMGFMT reader does (§1.4)."""
    out, pos = [], 548
    while pos < len(data):
        stype, flags, size = struct.unpack(">HHQ", data[pos: pos + 12])
        assert flags == 0
        out.append((stype, data[pos + 12: pos + 12 + size]))
        pos += 12 + size
    return out


def test_single_ramdisk_gives_published_pcr2_constant(tmp_path: Path) -> None:
    res = _write(tmp_path / "one.eif", _sections([b"070701 pretend cpio"]))
    info = eif.read_eif(tmp_path / "one.eif")
    assert info.pcrs.pcr2.hex() == PCR2_EMPTY == res.pcrs.pcr2.hex()
    assert info.pcrs.pcr0 == info.pcrs.pcr1
    assert eif.pcr_extend(eif.PCR_ZERO, b"").hex().startswith("8f0d145c0368ad6b")  # §7.2: not to be confused


def test_round_trip_and_independent_recomputation(tmp_path: Path) -> None:
    kernel, cmdline = os.urandom(3000), b"reboot=k panic=30 pci=off"
    rd0, rd1, rd2 = os.urandom(777), os.urandom(1500), b"third"
    path = tmp_path / "x.eif"
    res = _write(path, _sections([rd0, rd1, rd2], kernel=kernel, cmdline=cmdline), flags=0)
    data = path.read_bytes()

    # header fields at their documented offsets (§1.2), big-endian
    assert data[0:4] == b".eif" and len(data) == res.size
    assert int.from_bytes(data[4:6], "big") == 4 and int.from_bytes(data[6:8], "big") == 0
    assert int.from_bytes(data[8:16], "big") == 0x40000000 and int.from_bytes(data[16:24], "big") == 2
    assert int.from_bytes(data[26:28], "big") == 6
    offsets = [int.from_bytes(data[28 + 8 * i: 36 + 8 * i], "big") for i in range(32)]
    sizes = [int.from_bytes(data[284 + 8 * i: 292 + 8 * i], "big") for i in range(32)]
    assert offsets[0] == 548 and offsets[6:] == [0] * 26 and sizes[6:] == [0] * 26
    assert int.from_bytes(data[544:548], "big") == zlib.crc32(data[:544] + data[548:])

    sections = _parse_independently(data)
    assert [t for t, _ in sections] == [1, 2, 5, 3, 3, 3]
    assert sizes[:6] == [len(d) for _, d in sections]
    z = bytes(48)
    h0 = hashlib.sha384(kernel + cmdline + rd0 + rd1 + rd2).digest()
    h1 = hashlib.sha384(kernel + cmdline + rd0).digest()
    h2 = hashlib.sha384(rd1 + rd2).digest()
    expected = [hashlib.sha384(z + h).hexdigest() for h in (h0, h1, h2)]

    info = eif.read_eif(path)
    got = [info.pcrs.pcr0.hex(), info.pcrs.pcr1.hex(), info.pcrs.pcr2.hex()]
    assert got == expected == [res.pcrs.pcr0.hex(), res.pcrs.pcr1.hex(), res.pcrs.pcr2.hex()]
    assert info.cmdline == cmdline and info.metadata == {"ImageName": "t"} and not info.is_signed

    report = eif.measure_report(path)
    assert list(report.measurements) == ["PCR0", "PCR1", "PCR2", "ImageSha384"]
    assert report.measurements["ImageSha384"] == report.measurements["PCR0"] == expected[0]
    assert report.facts["EifVersion"] == 4 and report.facts["CheckCRC"] is True and report.facts["IsSigned"] is False
    assert [r["type"] for r in report.sections] == ["kernel", "cmdline", "metadata", "ramdisk", "ramdisk", "ramdisk"]
    assert report.sections[3]["sha384"] == hashlib.sha384(rd0).hexdigest()


@pytest.mark.parametrize("ramdisks", [1, 2, 3])
@pytest.mark.parametrize("mode", ["header-last", "header-first", "signed header-last", "signed header-first"])
def test_section_sha384_for_every_ramdisk_count_and_writer_path(tmp_path: Path, ramdisks: int, mode: str) -> None:
    """Each section's sha384 is the SHA-384 of its bytes as walked by _parse_independently; with two
    ramdisks the second one's digest comes from the PCR2 hasher, which must not change the value."""
    rds = [os.urandom(5000 + 999 * i) for i in range(ramdisks)]
    kw: dict[str, object] = {}
    if mode.endswith("header-first"):
        kw["file_digests"] = ("sha256",)
    if mode.startswith("signed"):
        import subprocess

        from conftest import require_tool

        from image_builder.formats import eif_sign

        subprocess.run([require_tool("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1",
                        "-nodes", "-keyout", str(tmp_path / "k.pem"), "-out", str(tmp_path / "c.pem"),
                        "-subj", "/CN=teeform test", "-days", "30"], check=True, capture_output=True)
        kw["signer"] = eif_sign.EifSigner.load(tmp_path / "k.pem", tmp_path / "c.pem")
    path = tmp_path / "x.eif"
    res = _write(path, _sections(rds), **kw)
    want = [hashlib.sha384(d).hexdigest() for _, d in _parse_independently(path.read_bytes())]
    assert [s.sha384 for s in res.sections] == want
    assert [s.sha384 for s in eif.read_eif(path).sections] == want
    assert [r["sha384"] for r in eif.measure_report(path).sections] == want


def test_metadata_is_not_measured(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.eif", _sections([b"r0", b"r1"], metadata=b'{"BuildTime":"1"}'))
    b = _write(tmp_path / "b.eif", _sections([b"r0", b"r1"], metadata=b'{"BuildTime":"2","x":1}'))
    assert a.pcrs == b.pcrs and a.crc32 != b.crc32


def test_metadata_json_key_order_and_compactness() -> None:
    raw = eif.metadata_json(image_name="n", image_version="v", build_time=rfc3339(0), build_tool="teeform",
                            build_tool_version="0.1.0", operating_system="Linux", kernel_version="6.1")
    assert raw == (b'{"ImageName":"n","ImageVersion":"v","BuildMetadata":{"BuildTime":"1970-01-01T00:00:00+00:00",'
                   b'"BuildTool":"teeform","BuildToolVersion":"0.1.0","OperatingSystem":"Linux","KernelVersion":"6.1"},'
                   b'"DockerInfo":null,"CustomMetadata":null}')


# ----------------------------------------------------------------------------- malformed files


@pytest.fixture()
def good(tmp_path: Path) -> bytes:
    path = tmp_path / "good.eif"
    _write(path, _sections([b"ramdisk-zero", b"ramdisk-one" * 10]))
    return path.read_bytes()


def _patch(data: bytes, offset: int, value: bytes, *, fix_crc: bool = True) -> bytes:
    out = bytearray(data)
    out[offset: offset + len(value)] = value
    if fix_crc:
        out[544:548] = struct.pack(">I", zlib.crc32(bytes(out[:544]) + bytes(out[548:])))
    return bytes(out)


def _expect(tmp_path: Path, data: bytes, pattern: str) -> TeeformError:
    p = tmp_path / "bad.eif"
    p.write_bytes(data)
    with pytest.raises(TeeformError, match=pattern) as info:
        eif.read_eif(p)
    assert info.value.path == str(p)
    return info.value


def test_bad_magic(tmp_path: Path, good: bytes) -> None:
    _expect(tmp_path, b"XEIF" + good[4:], r"bad magic b'XEIF' \(an EIF starts with b'.eif'\)")


def test_bad_crc(tmp_path: Path, good: bytes) -> None:
    flipped = bytearray(good)
    flipped[-3] ^= 1  # inside the last ramdisk
    stored = int.from_bytes(good[544:548], "big")
    actual = zlib.crc32(bytes(flipped[:544]) + bytes(flipped[548:]))
    err = _expect(tmp_path, bytes(flipped), rf"CRC mismatch: header says {stored:#010x}, computed {actual:#010x}")
    assert err.field == "eif_crc32"


def test_truncated_file(tmp_path: Path, good: bytes) -> None:
    _expect(tmp_path, good[:300], r"truncated: the file is 300 bytes, an EIF header alone is 548")
    _expect(tmp_path, good[:-5], rf"section 4 \(ramdisk\) extends beyond end of file: data ends at byte {len(good)}, "
                                 rf"the file is {len(good) - 5} bytes")


def test_section_beyond_end_of_file(tmp_path: Path, good: bytes) -> None:
    offsets = [int.from_bytes(good[28 + 8 * i: 36 + 8 * i], "big") for i in range(5)]
    size4 = int.from_bytes(good[284 + 32: 284 + 40], "big")
    grown = size4 + 1000
    data = _patch(good, 284 + 32, grown.to_bytes(8, "big"))
    data = _patch(data, offsets[4] + 4, grown.to_bytes(8, "big"))
    _expect(tmp_path, data, r"section 4 \(ramdisk\) extends beyond end of file")


def test_more_than_32_sections(tmp_path: Path, good: bytes) -> None:
    _expect(tmp_path, _patch(good, 26, (33).to_bytes(2, "big")), r"num_sections is 33, more than the maximum of 32")


def test_header_slot_disagrees_with_section_header(tmp_path: Path, good: bytes) -> None:
    _expect(tmp_path, _patch(good, 284 + 8, (99).to_bytes(8, "big")),
            r"section 1 \(cmdline\): section header says size 13, EIF header slot says 99")


def test_invalid_section_type(tmp_path: Path, good: bytes) -> None:
    _expect(tmp_path, _patch(good, 548, (0).to_bytes(2, "big")), r"section 0 has invalid section type 0")
    _expect(tmp_path, _patch(good, 548, (9).to_bytes(2, "big")), r"section 0 has invalid section type 9")


def test_versions(tmp_path: Path, good: bytes) -> None:
    _expect(tmp_path, _patch(good, 4, (1).to_bytes(2, "big")), r"unsupported EIF version 1")
    _expect(tmp_path, _patch(good, 4, (5).to_bytes(2, "big")), r"unsupported EIF version 5")
    p = tmp_path / "v3.eif"
    p.write_bytes(_patch(good, 4, (3).to_bytes(2, "big")))
    info = eif.read_eif(p)
    assert info.header.version == 3 and "predates the metadata section" in info.notes[0]


def test_trailing_garbage_and_missing_kernel(tmp_path: Path, good: bytes) -> None:
    _expect(tmp_path, good + b"xx", r"2 unexpected bytes after the last section")
    _expect(tmp_path, _patch(good, 548, (3).to_bytes(2, "big")), r"the EIF has 0 kernel section\(s\), needs exactly 1")


def test_measure_command_on_malformed_file(tmp_path: Path, good: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    from teeform.cli import main

    p = tmp_path / "bad.eif"
    p.write_bytes(good[:-5])
    assert main(["measure", str(p)]) == 2
    assert "extends beyond end of file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda g: b"XEIF" + g[4:], "bad magic b'XEIF'"),
        (lambda g: g[:-3] + bytes([g[-3] ^ 1]) + g[-2:], "CRC mismatch: header says"),
        (lambda g: g[:300], "truncated: the file is 300 bytes"),
        (lambda g: _patch(g, 26, (40).to_bytes(2, "big")), "num_sections is 40, more than the maximum of 32"),
    ],
)
def test_measure_command_names_what_is_wrong(tmp_path: Path, good: bytes, capsys: pytest.CaptureFixture[str],
                                             mutate: object, message: str) -> None:
    """Through the CLI: one error line naming the problem (a `.eif` with bad magic is still read as an EIF)."""
    from teeform.cli import main

    p = tmp_path / "bad.eif"
    p.write_bytes(mutate(good))  # type: ignore[operator]
    assert main(["measure", str(p), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert err.startswith(f"error: {p}") and message in err


def test_writer_refuses_too_many_sections() -> None:
    with pytest.raises(TeeformError, match="at most 32 sections"):
        eif.write_eif(io.BytesIO(), _sections([b"r"] * 30))
