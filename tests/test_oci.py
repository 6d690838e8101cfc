"""OCI input (image_builder.inputs.oci): layouts and docker archives, digests, whiteouts, hostile layers.

Images are generated with image_builder.inputs.demo_image helpers (plain tarfile writers that deliberately
allow hostile members). Expected trees are written out by hand from the OCI layer rules
(image-spec ``layer.md``), not produced by the code under test.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
from conftest import require_tool

from image_builder.inputs import oci
from image_builder.inputs.demo_image import (
    LayerEntry,
    image_config,
    layer_blob,
    write_docker_archive,
    write_oci_layout,
)
from teeform.errors import TeeformError

F, D, L, H = "file", "dir", "symlink", "hardlink"

_FLATTEN = oci.flatten


@pytest.fixture(autouse=True, params=["inline", "deferred"])
def verification_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs twice: with flatten's inline layer verification, and with
    ``defer_verification=True`` followed at once by ``check_unchanged()`` (what the EIF build does,
    minus the overlap), so both paths must give the same trees and refuse the same inputs with the
    same messages."""
    if request.param == "deferred":
        def deferred(image, work_dir=None, **kw):  # type: ignore[no-untyped-def]
            tree = _FLATTEN(image, work_dir, defer_verification=True, **kw)
            try:
                tree.check_unchanged()
            except BaseException:
                tree.close()
                raise
            return tree

        monkeypatch.setattr(oci, "flatten", deferred)
    return str(request.param)


def make_layout(tmp: Path, layers: list[list[LayerEntry]], *, compression: str | None = None,
                name: str = "img", **cfg: object) -> Path:
    blobs = [layer_blob(tmp / "blobs-work", entries, compression=compression, mtime=1000) for entries in layers]
    dest = tmp / name
    config = image_config([b.diff_id for b in blobs], cmd=cfg.get("cmd", ["/bin/app"]), env=cfg.get("env", ["A=1"]),  # type: ignore[arg-type]
                          entrypoint=cfg.get("entrypoint"), created=0)  # type: ignore[arg-type]
    write_oci_layout(dest, blobs, config, ref_name="docker.io/library/myapp:1.0")
    return dest


def tree_of(image_path: Path) -> dict[str, tuple[str, ...]]:
    """path -> (kind, mode octal, content or target) for a compact comparison."""
    image = oci.open_image(image_path)
    out: dict[str, tuple[str, ...]] = {}
    with oci.flatten(image) as tree:
        for e in tree.entries():
            if e.kind is oci.EntryKind.FILE:
                with tree.open(e) as fh:
                    out[e.path] = ("file", oct(e.mode), fh.read().decode())
            elif e.kind is oci.EntryKind.SYMLINK:
                out[e.path] = ("symlink", e.link_target)
            else:
                out[e.path] = (e.kind.value, oct(e.mode))
    return out


def test_whiteouts_opaque_dirs_and_replacement(tmp_path: Path) -> None:
    lower = [
        LayerEntry("a/", D), LayerEntry("a/x", F, b"x"), LayerEntry("a/y", F, b"y"),
        LayerEntry("b/", D), LayerEntry("b/z", F, b"z"),
        LayerEntry("c", F, b"c-file"),
        LayerEntry("d/", D), LayerEntry("d/sub/", D), LayerEntry("d/sub/w", F, b"w"), LayerEntry("d/keep", F, b"k"),
        LayerEntry("e/", D), LayerEntry("e/inner", F, b"i"),
        LayerEntry("f", F, b"old", mode=0o600),
    ]
    upper = [
        LayerEntry("a/.wh.x", F),                   # delete a/x
        LayerEntry(".wh.b", F),                     # delete b and everything under it
        LayerEntry("d/new", F, b"n"),               # same-layer entry BEFORE the opaque marker survives
        LayerEntry("d/.wh..wh..opq", F),            # hide lower d/*
        LayerEntry("c/", D), LayerEntry("c/now-a-dir", F, b"1"),  # file replaced by directory
        LayerEntry("e", F, b"now-a-file"),         # directory (with children) replaced by file
        LayerEntry("f", F, b"new", mode=0o755),     # file replaced by file
        LayerEntry(".wh.missing", F),               # whiteout of nothing: ignored
    ]
    got = tree_of(make_layout(tmp_path, [lower, upper]))
    assert got == {
        "a": ("dir", "0o755"), "a/y": ("file", "0o644", "y"),
        "c": ("dir", "0o755"), "c/now-a-dir": ("file", "0o644", "1"),
        "d": ("dir", "0o755"), "d/new": ("file", "0o644", "n"),
        "e": ("file", "0o644", "now-a-file"),
        "f": ("file", "0o755", "new"),
    }


