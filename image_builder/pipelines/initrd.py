"""A small, reproducible initrd that opens the dm-verity root and switch_root's into it.

API:

* :class:`InitrdConfig` (frozen) -> :func:`make_initrd(config, out) <make_initrd>` -> :class:`InitrdResult`.
* :func:`kernel_release(vmlinuz) <kernel_release>`: the ``uname -r`` string in a bzImage header.
* :func:`find_modules_dir(kernel, release, override) <find_modules_dir>`: where the ``.ko`` files are.
* :func:`resolve_modules(modules_dir, names, release) <resolve_modules>`: modules plus dependencies, in load order.
* :func:`initrd_entries(config) <initrd_entries>`: the file tree (for tests and ``--dry-run`` style listings).

Why not systemd's ``roothash=`` + ``systemd-veritysetup-generator``? That needs systemd, udev and
their ~30 MB of libraries inside the initrd, and Debian 12's ``systemd-veritysetup`` (252) only
attaches devices that carry a verity superblock (uki-verity.md §5). Why not the kernel's own
``dm-mod.create=``? Debian's 6.1 kernel builds ``CONFIG_BLK_DEV_DM``, ``CONFIG_DM_VERITY``,
``CONFIG_EROFS_FS`` and ``CONFIG_VIRTIO_BLK`` as modules and leaves ``CONFIG_DM_INIT`` unset
(``.cache/debian/kernel/boot/config-6.1.0-56-amd64``; dm-init only works with ``BLK_DEV_DM=y``), so
nothing can open the verity device before a root file system exists.

So the initrd is the minimal path (docs/vm-image.md, "The initrd"):

* ``/bin/busybox`` (the static Debian ``busybox-static`` binary) plus one symlink per applet it lists;
* ``/sbin/veritysetup`` (cryptsetup-bin) and the shared libraries ``ldd`` reports for it, at the
  same absolute paths, plus the ELF interpreter;
* the kernel modules needed to see the disk and open the root (:data:`DEFAULT_MODULES`), with their
  ``depends=`` / ``softdep=pre:`` closure read from each module's ``.modinfo`` ELF section, listed
  in load order in ``/etc/teeform/modules`` and loaded with ``insmod`` (no ``modules.dep`` needed:
  Debian's unpacked kernel package ships none);
* ``/init`` = ``image_builder/pipelines/guest/initrd-init.sh`` (helpers in ``/lib/teeform/initrd-lib.sh``): reads ``roothash=`` (and the optional
  ``systemd.verity_root_data=/hash=/options=``, systemd's names) from ``/proc/cmdline``, finds the
  data and hash partitions by PARTUUID (by default the first/last 128 bits of the root hash, as in
  the Discoverable Partitions Specification) by reading the GPT with ``od``, runs
  ``veritysetup open``, mounts ``/dev/mapper/root`` read-only at ``/sysroot`` and ``switch_root``'s
  to ``init=`` (default ``/sbin/init``). Any failure powers off; there is no rescue shell.

The archive is a newc cpio written by :func:`image_builder.formats.cpio.write_archive` (members sorted by
path, owner 0:0, every mtime = ``mtime`` = SOURCE_DATE_EPOCH, sequential inodes), streamed through
gzip with header mtime 0 and no file name: the same inputs give the same bytes.

The initrd's content depends on the build host's ``busybox-static`` and ``cryptsetup-bin``
packages; :attr:`InitrdResult.host_files` lists every host file copied, with its SHA-256, so the
manifest can record them as inputs.
"""

from __future__ import annotations

import gzip
import io
import lzma
import os
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from image_builder.formats.cpio import EntryKind, Opener, TreeEntry, write_archive
from teeform.errors import TeeformError
from teeform.fsutil import atomic_output, hash_file
from teeform.run import find_tool, run

GUEST_DIR = Path(__file__).resolve().parent / "guest"
INIT_SCRIPT = GUEST_DIR / "initrd-init.sh"
INIT_LIB = GUEST_DIR / "initrd-lib.sh"

