"""``teeform build eif`` end to end through teeform.cli.main, on tiny generated images and blobs.

PCRs are recomputed independently (section data cut out of the file by offset, hashed with
hashlib); ramdisk contents are listed and extracted with GNU cpio (the oracle).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from conftest import inputs_lock, locked, require_tool

from image_builder.formats import eif
from image_builder.inputs import oci
from image_builder.inputs.demo_image import LayerEntry, image_config, layer_blob, write_docker_archive, write_oci_layout
from teeform.cli import main
from teeform.manifest import load_manifest

CMDLINE = "reboot=k panic=30 pci=off nomodules console=ttyS0"


@pytest.fixture()
def blobs(tmp_path: Path) -> Path:
    d = tmp_path / "blobs"
    d.mkdir()
    (d / "bzImage").write_bytes(b"\x4d\x5a" + bytes(range(256)) * 8)
    (d / "init").write_bytes(b"\x7fELF stand-in init")
    (d / "nsm.ko").write_bytes(b"stand-in nsm.ko")
    (d / "cmdline").write_text(CMDLINE + "\n")
    return d


def _image(tmp: Path, name: str = "img", *, layers: list[list[LayerEntry]] | None = None,
           **cfg: object) -> tuple[Path, list, dict]:  # type: ignore[type-arg]
    layers = layers or [[LayerEntry("app/", "dir"), LayerEntry("app/agent", "file", b"#!/bin/sh\necho hi\n", mode=0o755),
                         LayerEntry("home/", "dir"), LayerEntry("home/agent/", "dir", uid=1000, gid=1000),
                         LayerEntry("bin/sh", "symlink", target="/app/agent")]]
    blob_list = [layer_blob(tmp / "layers", entries, compression="gzip", mtime=0) for entries in layers]
    config = image_config([b.diff_id for b in blob_list], cmd=cfg.get("cmd", ["/app/agent", "--serve"]),  # type: ignore[arg-type]
                          env=cfg.get("env", ["PATH=/bin", "MODE=enclave"]), entrypoint=cfg.get("entrypoint"),  # type: ignore[arg-type]
                          created=0)
    write_oci_layout(tmp / name, blob_list, config, ref_name="registry.example/team/agent:1.2")
    return tmp / name, blob_list, config


def _build(image: Path, b: Path, out: Path, *extra: str) -> int:
    return main(["build", "eif", "--image", str(image), "--kernel", str(b / "bzImage"), "--init", str(b / "init"),
                 "--nsm", str(b / "nsm.ko"), "--cmdline", f"@{b / 'cmdline'}", "--out", str(out), *extra])


def _sections(data: bytes) -> list[tuple[int, bytes]]:
    out, pos = [], 548
    while pos < len(data):
        t, size = int.from_bytes(data[pos:pos + 2], "big"), int.from_bytes(data[pos + 4:pos + 12], "big")
        out.append((t, data[pos + 12: pos + 12 + size]))
        pos += 12 + size
    return out


def _pcr(data: bytes) -> str:
    return hashlib.sha384(bytes(48) + hashlib.sha384(data).digest()).hexdigest()


def test_cli_end_to_end(tmp_path: Path, blobs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cpio = require_tool("cpio")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    image, _, config = _image(tmp_path)
    out = tmp_path / "out"
    assert _build(image, blobs, out) == 0
    assert sorted(p.name for p in out.iterdir()) == ["agent.eif", "agent.manifest.json"]
    data = (out / "agent.eif").read_bytes()
    secs = _sections(data)
    assert [t for t, _ in secs] == [1, 2, 5, 3, 3]
    kernel, cmdline, metadata, rd0, rd1 = (d for _, d in secs)
    assert kernel == (blobs / "bzImage").read_bytes() and cmdline == CMDLINE.encode()
    m = load_manifest(out / "agent.manifest.json")
    assert m.measurements == {"PCR0": _pcr(kernel + cmdline + rd0 + rd1), "PCR1": _pcr(kernel + cmdline + rd0),
                              "PCR2": _pcr(rd1), "ImageSha384": _pcr(kernel + cmdline + rd0 + rd1)}
    assert eif.read_eif(out / "agent.eif").pcrs.as_hex() == dict(m.measurements)
    assert m.name == "agent" and m.version == oci.open_image(image).config_digest.split(":")[1]
    assert m.artifact.sha256 == hashlib.sha256(data).hexdigest() and m.artifact.size == len(data)
    roles = {i.role: i for i in m.inputs}
    assert roles["kernel"].sha256 == hashlib.sha256(kernel).hexdigest()
    assert roles["cmdline"].sha256 == hashlib.sha256(CMDLINE.encode()).hexdigest() and roles["cmdline"].name == "@cmdline"
    assert roles["image"].sha256 == oci.open_image(image).manifest_digest.split(":")[1]  # type: ignore[union-attr]
    assert m.details["cmd"] == ["/app/agent", "--serve"] and m.details["env"] == ["PATH=/bin", "MODE=enclave"]
    # Section digests: SHA-384 of each section's bytes as sliced from the file by _sections (not by
    # teeform); the customer ramdisk's is PCR2's inner digest (eif-nitro.md §2.2).
    assert [d["sha384"] for d in m.details["sections"]] == [hashlib.sha384(d).hexdigest() for _, d in secs]
    assert [d["sha384"] for d in m.details["ramdisks"]] == [hashlib.sha384(rd0).hexdigest(), hashlib.sha384(rd1).hexdigest()]
    assert _pcr(rd1) == hashlib.sha384(bytes(48) + bytes.fromhex(m.details["ramdisks"][1]["sha384"])).hexdigest()

    meta = json.loads(metadata)
    assert list(meta) == ["ImageName", "ImageVersion", "BuildMetadata", "DockerInfo", "CustomMetadata"]
    assert meta["BuildMetadata"]["BuildTime"] == "2023-11-14T22:13:20+00:00" and meta["DockerInfo"] == config

    (tmp_path / "rd0").write_bytes(rd0)
    (tmp_path / "rd1").write_bytes(rd1)
    list0 = subprocess.run([cpio, "-itv", "--quiet", "-F", str(tmp_path / "rd0")], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    assert [(line.split()[0], line.split()[-1]) for line in list0] == [
        ("drwxr-xr-x", "dev"), ("-rwxr-xr-x", "init"), ("-rwxr-xr-x", "nsm.ko")]
    x = tmp_path / "x"
    x.mkdir()
    subprocess.run([cpio, "-idm", "--quiet", "-F", str(tmp_path / "rd1")], cwd=x, check=True)
    assert (x / "cmd").read_text() == "/app/agent\n--serve\n"
    assert (x / "env").read_text() == "PATH=/bin\nMODE=enclave\n"
    assert sorted(p.name for p in (x / "rootfs").iterdir()) == ["app", "bin", "dev", "home", "proc", "run", "sys", "tmp", "var"]
    assert (x / "rootfs/app/agent").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert (x / "rootfs/home/agent").stat().st_uid == 0  # every cpio entry is uid/gid 0 (the rule)
    list1 = subprocess.run([cpio, "-itv", "--quiet", "-F", str(tmp_path / "rd1")], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    assert len(list1) > 10
    assert all((x / n).lstat().st_mtime == 1700000000 for n in ("cmd", "env", "rootfs/app/agent"))  # mtime = SOURCE_DATE_EPOCH

    assert main(["measure", str(out / "agent.eif"), "--json"]) == 0


def test_rebuild_is_byte_identical_and_epoch_is_the_ramdisk_mtime(tmp_path: Path, blobs: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    image, _, _ = _image(tmp_path)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1000")
    assert _build(image, blobs, tmp_path / "a") == 0
    assert _build(image, blobs, tmp_path / "b") == 0
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "2000")
    assert _build(image, blobs, tmp_path / "c") == 0
    a, b, c = ((tmp_path / d / "agent.eif").read_bytes() for d in "abc")
    assert a == b
    assert (tmp_path / "a/agent.manifest.json").read_bytes() == (tmp_path / "b/agent.manifest.json").read_bytes()
    ma, mc = load_manifest(tmp_path / "a/agent.manifest.json"), load_manifest(tmp_path / "c/agent.manifest.json")
    assert (ma.source_date_epoch, mc.source_date_epoch) == (1000, 2000)
    # The rule: every cpio entry has mtime = SOURCE_DATE_EPOCH and uid/gid 0, so the epoch is a
    # measured input (PCR1, PCR2) and the manifest records it for rebuilders. The kernel and cmdline are not.
    assert ma.measurements["PCR1"] != mc.measurements["PCR1"] and ma.measurements["PCR2"] != mc.measurements["PCR2"]
    sa, sc = _sections(a), _sections(c)
    assert [t for (t, da), (_, dc) in zip(sa, sc, strict=True) if da != dc] == [5, 3, 3]  # metadata + both ramdisks
    assert json.loads(sc[2][1])["BuildMetadata"]["BuildTime"] == "1970-01-01T00:33:20+00:00"
    for _, data in sc[3:5]:
        # newc header (cpio(5)): magic 070701, then 8-hex-digit ino, mode, uid, gid, nlink, mtime, ...
        pos, checked, trailer = 0, 0, False
        while data[pos:pos + 6] == b"070701":
            fields = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
            namesize, filesize = fields[11], fields[6]
            name = data[pos + 110: pos + 110 + namesize - 1]
            if name == b"TRAILER!!!":
                trailer = True
                break
            assert (fields[2], fields[3], fields[5]) == (0, 0, 2000), name
            checked += 1
            pos = (pos + 110 + namesize + 3) & ~3
            pos = (pos + filesize + 3) & ~3
        assert checked > 0 and trailer, "the ramdisk is not a plain newc archive walked to its trailer"
    assert a[544:548] != c[544:548]  # ... and therefore the CRC


def test_signed_build(tmp_path: Path, blobs: Path) -> None:
    openssl = require_tool("openssl")
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1", "-nodes",
                    "-keyout", str(tmp_path / "k.pem"), "-out", str(tmp_path / "c.pem"), "-subj", "/CN=signer",
                    "-days", "30"], check=True, capture_output=True)
    der = subprocess.run([openssl, "x509", "-in", str(tmp_path / "c.pem"), "-outform", "DER"], check=True,
                         capture_output=True).stdout
    image, _, _ = _image(tmp_path)
    assert _build(image, blobs, tmp_path / "s", "--signing-key", str(tmp_path / "k.pem"),
                  "--signing-cert", str(tmp_path / "c.pem")) == 0
    assert _build(image, blobs, tmp_path / "u") == 0
    ms, mu = load_manifest(tmp_path / "s/agent.manifest.json"), load_manifest(tmp_path / "u/agent.manifest.json")
    assert ms.measurements["PCR8"] == _pcr(der)
    assert ms.measurements["PCR0"] == mu.measurements["PCR0"]
    assert ms.details["signing_certificate_sha256"] == hashlib.sha256(der).hexdigest()
    info = eif.read_eif(tmp_path / "s/agent.eif")
    assert info.signature_check is True


def test_layout_and_docker_archives_give_the_same_pcrs(tmp_path: Path, blobs: Path) -> None:
    entries = [LayerEntry("bin/", "dir"), LayerEntry("bin/app", "file", b"app", mode=0o755)]
    blob = layer_blob(tmp_path / "l", entries, mtime=0)
    config = image_config([blob.diff_id], cmd=["/bin/app"], env=["A=1"], created=0)
    write_oci_layout(tmp_path / "layout", [blob], config)
    write_docker_archive(tmp_path / "legacy.tar", [blob], config, repo_tag="app:1", fmt="legacy")
    write_docker_archive(tmp_path / "oci.tar", [blob], config, repo_tag="app:1", fmt="oci")
    pcrs = []
    for src in ("layout", "legacy.tar", "oci.tar"):
        assert _build(tmp_path / src, blobs, tmp_path / f"o-{src}", "--name", "app", "--version", "1") == 0
        m = load_manifest(tmp_path / f"o-{src}/app.manifest.json")
        pcrs.append(dict(m.measurements))
        image_input = next(i for i in m.inputs if i.role == "image")
        if src == "legacy.tar":
            assert "legacy docker-archive has no OCI manifest" in image_input.name
            assert image_input.sha256 == hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":"))
                                                        .encode()).hexdigest()
    assert pcrs[0] == pcrs[1] == pcrs[2]


def test_entrypoint_used_when_no_cmd(tmp_path: Path, blobs: Path) -> None:
    image, _, _ = _image(tmp_path, cmd=None, entrypoint=["/app/agent", "run"])
    assert _build(image, blobs, tmp_path / "o") == 0
    assert load_manifest(tmp_path / "o/agent.manifest.json").details["cmd"] == ["/app/agent", "run"]


def _no_outputs(out: Path) -> None:
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([LayerEntry("../etc/passwd", "file", b"x")], "path contains '..'"),
        ([LayerEntry("/abs", "file", b"x")], "absolute path"),
        ([LayerEntry("l", "symlink", target="../../../x")], "escapes the image root"),
        ([LayerEntry("h", "hardlink", target="../x")], "escapes the image root"),
        ([LayerEntry("dev/kmsg", "chr")], "character device node"),
        ([LayerEntry("dev/sda", "blk")], "block device node"),
        ([LayerEntry("etc", "symlink", target="/tmp"), LayerEntry("etc/passwd", "file", b"x")],
         "parent 'etc' is a symlink"),
    ],
)
def test_hostile_image_writes_nothing(tmp_path: Path, blobs: Path, entries: list[LayerEntry], message: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    image, _, _ = _image(tmp_path, layers=[entries])
    out = tmp_path / "out"
    assert _build(image, blobs, out) == 2
    err = capsys.readouterr().err
    assert message in err and "layer 1/1 (sha256:" in err and "Traceback" not in err
    _no_outputs(out)


def test_bad_layer_digest_writes_nothing(tmp_path: Path, blobs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image, blob_list, _ = _image(tmp_path)
    victim = image / "blobs/sha256" / blob_list[0].digest.split(":")[1]
    data = bytearray(victim.read_bytes())
    data[-10] ^= 0xFF
    victim.write_bytes(bytes(data))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("unrelated")
    assert _build(image, blobs, out) == 2
    assert "digest mismatch" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_input_errors(tmp_path: Path, blobs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image, _, _ = _image(tmp_path)
    out = tmp_path / "out"
    assert main(["build", "eif", "--image", str(image), "--kernel", str(tmp_path / "nope"), "--init",
                 str(blobs / "init"), "--nsm", str(blobs / "nsm.ko"), "--cmdline", "x", "--out", str(out)]) == 2
    assert "--kernel: not found" in capsys.readouterr().err
    assert _build(image, blobs, out, "--signing-key", str(blobs / "init")) == 2
    assert "--signing-key and --signing-cert must be given together" in capsys.readouterr().err
    assert _build(image, blobs, out, "--name", "../evil") == 2
    assert "invalid name" in capsys.readouterr().err
    no_cmd, _, _ = _image(tmp_path, "nocmd", cmd=None, env=None)
    assert _build(no_cmd, blobs, out) == 2
    assert "no usable Cmd or Entrypoint" in capsys.readouterr().err
    _no_outputs(out)


def test_help_explains_every_option() -> None:
    from click.testing import CliRunner

    from teeform.cli import cli

    text = CliRunner().invoke(cli, ["build", "eif", "--help"]).output
    for opt in ("--image", "--kernel", "--init", "--nsm", "--cmdline", "--out", "--name", "--version", "--platform",
                "--signing-key", "--signing-cert", "SOURCE_DATE_EPOCH"):
        assert opt in text


@pytest.mark.integration
def test_demo_inputs_debian_kernel_and_busybox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's real stand-in inputs: Debian's kernel and busybox-static."""
    kernel = locked("kernel.vmlinuz")
    busybox = locked("busybox")
    from image_builder.inputs.demo_image import build_demo_image

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    build_demo_image(tmp_path / "img", busybox=busybox)
    (tmp_path / "nsm.ko").write_bytes(b"placeholder")
    out = tmp_path / "out"
    assert main(["build", "eif", "--image", str(tmp_path / "img"), "--kernel", str(kernel), "--init", str(busybox),
                 "--nsm", str(tmp_path / "nsm.ko"), "--cmdline", CMDLINE, "--out", str(out)]) == 0
    info = eif.read_eif(out / "openclaw-agent.eif")
    # the bzImage header's release string equals the one the set-up read from the package's file names
    assert info.metadata["BuildMetadata"]["KernelVersion"] == inputs_lock().kernel_release
    assert info.metadata["ImageName"] == "openclaw-agent"