def test_links_fifo_implicit_parents_and_owners(tmp_path: Path) -> None:
    layer = [
        LayerEntry("usr/bin/tool", F, b"bin", mode=0o4755, uid=1000, gid=1001),  # parents created implicitly
        LayerEntry("usr/bin/alias", H, target="usr/bin/tool"),
        LayerEntry("bin/sh", L, target="/usr/bin/tool"),     # absolute target inside the image: fine
        LayerEntry("usr/lib/rel", L, target="../bin/tool"),  # relative, stays inside
        LayerEntry("run/pipe", "fifo", mode=0o600),          # FIFOs are accepted
    ]
    image = oci.open_image(make_layout(tmp_path, [layer]))
    with oci.flatten(image) as tree:
        entries = {e.path: e for e in tree.entries()}
        assert list(entries) == sorted(entries, key=str.encode)
        tool, alias = entries["usr/bin/tool"], entries["usr/bin/alias"]
        assert tool.inode == alias.inode and tool.inode is not None
        assert (tool.mode, tool.uid, tool.gid) == (0o4755, 1000, 1001)
        assert entries["usr"].kind is oci.EntryKind.DIR and entries["usr"].mode == 0o755
        assert entries["bin/sh"].link_target == "/usr/bin/tool"
        assert entries["run/pipe"].kind is oci.EntryKind.FIFO


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([LayerEntry("../evil", F, b"x")], r"member '\.\./evil': path contains '\.\.'"),
        ([LayerEntry("ok/../../evil", F, b"x")], r"member 'ok/\.\./\.\./evil': path contains '\.\.'"),
        ([LayerEntry("/etc/passwd", F, b"x")], r"member '/etc/passwd': absolute path"),
        ([LayerEntry("a/", D), LayerEntry("a/l", L, target="../../etc/shadow")],
         r"member 'a/l': symlink target '\.\./\.\./etc/shadow' escapes the image root"),
        ([LayerEntry("l", L, target="/../../etc")], r"member 'l': symlink target '/\.\./\.\./etc' escapes"),
        ([LayerEntry("h", H, target="../outside")], r"member 'h': hardlink target '\.\./outside' escapes"),
        ([LayerEntry("h", H, target="/etc/passwd")], r"member 'h': hardlink target '/etc/passwd' escapes"),
        ([LayerEntry("h", H, target="nothing")], r"hardlink target 'nothing' does not exist"),
        ([LayerEntry("dev/sda", "blk")], r"member 'dev/sda': block device node"),
        ([LayerEntry("dev/mem", "chr")], r"member 'dev/mem': character device node"),
        ([LayerEntry("etc", L, target="/tmp"), LayerEntry("etc/passwd", F, b"x")],
         r"member 'etc/passwd': parent 'etc' is a symlink"),
    ],
)
def test_hostile_layers_are_refused(tmp_path: Path, entries: list[LayerEntry], message: str) -> None:
    image = oci.open_image(make_layout(tmp_path, [entries]))
    with pytest.raises(TeeformError, match=message) as info:
        oci.flatten(image, tmp_path)
    assert "layer 1/1 (sha256:" in str(info.value)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("teeform-")] == []  # spool removed


def test_wrong_layer_digest_names_the_layer(tmp_path: Path) -> None:
    layout = make_layout(tmp_path, [[LayerEntry("a", F, b"aaaa")], [LayerEntry("b", F, b"bbbb")]])
    man = json.loads((layout / "blobs/sha256" / (json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]
                                                   .split(":")[1])).read_text())
    victim = man["layers"][1]["digest"]
    blob = layout / "blobs/sha256" / victim.split(":")[1]
    data = bytearray(blob.read_bytes())
    data[600] ^= 0xFF  # inside the content of member "b"
    blob.write_bytes(bytes(data))
    image = oci.open_image(layout)
    with pytest.raises(TeeformError, match=rf"layer 2/2 \({victim[:19]}\): digest mismatch: descriptor says {victim}"):
        oci.flatten(image)