#: Kernel modules loaded by default (names as in ``modinfo``; ``-`` and ``_`` are equivalent).
#: Disks: virtio-blk / virtio-scsi (QEMU, most clouds' virtio), NVMe (GCP, AWS Nitro).
#: Root: dm-verity (pulls dm-mod, dm-bufio, reed_solomon). The root file system module is added
#: from :attr:`InitrdConfig.fs`.
DEFAULT_MODULES: tuple[str, ...] = ("virtio_pci", "virtio_blk", "virtio_scsi", "sd_mod", "nvme", "dm-verity")

#: Hyper-V guest drivers, for Azure (issue 10): v5 confidential-VM sizes expose their disks through
#: ``hv_storvsc`` (SCSI over VMBus) and their NIC through ``hv_netvsc``, both on ``hv_vmbus``;
#: ``hv_utils`` is the integration services (shutdown, time sync, heartbeat). Their dependencies
#: (``scsi_transport_fc`` for storvsc, ...) come from each module's ``modinfo`` as usual
#: (:func:`resolve_modules`). Source: clouds.md §2.1 (storvsc on v5 CVMs) and the modules' own
#: ``modinfo``. On a machine without VMBus (QEMU) ``hv_vmbus`` refuses to load (-ENODEV) and the
#: init script logs a warning and goes on (guest/initrd-init.sh); the Hyper-V boot itself is untested.
HYPERV_MODULES: tuple[str, ...] = ("hv_vmbus", "hv_storvsc", "hv_netvsc", "hv_utils")

#: Extra module sets by platform (``teeform build vm-image --platform-modules hyperv``).
PLATFORM_MODULES: dict[str, tuple[str, ...]] = {"hyperv": HYPERV_MODULES}

#: File system type -> kernel module.
FS_MODULES = {"erofs": "erofs", "squashfs": "squashfs"}

#: ``softdep=pre:`` names that are crypto algorithm aliases, not module names, mapped to the
#: generic implementation (``crypto/crc32c_generic.c`` MODULE_ALIAS_CRYPTO("crc32c"), etc.).
#: ``libcrc32c`` fails to load without a "crc32c" provider (lib/libcrc32c.c, Linux 6.1).
SOFTDEP_ALIASES = {"crc32c": "crc32c_generic", "crct10dif": "crct10dif_generic", "crc64": "crc64"}

BUSYBOX = Path("/bin/busybox")


# --------------------------------------------------------------------------- kernel facts
def kernel_release(vmlinuz: os.PathLike[str] | str) -> str:
    """Return the ``uname -r`` string of an x86 bzImage (e.g. ``"6.1.0-56-amd64"``).

    Source: Linux ``Documentation/arch/x86/boot.rst`` ("The real-mode kernel header"): the magic
    ``HdrS`` at file offset 0x202, and ``kernel_version`` (u16 LE at 0x20E) pointing to a
    NUL-terminated string at file offset ``kernel_version + 0x200``; its first word is the release.

    Raises:
        TeeformError: not a bzImage, or the version string is missing.
    """
    p = Path(vmlinuz)
    try:
        with open(p, "rb") as fh:
            hdr = fh.read(0x210)
            if len(hdr) < 0x210 or hdr[0x202:0x206] != b"HdrS":
                raise TeeformError("not an x86 bzImage (no 'HdrS' magic at offset 0x202)", path=p, field="kernel")
            ptr = struct.unpack_from("<H", hdr, 0x20E)[0]
            if ptr == 0:
                raise TeeformError("bzImage header has no kernel_version string", path=p, field="kernel")
            fh.seek(ptr + 0x200)
            raw = fh.read(256).split(b"\0", 1)[0]
    except OSError as exc:
        raise TeeformError(f"cannot read kernel: {exc.strerror}", path=p, field="kernel") from exc
    words = raw.decode("ascii", "replace").split()
    if not words:
        raise TeeformError("empty kernel_version string in bzImage header", path=p, field="kernel")
    return words[0]