def test_failure_after_the_eif_is_written_leaves_no_temp_file(tmp_path: Path, blobs: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The EIF is streamed into a temp file in --out; a late failure (here: the manifest step) removes it."""
    import image_builder.pipelines.build_eif as build_eif
    from teeform.errors import TeeformError

    def boom(*_a: object, **_k: object) -> None:
        raise TeeformError("simulated failure while writing the manifest")

    monkeypatch.setattr(build_eif, "build_manifest", boom)
    image, _, _ = _image(tmp_path)
    out = tmp_path / "out"
    assert _build(image, blobs, out) == 2
    _no_outputs(out)


def test_a_full_output_disk_is_one_clear_error_and_leaves_nothing(tmp_path: Path, blobs: Path, monkeypatch, capsys) -> None:
    """ENOSPC while the EIF is written (raised by the writer thread): exit 2 with one line naming
    --out, no traceback, and no temporary or partial file left in the output directory."""
    import errno

    from teeform import fsutil

    def full(fd: int, view: memoryview, offset: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    image, _, _ = _image(tmp_path)
    out = tmp_path / "out"
    monkeypatch.setattr(fsutil, "_pwrite_all", full)
    assert _build(image, blobs, out) == 2
    err = capsys.readouterr().err
    assert "cannot write the EIF: No space left on device" in err and "--out" in err and "Traceback" not in err
    assert not out.exists() or list(out.iterdir()) == []


def test_an_unexpected_io_error_is_one_line_not_a_traceback(tmp_path: Path, blobs: Path, monkeypatch, capsys) -> None:
    """An OSError no step wrapped (here: the manifest's write hits a full disk) ends in one line
    naming the file, exit 2 (teeform.cli.main), and the EIF already renamed into --out is removed."""
    import errno

    from image_builder.pipelines import build_eif as pipeline

    def full(manifest, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    image, _, _ = _image(tmp_path)
    out = tmp_path / "out"
    monkeypatch.setattr(pipeline, "write_manifest", full)
    assert _build(image, blobs, out) == 2
    err = capsys.readouterr().err
    assert f"error: {out / 'agent.manifest.json'}: No space left on device" in err and "Traceback" not in err
    assert list(out.iterdir()) == []