def test_wrong_diff_id_is_refused(tmp_path: Path) -> None:
    blob = layer_blob(tmp_path / "w", [LayerEntry("a", F, b"a")], compression="gzip")
    config = image_config(["sha256:" + "0" * 64], cmd=["/a"], env=[])
    write_oci_layout(tmp_path / "img", [blob], config)
    with pytest.raises(TeeformError, match=r"layer 1/1 .*diff_id mismatch: config says sha256:0{64}"):
        oci.flatten(oci.open_image(tmp_path / "img"))


def test_manifest_digest_mismatch_is_refused(tmp_path: Path) -> None:
    layout = make_layout(tmp_path, [[LayerEntry("a", F, b"a")]])
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0]["digest"] = "sha256:" + "1" * 64
    (layout / "index.json").write_text(json.dumps(index))
    with pytest.raises(TeeformError, match="blob blobs/sha256/1{64} is missing"):
        oci.open_image(layout)
    digest = [p for p in (layout / "blobs/sha256").iterdir()][0].name
    os.rename(layout / "blobs/sha256" / digest, layout / "blobs/sha256" / ("1" * 64))
    with pytest.raises(TeeformError, match="digest mismatch"):
        oci.open_image(layout)


def test_gzip_zstd_and_plain_layers_flatten_identically(tmp_path: Path) -> None:
    require_tool("zstd")
    layers = [[LayerEntry("x/", D), LayerEntry("x/f", F, b"content " * 1000)], [LayerEntry("x/g", F, b"g")]]
    trees = [tree_of(make_layout(tmp_path, layers, compression=c, name=f"img-{c}")) for c in (None, "gzip", "zstd")]
    assert trees[0] == trees[1] == trees[2]
    assert trees[0]["x/f"][2] == "content " * 1000


def test_docker_archives_legacy_and_oci(tmp_path: Path) -> None:
    entries = [LayerEntry("app/", D), LayerEntry("app/run", F, b"#!/bin/sh\n", mode=0o755)]
    blob = layer_blob(tmp_path / "w", entries, mtime=0)
    config = image_config([blob.diff_id], cmd=["/app/run"], env=["X=1"], created=0)
    write_oci_layout(tmp_path / "layout", [blob], config)
    write_docker_archive(tmp_path / "legacy.tar", [blob], config, repo_tag="agent:v1", fmt="legacy")
    write_docker_archive(tmp_path / "oci.tar", [blob], config, repo_tag="agent:v1", fmt="oci")
    legacy, ocitar, layout = (oci.open_image(tmp_path / n) for n in ("legacy.tar", "oci.tar", "layout"))
    assert legacy.format == "docker-archive (legacy)" and legacy.manifest_digest is None
    assert ocitar.format == "docker-archive (OCI)" and ocitar.manifest_digest == layout.manifest_digest
    assert legacy.config_digest == ocitar.config_digest == layout.config_digest
    assert legacy.default_name == ocitar.default_name == "agent"
    assert tree_of(tmp_path / "legacy.tar") == tree_of(tmp_path / "oci.tar") == tree_of(tmp_path / "layout")


def test_legacy_archive_layer_tampering_detected(tmp_path: Path) -> None:
    blob = layer_blob(tmp_path / "w", [LayerEntry("f", F, b"A" * 100)], mtime=0)
    config = image_config([blob.diff_id], cmd=["/f"], env=[])
    archive = tmp_path / "legacy.tar"
    write_docker_archive(archive, [blob], config, fmt="legacy")
    data = archive.read_bytes()
    archive.write_bytes(data.replace(b"A" * 100, b"B" * 100, 1))
    with pytest.raises(TeeformError, match=r"layer 1/1 \(0{64}/layer.tar\): diff_id mismatch"):
        oci.flatten(oci.open_image(archive))