def find_modules_dir(kernel: os.PathLike[str] | str, release: str, override: os.PathLike[str] | str | None = None) -> Path:
    """Return the ``lib/modules/<release>`` directory to take ``.ko`` files from.

    ``override`` (``--modules``) may be that directory itself, a directory containing
    ``<release>/``, or a root containing ``lib/modules/<release>/``. Without it the directory is
    looked up next to the kernel (``<kernel dir>/../lib/modules/<release>``, the layout of an
    unpacked Debian ``linux-image`` package), then in ``/lib/modules/<release>``.

    Raises:
        TeeformError: no candidate exists (names the paths tried).
    """
    if override is not None:
        base = Path(override)
        cands = [base, base / release, base / "lib" / "modules" / release]
    else:
        kdir = Path(kernel).resolve().parent
        cands = [kdir.parent / "lib" / "modules" / release, Path("/lib/modules") / release]
    for c in cands:
        if (c / "kernel").is_dir() or (c / "modules.order").is_file():
            return c
    raise TeeformError(
        f"no kernel modules for release {release!r} (tried {', '.join(str(c) for c in cands)})",
        path=override, field="--modules",
        hint="pass --modules <dir> pointing at lib/modules/<release> of the kernel package",
    )


# --------------------------------------------------------------------------- modules
@dataclass(frozen=True)
class KernelModule:
    """One module to load: its name (``_`` normalised), source file, and path inside the initrd
    relative to ``/lib/modules/`` (always an uncompressed ``.ko``)."""

    name: str
    source: Path
    initrd_path: str


def _norm(name: str) -> str:
    return name.replace("-", "_")


def _module_files(modules_dir: Path) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for root, dirs, files in os.walk(modules_dir / "kernel" if (modules_dir / "kernel").is_dir() else modules_dir):
        dirs.sort()
        for f in sorted(files):
            m = re.match(r"^(.+)\.ko(\.xz|\.gz|\.zst)?$", f)
            if m:
                index.setdefault(_norm(m.group(1)), Path(root) / f)
    return index


def read_module_bytes(path: Path) -> bytes:
    """Return the uncompressed ELF bytes of ``path`` (``.ko``, ``.ko.xz``, ``.ko.gz`` or ``.ko.zst``).

    ``.ko.zst`` is decompressed with the ``zstd`` tool (the standard library has no zstd).

    Raises:
        TeeformError: unreadable or corrupt file.
    """
    try:
        if path.name.endswith(".ko.xz"):
            return lzma.decompress(path.read_bytes())
        if path.name.endswith(".ko.gz"):
            return gzip.decompress(path.read_bytes())
        if path.name.endswith(".ko.zst"):
            return run(["zstd", "-dc", str(path)]).stdout
        return path.read_bytes()
    except (OSError, lzma.LZMAError, gzip.BadGzipFile) as exc:
        raise TeeformError(f"cannot read kernel module: {exc}", path=path) from exc


def modinfo(elf: bytes, *, source: Path | None = None) -> dict[str, list[str]]:
    """Parse the ``.modinfo`` section of a kernel module (ELF64 little-endian, x86-64).

    The section is a sequence of NUL-terminated ``key=value`` strings (Linux
    ``include/linux/moduleparam.h`` ``__MODULE_INFO``). ELF64 layout: ``e_shoff`` u64 at 0x28,
    ``e_shentsize``/``e_shnum``/``e_shstrndx`` u16 at 0x3A/0x3C/0x3E; a section header has
    ``sh_name`` u32 at 0, ``sh_offset`` u64 at 0x18, ``sh_size`` u64 at 0x20 (System V gABI, ch. 4).

    Returns:
        ``{key: [values in order]}`` (keys such as ``depends``, ``softdep``, ``vermagic``, ``alias``).

    Raises:
        TeeformError: not an ELF64 little-endian file or no ``.modinfo`` section.
    """
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        raise TeeformError("not an ELF64 little-endian kernel module", path=source)
    shoff = struct.unpack_from("<Q", elf, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)

    def sh(i: int) -> tuple[int, int, int]:
        base = shoff + i * shentsize
        name = struct.unpack_from("<I", elf, base)[0]
        off, size = struct.unpack_from("<QQ", elf, base + 0x18)
        return name, off, size

    _, stroff, _ = sh(shstrndx)
    for i in range(shnum):
        name_off, off, size = sh(i)
        end = elf.index(b"\0", stroff + name_off)
        if elf[stroff + name_off:end] == b".modinfo":
            info: dict[str, list[str]] = {}
            for item in elf[off:off + size].split(b"\0"):
                if b"=" in item:
                    k, v = item.decode("utf-8", "replace").split("=", 1)
                    info.setdefault(k, []).append(v)
            return info
    raise TeeformError("kernel module has no .modinfo section", path=source)


