"""A directory, ``/dev/zero``, a FIFO or an oversized file given where a file is expected (issue 7
item 3), for the inputs not covered in test_hostile_cli.py / test_hostile_images.py /
test_stack_config.py: ``build vm-image`` (--kernel, --stub, --os-release, --ovmf) and
``verify attestation --root``. Each is refused before any work with one line naming the file and the
option, exit 2, and ``--out`` is not created. docs/hostile-inputs.md lists the bounds.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from teeform.cli import main


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(("teeform: ", "hint: "))]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture()
def vm_inputs(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "rootfs"
    (root / "sbin").mkdir(parents=True)
    (root / "sbin" / "init").write_text("#!/bin/sh\n")
    small = tmp_path / "small"
    small.write_bytes(b"MZ")
    return {"--rootfs": root, "--kernel": small, "--stub": small}


def _bad(tmp_path: Path, kind: str, limit: int) -> Path:
    if kind == "directory":
        (tmp_path / "adir").mkdir()
        return tmp_path / "adir"
    if kind == "dev-zero":
        return Path("/dev/zero")
    if kind == "fifo":
        os.mkfifo(tmp_path / "fifo")
        return tmp_path / "fifo"
    big = tmp_path / "big"
    with open(big, "wb") as fh:  # sparse
        fh.truncate(limit + 1)
    return big


@pytest.mark.parametrize("kind", ["directory", "dev-zero", "fifo", "oversized"])
@pytest.mark.parametrize("opt", ["--kernel", "--stub", "--os-release", "--ovmf"])
def test_build_vm_image_file_inputs(tmp_path: Path, vm_inputs: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                    opt: str, kind: str) -> None:
    from image_builder.pipelines import build_vm
    from image_builder.pipelines.build_vm import MAX_KERNEL_FILE, MAX_OS_RELEASE_FILE, MAX_OVMF_FILE

    limit = {"--kernel": MAX_KERNEL_FILE, "--stub": 64 << 20, "--os-release": MAX_OS_RELEASE_FILE,
             "--ovmf": MAX_OVMF_FILE}[opt]
    assert dict((o, lim) for o, _p, lim in build_vm.file_limits(build_vm.BuildConfig(
        rootfs=vm_inputs["--rootfs"], kernel=vm_inputs["--kernel"], stub=vm_inputs["--stub"], out=tmp_path, name="x")))[opt] == limit
    bad = _bad(tmp_path, kind, limit)
    args = {**vm_inputs, opt: bad}
    out = tmp_path / "out"
    argv = ["build", "vm-image", *[x for k, v in args.items() for x in (k, str(v))], "--out", str(out)]
    t0 = time.monotonic()
    assert main(argv) == 2
    assert time.monotonic() - t0 < 10
    _out, err = capsys.readouterr()
    what = {"directory": "is a directory", "dev-zero": "is not a regular file", "fifo": "is not a regular file",
            "oversized": f"is {limit + 1} bytes, over the {limit}-byte limit"}[kind]
    assert _one_line(err) == f"error: {bad}: {opt}: {opt[2:]} {what}"
    assert not out.exists()


@pytest.mark.parametrize("kind", ["directory", "dev-zero", "oversized"])
def test_verify_attestation_root_option(tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    from pulumi_support import write_fake_eif_manifest

    from teeform.nitro.verify import MAX_ROOT_BYTES

    doc = tmp_path / "doc.cbor"
    doc.write_bytes(b"\x84")
    manifest = write_fake_eif_manifest(tmp_path, write_eif=False).manifest_path
    bad = _bad(tmp_path, kind, MAX_ROOT_BYTES)
    status = main(["verify", "attestation", str(doc), "--manifest", str(manifest), "--root", str(bad)])
    _out, err = capsys.readouterr()
    assert status == 2
    line = _one_line(err)
    assert line.startswith(f"error: {bad}: ") and ("directory" in line or "regular file" in line or "limit" in line), line