def test_platform_selection(tmp_path: Path) -> None:
    layouts = {}
    for arch in ("amd64", "arm64", "amd64"):
        blob = layer_blob(tmp_path / "w", [LayerEntry(f"{arch}-{len(layouts)}", F, b"x")])
        cfg = image_config([blob.diff_id], cmd=["/x"], env=[], architecture=arch)
        layouts[f"{arch}-{len(layouts)}"] = (blob, cfg)
    # one layout with an index listing amd64 and arm64 manifests (by merging two layouts)
    merged = tmp_path / "multi"
    first = write_oci_layout(merged, [layouts["amd64-0"][0]], layouts["amd64-0"][1], platform={"os": "linux", "architecture": "amd64"})
    idx1 = json.loads((merged / "index.json").read_text())
    write_oci_layout(merged, [layouts["arm64-1"][0]], layouts["arm64-1"][1], platform={"os": "linux", "architecture": "arm64"})
    idx2 = json.loads((merged / "index.json").read_text())
    idx1["manifests"] += idx2["manifests"]
    (merged / "index.json").write_text(json.dumps(idx1))
    assert oci.open_image(merged).manifest_digest == first["manifest"]  # default: the linux/amd64 one
    assert oci.open_image(merged, platform="linux/arm64").platform.architecture == "arm64"
    with pytest.raises(TeeformError, match=r"no image for platform linux/s390x \(available: linux/amd64, linux/arm64\)"):
        oci.open_image(merged, platform="linux/s390x")
    # a second amd64 image makes the default ambiguous
    write_oci_layout(merged, [layouts["amd64-2"][0]], layouts["amd64-2"][1])
    idx3 = json.loads((merged / "index.json").read_text())
    idx1["manifests"] += idx3["manifests"]
    (merged / "index.json").write_text(json.dumps(idx1))
    with pytest.raises(TeeformError, match="lists 2 matching images") as info:
        oci.open_image(merged)
    assert "--platform" in (info.value.hint or "")


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"Cmd": ["/c"], "Env": ["E=1"]}, (["/c"], ["E=1"])),
        ({"Entrypoint": ["/e"], "Cmd": ["/c"], "Env": []}, (["/c"], [])),       # Cmd wins, Entrypoint ignored
        ({"Entrypoint": ["/e", "-x"], "Env": ["E=1"]}, (["/e", "-x"], ["E=1"])),
        ({"Entrypoint": ["/e"], "Cmd": None, "Env": None}, (["/e"], [])),
        ({"Entrypoint": ["/e"], "Cmd": ["/c"]}, (["/e"], [])),                 # nitro-cli quirk: no Env -> Entrypoint
    ],
)
def test_select_command_like_nitro_cli(config: dict[str, object], expected: tuple[list[str], list[str]]) -> None:
    assert oci.select_command({"config": config}) == expected


@pytest.mark.parametrize("config", [{}, {"Env": ["A=1"]}, {"Cmd": ["/c"]}, {"Cmd": None, "Entrypoint": None}])
def test_select_command_errors(config: dict[str, object]) -> None:
    with pytest.raises(TeeformError, match="no usable Cmd or Entrypoint"):
        oci.select_command({"config": config})


def test_extract_rootfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "500")
    layer = [
        LayerEntry("ro/", D, mode=0o555), LayerEntry("ro/f", F, b"data", mode=0o400, mtime=100),
        LayerEntry("ro/g", H, target="ro/f"), LayerEntry("s", L, target="ro/f"),
        LayerEntry("p", "fifo", mode=0o644), LayerEntry("new", F, b"n", mtime=10_000),
    ]
    layout = make_layout(tmp_path, [layer])
    dest = tmp_path / "root"
    image = oci.extract_rootfs(layout, dest)
    assert image.layers and (dest / "ro/f").read_bytes() == b"data"
    assert stat.S_IMODE((dest / "ro").stat().st_mode) == 0o555
    assert stat.S_IMODE((dest / "ro/f").stat().st_mode) == 0o400
    assert (dest / "ro/f").stat().st_ino == (dest / "ro/g").stat().st_ino
    assert os.readlink(dest / "s") == "ro/f"
    assert stat.S_ISFIFO((dest / "p").lstat().st_mode)
    assert (dest / "ro/f").stat().st_mtime == 100 and (dest / "new").stat().st_mtime == 500  # clamped
    with pytest.raises(TeeformError, match="must be an empty directory"):
        oci.extract_rootfs(layout, dest)


def test_extract_rootfs_hostile_leaves_nothing(tmp_path: Path) -> None:
    layout = make_layout(tmp_path, [[LayerEntry("ok", F, b"1")], [LayerEntry("../escape", F, b"x")]])
    dest = tmp_path / "root"
    dest.mkdir()
    with pytest.raises(TeeformError, match="layer 2/2"):
        oci.extract_rootfs(layout, dest)
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "escape").exists()


def test_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(TeeformError, match="not an OCI image layout"):
        oci.open_image(tmp_path)
    (tmp_path / "x.tar.gz").write_bytes(b"\x1f\x8b\x08\x00rest")
    with pytest.raises(TeeformError, match="compressed image archives are not accepted"):
        oci.open_image(tmp_path / "x.tar.gz")
    with pytest.raises(TeeformError, match="image not found"):
        oci.open_image(tmp_path / "missing.tar")


