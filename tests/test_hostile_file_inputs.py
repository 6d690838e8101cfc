"""A directory, ``/dev/zero``, a FIFO or an oversized file given where a file is expected (issue 7
item 3), for the inputs not covered in test_hostile_cli.py / test_hostile_images.py /
test_stack_config.py: ``build vm-image`` (--kernel, --stub, --os-release, --ovmf) and
``verify attestation --root``. Each is refused before any work with one line naming the file and the
option, exit 2, and ``--out`` is not created. docs/hostile-inputs.md lists the bounds.
"""

from __future__ import annotations

import os
import stat
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


# ------------------------------------------------------------------ a directory rootfs for build vm-image


def _deep(root: Path, levels: int, name: str = "d") -> None:
    """``levels`` nested directories under ``root``, made with relative mkdir/chdir (no long paths)."""
    fd = os.open(root, os.O_RDONLY)
    try:
        for _ in range(levels):
            os.mkdir(name, dir_fd=fd)
            new = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = new
    finally:
        os.close(fd)


def _remove_deep(root: Path) -> None:
    """Delete ``root`` and everything below it without recursion (post-order, through directory fds).

    pytest removes old temporary directories with ``shutil.rmtree``, which recurses once per level
    and would end in RecursionError on a 1,100-level tree (the very class tested here), so the
    tests delete their deep trees themselves.
    """
    stack: list[tuple[int, str | None]] = [(os.open(root, os.O_RDONLY | os.O_DIRECTORY), None)]
    try:
        while stack:
            fd = stack[-1][0]
            descended = False
            for name in os.listdir(fd):
                if stat.S_ISDIR(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                    stack.append((os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd), name))
                    descended = True
                    break
                os.unlink(name, dir_fd=fd)
            if descended:
                continue
            fd, name = stack.pop()  # now empty
            os.close(fd)
            if name is not None:
                os.rmdir(name, dir_fd=stack[-1][0])
    finally:
        for fd, _ in stack:
            os.close(fd)


@pytest.fixture()
def deep_cleanup():
    """Roots registered here are removed with :func:`_remove_deep` after the test."""
    roots: list[Path] = []
    yield roots
    for r in roots:
        _remove_deep(r)


def _rootfs_error(tmp_path: Path, vm_inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> str:
    out = tmp_path / "out"
    argv = ["build", "vm-image", *[x for k, v in vm_inputs.items() for x in (k, str(v))], "--out", str(out)]
    t0 = time.monotonic()
    assert main(argv) == 2
    assert time.monotonic() - t0 < 20
    assert not out.exists()
    return _one_line(capsys.readouterr().err)


def test_directory_rootfs_with_a_non_utf8_name(tmp_path: Path, vm_inputs: dict[str, Path],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    root = vm_inputs["--rootfs"]
    (root / "etc").mkdir()
    with open(os.path.join(os.fsencode(root / "etc"), b"bad\xff\xfename"), "wb"):
        pass
    assert _rootfs_error(tmp_path, vm_inputs, capsys) == (
        f"error: {root}: --rootfs: 'etc/bad\\xff\\xfename': file name is not UTF-8 (invalid byte at offset 3)")


def test_directory_rootfs_1100_levels_deep(tmp_path: Path, vm_inputs: dict[str, Path],
                                           capsys: pytest.CaptureFixture[str], deep_cleanup: list[Path]) -> None:
    root = vm_inputs["--rootfs"]
    deep_cleanup.append(root)
    _deep(root, 1100)
    line = _rootfs_error(tmp_path, vm_inputs, capsys)
    assert line.startswith(f"error: {root}: --rootfs: 'd/d/d/") and line.endswith(
        "...': directories nested more than 512 levels deep"), line


def test_directory_rootfs_path_over_path_max(tmp_path: Path, vm_inputs: dict[str, Path],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    root = vm_inputs["--rootfs"]
    _deep(root, 21, "n" * 200)  # 21 * 201 - 1 = 4220 bytes below the root
    line = _rootfs_error(tmp_path, vm_inputs, capsys)
    assert "path of 4220 bytes (limit 4095, Linux PATH_MAX)" in line, line


def test_check_tree_at_the_limits(tmp_path: Path, deep_cleanup: list[Path]) -> None:
    from teeform.errors import TeeformError
    from teeform.safeload import check_tree

    deep_cleanup.append(tmp_path)
    _deep(tmp_path, 512)
    assert check_tree(tmp_path, what="tree") == 512
    with pytest.raises(TeeformError, match="nested more than 511 levels"):
        check_tree(tmp_path, what="tree", max_depth=511)
    (tmp_path / ("x" * 255)).write_text("")
    with pytest.raises(TeeformError, match="file name of 255 bytes \\(limit 254"):
        check_tree(tmp_path, what="tree", max_name=254)
