"""``teeform build oci`` (manifest kind ``oci``): the recorded digest is the registry's.

Oracles: the SHA-256 of the manifest blob file in the layout, computed here with hashlib from the
file the index points to; and skopeo (Debian ``skopeo``, installed by scripts/setup.sh), which
reports ``Digest`` for ``oci:DIR`` and, for a multi-platform index, copies the selected platform's
image with ``--preserve-digests`` into a ``dir:`` destination whose ``manifest.json`` holds the exact
manifest bytes a registry would store. Neither oracle uses teeform's code.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import require_tool

from image_builder.inputs.demo_image import LayerEntry, _json_bytes, image_config, layer_blob, write_oci_layout
from image_builder.pipelines.build_oci import OciBuildConfig, build_oci_manifest
from teeform.cli import main
from teeform.errors import TeeformError
from teeform.manifest import ArtifactKind, load_manifest

MT_INDEX = "application/vnd.oci.image.index.v1+json"


def _single(tmp: Path) -> Path:
    blob = layer_blob(tmp / "w", [LayerEntry("app", "file", b"hello")], compression="gzip", mtime=1000)
    dest = tmp / "single"
    write_oci_layout(dest, [blob], image_config([blob.diff_id], cmd=["/app"], created=0),
                     ref_name="example.com/team/agent:1.0", platform={"os": "linux", "architecture": "amd64"})
    return dest


def _multi(tmp: Path) -> Path:
    """index.json -> one nested image index (ref ``demo``) -> linux/amd64 and linux/arm64 manifests."""
    dest = tmp / "multi"
    descs = []
    for arch in ("amd64", "arm64"):
        blob = layer_blob(tmp / "w", [LayerEntry(arch, "file", arch.encode())], mtime=1000)
        write_oci_layout(dest, [blob], image_config([blob.diff_id], cmd=["/a"], created=0, architecture=arch),
                         platform={"os": "linux", "architecture": arch})
        descs.append(json.loads((dest / "index.json").read_text())["manifests"][0])
    sub = _json_bytes({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": descs})
    h = hashlib.sha256(sub).hexdigest()
    (dest / "blobs" / "sha256" / h).write_bytes(sub)
    (dest / "index.json").write_bytes(_json_bytes({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [
        {"mediaType": MT_INDEX, "digest": f"sha256:{h}", "size": len(sub),
         "annotations": {"org.opencontainers.image.ref.name": "demo"}}]}))
    return dest


def _blob_sha256_from_index(layout: Path, arch: str | None = None) -> str:
    """Independent walk of index.json (image-spec image-layout.md): the manifest blob's file hash."""
    index = json.loads((layout / "index.json").read_text())
    desc = index["manifests"][0]
    while desc["mediaType"] == MT_INDEX:
        sub = json.loads((layout / "blobs" / "sha256" / desc["digest"].split(":")[1]).read_bytes())
        desc = next(d for d in sub["manifests"] if arch is None or d["platform"]["architecture"] == arch)
    return hashlib.sha256((layout / "blobs" / "sha256" / desc["digest"].split(":")[1]).read_bytes()).hexdigest()