def resolve_modules(modules_dir: Path, names: Iterable[str], release: str) -> list[KernelModule]:
    """Return ``names`` plus their dependency closure, dependencies first (a valid insmod order).

    Dependencies are the module's ``depends=`` list and the ``pre:`` part of ``softdep=``
    (``softdep`` names that are crypto aliases go through :data:`SOFTDEP_ALIASES`; an unresolvable
    softdep is skipped, as modprobe does). Modules built into the kernel (listed in
    ``modules.builtin``) are skipped. Each module's ``vermagic`` must start with ``release``.

    Raises:
        TeeformError: a requested or required module is missing, or was built for another kernel.
    """
    index = _module_files(modules_dir)
    builtin: set[str] = set()
    bfile = modules_dir / "modules.builtin"
    if bfile.is_file():
        for line in bfile.read_text().splitlines():
            builtin.add(_norm(Path(line.strip()).name.split(".ko")[0]))
    order: list[KernelModule] = []
    done: set[str] = set()
    visiting: set[str] = set()

    def visit(name: str, *, required: bool, wanted_by: str | None) -> None:
        n = _norm(name)
        if n in done or n in builtin:
            return
        if n in visiting:
            raise TeeformError(f"kernel module dependency cycle at {name!r}", path=modules_dir, field="--modules")
        src = index.get(n)
        if src is None:
            if not required:
                return
            by = f" (needed by {wanted_by})" if wanted_by else ""
            raise TeeformError(
                f"kernel module {name!r}{by} not found", path=modules_dir, field="--modules",
                hint="check that --modules matches the kernel (lib/modules/<release>)",
            )
        visiting.add(n)
        info = modinfo(read_module_bytes(src), source=src)
        vermagic = (info.get("vermagic") or [""])[0].split()
        if not vermagic or vermagic[0] != release:
            raise TeeformError(
                f"kernel module {src.name} was built for {vermagic[0] if vermagic else '?'!r}, not {release!r}",
                path=src, field="vermagic", hint="use the modules that belong to --kernel",
            )
        for sd in info.get("softdep", []):
            m = re.search(r"pre:\s*(.*?)(?:\s+post:|$)", sd)
            for dep in (m.group(1).split() if m else []):
                target = dep if _norm(dep) in index else SOFTDEP_ALIASES.get(dep, dep)
                visit(target, required=False, wanted_by=n)
        for dep in filter(None, ",".join(info.get("depends", [])).split(",")):
            visit(dep, required=True, wanted_by=n)
        visiting.discard(n)
        done.add(n)
        rel = src.relative_to(modules_dir).as_posix()
        rel = re.sub(r"\.ko(\.xz|\.gz|\.zst)$", ".ko", rel)
        order.append(KernelModule(n, src, rel))

    for name in names:
        visit(name, required=True, wanted_by=None)
    return order


