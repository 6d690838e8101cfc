"""``teeform build eif --runtime``: the runtime is one more measured, reproducible layer, the command
is wrapped, and the manifest records it. Oracles: the customer ramdisk extracted by GNU cpio (file
bytes compared with the teeform sources, ``/cmd`` read back), PCRs recomputed from the section bytes
with hashlib, and the extracted launcher run with the host's Python."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_tool
from test_eif_build import _build, _image, _pcr, _sections, blobs  # noqa: F401  (fixture)

from image_builder.pipelines.runtime_layer import LAUNCHER, RUNTIME_DIR
from teeform.enclave_runtime.bundle import ENCLAVE_FILES, PACKAGE_ROOT
from teeform.manifest import load_manifest


def _rd1(eif_path: Path) -> bytes:
    secs = _sections(eif_path.read_bytes())
    return [d for t, d in secs if t == 3][1]


def test_runtime_layer_is_measured_and_recorded(tmp_path, blobs, monkeypatch):  # noqa: F811
    cpio = require_tool("cpio")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    image, _, _ = _image(tmp_path)
    assert _build(image, blobs, tmp_path / "plain") == 0
    assert _build(image, blobs, tmp_path / "rt", "--runtime", "--runtime-delivery", "files") == 0
    plain = load_manifest(tmp_path / "plain/agent.manifest.json")
    rt = load_manifest(tmp_path / "rt/agent.manifest.json")
    assert rt.measurements["PCR1"] == plain.measurements["PCR1"]  # kernel + bootstrap untouched
    assert rt.measurements["PCR2"] != plain.measurements["PCR2"]  # the runtime is in the app ramdisk
    rd1 = _rd1(tmp_path / "rt/agent.eif")
    assert rt.measurements["PCR2"] == _pcr(rd1)

    roles = {i.role: i for i in rt.inputs}
    info = rt.details["runtime"]
    assert roles["runtime"].sha256 == info["layer_sha256"] and roles["runtime"].size == info["layer_size"]
    assert rt.details["image"]["diff_ids"][-1] == rt.details["image"]["layers"][-1] == f"sha256:{info['layer_sha256']}"
    assert roles["base-image"].sha256 == {i.role: i for i in plain.inputs}["image"].sha256
    assert info["agent_command"] == ["/app/agent", "--serve"] and info["delivery"] == "files"

    (tmp_path / "rd1").write_bytes(rd1)
    x = tmp_path / "x"
    x.mkdir()
    subprocess.run([cpio, "-idm", "--quiet", "-F", str(tmp_path / "rd1")], cwd=x, check=True)
    assert (x / "cmd").read_text().splitlines() == ["python3", LAUNCHER, "--delivery", "files", "--", "/app/agent", "--serve"]
    assert (x / "env").read_text() == "PATH=/bin\nMODE=enclave\n"
    assert (x / "rootfs/app/agent").read_bytes() == b"#!/bin/sh\necho hi\n"  # the agent is still there
    root = x / "rootfs" / RUNTIME_DIR
    for rel in ENCLAVE_FILES:
        assert (root / rel).read_bytes() == (PACKAGE_ROOT / rel).read_bytes(), rel
    assert {f"/{p.relative_to(x / 'rootfs')}": hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file()} == info["files"]

    # the layered runtime runs on its own from the image tree (the repository is not on sys.path)
    proc = subprocess.run([sys.executable, "-s", str(x / "rootfs" / LAUNCHER.lstrip("/")), "--log", "none"],
                          capture_output=True, text=True, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "teeform-runtime: error: no agent command given (expected: -- COMMAND [ARGS...])"


def test_runtime_build_is_reproducible(tmp_path, blobs, monkeypatch):  # noqa: F811
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    image, _, _ = _image(tmp_path)
    assert _build(image, blobs, tmp_path / "a", "--runtime") == 0
    assert _build(image, blobs, tmp_path / "b", "--runtime") == 0
    assert (tmp_path / "a/agent.eif").read_bytes() == (tmp_path / "b/agent.eif").read_bytes()
    assert (tmp_path / "a/agent.manifest.json").read_text() == (tmp_path / "b/agent.manifest.json").read_text()
    m = json.loads((tmp_path / "a/agent.manifest.json").read_text())
    assert m["details"]["runtime"]["command"][:5] == ["python3", LAUNCHER, "--delivery", "env", "--"]


def test_runtime_with_bad_image_writes_nothing(tmp_path, blobs, capsys):  # noqa: F811
    (tmp_path / "img").mkdir()
    assert _build(tmp_path / "img", blobs, tmp_path / "out", "--runtime") == 2
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'img'}: not an OCI image layout" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("archive_fmt", ["legacy"])
def test_runtime_over_a_docker_archive(tmp_path, blobs, archive_fmt):  # noqa: F811
    from image_builder.inputs.demo_image import LayerEntry, image_config, layer_blob, write_docker_archive

    lb = layer_blob(tmp_path / "layers", [LayerEntry("app/", "dir"), LayerEntry("app/agent", "file", b"x", mode=0o755)],
                    compression=None, mtime=0)
    write_docker_archive(tmp_path / "img.tar", [lb], image_config([lb.diff_id], entrypoint=["/app/agent"], created=0),
                         fmt=archive_fmt)
    assert _build(tmp_path / "img.tar", blobs, tmp_path / "out", "--runtime") == 0
    m = load_manifest(next((tmp_path / "out").glob("*.manifest.json")))
    assert m.details["runtime"]["agent_command"] == ["/app/agent"]
    assert {i.role for i in m.inputs} >= {"runtime", "base-image", "image"}
