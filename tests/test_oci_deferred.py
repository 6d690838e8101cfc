"""Deferred layer verification (``oci.flatten(..., defer_verification=True)``), as the EIF build uses it.

tests/test_oci.py runs all of its cases through both paths (its ``verification_mode`` fixture); this
file covers what only the deferred path has: the digest check happens later (in
``FlatTree.check_unchanged``, or on a thread after ``start_verification``), a blob that does not
parse is still reported as a digest mismatch, compressed layers are verified at once, and closing a
tree stops a running check. Expected digests come from hashlib over the blob files the tests wrote.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from image_builder.inputs import oci
from image_builder.inputs.demo_image import LayerEntry, image_config, layer_blob, write_oci_layout
from teeform.errors import TeeformError

F, D = "file", "dir"


def _layout(tmp: Path, layers: list[list[LayerEntry]], compression: str | None = None) -> Path:
    blobs = [layer_blob(tmp / "work", e, compression=compression, mtime=1000) for e in layers]
    dest = tmp / "img"
    write_oci_layout(dest, blobs, image_config([b.diff_id for b in blobs], cmd=["/a"], env=[], created=0))
    return dest


def _layer_blobs(layout: Path) -> list[Path]:
    index = json.loads((layout / "index.json").read_text())
    man = json.loads((layout / "blobs/sha256" / index["manifests"][0]["digest"].split(":")[1]).read_text())
    return [layout / "blobs/sha256" / d["digest"].split(":")[1] for d in man["layers"]]


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_tampered_in_place_layer_is_refused_by_check_unchanged_not_by_flatten(tmp_path: Path) -> None:
    layout = _layout(tmp_path, [[LayerEntry("a", F, b"aaaa")], [LayerEntry("b", F, b"b" * 5000)]])
    victim = _layer_blobs(layout)[1]
    recorded = "sha256:" + victim.name
    _flip(victim, 700)  # inside the content of member "b": the tar still parses
    actual = "sha256:" + hashlib.sha256(victim.read_bytes()).hexdigest()
    image = oci.open_image(layout)
    with oci.flatten(image, tmp_path, defer_verification=True) as tree:
        assert tree.pending_bytes == sum(p.stat().st_size for p in _layer_blobs(layout))
        with pytest.raises(TeeformError, match=rf"layer 2/2 \({recorded[:19]}\): digest mismatch: "
                                               rf"descriptor says {recorded}, blob hashes to {actual}"):
            tree.check_unchanged()


def test_start_verification_runs_the_check_on_a_thread_and_check_unchanged_reraises_it(tmp_path: Path) -> None:
    layout = _layout(tmp_path, [[LayerEntry("big", F, bytes(range(256)) * 40_000)]])
    victim = _layer_blobs(layout)[0]
    _flip(victim, 1000)
    with oci.flatten(oci.open_image(layout), tmp_path, defer_verification=True) as tree:
        tree.start_verification()
        tree.start_verification()  # a second call is a no-op
        with pytest.raises(TeeformError, match=r"layer 1/1 .*digest mismatch"):
            tree.check_unchanged()


def test_an_intact_image_passes_and_the_check_runs_once(tmp_path: Path) -> None:
    layout = _layout(tmp_path, [[LayerEntry("d/", D), LayerEntry("d/f", F, b"x" * 3000)]])
    with oci.flatten(oci.open_image(layout), tmp_path, defer_verification=True) as tree:
        tree.start_verification()
        tree.check_unchanged()
        assert tree.pending_bytes == 0
        tree.check_unchanged()  # nothing left to hash; the fstat check still runs


def test_a_blob_that_does_not_parse_is_reported_as_a_digest_mismatch(tmp_path: Path) -> None:
    layout = _layout(tmp_path, [[LayerEntry("a", F, b"aaaa")]])
    victim = _layer_blobs(layout)[0]
    victim.write_bytes(b"\x01" * 1024)  # no tar header at all
    with pytest.raises(TeeformError, match=r"layer 1/1 .*digest mismatch: descriptor says sha256:"):
        oci.flatten(oci.open_image(layout), tmp_path, defer_verification=True)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("teeform-")] == []  # spool removed


def test_truncated_content_is_refused_while_seeking(tmp_path: Path) -> None:
    """The deferred parse seeks over contents instead of reading them: a member whose content runs
    past the end of the blob must still be refused as truncated (the digest is then not reached)."""
    layout = _layout(tmp_path, [[LayerEntry("a", F, b"a" * 600), LayerEntry("z", F, b"z" * 100_000)]])
    victim = _layer_blobs(layout)[0]
    data = victim.read_bytes()
    cut = data.index(b"z" * 512) + 2048  # inside the content of "z"
    victim.write_bytes(data[:cut])
    with pytest.raises(TeeformError, match=r"layer 1/1 .*truncated"):
        oci.flatten(oci.open_image(layout), tmp_path, defer_verification=True)


def test_compressed_layers_are_verified_at_once(tmp_path: Path) -> None:
    layout = _layout(tmp_path, [[LayerEntry("a", F, b"aaaa" * 100)]], compression="gzip")
    with oci.flatten(oci.open_image(layout), tmp_path, defer_verification=True) as tree:
        assert tree.pending_bytes == 0  # spooled and verified while flattening
    _flip(_layer_blobs(layout)[0], 30)
    with pytest.raises(TeeformError, match="layer 1/1"):
        oci.flatten(oci.open_image(layout), tmp_path, defer_verification=True)


def test_close_stops_a_running_check(tmp_path: Path) -> None:
    layout = _layout(tmp_path, [[LayerEntry("big", F, b"\x5a" * (48 << 20))]])
    tree = oci.flatten(oci.open_image(layout), tmp_path, defer_verification=True)
    tree.start_verification()
    worker = tree._worker
    assert worker is not None
    tree.close()  # must not close the blob descriptors under the running thread
    assert not worker.is_alive()


# ------------------------------------------------------------------ differential fuzzing of the two paths
def _seed_layer() -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in (("d/", None), ("d/" + "n" * 120, b"long name " * 60), ("d/small", b"s"),
                           ("d/.wh.gone", b""), ("e", b"e" * 1500)):
            ti = tarfile.TarInfo(name.rstrip("/"))
            if data is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            else:
                ti.size, ti.mode, ti.pax_headers = len(data), 0o644, {"comment": "x"}
                tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


SEED = _seed_layer()


def _outcome(layout: Path, work: Path, defer: bool) -> object:
    """("ok", tree) or ("refused",); anything but TeeformError propagates and fails the test."""
    try:
        with oci.flatten(oci.open_image(layout), work, defer_verification=defer) as tree:
            tree.check_unchanged()
            out = []
            for e in tree.entries():
                data = b""
                if e.kind is oci.EntryKind.FILE:
                    with tree.open(e) as fh:
                        data = fh.read()
                out.append((e.path, e.kind.value, e.mode, e.size, e.link_target, data))
            return ("ok", out)
    except TeeformError as exc:
        assert exc.message and "\n" not in exc.message
        return ("refused",)


def test_deferred_and_inline_agree_on_mutated_layers() -> None:
    """Byte edits of a PAX layer whose digests are then *recomputed* (so the tar parser, not the
    digest check, meets the damage): the deferred path (seeking over contents) and the inline path
    (reading them) must both accept with the same tree, or both refuse with a TeeformError."""
    import os
    import tempfile

    from hypothesis import HealthCheck, given, settings
    from test_fuzz_cli_parsers import byte_edits

    from image_builder.inputs.demo_image import MT_LAYER, LayerBlob

    @settings(max_examples=int(os.environ.get("TEEFORM_FUZZ_EXAMPLES", "150")), deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(raw=byte_edits(SEED))
    def check(raw: bytes) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            digest = "sha256:" + hashlib.sha256(raw).hexdigest()
            blob = root / digest.split(":")[1]
            blob.write_bytes(raw)
            layer = LayerBlob(blob, MT_LAYER[None], digest, len(raw), digest)
            write_oci_layout(root / "img", [layer], image_config([digest], cmd=["/a"], env=[], created=0))
            assert _outcome(root / "img", root, True) == _outcome(root / "img", root, False)

    check()
