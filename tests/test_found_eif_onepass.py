"""``write_eif`` with whole-file digests never reads the EIF it writes (issue 7 item 8).

The header ends with the CRC of everything after it, so the writer runs a CRC-only pass over the
*inputs*, writes the header first and then computes every digest (whole file, sections, PCRs) while
writing. These tests write to a stream that cannot be read or seeked, and compare the bytes with
the header-last path (one pass, seek back) and every value with hashlib/zlib over the bytes.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import zlib
from pathlib import Path

import pytest
from conftest import require_tool

from image_builder.formats import cpio, eif, eif_sign
from image_builder.formats.eif import SectionSource, SectionType
from teeform.errors import TeeformError


class WriteOnly(io.RawIOBase):
    """A sink that refuses ``read`` and ``seek``: proof that the writer never re-reads its output."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def write(self, data) -> int:  # type: ignore[override]
        self.buf += data
        return len(data)

    def read(self, *a):  # type: ignore[override]
        raise AssertionError("write_eif read its output")

    def seek(self, *a):  # type: ignore[override]
        raise AssertionError("write_eif seeked its output")


def _plan() -> cpio.ArchivePlan:
    big = bytes(range(256)) * 9000  # 2.3 MB: more than two CHUNKs
    entries = [
        cpio.TreeEntry(b"rootfs", cpio.EntryKind.DIR, 0o755),
        cpio.TreeEntry(b"rootfs/big", cpio.EntryKind.FILE, 0o644, size=len(big), opener=lambda: io.BytesIO(big)),
        cpio.TreeEntry(b"rootfs/s", cpio.EntryKind.SYMLINK, link_target=b"big"),
    ]
    return cpio.plan_archive(entries, mtime=1)


def _sections(kernel: Path) -> list[SectionSource]:
    plan = _plan()
    return [SectionSource(SectionType.KERNEL, path=kernel, label="kernel"),
            SectionSource(SectionType.CMDLINE, data=b"console=ttyS0"),
            SectionSource(SectionType.METADATA, data=b'{"ImageName":"x"}'),
            SectionSource(SectionType.RAMDISK, data=b"bootstrap" * 1000),
            SectionSource(SectionType.RAMDISK, writer=plan.write, length=plan.size, label="customer")]


def _check(data: bytes, result: eif.EifWriteResult, tmp_path: Path) -> None:
    assert result.size == len(data)
    assert result.file_digests == {"sha256": hashlib.sha256(data).hexdigest(), "sha384": hashlib.sha384(data).hexdigest()}
    assert result.crc32 == zlib.crc32(data[:eif.CRC_OFFSET] + data[eif.HEADER_SIZE:])
    assert result.crc32 == int.from_bytes(data[eif.CRC_OFFSET:eif.HEADER_SIZE], "big")
    from test_eif_format import _parse_independently  # section headers walked with struct, not by teeform

    assert [s.sha384 for s in result.sections] == [hashlib.sha384(d).hexdigest() for _, d in _parse_independently(data)]
    path = tmp_path / "check.eif"
    path.write_bytes(data)
    assert eif.read_eif(path).pcrs == result.pcrs  # the strict reader recomputes CRC and PCRs from the file


def test_whole_file_digests_are_computed_while_writing_without_reading_back(tmp_path: Path) -> None:
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(b"K" * 2_500_000)
    with open(tmp_path / "ref.eif", "w+b") as fh:
        ref = eif.write_eif(fh, _sections(kernel))  # header last (seek back), no whole-file digests
    out = WriteOnly()
    got = eif.write_eif(out, _sections(kernel), file_digests=("sha256", "sha384"))  # type: ignore[arg-type]
    assert bytes(out.buf) == (tmp_path / "ref.eif").read_bytes()
    assert (got.pcrs, got.crc32, got.size, got.sections) == (ref.pcrs, ref.crc32, ref.size, ref.sections)
    _check(bytes(out.buf), got, tmp_path)


def test_signed_eif_with_digests_is_the_same_file_and_never_read(tmp_path: Path) -> None:
    openssl = require_tool("openssl")
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1", "-nodes",
                    "-keyout", str(tmp_path / "k.pem"), "-out", str(tmp_path / "c.pem"), "-subj", "/CN=teeform test",
                    "-days", "30"], check=True, capture_output=True)
    signer = eif_sign.EifSigner.load(tmp_path / "k.pem", tmp_path / "c.pem")
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(b"K" * 300_000)
    with open(tmp_path / "ref.eif", "w+b") as fh:
        ref = eif.write_eif(fh, _sections(kernel), signer=signer)
    out = WriteOnly()
    got = eif.write_eif(out, _sections(kernel), signer=signer, file_digests=("sha256", "sha384"))  # type: ignore[arg-type]
    assert bytes(out.buf) == (tmp_path / "ref.eif").read_bytes()  # deterministic ECDSA (RFC 6979)
    assert got.pcrs == ref.pcrs and got.pcrs.pcr8 is not None
    assert [s.type for s in got.sections][-1] is SectionType.SIGNATURE
    _check(bytes(out.buf), got, tmp_path)
    assert eif.read_eif(tmp_path / "check.eif").signature_check is True


def test_inputs_that_change_between_the_crc_pass_and_the_write_pass_are_refused(tmp_path: Path) -> None:
    calls = {"n": 0}

    def flaky(fh) -> None:  # same length, different bytes on the second call
        calls["n"] += 1
        fh.write(b"A" * 5000 if calls["n"] == 1 else b"B" * 5000)

    kernel = tmp_path / "bzImage"
    kernel.write_bytes(b"K" * 1000)
    sections = _sections(kernel)[:-1] + [SectionSource(SectionType.RAMDISK, writer=flaky, length=5000)]
    with pytest.raises(TeeformError, match="inputs changed while it was written"):
        eif.write_eif(WriteOnly(), sections, file_digests=("sha256",))  # type: ignore[arg-type]
    assert calls["n"] == 2


def test_a_kernel_file_that_grows_between_the_passes_is_refused(tmp_path: Path) -> None:
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(b"K" * 1000)
    plan = _plan()

    def grow_then_write(fh) -> None:  # runs after the kernel was read in the CRC pass
        with open(kernel, "ab") as k:
            k.write(b"more")
        plan.write(fh)

    sections = _sections(kernel)[:-1] + [SectionSource(SectionType.RAMDISK, writer=grow_then_write, length=plan.size)]
    with pytest.raises(TeeformError, match="changed size while it was written"):
        eif.write_eif(WriteOnly(), sections, file_digests=("sha384",))  # type: ignore[arg-type]