def test_single_platform_digest_is_the_blob_hash_and_skopeos(tmp_path: Path) -> None:
    skopeo = require_tool("skopeo")
    layout = _single(tmp_path)
    res = build_oci_manifest(OciBuildConfig(layout, tmp_path / "out", repository="europe-docker.pkg.dev/p/r/agent"))
    m = load_manifest(res.manifest_path)
    assert m.kind is ArtifactKind.OCI and m.name == "agent"
    assert m.measurements["image_digest"] == _blob_sha256_from_index(layout)
    raw = subprocess.run([skopeo, "inspect", "--raw", f"oci:{layout}"], check=True, capture_output=True).stdout
    assert m.measurements["image_digest"] == hashlib.sha256(raw).hexdigest()
    info = json.loads(subprocess.run([skopeo, "inspect", f"oci:{layout}"], check=True, capture_output=True).stdout)
    assert res.image_digest == info["Digest"] == f"sha256:{m.measurements['image_digest']}"
    # the config digest is skopeo's config blob digest; the platform its config's
    cfg_raw = subprocess.run([skopeo, "inspect", "--raw", "--config", f"oci:{layout}"], check=True,
                             capture_output=True).stdout
    assert m.measurements["image_id"] == hashlib.sha256(cfg_raw).hexdigest()
    assert m.details["platform"] == f"{info['Os']}/{info['Architecture']}" == "linux/amd64"
    # the artifact is the manifest blob, byte for byte
    assert res.image_manifest_path.read_bytes() == raw and m.artifact.sha256 == m.measurements["image_digest"]
    assert m.details["image_reference"] == f"europe-docker.pkg.dev/p/r/agent@{info['Digest']}"
    assert "skopeo copy --preserve-digests oci:" in m.details["push"]
    roles = [i.role for i in m.inputs]
    assert roles == ["index", "image-manifest", "image-config", "layer"]
    assert m.inputs[3].sha256 == info["Layers"][0].split(":")[1]


def test_multi_platform_index_selects_the_platforms_manifest(tmp_path: Path) -> None:
    skopeo = require_tool("skopeo")
    layout = _multi(tmp_path)
    res = build_oci_manifest(OciBuildConfig(layout, tmp_path / "out", name="demo", platform="linux/arm64"))
    m = load_manifest(res.manifest_path)
    assert m.details["platform"] == "linux/arm64"
    assert m.measurements["image_digest"] == _blob_sha256_from_index(layout, "arm64")
    # what a digest-preserving copy of the arm64 image stores: skopeo writes the exact manifest bytes
    subprocess.run([skopeo, "--override-arch", "arm64", "--override-os", "linux", "copy", "--quiet",
                    "--preserve-digests", f"oci:{layout}:demo", f"dir:{tmp_path / 'pushed'}"], check=True)
    pushed = (tmp_path / "pushed" / "manifest.json").read_bytes()
    assert m.measurements["image_digest"] == hashlib.sha256(pushed).hexdigest()
    # the default (no --platform) is linux/amd64, a different digest
    amd = build_oci_manifest(OciBuildConfig(layout, tmp_path / "out2", name="demo"))
    assert amd.image_digest != res.image_digest
    assert amd.image_digest.split(":")[1] == _blob_sha256_from_index(layout, "amd64")


