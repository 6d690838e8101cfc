"""The streaming data path of ``build eif`` (issue 7 item 8): planned cpio archives, ramdisks written
straight into the EIF, the read-back pass, threaded hashing and the low-copy tar reader.

Every expected value is recomputed here with hashlib/zlib from the bytes (never from teeform's
own intermediate results), and every fast path is compared with the path it replaced.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import threading
import zlib
from pathlib import Path

import pytest

from image_builder.formats import cpio, eif
from image_builder.formats.eif import SectionSource, SectionType
from image_builder.inputs import oci
from image_builder.inputs.demo_image import LayerEntry, image_config, layer_blob, write_oci_layout
from teeform.errors import TeeformError
from teeform.hashlanes import Crc32, HashLanes


def _tree() -> list[cpio.TreeEntry]:
    big = bytes(range(256)) * 5000  # 1.28 MB: several CHUNK-crossing reads are not needed, but > 64 KiB
    return [
        cpio.TreeEntry(b"d", cpio.EntryKind.DIR, 0o755),
        cpio.TreeEntry(b"d/e", cpio.EntryKind.DIR, 0o700),
        cpio.TreeEntry(b"d/big", cpio.EntryKind.FILE, 0o644, size=len(big), opener=lambda: io.BytesIO(big)),
        cpio.TreeEntry(b"d/empty", cpio.EntryKind.FILE, 0o600),
        cpio.TreeEntry(b"d/l1", cpio.EntryKind.FILE, 0o755, size=3, opener=lambda: io.BytesIO(b"abc"), link_group=1),
        cpio.TreeEntry(b"d/l2", cpio.EntryKind.FILE, 0o755, size=3, opener=lambda: io.BytesIO(b"abc"), link_group=1),
        cpio.TreeEntry(b"d/s", cpio.EntryKind.SYMLINK, link_target=b"../x"),
        cpio.TreeEntry(b"f", cpio.EntryKind.FIFO, 0o644),
    ]


def test_planned_size_equals_written_bytes() -> None:
    plan = cpio.plan_archive(list(reversed(_tree())), mtime=7)
    buf = io.BytesIO()
    stats = plan.write(buf)
    assert stats.size == plan.size == len(buf.getvalue())
    assert plan.entries == stats.entries == 8
    assert plan.content_bytes == stats.content_bytes == 1_280_000 + 3
    ref = io.BytesIO()
    cpio.write_archive(ref, _tree(), mtime=7)
    assert ref.getvalue() == buf.getvalue()
    assert buf.getvalue().endswith(b"TRAILER!!!\0\0\0\0")


def test_plan_refuses_what_write_archive_refuses() -> None:
    with pytest.raises(TeeformError, match="duplicate path"):
        cpio.plan_archive([cpio.TreeEntry(b"a", cpio.EntryKind.DIR)] * 2, mtime=0)
    with pytest.raises(TeeformError, match="must be a regular file"):
        cpio.plan_archive([cpio.TreeEntry(b"a", cpio.EntryKind.DIR, link_group=1)], mtime=0)


def _sections(ramdisk_writer: bool) -> list[SectionSource]:
    plan = cpio.plan_archive(_tree(), mtime=0)
    kernel = b"K" * 300_000
    out = [SectionSource(SectionType.KERNEL, data=kernel), SectionSource(SectionType.CMDLINE, data=b"console=ttyS0"),
           SectionSource(SectionType.METADATA, data=b"{}"), SectionSource(SectionType.RAMDISK, data=b"boot" * 10)]
    if ramdisk_writer:
        out.append(SectionSource(SectionType.RAMDISK, writer=plan.write, length=plan.size, label="customer"))
    else:
        buf = io.BytesIO()
        plan.write(buf)
        out.append(SectionSource(SectionType.RAMDISK, data=buf.getvalue(), label="customer"))
    return out


def test_streamed_ramdisk_and_read_back_pass_give_the_same_file_and_values(tmp_path: Path) -> None:
    a, b = tmp_path / "a.eif", tmp_path / "b.eif"
    with open(a, "w+b") as fh:
        ra = eif.write_eif(fh, _sections(False))
    with open(b, "w+b") as fh:
        rb = eif.write_eif(fh, _sections(True), file_digests=("sha256", "sha384"))
    data = b.read_bytes()
    assert a.read_bytes() == data
    assert (ra.pcrs, ra.crc32, ra.size, ra.sections) == (rb.pcrs, rb.crc32, rb.size, rb.sections)
    assert ra.file_digests == {}
    assert rb.file_digests == {"sha256": hashlib.sha256(data).hexdigest(), "sha384": hashlib.sha384(data).hexdigest()}
    from test_eif_format import _parse_independently  # section headers walked with struct, not by teeform

    assert [s.sha384 for s in rb.sections] == [hashlib.sha384(d).hexdigest() for _, d in _parse_independently(data)]
    info = eif.read_eif(b)  # the strict reader agrees on CRC and PCRs
    assert info.pcrs == rb.pcrs and info.crc32 == rb.crc32


def test_a_writer_that_writes_the_wrong_length_is_refused(tmp_path: Path) -> None:
    sections = _sections(True)[:-1] + [SectionSource(SectionType.RAMDISK, writer=lambda fh: fh.write(b"xy"), length=3)]
    with open(tmp_path / "x.eif", "w+b") as fh, pytest.raises(TeeformError, match="changed size while it was written"):
        eif.write_eif(fh, sections)


def test_hash_lanes_keep_order_per_lane_and_reraise_errors() -> None:
    chunks = [bytes([i]) * (3000 + i) for i in range(50)]
    h0, h1, crc = hashlib.sha384(), hashlib.sha256(), Crc32()
    seen: list[str] = []
    with HashLanes(2, max_pending=2) as lanes:
        for c in chunks:
            lanes.update_all(0, (h0, crc), c)
            lanes.update_all(1, (h1,), c)
        lanes.submit(1, lambda: seen.append(threading.current_thread().name))
    whole = b"".join(chunks)
    assert h0.digest() == hashlib.sha384(whole).digest() and h1.digest() == hashlib.sha256(whole).digest()
    assert crc.value == zlib.crc32(whole)
    assert seen and seen[0].startswith("teeform-hash")

    def boom() -> None:
        raise ValueError("lane failed")

    lanes = HashLanes(2)
    lanes.submit(0, boom)
    with pytest.raises(ValueError, match="lane failed"):
        lanes.wait()
    lanes.close(wait_errors=False)
    inline = HashLanes(0)
    h = hashlib.sha256()
    inline.update_all(0, (h,), b"abc")
    assert h.hexdigest() == hashlib.sha256(b"abc").hexdigest()


def test_tar_input_parses_like_stream_mode() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for i, size in enumerate((0, 1, 511, 512, 513, 3 << 20)):
            ti = tarfile.TarInfo(f"dir/{'long-' * 30}{i}")  # PAX long names too
            ti.size = size
            tf.addfile(ti, io.BytesIO(bytes([i + 1]) * size))
    raw = buf.getvalue()

    def stream_mode() -> list[tuple[str, bytes]]:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r|") as tf:
            return [(m.name, tf.extractfile(m).read()) for m in tf]  # type: ignore[union-attr]

    def tar_input(skip: set[int]) -> list[tuple[str, bytes]]:
        out = []
        with tarfile.TarFile(fileobj=oci._TarInput(io.BufferedReader(io.BytesIO(raw))), mode="r") as tf:  # type: ignore[arg-type]
            for i, m in enumerate(tf):
                parts, left = [], 0 if i in skip else m.size
                read = oci._Flattener._content_reader(tf, m)
                while left:
                    piece = read(min(1 << 20, left))
                    assert piece
                    parts.append(piece)
                    left -= len(piece)
                out.append((m.name, b"".join(parts)))
        return out

    expected = stream_mode()
    assert tar_input(set()) == expected
    # members whose content is not read are skipped by a forward seek, as in stream mode
    assert [n for n, _ in tar_input({1, 3})] == [n for n, _ in expected]


def test_uncompressed_layer_shares_the_blob_hash_but_a_wrong_diff_id_still_fails(tmp_path: Path) -> None:
    blob = layer_blob(tmp_path / "w", [LayerEntry("a", "file", b"x" * 100_000)], compression=None)
    assert blob.digest == blob.diff_id  # uncompressed: the blob is the tar stream
    good = tmp_path / "good"
    write_oci_layout(good, [blob], image_config([blob.diff_id], cmd=["/a"], env=[]))
    with oci.flatten(oci.open_image(good), tmp_path) as tree:
        assert [(e.path, e.size) for e in tree.entries()] == [("a", 100_000)]
    blob = layer_blob(tmp_path / "w2", [LayerEntry("a", "file", b"x" * 100_000)], compression=None)
    bad = tmp_path / "bad"
    write_oci_layout(bad, [blob], image_config(["sha256:" + "0" * 64], cmd=["/a"], env=[]))
    with pytest.raises(TeeformError, match="diff_id mismatch"):
        oci.flatten(oci.open_image(bad), tmp_path)


def test_crc32_is_zlibs_crc() -> None:
    """teeform.hashlanes.crc32 (ISA-L when python-isal is installed) against zlib.crc32 and the CRC
    catalogue's check value of CRC-32/ISO-HDLC (reveng.sourceforge.io/crc-catalogue: check=0xcbf43926)."""
    from teeform.hashlanes import crc32

    assert crc32(b"123456789") == 0xCBF43926
    data = os.urandom(3 << 20)
    for cut in (0, 1, 4095, 1 << 20):
        assert crc32(data[cut:], crc32(data[:cut])) == zlib.crc32(data)
    c = Crc32()
    c.update(data[:5])
    c.update(data[5:])
    assert c.value == zlib.crc32(data)