# --------------------------------------------------------------------------- shared libraries
def elf_interpreter(path: os.PathLike[str] | str) -> str | None:
    """Return the PT_INTERP path of an ELF64 little-endian executable, or None for a static one.

    ELF64 header: ``e_phoff`` u64 at 0x20, ``e_phentsize``/``e_phnum`` u16 at 0x36/0x38; a program
    header has ``p_type`` u32 at 0 (PT_INTERP = 3), ``p_offset`` u64 at 8, ``p_filesz`` u64 at 0x20
    (System V gABI, ch. 5 "Program Header").

    Raises:
        TeeformError: unreadable file or not an ELF64 little-endian file.
    """
    try:
        with open(path, "rb") as fh:
            hdr = fh.read(64)
            if len(hdr) < 64 or hdr[:4] != b"\x7fELF" or hdr[4] != 2 or hdr[5] != 1:
                raise TeeformError("not an ELF64 little-endian executable", path=path)
            phoff = struct.unpack_from("<Q", hdr, 0x20)[0]
            phentsize, phnum = struct.unpack_from("<HH", hdr, 0x36)
            fh.seek(phoff)
            table = fh.read(phentsize * phnum)
            for i in range(phnum):
                p_type = struct.unpack_from("<I", table, i * phentsize)[0]
                if p_type == 3:
                    off, _vaddr, _paddr, filesz = struct.unpack_from("<QQQQ", table, i * phentsize + 8)
                    fh.seek(off)
                    return fh.read(filesz).split(b"\0", 1)[0].decode("utf-8", "replace")
    except OSError as exc:
        raise TeeformError(f"cannot read executable: {exc.strerror}", path=path) from exc
    return None


def shared_libraries(binary: os.PathLike[str] | str) -> list[Path]:
    """Return the shared libraries (and ELF interpreter) ``binary`` needs, as ``ldd`` resolves them.

    Returns:
        absolute paths, sorted, without ``linux-vdso``.

    Raises:
        TeeformError: ``ldd`` fails or reports a missing library.
    """
    # LC_ALL=C: the "not found" text below is parsed, and glibc translates ldd's messages.
    out = run(["ldd", os.fspath(binary)], env={"LC_ALL": "C"}).stdout.decode("utf-8", "replace")
    libs: set[Path] = set()
    for line in out.splitlines():
        line = line.strip()
        if "not found" in line:
            raise TeeformError(f"shared library missing: {line}", path=binary, hint="install the package that provides it")
        m = re.match(r"^\S+ => (/\S+) \(0x[0-9a-f]+\)$", line) or re.match(r"^(/\S+) \(0x[0-9a-f]+\)$", line)
        if m:
            libs.add(Path(m.group(1)))
    return sorted(libs)


# --------------------------------------------------------------------------- the tree
@dataclass(frozen=True)
class InitrdConfig:
    """What goes into the initrd.

    Attributes:
        modules_dir: ``lib/modules/<release>`` to take modules from (see :func:`find_modules_dir`).
        kernel_release: ``uname -r`` of the kernel the modules must match.
        fs: root file system type, ``"erofs"`` or ``"squashfs"`` (adds its module).
        modules: modules to load besides the fs module (dependencies are added).
        busybox: a *static* busybox binary.
        veritysetup: the ``veritysetup`` binary (its shared libraries are copied too).
        init_script: the ``/init`` script.
        mtime: the mtime of every member (seconds; use SOURCE_DATE_EPOCH).
        compress: gzip the cpio (header mtime 0, no name, level 9).
    """

    modules_dir: Path
    kernel_release: str
    fs: str = "erofs"
    modules: tuple[str, ...] = DEFAULT_MODULES
    busybox: Path = BUSYBOX
    veritysetup: Path | None = None
    init_script: Path = INIT_SCRIPT
    mtime: int = 0
    compress: bool = True


@dataclass(frozen=True)
class InitrdEntry:
    """One archive member: ``path`` (relative, no leading ``/``), ``kind`` (``dir``/``file``/``symlink``),
    permission ``mode``, and for files either ``source`` (host path) or ``data``; for symlinks ``target``."""

    path: str
    kind: str
    mode: int
    source: Path | None = None
    data: bytes | None = None
    target: str | None = None