def test_image_name_from_ref() -> None:
    assert oci.image_name_from_ref("docker.io/library/busybox:1.36@sha256:" + "0" * 64) == "busybox"
    assert oci.image_name_from_ref("localhost:5000/team/agent") == "agent"
    assert oci.image_name_from_ref("latest") == "latest"
    assert oci.image_name_from_ref(None) is None


def test_other_platform_blobs_may_be_missing(tmp_path: Path) -> None:
    """A single-platform `docker save` of a multi-platform index lacks the other platforms' blobs."""
    layout = tmp_path / "multi"
    blob = layer_blob(tmp_path / "w", [LayerEntry("a", F, b"a")])
    write_oci_layout(layout, [blob], image_config([blob.diff_id], cmd=["/a"], env=[]),
                     platform={"os": "linux", "architecture": "amd64"})
    index = json.loads((layout / "index.json").read_text())
    index["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "e" * 64,
                               "size": 100, "platform": {"os": "linux", "architecture": "arm64"}})
    (layout / "index.json").write_text(json.dumps(index))
    assert oci.open_image(layout).platform.architecture == "amd64"
    with pytest.raises(TeeformError, match="blob blobs/sha256/e{64} is missing"):
        oci.open_image(layout, platform="linux/arm64")


def test_uncompressed_layer_read_in_place_and_change_detected(tmp_path: Path) -> None:
    """An uncompressed layout layer is not spooled: contents come from the verified blob fd, and a write
    to the blob after verification is refused by FlatTree.check_unchanged (oracle: the layer's own bytes)."""
    big = bytes(range(256)) * 4096
    layout = make_layout(tmp_path, [[LayerEntry("d/", D), LayerEntry("d/big", F, big), LayerEntry("d/small", F, b"s")]])
    image = oci.open_image(layout)
    blob = layout / image.layers[0].location
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    with oci.flatten(image, spool_dir) as tree:
        files = {e.path: e for e in tree.entries() if e.kind is oci.EntryKind.FILE}
        with tree.open(files["d/big"]) as fh:
            assert fh.read() == big
        with tree.open(files["d/small"]) as fh:
            assert fh.read() == b"s"
        tree.check_unchanged()
        assert not any(p.stat().st_size for p in spool_dir.iterdir())  # nothing was copied to a spool
        data = blob.read_bytes()
        time.sleep(0.05)  # past the file system's (coarse, jiffy) timestamp granularity
        with open(blob, "r+b") as fh:  # an in-place write (even of the same bytes) updates the ctime
            fh.write(data[:512])
        with pytest.raises(TeeformError, match="layer blob changed"):
            tree.check_unchanged()


@pytest.mark.parametrize("damage", ["truncated", "corrupt deflate", "bad crc", "trailing garbage"])
def test_a_broken_gzip_layer_with_a_matching_digest_is_one_clear_error(tmp_path: Path, damage: str) -> None:
    """Gzip layers inflate through ISA-L (oci._GzipReader); a deflate stream that is broken but whose
    blob digest is right (the descriptor was computed over the broken bytes) ends in one TeeformError
    naming the layer, whatever the inflater raises (EOFError, BadGzipFile, IsalError)."""
    import dataclasses
    import hashlib

    good = layer_blob(tmp_path / "w", [LayerEntry("x/", D), LayerEntry("x/f", F, os.urandom(50_000))], compression="gzip")
    data = bytearray(good.path.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "corrupt deflate":
        data[len(data) // 2: len(data) // 2 + 64] = b"\xff" * 64
    elif damage == "bad crc":
        data[-8:-4] = bytes(4)
    else:
        data += b"not gzip"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    broken = tmp_path / "w" / digest.split(":")[1]
    broken.write_bytes(bytes(data))
    good.path.unlink()
    blob = dataclasses.replace(good, path=broken, digest=digest, size=len(data))
    write_oci_layout(tmp_path / "img", [blob], image_config([good.diff_id], cmd=["/a"], env=[]))
    with pytest.raises(TeeformError, match=r"layer 1/1 .*(not a valid tar stream|diff_id mismatch)"):
        oci.flatten(oci.open_image(tmp_path / "img"))


def test_gzip_layers_inflate_with_isa_l() -> None:
    """The pinned python-isal is what inflates gzip layers (requirements.txt), not the slower zlib."""
    assert oci._GzipReader.__module__ == "isal.igzip"