def test_docker_archive_is_refused_with_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from image_builder.inputs.demo_image import write_docker_archive

    blob = layer_blob(tmp_path / "w", [LayerEntry("a", "file", b"x")], mtime=1000)
    for fmt in ("legacy", "oci"):
        tar = tmp_path / f"{fmt}.tar"
        write_docker_archive(tar, [blob], image_config([blob.diff_id], cmd=["/a"], created=0), fmt=fmt)
        rc = main(["build", "oci", "--image", str(tar), "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert rc == 2 and "Traceback" not in err
        assert f"{tar}: --image: a docker-archive cannot give the registry digest offline" in err
        assert "skopeo copy docker-archive:IMAGE.tar oci:DIR" in err
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_missing_or_altered_layer_blob_is_refused_and_nothing_written(tmp_path: Path) -> None:
    layout = _single(tmp_path)
    man = json.loads((layout / "blobs" / "sha256" / _blob_sha256_from_index(layout)).read_bytes())
    layer = layout / "blobs" / "sha256" / man["layers"][0]["digest"].split(":")[1]
    data = layer.read_bytes()
    layer.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(TeeformError, match="layer 1 blob does not match its descriptor"):
        build_oci_manifest(OciBuildConfig(layout, tmp_path / "out"))
    layer.unlink()
    with pytest.raises(TeeformError, match="layer 1 blob blobs/sha256/.* is missing: a push would fail"):
        build_oci_manifest(OciBuildConfig(layout, tmp_path / "out"))
    assert not any((tmp_path / "out").glob("*"))


@pytest.mark.parametrize(("make", "kind"), [
    (lambda p: p.mkdir(), "is a directory"),
    (lambda p: os.mkfifo(p), "is not a regular file"),  # refused before a byte is read: no hang
    (lambda p: p.symlink_to("nowhere"), "not found"),
])
def test_layer_blob_that_is_not_a_file_is_refused_naming_the_layer(tmp_path: Path, make: Callable[[Path], None],
                                                                   kind: str) -> None:
    layout = _single(tmp_path)
    man = json.loads((layout / "blobs" / "sha256" / _blob_sha256_from_index(layout)).read_bytes())
    location = f"blobs/sha256/{man['layers'][0]['digest'].split(':')[1]}"
    (layout / location).unlink()
    make(layout / location)
    with pytest.raises(TeeformError) as e:
        build_oci_manifest(OciBuildConfig(layout, tmp_path / "out"))
    assert e.value.message.startswith("layer 1 ") and f"{location} {kind}: a push would fail" in e.value.message
    assert not any((tmp_path / "out").glob("*"))


def test_cli_prints_digest_and_push(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    layout = _single(tmp_path)
    rc = main(["build", "oci", "--image", str(layout), "--out", str(tmp_path / "o"), "--repository", "reg/x"])
    out = capsys.readouterr().out
    digest = _blob_sha256_from_index(layout)
    assert rc == 0 and f"image_digest  sha256:{digest}" in out
    assert f"skopeo copy --preserve-digests oci:{layout} docker://reg/x:TAG" in out


@pytest.mark.integration
def test_readme_gcp_block_digest_is_a_fresh_build_of_the_demo_image(tmp_path: Path) -> None:
    """The demo image (Debian busybox-static from the lock, SOURCE_DATE_EPOCH 1700000000 as scripts/gcp-demo.sh)
    gives the image digest the README's gcp-demo block shows, when the README was made from the same busybox."""
    import os
    import re

    from conftest import REPO, locked, locked_input

    from image_builder.inputs.demo_image import build_demo_image

    text = (REPO / "README.md").read_text(encoding="utf-8")
    body = text.split("<!-- BEGIN gcp-demo -->", 1)[1].split("<!-- END gcp-demo -->", 1)[0]
    busybox = locked_input("busybox")
    old = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = "1700000000"
    try:
        build_demo_image(tmp_path / "img", busybox=locked("busybox"))
    finally:
        if old is None:
            os.environ.pop("SOURCE_DATE_EPOCH")
        else:
            os.environ["SOURCE_DATE_EPOCH"] = old
    res = build_oci_manifest(OciBuildConfig(tmp_path / "img", tmp_path / "out", name="openclaw-agent"))
    if busybox.sha256 in body:
        assert f"  image_digest  {res.image_digest}" in body
    else:  # README generated from another busybox: the format is still checked
        assert re.search(r"^  image_digest  sha256:[0-9a-f]{64}$", body, re.M)


@pytest.mark.parametrize(("args", "message"), [
    (["--name", "../escape"], "--name: invalid name '../escape'"),
    (["--version", "1/2"], "--version: invalid version '1/2'"),
    (["--repository", "reg/x:latest"], "--repository: must be REGISTRY/PATH without tag or digest"),
])
def test_bad_options_are_one_line_and_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    args: list[str], message: str) -> None:
    layout = _single(tmp_path)
    rc = main(["build", "oci", "--image", str(layout), "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "escape.manifest.json").exists()


@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_out_that_is_a_file_is_one_line_naming_it(tmp_path: Path, where: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`--out` naming an existing file, or a path below one, was a FileExistsError/NotADirectoryError
    traceback from mkdir; it is one line naming the path and --out (teeform.fsutil.ensure_output_dir,
    shared by build oci, build eif and build vm-image)."""
    layout = _single(tmp_path)
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    out = blocker if where == "file" else blocker / "sub"
    assert main(["build", "oci", "--image", str(layout), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--out" in err and str(out) in err and "Traceback" not in err
    assert blocker.read_text() == "not a directory"