@dataclass(frozen=True)
class InitrdResult:
    """The built initrd: path, size (bytes), SHA-256 (hex), modules in load order (initrd paths
    relative to ``/lib/modules``) and the host files copied in, as ``(name, sha256 hex)`` sorted by
    name (names: :func:`host_file_name`; modules start with ``lib/modules/``)."""

    path: Path
    size: int
    sha256: str
    modules: tuple[str, ...]
    host_files: tuple[tuple[str, str], ...] = field(default_factory=tuple)


def initrd_entries(config: InitrdConfig) -> list[InitrdEntry]:
    """Return the initrd's members (sorted by path, parents before children).

    Raises:
        TeeformError: busybox is missing or not static, veritysetup or a module is missing.
    """
    if config.fs not in FS_MODULES:
        raise TeeformError(f"unsupported root file system {config.fs!r}", field="--fs", hint="use erofs or squashfs")
    busybox = Path(config.busybox)
    if not busybox.is_file():
        raise TeeformError("busybox not found", path=busybox, hint="apt-get install busybox-static")
    if elf_interpreter(busybox) is not None:
        raise TeeformError("busybox must be statically linked", path=busybox, hint="apt-get install busybox-static")
    veritysetup = Path(config.veritysetup or find_tool("veritysetup", reason="open the dm-verity root in the initrd") or "")
    entries: dict[str, InitrdEntry] = {}

    def add_dirs(p: str) -> None:
        parts = p.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            entries.setdefault(d, InitrdEntry(d, "dir", 0o755))

    def add(e: InitrdEntry) -> None:
        add_dirs(e.path)
        entries[e.path] = e

    for d in ("dev", "proc", "sys", "run", "sysroot", "etc", "tmp"):
        add(InitrdEntry(d, "dir", 0o755))
    add(InitrdEntry("init", "file", 0o755, source=Path(config.init_script)))
    add(InitrdEntry("lib/teeform/initrd-lib.sh", "file", 0o644, source=INIT_LIB))
    add(InitrdEntry("bin/busybox", "file", 0o755, source=busybox))
    applets = run([str(busybox), "--list"]).stdout.decode().split()
    for a in sorted(set(applets) - {"busybox"}):
        add(InitrdEntry(f"bin/{a}", "symlink", 0o777, target="busybox"))
    add(InitrdEntry("sbin", "symlink", 0o777, target="bin"))
    add(InitrdEntry("bin/veritysetup", "file", 0o755, source=veritysetup))
    for lib in shared_libraries(veritysetup):
        add(InitrdEntry(lib.as_posix().lstrip("/"), "file", 0o755, source=lib))
    mods = resolve_modules(config.modules_dir, (*config.modules, FS_MODULES[config.fs]), config.kernel_release)
    for m in mods:
        add(InitrdEntry(f"lib/modules/{m.initrd_path}", "file", 0o644, source=m.source))
    add(InitrdEntry("etc/teeform/modules", "file", 0o644, data="".join(f"{m.initrd_path}\n" for m in mods).encode()))
    add(InitrdEntry("etc/os-release", "file", 0o644, data=b"ID=teeform-initrd\nNAME=\"teeform initrd\"\n"))
    return [entries[k] for k in sorted(entries)]


def _entry_bytes(e: InitrdEntry) -> bytes:
    if e.data is not None:
        return e.data
    assert e.source is not None
    if e.source.name.endswith((".ko.xz", ".ko.gz", ".ko.zst")):
        return read_module_bytes(e.source)
    return e.source.read_bytes()


def _bytes_opener(data: bytes) -> Opener:
    """A cpio opener streaming ``data`` (kept in memory: small decompressed modules, generated files)."""
    return lambda: io.BytesIO(data)


def _path_opener(path: Path) -> Opener:
    """A cpio opener streaming the file at ``path`` (opened only when the archive writer reaches it)."""
    return lambda: open(path, "rb")