@pytest.mark.parametrize("file_digests", [(), ("sha256",)])
def test_progress_reports_each_pass_up_to_its_total(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     file_digests: tuple[str, ...]) -> None:
    """With PROGRESS_EVERY 0 every piece is reported: per pass the byte counts only grow and end at
    the sum of the section sizes; the header-first layout has a measure pass, then a write pass.
    With the default interval a pass this small reports nothing, and the file is the same."""
    sections = _sections(True)
    total = sum(s.size for s in sections)
    calls: list[tuple[str, int, int]] = []
    monkeypatch.setattr(eif, "PROGRESS_EVERY", 0.0)
    with open(tmp_path / "a.eif", "w+b") as fh:
        eif.write_eif(fh, sections, file_digests=file_digests, progress=lambda *a: calls.append(a))
    names = ["measure pass", "write pass"] if file_digests else ["write pass"]
    assert list(dict.fromkeys(n for n, _, _ in calls)) == names
    for name in names:
        done = [d for n, d, t in calls if n == name and t == total]
        assert done == sorted(done) and done[-1] == total and len(done) == len([c for c in calls if c[0] == name])
    monkeypatch.setattr(eif, "PROGRESS_EVERY", 2.0)
    quiet: list[object] = []
    with open(tmp_path / "b.eif", "w+b") as fh:
        eif.write_eif(fh, _sections(True), file_digests=file_digests, progress=lambda *a: quiet.append(a))
    assert quiet == [] and (tmp_path / "a.eif").read_bytes() == (tmp_path / "b.eif").read_bytes()
