"""Tests for image_builder/pipelines/initrd.py and the guest shell helpers (image_builder/pipelines/guest/).

Oracles: GNU ``objcopy`` (the ``.modinfo`` section of each module), the Debian kernel package's own
``lib/modules/<release>`` directory name, ``sfdisk`` (partition UUIDs it writes into a GPT), the
dm-verity/DPS vector of tests/vectors/README.md, and GNU ``cpio -t`` (archive listing).
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import inputs_lock, locked, require_file, require_tool

from image_builder.pipelines import initrd as ir
from teeform.errors import TeeformError

GUEST = Path(ir.__file__).resolve().parent / "guest"


@pytest.fixture(scope="module")
def kernel() -> Path:
    return locked("kernel.vmlinuz")


@pytest.fixture(scope="module")
def release(kernel: Path) -> str:
    return ir.kernel_release(kernel)


@pytest.fixture(scope="module")
def modules_dir(kernel: Path, release: str) -> Path:
    return ir.find_modules_dir(kernel, release)


# ----------------------------------------------------------------------------- kernel facts
def test_kernel_release_matches_the_package_layout(kernel: Path, release: str) -> None:
    # Oracle: Debian names both the kernel file and the modules directory after `uname -r`; the set-up
    # took the release from those names (teeform/inputs_lock.py), kernel_release() reads the bzImage header.
    assert release == inputs_lock().kernel_release
    assert kernel.name == f"vmlinuz-{release}"
    assert locked("kernel.modules").name == release and (locked("kernel.modules") / "kernel").is_dir()


def test_kernel_release_rejects_non_bzimage(tmp_path: Path) -> None:
    bad = tmp_path / "notakernel"
    bad.write_bytes(b"MZ" + b"\0" * 1000)
    with pytest.raises(TeeformError, match="HdrS"):
        ir.kernel_release(bad)


def test_modules_override_forms(tmp_path: Path, kernel: Path, release: str, modules_dir: Path) -> None:
    # --modules may name lib/modules/<rel>, its parent, or a root containing lib/modules/<rel>.
    assert ir.find_modules_dir(kernel, release, modules_dir) == modules_dir
    assert ir.find_modules_dir(kernel, release, modules_dir.parent) == modules_dir
    assert ir.find_modules_dir(kernel, release, modules_dir.parents[2]) == modules_dir  # the unpacked package root
    with pytest.raises(TeeformError, match="no kernel modules") as ei:
        ir.find_modules_dir(kernel, release, tmp_path)
    assert ei.value.field == "--modules"


# ----------------------------------------------------------------------------- modinfo
def _objcopy_modinfo(path: Path, tmp: Path) -> dict[str, list[str]]:
    out = tmp / (path.name + ".modinfo")
    subprocess.run(["objcopy", "-O", "binary", "--only-section=.modinfo", str(path), str(out)], check=True)
    info: dict[str, list[str]] = {}
    for item in out.read_bytes().split(b"\0"):
        if b"=" in item:
            k, v = item.decode().split("=", 1)
            info.setdefault(k, []).append(v)
    return info


@pytest.mark.oracle
@pytest.mark.parametrize("rel", ["drivers/md/dm-verity.ko", "fs/erofs/erofs.ko", "lib/crc-t10dif.ko", "drivers/virtio/virtio_pci.ko"])
def test_modinfo_matches_objcopy(tmp_path: Path, modules_dir: Path, rel: str) -> None:
    require_tool("objcopy")
    path = modules_dir / "kernel" / rel
    mine = ir.modinfo(path.read_bytes(), source=path)
    assert mine == _objcopy_modinfo(path, tmp_path)
    assert mine["vermagic"][0].split()[0] == modules_dir.name


@pytest.mark.oracle
def test_resolved_order_satisfies_every_dependency(tmp_path: Path, modules_dir: Path, release: str) -> None:
    require_tool("objcopy")
    mods = ir.resolve_modules(modules_dir, (*ir.DEFAULT_MODULES, "erofs", "squashfs"), release)
    names = [m.name for m in mods]
    assert len(names) == len(set(names))
    pos = {n: i for i, n in enumerate(names)}
    for m in mods:
        for dep in filter(None, ",".join(_objcopy_modinfo(m.source, tmp_path).get("depends", [])).split(",")):
            dep = dep.replace("-", "_")
            assert dep in pos and pos[dep] < pos[m.name], f"{dep} must load before {m.name}"
    # dm-verity needs dm-mod, dm-bufio and reed_solomon (its depends=); erofs needs libcrc32c, which
    # cannot initialise without a "crc32c" crypto provider (softdep pre: crc32c).
    for need in ("dm_mod", "dm_bufio", "reed_solomon", "dm_verity", "libcrc32c", "crc32c_generic", "virtio_blk"):
        assert need in pos
    assert pos["crc32c_generic"] < pos["libcrc32c"] < pos["erofs"]


def test_missing_module_is_a_user_error(modules_dir: Path, release: str) -> None:
    with pytest.raises(TeeformError, match="'no_such_module' not found") as ei:
        ir.resolve_modules(modules_dir, ["no_such_module"], release)
    assert ei.value.field == "--modules"


def test_module_for_another_kernel_is_refused(tmp_path: Path, modules_dir: Path) -> None:
    fake = tmp_path / "6.9.9-other"
    (fake / "kernel").mkdir(parents=True)
    shutil.copy(modules_dir / "kernel" / "drivers" / "md" / "dm-mod.ko", fake / "kernel" / "dm-mod.ko")
    with pytest.raises(TeeformError, match="built for") as ei:
        ir.resolve_modules(fake, ["dm-mod"], "6.9.9-other")
    assert ei.value.field == "vermagic"


def test_compressed_modules_are_read(tmp_path: Path, modules_dir: Path, release: str) -> None:
    import lzma

    fake = tmp_path / release / "kernel"
    fake.mkdir(parents=True)
    raw = (modules_dir / "kernel" / "drivers" / "md" / "dm-mod.ko").read_bytes()
    (fake / "dm-mod.ko.xz").write_bytes(lzma.compress(raw))
    mods = ir.resolve_modules(fake.parent, ["dm_mod"], release)
    assert [m.initrd_path for m in mods] == ["kernel/dm-mod.ko"]
    assert ir.read_module_bytes(mods[0].source) == raw


# ----------------------------------------------------------------------------- guest shell helpers
def _lib_sh(script: str) -> subprocess.CompletedProcess[str]:
    busybox = require_tool("busybox")
    prog = f'fatal() {{ echo "FATAL $*"; exit 9; }}\n. {GUEST / "initrd-lib.sh"}\n{script}\n'
    return subprocess.run([busybox, "sh", "-c", prog], capture_output=True, text=True, timeout=30)


def test_guest_scripts_parse() -> None:
    busybox = require_tool("busybox")
    for name in ("initrd-init.sh", "initrd-lib.sh", "boot-probe.sh"):
        subprocess.run([busybox, "sh", "-n", str(GUEST / name)], check=True)


@pytest.mark.oracle
def test_dps_uuid_matches_reference_vector() -> None:
    # uki-verity.md §5: root 8aa2f742... -> data 8aa2f742-95ea-4232-6038-971b0ff0db96,
    # hash b3e2319a-c9a5-d3fc-18fd-5e9cd7230a8e (systemd-veritysetup-generator / DPS).
    root = "8aa2f74295ea42326038971b0ff0db96b3e2319ac9a5d3fc18fd5e9cd7230a8e"
    p = _lib_sh(f'dps_uuid {root[:32]}; dps_uuid {root[32:]}')
    assert p.stdout.split() == ["8aa2f742-95ea-4232-6038-971b0ff0db96", "b3e2319a-c9a5-d3fc-18fd-5e9cd7230a8e"]


@pytest.mark.oracle
def test_gpt_partuuid_reads_what_sfdisk_wrote(tmp_path: Path) -> None:
    require_tool("sfdisk")
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as fh:
        fh.truncate(8 << 20)
    u1, u2 = str(uuid.uuid4()), "8aa2f742-95ea-4232-6038-971b0ff0db96"
    script = f"label: gpt\nstart=2048, size=4096, uuid={u1}\nsize=4096, uuid={u2}\n"
    subprocess.run(["sfdisk", "-q", str(disk)], input=script, text=True, check=True)
    p = _lib_sh(f"gpt_partuuid {disk} 1 512; gpt_partuuid {disk} 2 512")
    assert p.stdout.split() == [u1, u2], p.stderr
    # Not a GPT disk -> failure status, nothing printed.
    plain = tmp_path / "plain.img"
    plain.write_bytes(b"\0" * 65536)
    p = _lib_sh(f"gpt_partuuid {plain} 1 512 || echo nogpt")
    assert p.stdout.split() == ["nogpt"]


def test_verity_flags_map_systemd_names_and_refuse_weakening() -> None:
    p = _lib_sh("verity_flags superblock=false,data-blocks=12,salt=abcd,hash-offset=4096,panic-on-corruption")
    assert p.returncode == 0
    assert p.stdout.split() == ["--no-superblock", "--data-blocks=12", "--salt=abcd", "--hash-offset=4096", "--panic-on-corruption"]
    for bad in ("ignore-corruption", "ignore-zero-blocks", "check-at-most-once", "superblock=false,--debug"):
        p = _lib_sh(f"verity_flags {bad}")
        assert p.returncode == 1, bad


# ----------------------------------------------------------------------------- the archive
@pytest.mark.integration
def test_initrd_is_reproducible_and_complete(tmp_path: Path, modules_dir: Path, release: str) -> None:
    require_tool("busybox")
    veritysetup = require_tool("veritysetup")
    require_tool("cpio")
    cfg = ir.InitrdConfig(modules_dir=modules_dir, kernel_release=release, mtime=1700000000)
    a = ir.make_initrd(cfg, tmp_path / "a.cpio.gz")
    b = ir.make_initrd(cfg, tmp_path / "b.cpio.gz")
    assert (tmp_path / "a.cpio.gz").read_bytes() == (tmp_path / "b.cpio.gz").read_bytes()
    assert a.sha256 == b.sha256 and a.size == os.path.getsize(tmp_path / "a.cpio.gz")
    raw = gzip.decompress((tmp_path / "a.cpio.gz").read_bytes())
    assert raw[:6] == b"070701"  # newc magic
    # Oracle: GNU cpio's own listing of the archive.
    listing = subprocess.run(["cpio", "-tv", "--quiet"], input=raw, capture_output=True, check=True).stdout.decode()
    rows = {line.split()[8]: line.split() for line in listing.splitlines() if len(line.split()) >= 9}
    assert rows["init"][0] == "-rwxr-xr-x" and rows["init"][2:4] == ["root", "root"]
    assert rows["bin/sh"][0].startswith("l") and rows["bin/sh"][-1] == "busybox"
    for need in ("bin/busybox", "bin/veritysetup", "lib/teeform/initrd-lib.sh", "etc/teeform/modules",
                 "lib/modules/kernel/drivers/md/dm-verity.ko", "lib/modules/kernel/fs/erofs/erofs.ko"):
        assert need in rows, need
    libs = ir.shared_libraries(Path(veritysetup))
    assert libs, "veritysetup is a dynamic executable: ldd must list its libraries"
    for lib in libs:
        assert lib.as_posix().lstrip("/") in rows, lib
    assert a.modules[-1] == "kernel/fs/erofs/erofs.ko"
    assert any(h[0].endswith("busybox") for h in a.host_files)


@pytest.mark.oracle
def test_elf_interpreter_agrees_with_readelf_and_ldd() -> None:
    # Oracles: GNU readelf's "[Requesting program interpreter: ...]" line (the PT_INTERP segment, read
    # by binutils, not by teeform), and ldd, which lists the interpreter among the libraries.
    readelf = require_tool("readelf")
    require_tool("ldd")
    ls = require_file(Path("/bin/ls"), "a dynamic executable (coreutils)")
    out = subprocess.run([readelf, "-lW", str(ls)], capture_output=True, text=True, check=True).stdout
    m = re.search(r"\[Requesting program interpreter: (\S+)\]", out)
    assert m, out
    interp = ir.elf_interpreter(ls)
    assert interp == m.group(1)
    assert Path(interp) in ir.shared_libraries(ls)
    busybox = require_tool("busybox")
    static = subprocess.run([readelf, "-lW", busybox], capture_output=True, text=True, check=True).stdout
    assert "INTERP" not in static  # readelf: busybox-static has no PT_INTERP segment ...
    assert ir.elf_interpreter(Path(busybox)) is None  # ... and teeform agrees


def test_initrd_refuses_dynamic_busybox(tmp_path: Path, modules_dir: Path, release: str) -> None:
    dyn = require_file(Path("/bin/ls"), "a dynamic executable (coreutils)")
    cfg = ir.InitrdConfig(modules_dir=modules_dir, kernel_release=release, busybox=dyn)
    with pytest.raises(TeeformError, match="statically linked"):
        ir.initrd_entries(cfg)