def _tree_entries(entries: Sequence[InitrdEntry]) -> list[TreeEntry]:
    """Map :class:`InitrdEntry` to :class:`image_builder.formats.cpio.TreeEntry` (owner 0:0)."""
    out: list[TreeEntry] = []
    for e in entries:
        path = e.path.encode()
        if e.kind == "dir":
            out.append(TreeEntry(path, EntryKind.DIR, e.mode))
        elif e.kind == "symlink":
            out.append(TreeEntry(path, EntryKind.SYMLINK, 0o777, link_target=(e.target or "").encode()))
        elif e.data is not None or (e.source is not None and e.source.name.endswith((".ko.xz", ".ko.gz", ".ko.zst"))):
            data = _entry_bytes(e)
            out.append(TreeEntry(path, EntryKind.FILE, e.mode, size=len(data), opener=_bytes_opener(data)))
        else:
            assert e.source is not None
            src = e.source
            try:
                size = src.stat().st_size
            except OSError as exc:
                raise TeeformError(f"cannot read initrd input: {exc.strerror}", path=src) from exc
            out.append(TreeEntry(path, EntryKind.FILE, e.mode, size=size, opener=_path_opener(src)))
    return out


#: Files of this source tree (``image_builder/...``) are named relative to this directory in
#: :attr:`InitrdResult.host_files`, so the manifest does not depend on where the checkout is.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def host_file_name(entry: InitrdEntry) -> str:
    """The name :attr:`InitrdResult.host_files` records for ``entry``'s source file.

    * a kernel module: ``lib/modules/<path inside the initrd below /lib/modules>`` (e.g.
      ``lib/modules/kernel/drivers/md/dm-verity.ko``), whatever directory ``--modules`` named;
    * a file of this source tree (``/init``, ``initrd-lib.sh``): its path relative to the checkout
      (``image_builder/pipelines/guest/initrd-init.sh``);
    * any other host file (busybox, veritysetup, its libraries): the absolute host path, which is
      the same on every Debian host (``/usr/sbin/veritysetup``).

    Never the checkout's or a temporary directory's absolute path, so two machines building the same
    inputs record the same names (issue 7 item 2).
    """
    assert entry.source is not None
    if entry.path.startswith("lib/modules/"):
        return entry.path
    src = Path(entry.source)
    try:
        return src.resolve().relative_to(PACKAGE_ROOT).as_posix()
    except ValueError:
        return src.as_posix()


def make_initrd(config: InitrdConfig, out: os.PathLike[str] | str) -> InitrdResult:
    """Build the initrd at ``out`` (atomically; nothing is left behind on error).

    Returns:
        :class:`InitrdResult` with the size, SHA-256, module load order and the host files used.

    Raises:
        TeeformError: a missing tool, binary or module (see :func:`initrd_entries`).
    """
    entries = initrd_entries(config)
    with atomic_output(out) as fh:
        if config.compress:
            # filename="" and mtime=0: no name and no time in the gzip header (RFC 1952 §2.3).
            with gzip.GzipFile(filename="", mode="wb", fileobj=fh, compresslevel=9, mtime=0) as gz:
                write_archive(gz, _tree_entries(entries), mtime=config.mtime)  # type: ignore[arg-type]
        else:
            write_archive(fh, _tree_entries(entries), mtime=config.mtime)
    host: dict[str, str] = {}
    for e in entries:
        if e.source is not None:
            host[host_file_name(e)] = hash_file(e.source)["sha256"]
    digest = hash_file(out)["sha256"]
    order = tuple(filter(None, (next(e for e in entries if e.path == "etc/teeform/modules").data or b"").decode().split("\n")))
    return InitrdResult(Path(out), Path(out).stat().st_size, digest, order, tuple(sorted(host.items())))


__all__ = [
    "DEFAULT_MODULES",
    "FS_MODULES",
    "InitrdConfig",
    "InitrdEntry",
    "InitrdResult",
    "KernelModule",
    "elf_interpreter",
    "find_modules_dir",
    "host_file_name",
    "initrd_entries",
    "kernel_release",
    "make_initrd",
    "modinfo",
    "read_module_bytes",
    "resolve_modules",
    "shared_libraries",
]
