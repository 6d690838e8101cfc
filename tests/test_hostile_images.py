"""Hostile inputs to the image readers and the build/measure commands (issue 7 item 3).

Each test feeds one member of a class of bad input and checks the one-line TeeformError: that it
names the file and the field, that the CLI exits 2 without a traceback for a few of them, and that
nothing is left in ``--out``. Inputs are built by hand (raw JSON bytes, ``tarfile`` with PAX headers,
patched headers of files written by the project's own writers), not by the code under test.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import tarfile
from pathlib import Path
from typing import Any

import pytest

from image_builder.inputs import oci
from teeform.cli import main
from teeform.errors import TeeformError

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"
CMDLINE = "console=ttyS0"


# ------------------------------------------------------------------------------------ helpers


def _j(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def layer_tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    """An uncompressed PAX tar of ``(TarInfo, content)`` pairs."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in members:
            tf.addfile(ti, io.BytesIO(data) if data else None)
    return buf.getvalue()


def member(name: str, data: bytes = b"x", *, kind: bytes = tarfile.REGTYPE, pax: dict[str, str] | None = None,
           linkname: str = "") -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    ti.linkname = linkname
    ti.pax_headers = dict(pax or {})
    return ti, data if kind == tarfile.REGTYPE else b""


DEFAULT_LAYER = layer_tar([member("app/", kind=tarfile.DIRTYPE), member("app/run", b"#!/bin/sh\n")])


