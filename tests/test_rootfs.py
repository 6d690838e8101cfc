"""Root file system images (image_builder.pipelines.rootfs): reproducibility, padding, and read-back with Debian tools."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from conftest import require_tool

from image_builder.pipelines.rootfs import derive_fs_uuid, make_root_image, scan_tree
from teeform.errors import TeeformError
from teeform.run import run


def _make_tree(root: Path, *, reverse: bool = False) -> Path:
    """A small tree with files, a subdir, a symlink, an executable; ``reverse`` creates entries in the opposite order."""
    root.mkdir(parents=True)
    names = [f"file{i:03d}" for i in range(60)]
    for name in reversed(names) if reverse else names:
        (root / name).write_text(f"content of {name}\n")
    (root / "bin").mkdir()
    (root / "bin" / "init").write_bytes(b"#!/bin/sh\necho hi\n" + bytes(range(256)) * 40)
    os.chmod(root / "bin" / "init", 0o755)
    os.symlink("bin/init", root / "init")
    (root / "etc").mkdir()
    (root / "etc" / "os-release").write_text("ID=test\n")
    os.utime(root / "file000", (1_000_000, 1_000_000))  # an old mtime, to catch clamping
    return root


def _assert_tree_equal(a: Path, b: Path) -> None:
    names_a = sorted(p.relative_to(a).as_posix() for p in a.rglob("*"))
    names_b = sorted(p.relative_to(b).as_posix() for p in b.rglob("*"))
    assert names_a == names_b
    for rel in names_a:
        pa, pb = a / rel, b / rel
        sa, sb = pa.lstat(), pb.lstat()
        assert stat.S_IFMT(sa.st_mode) == stat.S_IFMT(sb.st_mode), rel
        assert stat.S_IMODE(sa.st_mode) == stat.S_IMODE(sb.st_mode), rel
        if pa.is_symlink():
            assert os.readlink(pa) == os.readlink(pb)
        elif pa.is_file():
            assert pa.read_bytes() == pb.read_bytes(), rel


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    return _make_tree(tmp_path / "tree")


@pytest.mark.integration
@pytest.mark.parametrize("fs", ["erofs", "squashfs"])
def test_rebuild_is_byte_identical_and_padded(tmp_path: Path, tree: Path, fs: str, monkeypatch: pytest.MonkeyPatch) -> None:
    require_tool("mkfs.erofs" if fs == "erofs" else "mksquashfs")
    a = make_root_image(tree, tmp_path / "a.img", fs=fs, source_date_epoch=1_700_000_000)
    # second build: same content created in the opposite order, different mtimes, and a
    # SOURCE_DATE_EPOCH in the environment (which changes both tools' behaviour if passed on)
    tree2 = _make_tree(tmp_path / "tree2", reverse=True)
    os.utime(tree2 / "etc" / "os-release", (2_000_000_000, 2_000_000_000))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    b = make_root_image(tree2, tmp_path / "b.img", fs=fs, source_date_epoch=1_700_000_000)
    assert a.read_bytes() == b.read_bytes()
    assert a.stat().st_size % 4096 == 0
    # the epoch is in the image: a different one changes it
    c = make_root_image(tree, tmp_path / "c.img", fs=fs, source_date_epoch=1_700_000_001)
    assert c.read_bytes() != a.read_bytes()
    # SOURCE_DATE_EPOCH is the default epoch
    d = make_root_image(tree, tmp_path / "d.img", fs=fs)
    assert d.read_bytes() == a.read_bytes()


@pytest.mark.integration
@pytest.mark.parametrize("fs", ["erofs", "squashfs"])
def test_changing_a_file_changes_the_image(tmp_path: Path, tree: Path, fs: str) -> None:
    require_tool("mkfs.erofs" if fs == "erofs" else "mksquashfs")
    a = make_root_image(tree, tmp_path / "a.img", fs=fs, source_date_epoch=0).read_bytes()
    (tree / "etc" / "os-release").write_text("ID=tesT\n")  # same size, different content
    b = make_root_image(tree, tmp_path / "b.img", fs=fs, source_date_epoch=0).read_bytes()
    assert a != b


@pytest.mark.oracle
def test_erofs_reads_back_with_fsck_and_dump(tmp_path: Path, tree: Path) -> None:
    require_tool("mkfs.erofs")
    require_tool("fsck.erofs")
    require_tool("dump.erofs")
    img = make_root_image(tree, tmp_path / "r.img", fs="erofs", source_date_epoch=1_700_000_000)
    out = tmp_path / "extract"
    run(["fsck.erofs", f"--extract={out}", str(img)])
    _assert_tree_equal(tree, out)
    sb = run(["dump.erofs", "-s", str(img)]).stdout.decode()
    assert f"Filesystem UUID:                              {derive_fs_uuid(tree, source_date_epoch=1_700_000_000)}" in sb
    info = run(["dump.erofs", "--path=/file000", str(img)]).stdout.decode()
    assert "Uid: 0   Gid: 0" in info
    assert "Timestamp: 2023-11-14 22:13:20" in info  # 1700000000 UTC, not the file's own old mtime
    explicit = make_root_image(tree, tmp_path / "u.img", fs="erofs", uuid="11111111-2222-4333-8444-555555555555")
    assert "11111111-2222-4333-8444-555555555555" in run(["dump.erofs", "-s", str(explicit)]).stdout.decode()


@pytest.mark.oracle
def test_squashfs_reads_back_with_unsquashfs(tmp_path: Path, tree: Path) -> None:
    require_tool("mksquashfs")
    require_tool("unsquashfs")
    img = make_root_image(tree, tmp_path / "r.sqfs", fs="squashfs", source_date_epoch=1_700_000_000)
    listing = run(["unsquashfs", "-lln", "-UTC", str(img)]).stdout.decode().splitlines()
    entries = [ln for ln in listing if "squashfs-root" in ln]
    assert all(" 0/0 " in ln and "2023-11-14 22:13" in ln for ln in entries), entries
    out = tmp_path / "extract"
    run(["unsquashfs", "-d", str(out), "-no-progress", str(img)])
    _assert_tree_equal(tree, out)


def test_bad_inputs(tmp_path: Path, tree: Path) -> None:
    with pytest.raises(TeeformError, match="not a directory"):
        make_root_image(tmp_path / "missing", tmp_path / "x.img")
    with pytest.raises(TeeformError, match="unknown root file system"):
        make_root_image(tree, tmp_path / "x.img", fs="ext4")
    assert not (tmp_path / "x.img").exists()


@pytest.mark.integration
def test_invalid_uuid_leaves_nothing(tmp_path: Path, tree: Path) -> None:
    require_tool("mkfs.erofs")
    with pytest.raises(TeeformError, match="'not-a-uuid' is not a UUID"):
        make_root_image(tree, tmp_path / "x.img", uuid="not-a-uuid")
    assert list(tmp_path.glob("*x.img*")) == []


@pytest.mark.integration
def test_squashfs_uuid_refused_leaves_nothing(tmp_path: Path, tree: Path) -> None:
    """squashfs has no file system UUID field: an explicit uuid is refused and nothing is written."""
    require_tool("mksquashfs")
    with pytest.raises(TeeformError, match="no file system UUID"):
        make_root_image(tree, tmp_path / "y.img", fs="squashfs", uuid="11111111-2222-4333-8444-555555555555")
    assert list(tmp_path.glob("*y.img*")) == []


def test_fs_uuid_follows_metadata(tmp_path: Path, tree: Path) -> None:
    u1 = derive_fs_uuid(tree)
    assert u1 == derive_fs_uuid(_make_tree(tmp_path / "again", reverse=True))
    (tree / "new").write_text("x")
    assert derive_fs_uuid(tree) != u1


@pytest.mark.integration
@pytest.mark.parametrize("fs", ["erofs", "squashfs"])
def test_special_files_found_by_scan_are_left_out(tmp_path: Path, tree: Path, fs: str) -> None:
    """scan_tree lists FIFOs/sockets; exclude= keeps them out (oracle: fsck.erofs / unsquashfs extraction)."""
    import socket

    os.mkfifo(tree / "etc" / "fifo")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(tree / "sock"))
    scan = scan_tree(tree, fs=fs, source_date_epoch=7)
    assert sorted(scan.special_files) == ["etc/fifo", "sock"]
    # the UUID ignores special files, as the image does
    assert scan.uuid == derive_fs_uuid(tree, fs=fs, source_date_epoch=7)
    img = make_root_image(tree, tmp_path / "r.img", fs=fs, source_date_epoch=7, exclude=scan.special_files,
                          uuid=scan.uuid if fs == "erofs" else None)
    out = tmp_path / "x"
    if fs == "erofs":
        require_tool("fsck.erofs")
        run(["fsck.erofs", f"--extract={out}", str(img)])
    else:
        require_tool("unsquashfs")
        run(["unsquashfs", "-d", str(out), "-no-progress", str(img)])
    os.unlink(tree / "etc" / "fifo")
    os.unlink(tree / "sock")
    _assert_tree_equal(tree, out)