def write_layout(dest: Path, *, layer: bytes = DEFAULT_LAYER, config: dict[str, Any] | None = None,
                 config_bytes: bytes | None = None, manifest: dict[str, Any] | None = None,
                 manifest_bytes: bytes | None = None, index_desc: dict[str, Any] | None = None,
                 index_bytes: bytes | None = None, layout_bytes: bytes | None = None) -> Path:
    """An OCI layout (image-spec image-layout.md) whose every JSON document can be replaced by raw bytes;
    digests are recomputed so that only the intended defect is present."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> tuple[str, int]:
        h = hashlib.sha256(data).hexdigest()
        (blobs / h).write_bytes(data)
        return "sha256:" + h, len(data)

    layer_digest, layer_size = put(layer)
    cfg = config if config is not None else {
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/app/run"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }
    cfg_digest, cfg_size = put(config_bytes if config_bytes is not None else _j(cfg))
    man = manifest if manifest is not None else {
        "schemaVersion": 2, "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": cfg_digest, "size": cfg_size},
        "layers": [{"mediaType": MT_LAYER, "digest": layer_digest, "size": layer_size}],
    }
    man_digest, man_size = put(manifest_bytes if manifest_bytes is not None else _j(man))
    desc = {"mediaType": MT_MANIFEST, "digest": man_digest, "size": man_size, **(index_desc or {})}
    (dest / "index.json").write_bytes(index_bytes if index_bytes is not None
                                      else _j({"schemaVersion": 2, "manifests": [desc]}))
    (dest / "oci-layout").write_bytes(layout_bytes if layout_bytes is not None else b'{"imageLayoutVersion":"1.0.0"}')
    return dest


def base_config(layer: bytes = DEFAULT_LAYER, **config: Any) -> dict[str, Any]:
    return {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/app/run"], "Env": ["PATH=/bin"], **config},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]}}


def refused(fn: Any, *args: Any, **kw: Any) -> str:
    """Run ``fn`` expecting a TeeformError; return its one-line rendering."""
    with pytest.raises(TeeformError) as ei:
        fn(*args, **kw)
    text = ei.value.render()
    assert "\n" not in text
    return text


def flatten_all(path: Path) -> None:
    with oci.flatten(oci.open_image(path)) as tree:
        list(tree.entries())


@pytest.fixture()
def blobs(tmp_path: Path) -> Path:
    d = tmp_path / "blobs"
    d.mkdir()
    (d / "bzImage").write_bytes(b"MZ" + bytes(range(256)) * 8)
    (d / "init").write_bytes(b"\x7fELF stand-in init")
    (d / "nsm.ko").write_bytes(b"stand-in nsm.ko")
    (d / "cmdline").write_text(CMDLINE + "\n")
    return d


def build_eif(image: Path, b: Path, out: Path, *extra: str, **override: str) -> int:
    args = {"--image": str(image), "--kernel": str(b / "bzImage"), "--init": str(b / "init"),
            "--nsm": str(b / "nsm.ko"), "--cmdline": f"@{b / 'cmdline'}", "--out": str(out)}
    args.update({k.replace("_", "-") if k.startswith("--") else f"--{k.replace('_', '-')}": v for k, v in override.items()})
    return main(["build", "eif", *(x for kv in args.items() for x in kv), *extra])


def one_error_line(err: str) -> str:
    """The CLI printed exactly one ``error:`` line (plus an optional ``hint:``) and no traceback."""
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("teeform: ")]
    assert "Traceback" not in err
    assert lines and lines[0].startswith("error: "), err
    assert len(lines) <= 2 and all(ln.startswith("hint: ") for ln in lines[1:]), err
    return lines[0]


def assert_nothing_written(out: Path) -> None:
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == [], sorted(out.iterdir())


# ------------------------------------------------------------------ OCI JSON: depth and numbers


@pytest.mark.parametrize("which", ["index", "manifest", "config", "oci-layout"])
def test_json_nested_thousands_deep_is_refused_naming_the_document(tmp_path: Path, which: str) -> None:
    deep = b"[" * 5000 + b"]" * 5000
    doc = b'{"schemaVersion":2,"x":' + deep + b"}"
    kw = {"index": {"index_bytes": doc}, "manifest": {"manifest_bytes": doc}, "config": {"config_bytes": doc},
          "oci-layout": {"layout_bytes": doc}}[which]
    img = write_layout(tmp_path / "img", **kw)
    msg = refused(oci.open_image, img)
    assert msg.startswith(f"{img}: ")
    assert "JSON nested 5001 levels deep (limit 64)" in msg
    name = {"index": "index.json", "manifest": "manifest sha256:", "config": "image config sha256:",
            "oci-layout": "oci-layout"}[which]
    assert name in msg


def test_json_integer_over_4300_digits_is_refused(tmp_path: Path) -> None:
    cfg = _j(base_config())[:-1] + b',"huge":' + b"9" * 5000 + b"}"
    img = write_layout(tmp_path / "img", config_bytes=cfg)
    msg = refused(oci.open_image, img)
    assert f"{img}: image config sha256:" in msg and "JSON integer of 5000 digits (limit 20)" in msg


def test_descriptor_size_with_huge_integer_in_index(tmp_path: Path) -> None:
    idx = b'{"schemaVersion":2,"manifests":[{"mediaType":"' + MT_MANIFEST.encode() + \
        b'","digest":"sha256:' + b"0" * 64 + b'","size":' + b"1" * 4400 + b"}]}"
    img = write_layout(tmp_path / "img", index_bytes=idx)
    assert "index.json: JSON integer of 4400 digits" in refused(oci.open_image, img)


def test_index_json_over_the_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oci, "MAX_JSON_BLOB", 1000)
    img = write_layout(tmp_path / "img", index_bytes=b'{"schemaVersion":2,"manifests":[]' + b" " * 2000 + b"}")
    assert refused(oci.open_image, img) == f"{img}: index.json: index.json is larger than the 1000-byte limit"


# -------------------------------------------------------------------------- OCI: wrong types


@pytest.mark.parametrize(
    ("index_desc", "field"),
    [
        ({"annotations": {"org.opencontainers.image.ref.name": 7}},
         "index.json manifests[0].annotations['org.opencontainers.image.ref.name']: expected a string, got a number"),
        ({"annotations": {"io.containerd.image.name": ["a"]}},
         "index.json manifests[0].annotations['io.containerd.image.name']: expected a string, got an array"),
        ({"annotations": "x"}, "index.json manifests[0].annotations: expected an object, got a string"),
        ({"platform": {"os": "linux", "architecture": "amd64", "variant": 8}},
         "index.json manifests[0].platform.variant: expected a string, got a number"),
        ({"platform": {"os": ["linux"], "architecture": "amd64"}},
         "index.json manifests[0].platform.os: expected a string, got an array"),
        ({"platform": "linux/amd64"}, "index.json manifests[0].platform: expected an object, got a string"),
        ({"mediaType": {"x": 1}}, "index.json manifests[0].mediaType: expected a string, got an object"),
        ({"size": True}, "index.json manifests[0]: descriptor size must be a non-negative integer"),
    ],
)
def test_wrong_types_in_the_index_are_refused_naming_the_field(tmp_path: Path, index_desc: dict[str, Any],
                                                              field: str) -> None:
    img = write_layout(tmp_path / "img", index_desc=index_desc)
    assert refused(oci.open_image, img) == f"{img}: {field}"


def test_config_variant_must_be_a_string(tmp_path: Path) -> None:
    img = write_layout(tmp_path / "img", config={**base_config(), "variant": {"v": 8}})
    assert refused(oci.open_image, img) == f"{img}: image config variant: expected a string, got an object"


@pytest.mark.parametrize(("key", "value"), [("Cmd", ["/app/run", "\ud800"]), ("Env", ["A=\udfff"]),
                                            ("Labels", {"k": "\ud83d"})])
def test_lone_surrogates_in_config_are_refused(tmp_path: Path, key: str, value: Any) -> None:
    # json.dumps writes lone surrogates as \\udXXX escapes, which json.loads turns back into lone surrogates
    cfg = base_config()
    cfg["config"][key] = value
    img = write_layout(tmp_path / "img", config=cfg)
    msg = refused(oci.open_image, img)
    assert msg.startswith(f"{img}: image config sha256:") and f"config.{key}" in msg and "lone surrogate" in msg


def _legacy_archive(dest: Path, manifest_json: Any, layer: bytes = DEFAULT_LAYER) -> Path:
    cfg = _j(base_config(layer))
    cfg_hex = hashlib.sha256(cfg).hexdigest()
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in ((f"{cfg_hex}.json", cfg), ("l/layer.tar", layer),
                           ("manifest.json", manifest_json if isinstance(manifest_json, bytes) else _j(manifest_json))):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return dest


@pytest.mark.parametrize(
    ("repo_tags", "field"),
    [([7], "manifest.json[0].RepoTags[0]: expected a string, got a number"),
     ("busybox:latest", "manifest.json[0].RepoTags: expected an array of strings, got a string"),
     ([{"a": 1}], "manifest.json[0].RepoTags[0]: expected a string, got an object")],
)
def test_legacy_repo_tags_must_be_strings(tmp_path: Path, repo_tags: Any, field: str) -> None:
    cfg_hex = hashlib.sha256(_j(base_config())).hexdigest()
    tar = _legacy_archive(tmp_path / "img.tar", [{"Config": f"{cfg_hex}.json", "RepoTags": repo_tags,
                                                  "Layers": ["l/layer.tar"]}])
    assert refused(oci.open_image, tar) == f"{tar}: {field}"


def test_legacy_repo_tags_of_several_images_must_be_strings(tmp_path: Path) -> None:
    tar = _legacy_archive(tmp_path / "img.tar", [{"RepoTags": ["a:1"]}, {"RepoTags": [None]}])
    assert refused(oci.open_image, tar) == f"{tar}: manifest.json[1].RepoTags[0]: expected a string, got null"


def test_legacy_layers_must_be_strings(tmp_path: Path) -> None:
    cfg_hex = hashlib.sha256(_j(base_config())).hexdigest()
    tar = _legacy_archive(tmp_path / "img.tar", [{"Config": f"{cfg_hex}.json", "Layers": [["l/layer.tar"]]}])
    assert refused(oci.open_image, tar) == f"{tar}: manifest.json[0].Layers[0]: expected a string, got an array"


def test_legacy_manifest_json_nested_deep(tmp_path: Path) -> None:
    tar = _legacy_archive(tmp_path / "img.tar", b"[" * 3000 + b"]" * 3000)
    assert refused(oci.open_image, tar) == f"{tar}: manifest.json: JSON nested 3000 levels deep (limit 64)"


def test_select_command_errors_name_the_image(tmp_path: Path) -> None:
    msg = refused(oci.select_command, {"config": {"Cmd": "sh"}}, source=tmp_path / "img")
    assert msg == f"{tmp_path / 'img'}: config.Cmd: image config `config.Cmd` must be a list of strings"


# ------------------------------------------------------------------------ tar member headers


def _flatten_layer(tmp: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> str:
    layer = layer_tar(members)
    img = write_layout(tmp / "img", layer=layer, config=base_config(layer))
    msg = refused(flatten_all, img)
    assert msg.startswith(f"{img}: layer 1/1 (sha256:")
    return msg


@pytest.mark.parametrize(
    ("pax", "shown"),
    [({"mtime": "inf"}, "mtime inf"), ({"mtime": "-inf"}, "mtime -inf"), ({"mtime": "nan"}, "mtime nan"),
     ({"mtime": "1e400"}, "mtime inf"), ({"mtime": "1" * 30}, "mtime 1.111111111111111e+29")],
)
def test_pax_mtime_that_is_not_a_finite_time(tmp_path: Path, pax: dict[str, str], shown: str) -> None:
    msg = _flatten_layer(tmp_path, [member("f", pax=pax)])
    assert f"member 'f': {shown}" in msg and "is not a finite 64-bit time (PAX mtime)" in msg


@pytest.mark.parametrize(("pax", "text"), [({"uid": "-1"}, "uid -1 is outside"),
                                           ({"gid": "9" * 20}, "gid 99999999999999999999 is outside")])
def test_pax_ids_outside_uid_t(tmp_path: Path, pax: dict[str, str], text: str) -> None:
    assert text in _flatten_layer(tmp_path, [member("f", pax=pax)])


def test_pax_negative_size(tmp_path: Path) -> None:
    assert "member 'f': negative size -5" in _flatten_layer(tmp_path, [member("f", pax={"size": "-5"})])


def test_pax_huge_size_on_a_directory_does_not_hang(tmp_path: Path) -> None:
    # tarfile "skips" a member's data in stream mode by reading block after block, even past EOF
    msg = _flatten_layer(tmp_path, [member("d/", kind=tarfile.DIRTYPE, pax={"size": "99999999999999"})])
    assert "member 'd': a directory member with a size of 99999999999999 bytes" in msg


def test_pax_huge_size_on_a_whiteout_does_not_hang(tmp_path: Path) -> None:
    msg = _flatten_layer(tmp_path, [member(".wh.gone", b"", pax={"size": "99999999999999"})])
    assert msg.endswith("not a valid tar stream: unexpected end of data")


def test_nul_in_a_pax_path(tmp_path: Path) -> None:
    assert "path contains a NUL byte" in _flatten_layer(tmp_path, [member("x", pax={"path": "etc/pass\0wd"})])


def test_nul_in_a_pax_linkpath(tmp_path: Path) -> None:
    msg = _flatten_layer(tmp_path, [member("l", kind=tarfile.SYMTYPE, pax={"linkpath": "a\0b"})])
    assert "member 'l': link target contains a NUL byte" in msg


def test_component_over_name_max(tmp_path: Path) -> None:
    msg = _flatten_layer(tmp_path, [member("d/" + "n" * 256)])
    assert "a path component is 256 bytes, over NAME_MAX (255)" in msg


def test_path_over_path_max(tmp_path: Path) -> None:
    name = "/".join(["p" * 200] * 21)  # 4220 bytes
    msg = _flatten_layer(tmp_path, [member(name)])
    assert f"path is {len(name)} bytes, over the 4088-byte limit" in msg


def test_link_target_over_path_max(tmp_path: Path) -> None:
    msg = _flatten_layer(tmp_path, [member("l", kind=tarfile.SYMTYPE, linkname="a/" * 2100)])
    assert "link target is over 4095 bytes" in msg


def test_directory_tree_1100_levels_deep(tmp_path: Path) -> None:
    members = [member("a/" * i, kind=tarfile.DIRTYPE) for i in range(1, 1101)]
    msg = _flatten_layer(tmp_path, members)
    assert "path is 513 directories deep, over the 512-level limit" in msg


def test_tree_at_the_depth_limit_flattens(tmp_path: Path) -> None:
    layer = layer_tar([member("a/" * i, kind=tarfile.DIRTYPE) for i in range(1, 513)])
    img = write_layout(tmp_path / "img", layer=layer, config=base_config(layer))
    with oci.flatten(oci.open_image(img)) as tree:
        assert len(list(tree.entries())) == 512


def test_oversized_pax_header_is_refused(tmp_path: Path) -> None:
    msg = _flatten_layer(tmp_path, [member("f", pax={"comment": "c" * (oci.MAX_TAR_EXT_HEADER + 10)})])
    assert "not a valid tar stream: extended header of" in msg


# ------------------------------------------------------- a directory or /dev/zero instead of a file


def test_image_given_as_dev_zero(tmp_path: Path) -> None:
    assert refused(oci.open_image, Path("/dev/zero")) == \
        "/dev/zero: image (OCI layout directory or docker-archive tar) is not a regular file"


def test_image_given_as_fifo_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "img.tar"
    os.mkfifo(fifo)
    assert refused(oci.open_image, fifo) == f"{fifo}: image (OCI layout directory or docker-archive tar) is not a regular file"


def test_layer_blob_that_is_a_fifo_or_directory(tmp_path: Path) -> None:
    img = write_layout(tmp_path / "img")
    digest = json.loads((img / "index.json").read_bytes())["manifests"][0]["digest"].split(":")[1]
    man = json.loads((img / "blobs/sha256" / digest).read_bytes())
    layer = img / "blobs/sha256" / man["layers"][0]["digest"].split(":")[1]
    layer.unlink()
    os.mkfifo(layer)
    image = oci.open_image(img)
    msg = refused(lambda: oci.flatten(image))
    assert msg == f"{layer}: blob blobs/sha256/{layer.name} is not a regular file"
    layer.unlink()
    layer.mkdir()
    assert refused(lambda: oci.flatten(image)) == f"{layer}: blob blobs/sha256/{layer.name} is a directory"


def test_blob_symlinked_to_dev_zero(tmp_path: Path) -> None:
    img = write_layout(tmp_path / "img")
    digest = json.loads((img / "index.json").read_bytes())["manifests"][0]["digest"].split(":")[1]
    man = img / "blobs/sha256" / digest
    man.unlink()
    man.symlink_to("/dev/zero")
    assert refused(oci.open_image, img) == f"{man}: blob blobs/sha256/{digest} is not a regular file"


# ----------------------------------------------------------------------------- through the CLI


def test_cli_build_eif_deep_json_config(tmp_path: Path, blobs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _j(base_config())[:-1] + b',"Labels":' + b"[" * 2000 + b"]" * 2000 + b"}"
    img = write_layout(tmp_path / "img", config_bytes=cfg)
    out = tmp_path / "out"
    assert build_eif(img, blobs, out) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {img}: image config sha256:") and "JSON nested 2001 levels deep" in line
    assert_nothing_written(out)


def test_cli_build_eif_pax_mtime_inf(tmp_path: Path, blobs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    layer = layer_tar([member("app/", kind=tarfile.DIRTYPE), member("app/run", pax={"mtime": "inf"})])
    img = write_layout(tmp_path / "img", layer=layer, config=base_config(layer))
    out = tmp_path / "out"
    out.mkdir()
    assert build_eif(img, blobs, out) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line == (f"error: {img}: layer 1/1 (sha256:{hashlib.sha256(layer).hexdigest()[:12]}): member 'app/run': "
                    "mtime inf is not a finite 64-bit time (PAX mtime)")
    assert_nothing_written(out)


def test_cli_build_eif_annotation_not_a_string(tmp_path: Path, blobs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = write_layout(tmp_path / "img", index_desc={"annotations": {"io.containerd.image.name": 1}})
    out = tmp_path / "out"
    assert build_eif(img, blobs, out) == 2
    assert one_error_line(capsys.readouterr().err) == (
        f"error: {img}: index.json manifests[0].annotations['io.containerd.image.name']: expected a string, got a number")
    assert_nothing_written(out)


# -------------------------------------------------------------------- build eif: file inputs


@pytest.mark.parametrize("opt", ["--kernel", "--init", "--nsm"])
@pytest.mark.parametrize("kind", ["directory", "/dev/zero", "fifo"])
def test_build_eif_blob_that_is_not_a_file(tmp_path: Path, blobs: Path, capsys: pytest.CaptureFixture[str],
                                           opt: str, kind: str) -> None:
    img = write_layout(tmp_path / "img")
    bad = {"directory": tmp_path / "d", "/dev/zero": Path("/dev/zero"), "fifo": tmp_path / "f"}[kind]
    if kind == "directory":
        bad.mkdir()
    elif kind == "fifo":
        os.mkfifo(bad)
    out = tmp_path / "out"
    assert build_eif(img, blobs, out, **{opt: str(bad)}) == 2
    assert one_error_line(capsys.readouterr().err) == f"error: {bad}: {opt}: not found (or not a regular file)"
    assert_nothing_written(out)


def test_build_eif_blob_over_the_size_limit(tmp_path: Path, blobs: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from image_builder.pipelines import build_eif as be

    monkeypatch.setattr(be, "MAX_BLOB_FILE", 100)
    out = tmp_path / "out"
    assert build_eif(write_layout(tmp_path / "img"), blobs, out) == 2
    kernel = blobs / "bzImage"
    assert one_error_line(capsys.readouterr().err) == f"error: {kernel}: --kernel: 2050 bytes, over the 100-byte limit"
    assert_nothing_written(out)


@pytest.mark.parametrize(("kind", "text"), [("directory", "is a directory"), ("/dev/zero", "is not a regular file"),
                                            ("fifo", "is not a regular file")])
def test_build_eif_cmdline_file_that_is_not_a_file(tmp_path: Path, blobs: Path, capsys: pytest.CaptureFixture[str],
                                                   kind: str, text: str) -> None:
    bad = {"directory": tmp_path / "d", "/dev/zero": Path("/dev/zero"), "fifo": tmp_path / "f"}[kind]
    if kind == "directory":
        bad.mkdir()
    elif kind == "fifo":
        os.mkfifo(bad)
    out = tmp_path / "out"
    assert build_eif(write_layout(tmp_path / "img"), blobs, out, cmdline=f"@{bad}") == 2
    assert one_error_line(capsys.readouterr().err) == f"error: {bad}: --cmdline file {text}"
    assert_nothing_written(out)


def test_build_eif_cmdline_file_over_64_kib(tmp_path: Path, blobs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "cmdline"
    big.write_text("console=ttyS0 " * 5000)
    out = tmp_path / "out"
    assert build_eif(write_layout(tmp_path / "img"), blobs, out, cmdline=f"@{big}") == 2
    assert one_error_line(capsys.readouterr().err) == \
        f"error: {big}: --cmdline file is 70000 bytes, over the 65536-byte limit"


@pytest.mark.parametrize("which", ["--signing-key", "--signing-cert"])
def test_build_eif_signing_files_that_are_not_files(tmp_path: Path, blobs: Path, capsys: pytest.CaptureFixture[str],
                                                    which: str) -> None:
    other = tmp_path / "other.pem"
    other.write_text("-----BEGIN X-----\n-----END X-----\n")
    paths = {"--signing-key": str(other), "--signing-cert": str(other), which: "/dev/zero"}
    out = tmp_path / "out"
    assert build_eif(write_layout(tmp_path / "img"), blobs, out, *(x for kv in paths.items() for x in kv)) == 2
    what = "--signing-key (PEM private key)" if which == "--signing-key" else "--signing-cert (PEM certificate)"
    assert one_error_line(capsys.readouterr().err) == f"error: /dev/zero: {what} is not a regular file"
    assert_nothing_written(out)


# ------------------------------------------------------------------------- EIF reader (measure)


def write_eif_file(path: Path, *, metadata: bytes = b'{"ImageName":"x"}', cmdline: bytes = b"console=ttyS0") -> Path:
    from image_builder.formats import eif

    secs = [eif.SectionSource(eif.SectionType.KERNEL, data=b"K" * 64),
            eif.SectionSource(eif.SectionType.CMDLINE, data=cmdline),
            eif.SectionSource(eif.SectionType.METADATA, data=metadata),
            eif.SectionSource(eif.SectionType.RAMDISK, data=b"R" * 32)]
    with open(path, "w+b") as fh:
        eif.write_eif(fh, secs)
    return path


def measure(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["measure", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    return one_error_line(err)


@pytest.mark.parametrize(
    ("metadata", "text"),
    [(b'{"ImageName":' + b"[" * 5000 + b"]" * 5000 + b"}", "JSON nested 5001 levels deep (limit 64)"),
     (b'{"ImageName":"x","n":' + b"7" * 4400 + b"}", "JSON integer of 4400 digits (limit 20)"),
     (b'{"ImageName":"\\udc80"}', "ImageName: string holds a lone surrogate at index 0"),
     (b'{"ImageName":NaN}', "JSON constant NaN is not allowed (RFC 8259 has no NaN/Infinity)")],
)
def test_measure_eif_hostile_metadata(tmp_path: Path, capsys: pytest.CaptureFixture[str], metadata: bytes,
                                      text: str) -> None:
    p = write_eif_file(tmp_path / "x.eif", metadata=metadata)
    line = measure(p, capsys)
    assert line.startswith(f"error: {p}: section 2 (metadata): ") and line.endswith(text)


def test_measure_eif_metadata_over_the_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from image_builder.formats import eif

    p = write_eif_file(tmp_path / "x.eif", metadata=b'{"ImageName":"' + b"n" * 2000 + b'"}')
    monkeypatch.setattr(eif, "MAX_METADATA", 1000)
    assert measure(p, capsys) == f"error: {p}: section 2 (metadata) is 2016 bytes, over the 1000-byte limit"


def test_measure_eif_non_string_image_name_is_not_shown(tmp_path: Path) -> None:
    from image_builder.formats import eif

    p = write_eif_file(tmp_path / "x.eif", metadata=b'{"ImageName":{"a":[1,2]},"ImageVersion":"' + b"v" * 300 + b'"}')
    report = eif.measure_report(p)
    assert report.facts["ImageName"] is None and report.facts["ImageVersion"] == "v" * 256 + "..."


def _patched(src: Path, dest: Path, offset: int, value: bytes, *, fix_crc: bool = True) -> Path:
    import zlib

    data = bytearray(src.read_bytes())
    data[offset:offset + len(value)] = value
    if fix_crc:
        data[544:548] = (zlib.crc32(bytes(data[:544]) + bytes(data[548:])) & 0xFFFFFFFF).to_bytes(4, "big")
    dest.write_bytes(bytes(data))
    return dest


@pytest.mark.parametrize(
    ("offset", "value", "text"),
    # eif-nitro.md §1.2: num_sections u16 at 26, section_offsets[32] u64 at 28, section_sizes[32] u64 at 284
    [(284 + 8, (1 << 63).to_bytes(8, "big"),
      ": section 1 (cmdline): section header says size 13, EIF header slot says 9223372036854775808"),
     (28 + 8, (1 << 64) .to_bytes(9, "big")[1:], "section 1 starts at offset 0, expected 624"),
     (26, (0xFFFF).to_bytes(2, "big"), ": num_sections is 65535, more than the maximum of 32")],
)
def test_measure_eif_corrupted_header_fields(tmp_path: Path, capsys: pytest.CaptureFixture[str], offset: int,
                                             value: bytes, text: str) -> None:
    good = write_eif_file(tmp_path / "good.eif")
    line = measure(_patched(good, tmp_path / "bad.eif", offset, value), capsys)
    assert line.startswith(f"error: {tmp_path / 'bad.eif'}: ") and text in line


def test_measure_eif_section_size_past_eof(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_eif_file(tmp_path / "good.eif")
    bad = tmp_path / "bad.eif"
    # section 0 (kernel) at 548: header u16 type, u16 flags, u64 size; and header slot section_sizes[0]
    size = (1 << 62).to_bytes(8, "big")
    _patched(good, bad, 548 + 4, size)
    _patched(bad, bad, 284, size)
    line = measure(bad, capsys)
    assert line == (f"error: {bad}: section 0 (kernel) extends beyond end of file: data ends at byte "
                    f"{548 + 12 + (1 << 62)}, the file is {bad.stat().st_size} bytes")


@pytest.mark.parametrize("kind", ["directory", "/dev/zero", "fifo"])
def test_measure_something_that_is_not_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    bad = {"directory": tmp_path / "d.eif", "/dev/zero": Path("/dev/zero"), "fifo": tmp_path / "f.eif"}[kind]
    if kind == "directory":
        bad.mkdir()
    elif kind == "fifo":
        os.mkfifo(bad)
    text = "is a directory" if kind == "directory" else "is not a regular file"
    assert measure(bad, capsys) == f"error: {bad}: artifact {text}"


# ------------------------------------------------------------------------------- PE / UKI reader

STUB = Path("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")


@pytest.fixture()
def stub_bytes() -> bytes:
    if not STUB.is_file():
        pytest.skip("systemd-boot-efi stub not installed")
    return STUB.read_bytes()


def _pe_patch(data: bytes, edits: list[tuple[int, str, int]]) -> bytes:
    out = bytearray(data)
    for off, fmt, value in edits:
        struct.pack_into(fmt, out, off, value)
    return bytes(out)


def _section(data: bytes, name: str) -> Any:
    from image_builder.formats.pe import parse_pe_headers

    return parse_pe_headers(data).section(name)


def test_pe_zero_fill_of_gigabytes_is_refused_quickly(tmp_path: Path, stub_bytes: bytes,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import time

    sec = _section(stub_bytes, ".sdmagic")
    bad = tmp_path / "fill.efi"
    bad.write_bytes(_pe_patch(stub_bytes, [(sec.header_offset + 8, "<I", 0xFFFFFFFF)]))  # VirtualSize
    t0 = time.monotonic()
    line = measure(bad, capsys)
    assert time.monotonic() - t0 < 5
    assert line.startswith(f"error: {bad}: section table: the sections' VirtualSize exceeds their file data by ")
    assert line.endswith("bytes in total, over the 67108864-byte zero-fill limit")


def test_pe_zero_fill_within_the_limit_is_measured(tmp_path: Path, stub_bytes: bytes) -> None:
    from image_builder.formats import uki

    sec = _section(stub_bytes, ".sdmagic")
    ok = tmp_path / "fill.efi"
    ok.write_bytes(_pe_patch(stub_bytes, [(sec.header_offset + 8, "<I", 0x10000)]))
    got = next(s for s in uki.read_uki_layout(ok).sections if s.name == ".sdmagic")
    data = stub_bytes[sec.pointer_to_raw_data:sec.pointer_to_raw_data + sec.size_of_raw_data]
    assert got.digests["sha256"] == hashlib.sha256(data + bytes(0x10000 - len(data))).hexdigest()


def test_pe_overlapping_sections_cannot_multiply_the_work(tmp_path: Path, stub_bytes: bytes,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from image_builder.formats.pe import parse_pe_headers

    hdr = parse_pe_headers(stub_bytes)
    size = len(stub_bytes)
    edits = []
    for s in hdr.sections:  # every section claims the whole file
        edits += [(s.header_offset + 8, "<I", size), (s.header_offset + 16, "<I", size), (s.header_offset + 20, "<I", 0)]
    bad = tmp_path / "overlap.efi"
    bad.write_bytes(_pe_patch(stub_bytes, edits))
    line = measure(bad, capsys)
    assert line == (f"error: {bad}: section table: the sections claim {size * len(hdr.sections)} bytes of file "
                    f"data, more than the {size}-byte file (overlapping sections)")


@pytest.mark.parametrize("opt_size", [2, 20, 95, 111])
def test_pe_truncated_optional_header(tmp_path: Path, stub_bytes: bytes, capsys: pytest.CaptureFixture[str],
                                      opt_size: int) -> None:
    from image_builder.formats.pe import parse_pe_headers

    hdr = parse_pe_headers(stub_bytes)
    bad = tmp_path / "opt.efi"
    bad.write_bytes(_pe_patch(stub_bytes, [(hdr.coff_offset + 16, "<H", opt_size)]))
    line = measure(bad, capsys)
    assert line == (f"error: {bad}: not a valid PE/COFF image: truncated optional header: SizeOfOptionalHeader "
                    f"is {opt_size}, a PE32+ optional header needs 112")


def test_pe_optional_header_cut_by_end_of_file(tmp_path: Path, stub_bytes: bytes) -> None:
    from image_builder.formats.pe import parse_pe_headers

    hdr = parse_pe_headers(stub_bytes)
    for cut in (hdr.optional_offset + 1, hdr.optional_offset + 30, hdr.optional_offset + 100):
        with pytest.raises(TeeformError, match="not a valid PE/COFF image: truncated optional header"):
            parse_pe_headers(stub_bytes[:cut])


def test_pe_too_many_sections(tmp_path: Path, stub_bytes: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    from image_builder.formats.pe import parse_pe_headers

    hdr = parse_pe_headers(stub_bytes)
    bad = tmp_path / "many.efi"
    bad.write_bytes(_pe_patch(stub_bytes, [(hdr.coff_offset + 2, "<H", 2000)]))
    assert measure(bad, capsys) == \
        f"error: {bad}: not a valid PE/COFF image: NumberOfSections is 2000, over the loader's limit of 96"


def _replace_in_section(data: bytes, name: str, old: bytes, new: bytes) -> bytes:
    sec = _section(data, name)
    start, end = sec.pointer_to_raw_data, sec.pointer_to_raw_data + sec.size_of_raw_data
    body = data[start:end]
    assert old in body and len(old) == len(new)
    return data[:start] + body.replace(old, new, 1) + data[end:]


# "²5" (superscript two: str.isdigit() is true, int() refuses it), "٢5" (ARABIC-INDIC DIGIT TWO), "x52"
@pytest.mark.parametrize("version", ["²5".encode(), "\u06625".encode(), b"x52"])
def test_stub_versions_that_are_not_small_decimals(tmp_path: Path, stub_bytes: bytes, version: bytes) -> None:
    from image_builder.measure import pcr11

    sbat = _section(stub_bytes, ".sbat")
    body = stub_bytes[sbat.pointer_to_raw_data:sbat.pointer_to_raw_data + sbat.size_of_raw_data]
    line = next(ln for ln in body.split(b"\n") if ln.startswith(b"systemd,"))
    ver = line.split(b",")[4]
    assert len(ver) == len(version) == 3
    bad = _replace_in_section(stub_bytes, ".sbat", b"," + ver + b",", b"," + version + b",")
    magic = _section(bad, ".sdmagic")
    text = bad[magic.pointer_to_raw_data:magic.pointer_to_raw_data + magic.size_of_raw_data]
    mver = text.split(b"systemd-stub ", 1)[1][:3]
    bad = _replace_in_section(bad, ".sdmagic", b"systemd-stub " + mver, b"systemd-stub " + version)
    p = tmp_path / "stub.efi"
    p.write_bytes(bad)
    assert refused(pcr11.detect_stub_version, p) == (
        f"{p}: cannot tell the systemd-stub version (no 'systemd,1,...' .sbat line and no .sdmagic)")


def test_stub_version_parsers_ignore_long_digit_runs() -> None:
    from image_builder.measure import pcr11

    assert pcr11._parse_sbat_version(b"systemd,1,x,systemd," + b"9" * 5000 + b",u\n") is None
    assert pcr11._parse_sdmagic_version(b"#### LoaderInfo: systemd-stub " + b"7" * 5000 + b" ####") is None
    assert pcr11._parse_sdmagic_version(b"#### LoaderInfo: systemd-stub ") is None
    assert pcr11._parse_sbat_version(b"systemd,1,x,systemd,257~rc1,u\n") == 257


def test_uki_build_refuses_a_stub_with_a_huge_file_alignment(tmp_path: Path, stub_bytes: bytes) -> None:
    from image_builder.formats import uki
    from image_builder.formats.pe import parse_pe_headers

    hdr = parse_pe_headers(stub_bytes)
    p = tmp_path / "stub.efi"
    p.write_bytes(_pe_patch(stub_bytes, [(hdr.optional_offset + 36, "<I", 1 << 31)]))
    (tmp_path / "k").write_bytes(b"kernel")
    inputs = uki.UkiInputs(stub=p, linux=tmp_path / "k", initrd=None, cmdline=b"x", osrel=b"ID=x\n")
    assert refused(uki.build_uki, inputs, tmp_path / "out.efi") == \
        f"{p}: FileAlignment: FileAlignment 0x80000000 is not a power of two in 512..64 KiB"
    assert not (tmp_path / "out.efi").exists()
