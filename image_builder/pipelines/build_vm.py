"""``teeform build vm-image``: root file system -> erofs -> dm-verity -> initrd -> UKI -> ESP -> GPT disk.

API::

    BuildConfig(...)                                   # frozen; every option of the command
    build_vm_image(config) -> BuildResult              # runs PIPELINE, returns the output paths
    PIPELINE: tuple[Callable[[BuildContext], None], ...]   # the named steps, in order

The pipeline is one flat list of named steps over a mutable :class:`BuildContext` (style.md
guideline 4; mkosi ``build_image``). Each step logs ``teeform: <step> ... <seconds> s`` to stderr:

1. ``make_rootfs``: a directory that has the mount points ``dev proc sys run tmp`` (the initrd moves
   its mounts onto them) is used in place, with no copy; one that lacks some is staged as a tree of
   hard links (copies where linking is refused) plus those directories (mode 0755, whatever the
   umask); an OCI image layout / docker-archive is flattened with
   :func:`image_builder.inputs.oci.extract_rootfs` (hostile layers refused there). The init must exist.
2. ``make_root_image``: :func:`image_builder.pipelines.rootfs.scan_tree` (one ``lstat`` walk: erofs
   UUID, device nodes / sockets / FIFOs to leave out), then
   :func:`image_builder.pipelines.rootfs.make_root_image` (erofs or squashfs straight from the tree,
   owners 0, every mtime = SOURCE_DATE_EPOCH, padded to 4 KiB) and its SHA-256, computed once: it
   feeds the verity salt and is the ``rootfs`` input digest of a directory input.
3. ``make_verity``: :func:`image_builder.formats.verity.build_hash_tree` with the salt and UUID derived from
   the image (:func:`image_builder.formats.verity.params_for_image`), superblock on -> ``roothash``.
4. ``make_initrd``: :func:`image_builder.pipelines.initrd.make_initrd` (busybox + veritysetup + modules).
5. ``make_uki``: :func:`image_builder.formats.uki.build_uki`; ``.cmdline`` = ``roothash=<hex>
   rootfstype=<fs> console=ttyS0 panic=-1`` + ``--cmdline``; ``.osrel`` = ``--os-release`` or a
   generated one; ``.uname`` = the kernel's release.
6. ``make_esp``: :func:`image_builder.pipelines.esp.make_esp` with the UKI at ``EFI/BOOT/BOOTX64.EFI``.
7. ``assemble_disk``: :func:`image_builder.formats.gpt.assemble_disk`: ESP, root (PARTUUID = first 128 bits
   of the roothash), root-verity (last 128 bits), types from the Discoverable Partitions
   Specification (uki-verity.md §5), fixed disk GUID -> ``<name>.raw``.
8. ``convert_formats``: :func:`image_builder.formats.diskformats.convert` for each of ``--format``.
9. ``predict_measurements``: :func:`image_builder.measure.vm.predict_vm_measurements`, plus the SEV-SNP
   launch digest with ``--ovmf`` (direct boot when the firmware has SNP_KERNEL_HASHES; then
   ``<name>.initrd`` is also moved to ``--out``).
10. ``write_manifest``: kind ``vm-image``; the manifest's ``artifact`` is the **raw disk**
    (``<name>.raw``); the other formats are listed under ``details.formats`` with their SHA-256.
    ``details.measurement_assumptions`` maps each measurement to what it assumes.

Everything is written into a temporary directory inside ``--out`` and renamed into place only after
every step succeeded (manifest last), so a failed build leaves no partial output.

Reproducible: the same inputs and SOURCE_DATE_EPOCH give byte-identical UKI, disk images and
manifest, whatever the builder's umask, TZ, locale, working directory, TMPDIR or checkout path
(tests/test_build_vm.py builds twice and compares; tests/test_reproducible.py builds under those
variations in separate processes). What makes that so: directories teeform creates get explicit
modes (not the umask's), mtools runs with TZ=UTC (image_builder.pipelines.esp), the manifest names
files by relative or package-relative names (initrd host files:
:func:`image_builder.pipelines.initrd.host_file_name`; inputs by base name), and every order is
by bytes or code points, never by locale collation.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from teeform import __version__
from teeform.errors import TeeformError
from teeform.fsutil import ensure_output_dir, hash_file
from teeform.manifest import Artifact, ArtifactKind, Builder, InputDigest, Manifest, write_manifest
from teeform.run import find_tool
from teeform.safeload import check_regular_file, check_tree, read_limited

#: Disk formats ``--format`` accepts (file suffixes in the output directory).
FORMAT_SUFFIX = {"raw": ".raw", "vhd": ".vhd", "qcow2": ".qcow2", "gce-tar": ".tar.gz"}
#: Root file systems ``--fs`` accepts.
FILESYSTEMS = ("erofs", "squashfs")
#: Kernel command line teeform always puts in front of ``--cmdline`` (``roothash=`` is added too).
BASE_CMDLINE = "console=ttyS0 panic=-1"
#: Empty directories the initrd moves /dev, /proc, /sys, /run onto (initrd-init.sh), plus /tmp.
MOUNT_POINTS = ("dev", "proc", "sys", "run", "tmp")


# --------------------------------------------------------------------------- config and context
@dataclass(frozen=True)
class BuildConfig:
    """Every option of ``teeform build vm-image`` after parsing (frozen; never written during a build).

    Attributes:
        rootfs: a directory, an OCI image layout directory, or a docker-archive tarball.
        kernel: the bzImage (``vmlinuz``) to put in the UKI's ``.linux``.
        stub: the systemd EFI stub (``linuxx64.efi.stub``); its version decides the PCR 11 sections.
        out: output directory (created).
        name, version: image name and version (file names and manifest).
        modules: ``--modules``: where the kernel's modules are (default: next to the kernel).
        cmdline_extra: appended to the generated kernel command line.
        os_release: file for ``.osrel`` (default: generated from name/version).
        formats: disk formats to write besides the raw disk (subset of :data:`FORMAT_SUFFIX`).
        fs: root file system type.
        ovmf, vcpus, vcpu_type: firmware and VM shape for SEV-SNP / TDX predictions (optional).
        source_date_epoch: seconds; every timestamp in the outputs.
    """

    rootfs: Path
    kernel: Path
    stub: Path
    out: Path
    name: str
    version: str = "0"
    modules: Path | None = None
    cmdline_extra: str = ""
    os_release: Path | None = None
    formats: tuple[str, ...] = ("raw",)
    fs: str = "erofs"
    ovmf: Path | None = None
    vcpus: int = 1
    vcpu_type: str = "EPYC-v4"
    source_date_epoch: int = 0
    #: ``--platform-modules``: extra initrd driver sets by platform name
    #: (:data:`image_builder.pipelines.initrd.PLATFORM_MODULES`, e.g. ``hyperv`` for Azure).
    platform_modules: tuple[str, ...] = ()


@dataclass
class BuildContext:
    """Mutable state of one build: the staging directory and what each step produced."""

    config: BuildConfig
    staging: Path
    rootfs_dir: Path | None = None
    rootfs_name: str = ""
    rootfs_digest: str = ""
    root_image: Path | None = None
    root_image_sha256: str = ""
    verity_image: Path | None = None
    verity: Any = None  # image_builder.formats.verity.VerityResult
    kernel_release: str = ""
    modules_dir: Path | None = None
    initrd: Any = None  # image_builder.pipelines.initrd.InitrdResult
    cmdline: str = ""
    os_release: bytes = b""
    uki: Path | None = None
    esp: Path | None = None
    disk: Path | None = None
    disk_layout: dict[str, Any] = field(default_factory=dict)
    formats: dict[str, Path] = field(default_factory=dict)
    measurements: dict[str, str] = field(default_factory=dict)
    prediction_details: dict[str, Any] = field(default_factory=dict)
    inputs: list[InputDigest] = field(default_factory=list)
    manifest: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)
    snp_initrd: Path | None = None  # set when the SEV-SNP digest is for a direct boot (initrd goes to --out)

    def path(self, suffix: str) -> Path:
        """``<staging>/<name><suffix>``."""
        return self.staging / f"{self.config.name}{suffix}"


@dataclass(frozen=True)
class BuildResult:
    """Final paths in ``--out``: the raw disk, each format, the UKI, the manifest; plus measurements."""

    disk: Path
    formats: dict[str, Path]
    uki: Path
    manifest: Path
    measurements: dict[str, str]
    timings: dict[str, float]
    initrd: Path | None = None  # <name>.initrd, only when snp_launch_digest is for a direct boot


@contextlib.contextmanager
def step(ctx: BuildContext, name: str) -> Iterator[None]:
    """Log ``teeform: <name> ...`` and the step's wall time to stderr; record it in ``ctx.timings``."""
    print(f"teeform: {name} ...", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    yield
    dt = time.monotonic() - t0
    ctx.timings[name] = round(dt, 3)
    print(f"teeform: {name} done in {dt:.1f} s", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- checks
#: Largest --kernel/--stub/--os-release/--ovmf files (teeform's bounds, docs/hostile-inputs.md): a
#: bzImage as for ``build eif`` (256 MiB), the stub as :data:`image_builder.formats.uki.MAX_STUB_SIZE`
#: (64 MiB), an os-release file 64 KiB (os-release(5) is a few lines), OVMF 64 MiB (the AmdSev build is
#: 4 MiB; ``sevsnpmeasure.ovmf.OVMF`` reads the whole file).
MAX_KERNEL_FILE, MAX_OS_RELEASE_FILE, MAX_OVMF_FILE = 256 << 20, 64 << 10, 64 << 20


def file_limits(config: BuildConfig) -> tuple[tuple[str, Any, int], ...]:
    """(option, path or None, byte bound) of every single-file input of ``config``."""
    from image_builder.formats.uki import MAX_STUB_SIZE

    return (("--kernel", config.kernel, MAX_KERNEL_FILE), ("--stub", config.stub, MAX_STUB_SIZE),
            ("--os-release", config.os_release, MAX_OS_RELEASE_FILE), ("--ovmf", config.ovmf, MAX_OVMF_FILE))


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_config(config: BuildConfig) -> None:
    """Fail before any work: every input exists, names and formats are valid, tools are installed.

    Raises:
        TeeformError: naming the option (``field``) and path.
    """
    for opt, p in (("--rootfs", config.rootfs), ("--kernel", config.kernel), ("--stub", config.stub)):
        if not Path(p).exists():
            raise TeeformError("does not exist", path=p, field=opt)
    for opt, q in (("--os-release", config.os_release), ("--ovmf", config.ovmf), ("--modules", config.modules)):
        if q is not None and not Path(q).exists():
            raise TeeformError("does not exist", path=q, field=opt)
    rootfs = Path(config.rootfs)
    if rootfs.is_dir() and not (rootfs / "oci-layout").exists() and not (rootfs / "index.json").exists():
        try:  # a directory rootfs (make_rootfs copies and hashes it): bounded depth, names within OS limits
            check_tree(rootfs, what="root file system")
        except TeeformError as exc:
            raise TeeformError(exc.message.removeprefix(f"{rootfs}: root file system: "), path=rootfs,
                               field="--rootfs") from None
    for opt, file, limit in file_limits(config):
        if file is not None:
            try:
                check_regular_file(file, limit, what=opt.removeprefix("--"))
            except TeeformError as exc:
                raise TeeformError(exc.message.removeprefix(f"{file}: "), path=file, field=opt, hint=exc.hint) from None
    if not _NAME_RE.match(config.name):
        raise TeeformError(f"invalid image name {config.name!r}", field="--name", hint="use letters, digits, '.', '_', '-'")
    if not _NAME_RE.match(config.version):
        raise TeeformError(f"invalid version {config.version!r}", field="--version", hint="use letters, digits, '.', '_', '-'")
    from image_builder.pipelines.initrd import PLATFORM_MODULES

    for pm in config.platform_modules:
        if pm not in PLATFORM_MODULES:
            raise TeeformError(f"unknown platform module set {pm!r}; known: {sorted(PLATFORM_MODULES)}",
                               field="--platform-modules")
    for f in config.formats:
        if f not in FORMAT_SUFFIX:
            raise TeeformError(f"unknown disk format {f!r}", field="--format", hint=f"choose from {', '.join(FORMAT_SUFFIX)}")
    if config.fs not in FILESYSTEMS:
        raise TeeformError(f"unknown root file system {config.fs!r}", field="--fs", hint="use erofs or squashfs")
    extra = config.cmdline_extra
    if any(ord(c) < 0x20 or ord(c) > 0x7E for c in extra):
        raise TeeformError("the extra kernel command line must be printable ASCII on one line", field="--cmdline")
    for word in extra.split():
        if word.startswith(("roothash=", "systemd.verity_root_data=", "systemd.verity_root_hash=")):
            raise TeeformError(
                f"{word.split('=')[0]}= is set by teeform from the dm-verity tree", field="--cmdline",
                hint="remove it from --cmdline",
            )
    if config.vcpus < 1:
        raise TeeformError("must be at least 1", field="--vcpus")
    if config.ovmf is not None:
        check_snp_options(config)
    tools = {
        "veritysetup": "open the dm-verity root in the initrd", "ldd": "collect veritysetup's libraries",
        "busybox": "provide the initrd's shell", "mkfs.vfat": "make the EFI system partition",
        "mcopy": "copy the UKI onto the ESP", "mmd": "make directories on the ESP",
        ("mkfs.erofs" if config.fs == "erofs" else "mksquashfs"): f"make the {config.fs} root image",
    }
    if "qcow2" in config.formats:
        tools["qemu-img"] = "write the qcow2 image"
    for tool, reason in tools.items():
        find_tool(tool, reason=reason)


def check_snp_options(config: BuildConfig) -> None:
    """Check ``--ovmf`` / ``--vcpu-type`` before any work (the SEV-SNP prediction runs last).

    The firmware must carry SEV metadata (footer GUID ``dc886566-…``, uki-verity.md §7; Debian
    bookworm's ``OVMF_CODE_4M.fd`` has none), and the vCPU type must be one sev-snp-measure knows
    (``sevsnpmeasure.vcpu_types.CPU_SIGS``).

    Raises:
        TeeformError: with ``field`` ``--ovmf`` or ``--vcpu-type``.
    """
    from sevsnpmeasure.vcpu_types import CPU_SIGS

    from image_builder.measure import snp

    if config.vcpu_type not in CPU_SIGS:
        raise TeeformError(f"unknown vCPU type {config.vcpu_type!r}", field="--vcpu-type",
                           hint="one of " + ", ".join(sorted(CPU_SIGS)))
    assert config.ovmf is not None
    try:
        sections = snp.ovmf_sev_sections(config.ovmf)
    except TeeformError as exc:
        raise TeeformError(exc.message, path=config.ovmf, field="--ovmf", hint=exc.hint) from None
    if not sections:
        raise TeeformError(
            "this firmware has no SEV metadata (OVMF footer GUID dc886566-984a-4798-a75e-5585a7bf67cc), so an "
            "SEV-SNP guest cannot launch it and no launch digest exists", path=config.ovmf, field="--ovmf",
            hint="use an AmdSev OVMF build (OvmfPkg/AmdSev/AmdSevX64.dsc, Debian sid 'ovmf-amdsev') or a cloud's "
                 "published SEV-SNP firmware; leave out --ovmf to skip the SEV-SNP prediction",
        )


# --------------------------------------------------------------------------- steps
def make_rootfs(ctx: BuildContext) -> None:
    """Find or stage the root tree; check that the init exists.

    * A directory that already has every :data:`MOUNT_POINTS` entry is used **in place** (no copy):
      the root image step reads it directly and leaves out device nodes, sockets and FIFOs.
    * A directory that lacks some gets a staging tree ``<staging>/rootfs`` of hard links to its
      files (a copy where a link is refused, e.g. across file systems), its directories and
      symlinks, plus the missing mount points (mode 0755 whatever the umask).
    * An OCI image layout / docker-archive is flattened into ``<staging>/rootfs`` by
      :func:`image_builder.inputs.oci.extract_rootfs` (hostile layers refused there).
    """
    from image_builder.inputs import oci

    src = ctx.config.rootfs
    dest = ctx.staging / "rootfs"
    if src.is_dir() and not (src / "oci-layout").exists() and not (src / "index.json").exists():
        ctx.rootfs_name = os.fsdecode(src.resolve().name) or "/"
        missing = [d for d in MOUNT_POINTS if not os.path.lexists(src / d)]
        if missing:
            shutil.copytree(src, dest, symlinks=True, ignore=_skip_special_files, copy_function=_link_or_copy)
            root = dest
        else:
            root = src
    else:
        image = oci.extract_rootfs(src, dest, platform="linux/amd64", work_dir=ctx.staging)
        ctx.rootfs_digest = image.identity_digest.removeprefix("sha256:")
        ctx.rootfs_name = image.ref_name or os.fsdecode(src.resolve().name)
        root = dest
    if root == dest:
        for d in MOUNT_POINTS:
            p = dest / d
            if not p.exists() and not p.is_symlink():
                p.mkdir()
                os.chmod(p, 0o755)  # mkdir's mode is masked by the umask; the image must not depend on it
    init = _init_path(ctx.config.cmdline_extra)
    target = root / init.lstrip("/")
    if not (target.exists() or target.is_symlink()):
        raise TeeformError(
            f"the root file system has no {init}", path=src, field="--rootfs",
            hint="add an init program, or pass --cmdline 'init=/path/to/init'",
        )
    ctx.rootfs_dir = root


def make_root_image(ctx: BuildContext) -> None:
    """Pack the root tree into a read-only erofs/squashfs image (``<name>.root.<fs>``) and hash it once.

    The image's SHA-256 feeds the dm-verity salt/UUID (:func:`image_builder.formats.verity.params_for_image`)
    and, for a directory input, is the ``rootfs`` input digest of the manifest (the image is a pure
    function of the tree's names, modes, symlink targets, xattrs and contents once owners and mtimes
    are normalised, so it identifies the tree without hashing every file a second time).
    """
    from image_builder.pipelines import rootfs

    assert ctx.rootfs_dir is not None
    cfg = ctx.config
    scan = rootfs.scan_tree(ctx.rootfs_dir, fs=cfg.fs, source_date_epoch=cfg.source_date_epoch)
    for rel in scan.special_files:
        print(f"teeform: skipping special file {ctx.rootfs_dir / rel}", file=sys.stderr)
    out = ctx.path(f".root.{cfg.fs}")
    rootfs.make_root_image(ctx.rootfs_dir, out, fs=cfg.fs, source_date_epoch=cfg.source_date_epoch,
                           uuid=scan.uuid if cfg.fs == "erofs" else None, exclude=scan.special_files)
    ctx.root_image = out
    ctx.root_image_sha256 = hash_file(out)["sha256"]
    if ctx.rootfs_digest:
        ctx.inputs.append(InputDigest("rootfs", ctx.rootfs_name, ctx.rootfs_digest))
    else:
        ctx.rootfs_digest = ctx.root_image_sha256
        ctx.inputs.append(InputDigest("rootfs", f"{ctx.rootfs_name} (sha256 of the {cfg.fs} root image)",
                                      ctx.rootfs_digest))


def make_verity(ctx: BuildContext) -> None:
    """Build the dm-verity hash device (``<name>.root.verity``) and record the ``roothash``."""
    from image_builder.formats import verity

    assert ctx.root_image is not None
    params = verity.params_for_image(ctx.root_image, data_sha256=ctx.root_image_sha256 or None, superblock=True)
    out = ctx.path(".root.verity")
    ctx.verity = verity.build_hash_tree(ctx.root_image, out, params)
    ctx.verity_image = out
    ctx.measurements["roothash"] = ctx.verity.roothash


def make_initrd(ctx: BuildContext) -> None:
    """Build the initrd that opens the verity root (``<name>.initrd``)."""
    from image_builder.pipelines import initrd

    cfg = ctx.config
    ctx.kernel_release = initrd.kernel_release(cfg.kernel)
    ctx.modules_dir = initrd.find_modules_dir(cfg.kernel, ctx.kernel_release, cfg.modules)
    out = ctx.path(".initrd")
    ctx.initrd = initrd.make_initrd(
        initrd.InitrdConfig(
            modules_dir=ctx.modules_dir, kernel_release=ctx.kernel_release, fs=cfg.fs, mtime=cfg.source_date_epoch,
            modules=initrd.DEFAULT_MODULES + tuple(m for p in cfg.platform_modules for m in initrd.PLATFORM_MODULES[p]),
        ),
        out,
    )
    ctx.inputs.append(InputDigest("modules", f"lib/modules/{ctx.modules_dir.name} ({len(ctx.initrd.modules)} modules)",
                                  _modules_digest(ctx)))
    for name, digest in ctx.initrd.host_files:
        if not name.startswith("lib/modules/"):
            ctx.inputs.append(InputDigest("initrd-host-file", name, digest))


def make_uki(ctx: BuildContext) -> None:
    """Build the UKI (``<name>.efi``): stub + kernel + initrd + cmdline + os-release + uname."""
    from image_builder.formats import uki

    cfg = ctx.config
    assert ctx.verity is not None and ctx.initrd is not None
    ctx.cmdline = kernel_cmdline(ctx.verity.roothash, cfg.fs, cfg.cmdline_extra)
    if cfg.os_release is not None:
        ctx.os_release = read_limited(cfg.os_release, MAX_OS_RELEASE_FILE, what="os-release file")
    else:
        ctx.os_release = generated_os_release(cfg.name, cfg.version).encode()
    out = ctx.path(".efi")
    uki.build_uki(
        uki.UkiInputs(
            stub=cfg.stub, linux=cfg.kernel, initrd=ctx.initrd.path, cmdline=ctx.cmdline.encode(),
            osrel=ctx.os_release, uname=ctx.kernel_release.encode(),
        ),
        out,
    )
    ctx.uki = out


def make_esp(ctx: BuildContext) -> None:
    """Make the FAT ESP image with the UKI at ``EFI/BOOT/BOOTX64.EFI``."""
    from image_builder.pipelines import esp

    assert ctx.uki is not None
    out = ctx.path(".esp")
    esp.make_esp(ctx.uki, out, source_date_epoch=ctx.config.source_date_epoch)
    ctx.esp = out


def assemble_disk(ctx: BuildContext) -> None:
    """Assemble the GPT disk ``<name>.raw``: ESP, root, root-verity (Discoverable Partitions Spec)."""
    from image_builder.formats import gpt

    assert ctx.esp and ctx.root_image and ctx.verity_image and ctx.verity
    out = ctx.path(".raw")
    layout = gpt.assemble_disk(out, esp=ctx.esp, root=ctx.root_image, root_verity=ctx.verity_image,
                               roothash=ctx.verity.roothash)
    ctx.disk_layout = layout.to_dict()
    ctx.disk = out
    ctx.formats["raw"] = out


def convert_formats(ctx: BuildContext) -> None:
    """Write each ``--format`` other than raw next to the raw disk."""
    assert ctx.disk is not None
    wanted = [f for f in ctx.config.formats if f != "raw"]
    if not wanted:
        return
    from image_builder.formats import diskformats

    for fmt in wanted:
        out = ctx.path(FORMAT_SUFFIX[fmt])
        diskformats.convert(ctx.disk, fmt, out, source_date_epoch=ctx.config.source_date_epoch)
        ctx.formats[fmt] = out


def predict_measurements(ctx: BuildContext) -> None:
    """Predict the UKI's Authenticode hashes, PCR 11/12, RTMR1/2, NitroTPM PCR 4 (+ SNP with ``--ovmf``).

    PCR 4 (``pcr4_sha256`` / ``pcr4_sha384``) is AWS's NitroTPM firmware profile with Secure Boot off
    (:mod:`image_builder.measure.pcr4`; the OVMF + swtpm boot of tests/test_boot.py gives the
    same value); it pins **our image** (the UKI, and through its ``.cmdline`` the dm-verity root).

    RTMR1 includes the firmware's GPT event for this disk (:func:`image_builder.measure.tdx.gpt_event_data`).

    SEV-SNP (uki-verity.md §7): when ``--ovmf`` has an SNP_KERNEL_HASHES section (an AmdSev build),
    ``snp_launch_digest`` is the digest of a **direct boot** of this image's kernel, initrd and
    ``.cmdline`` (QEMU ``-kernel <kernel> -initrd <name>.initrd -append '<cmdline>'`` with
    ``kernel-hashes=on``, the disk attached for the root): the command line carries ``roothash=``,
    so the launch digest pins the root file system too, and ``<name>.initrd`` is written to
    ``--out``. Otherwise (SEV metadata but no kernel hashes) it is the firmware-only digest, which
    does not cover a UKI booted from disk (recorded as an assumption).
    """
    from image_builder.measure import snp, tdx, vm

    assert ctx.uki is not None and ctx.disk is not None and ctx.initrd is not None
    cfg = ctx.config
    pred = vm.predict_vm_measurements(ctx.uki, gpt_event_data=tdx.gpt_event_data(ctx.disk))
    ctx.measurements.update(pred["measurements"])
    ctx.prediction_details = dict(pred["details"])
    if cfg.ovmf is None:
        return
    direct = "SNP_KERNEL_HASHES" in snp.ovmf_sev_sections(cfg.ovmf)
    inputs = snp.SnpInputs(ovmf=Path(cfg.ovmf), vcpus=cfg.vcpus, vcpu_type=cfg.vcpu_type)
    if direct:
        inputs = snp.SnpInputs(ovmf=Path(cfg.ovmf), vcpus=cfg.vcpus, vcpu_type=cfg.vcpu_type, kernel=Path(cfg.kernel),
                               initrd=ctx.initrd.path, cmdline=ctx.cmdline)
    res = snp.predict_snp_launch_digest(inputs)
    ctx.measurements["snp_launch_digest"] = res.launch_digest
    info = res.to_json()
    if direct:
        ctx.snp_initrd = ctx.initrd.path
        info["direct_boot"] = {"kernel": Path(cfg.kernel).name, "initrd": f"{cfg.name}.initrd", "append": ctx.cmdline}
    else:
        info["direct_boot"] = None
    ctx.prediction_details["snp_launch_digest"] = info


def measurement_assumptions(ctx: BuildContext) -> dict[str, list[str]]:
    """``{measurement name: [what the value assumes]}`` for every measurement of the manifest.

    Collected from the prediction details (stub version and sections for PCR 11, the firmware
    boot path for RTMR1, firmware digest and vCPU shape for SEV-SNP) plus the build's own facts
    (dm-verity parameters, stub digest), so a policy author sees each value's premises next to it.
    """
    cfg = ctx.config
    d = ctx.prediction_details
    v = ctx.verity
    stub_sha = hash_file(cfg.stub)["sha256"]
    stub = f"systemd-stub {d.get('stub_version')} ({d.get('stub_version_source')}), file sha256 {stub_sha}"
    out: dict[str, list[str]] = {}
    for name in ctx.measurements:
        if name == "roothash":
            out[name] = [
                f"dm-verity format 1, {v.hash_name}, data/hash blocks {v.data_block_size}/{v.hash_block_size}, "
                f"{v.data_blocks} data blocks, salt {v.salt} (derived from the {cfg.fs} image's SHA-256), "
                "superblock at the start of the root-verity partition (veritysetup format compatible)",
            ]
        elif name.startswith("uki_authenticode_"):
            out[name] = [
                "PE Authenticode of the UKI as written (unsigned); signing it with sbsign/pesign does not change it "
                "(size is a multiple of FileAlignment, no trailing data)",
                "measured by the firmware into PCR 4 (vTPM) / RTMR1 (TDX) when it loads EFI/BOOT/BOOTX64.EFI",
            ]
        elif name.startswith(("pcr11_", "pcr12_", "pcr4_")):  # pcr4_*: NitroTPM PCR 4 (measure/pcr4.py)
            pcr, bank = name.split("_", 1)
            pred = d.get(pcr, {}).get(bank, {})
            out[name] = [stub, *pred.get("assumptions", [])]
        elif name in ("rtmr1", "rtmr2"):
            out[name] = [stub, *d.get(name, {}).get("assumptions", [])]
        elif name == "snp_launch_digest":
            out[name] = list(d.get(name, {}).get("assumptions", []))
        else:  # pragma: no cover - every name above is handled; keep new ones visible
            out[name] = []
    return out


def write_manifest_step(ctx: BuildContext) -> None:
    """Write ``<name>.manifest.json`` (kind ``vm-image``; artifact = the raw disk)."""
    cfg = ctx.config
    assert ctx.disk is not None and ctx.uki is not None and ctx.verity is not None
    k = hash_file(cfg.kernel)["sha256"]
    s = hash_file(cfg.stub)["sha256"]
    inputs = [
        InputDigest("kernel", cfg.kernel.name, k, cfg.kernel.stat().st_size),
        InputDigest("stub", cfg.stub.name, s, cfg.stub.stat().st_size),
        InputDigest("cmdline", ctx.cmdline, _sha256(ctx.cmdline.encode()), len(ctx.cmdline)),
        InputDigest("os-release", cfg.os_release.name if cfg.os_release else "(generated)", _sha256(ctx.os_release),
                    len(ctx.os_release)),
        *ctx.inputs,
    ]
    if cfg.ovmf is not None:
        inputs.append(InputDigest("firmware", cfg.ovmf.name, hash_file(cfg.ovmf)["sha256"], cfg.ovmf.stat().st_size))
    disk_digests = hash_file(ctx.disk, ("sha256", "sha384"))  # one pass over the raw disk for both
    formats = {fmt: {"file_name": p.name, "size": p.stat().st_size,
                     "sha256": disk_digests["sha256"] if p == ctx.disk else hash_file(p)["sha256"]}
               for fmt, p in ctx.formats.items()}
    uki_digest = hash_file(ctx.uki)["sha256"]
    details: dict[str, Any] = {
        "formats": formats,
        "uki": {"file_name": ctx.uki.name, "size": ctx.uki.stat().st_size, "sha256": uki_digest},
        "cmdline": ctx.cmdline,
        "kernel_release": ctx.kernel_release,
        "verity": {
            "roothash": ctx.verity.roothash, "salt": ctx.verity.salt, "uuid": ctx.verity.uuid,
            "hash": ctx.verity.hash_name, "data_block_size": ctx.verity.data_block_size,
            "hash_block_size": ctx.verity.hash_block_size, "data_blocks": ctx.verity.data_blocks,
            "superblock": True, "fs": cfg.fs,
        },
        "disk": ctx.disk_layout,
        "initrd": {"sha256": ctx.initrd.sha256, "size": ctx.initrd.size, "modules": list(ctx.initrd.modules)},
        "assumptions": {
            "stub_sha256": s, "stub_version": ctx.prediction_details.get("stub_version"), "vcpus": cfg.vcpus, "vcpu_type": cfg.vcpu_type,
            "firmware_sha256": hash_file(cfg.ovmf)["sha256"] if cfg.ovmf else None,
        },
        "prediction": ctx.prediction_details,
        "measurement_assumptions": measurement_assumptions(ctx),
    }
    manifest = Manifest(
        kind=ArtifactKind.VM_IMAGE, name=cfg.name, version=cfg.version, artifact=Artifact(ctx.disk.name, ctx.disk.stat().st_size, disk_digests["sha256"], disk_digests["sha384"]),
        measurements=dict(ctx.measurements), inputs=tuple(inputs), builder=Builder("teeform", __version__),
        source_date_epoch=cfg.source_date_epoch, details=details,
    )
    out = ctx.staging / f"{cfg.name}.manifest.json"
    write_manifest(manifest, out)
    ctx.manifest = out


#: The build, in order. Each step takes the context and fills in its part.
PIPELINE: tuple[Callable[[BuildContext], None], ...] = (
    make_rootfs,
    make_root_image,
    make_verity,
    make_initrd,
    make_uki,
    make_esp,
    assemble_disk,
    convert_formats,
    predict_measurements,
    write_manifest_step,
)


def build_vm_image(config: BuildConfig) -> BuildResult:
    """Run :data:`PIPELINE` and move the results into ``config.out``.

    Outputs in ``config.out``: ``<name>.raw`` (+ one file per ``--format``), ``<name>.efi`` (the UKI)
    and ``<name>.manifest.json`` (renamed last). Intermediate files never reach ``--out``.

    Raises:
        TeeformError: bad input or a failing tool; ``config.out`` then holds no new files.
    """
    check_config(config)
    out = ensure_output_dir(config.out)
    with tempfile.TemporaryDirectory(prefix=".teeform-build-", dir=out) as tmp:
        ctx = BuildContext(config=config, staging=Path(tmp))
        for fn in PIPELINE:
            with step(ctx, fn.__name__.removesuffix("_step")):
                fn(ctx)
        assert ctx.disk and ctx.uki and ctx.manifest
        final: dict[str, Path] = {}
        for fmt, p in ctx.formats.items():
            final[fmt] = out / p.name
            os.replace(p, final[fmt])
        uki_final = out / ctx.uki.name
        os.replace(ctx.uki, uki_final)
        initrd_final = None
        if ctx.snp_initrd is not None:
            initrd_final = out / ctx.snp_initrd.name
            os.replace(ctx.snp_initrd, initrd_final)
        manifest_final = out / ctx.manifest.name
        os.replace(ctx.manifest, manifest_final)
    return BuildResult(final["raw"], final, uki_final, manifest_final, dict(ctx.measurements), dict(ctx.timings),
                       initrd_final)


# --------------------------------------------------------------------------- pure helpers
def kernel_cmdline(roothash: str, fs: str, extra: str = "") -> str:
    """Return the UKI ``.cmdline``: ``roothash=<hex> rootfstype=<fs>`` + :data:`BASE_CMDLINE` + ``extra``.

    The initrd (``guest/initrd-init.sh``) reads ``roothash=`` and finds the data and hash partitions
    by the PARTUUIDs derived from it (Discoverable Partitions Specification, uki-verity.md §5).
    No trailing newline; single spaces (the bytes are measured into PCR 11 as they are).
    """
    words = [f"roothash={roothash}", f"rootfstype={fs}", *BASE_CMDLINE.split(), *extra.split()]
    return " ".join(words)


def generated_os_release(name: str, version: str) -> str:
    """The ``.osrel`` used without ``--os-release`` (os-release(5) keys; no host data)."""
    return (
        "ID=teeform\n"
        'NAME="teeform VM image"\n'
        f"IMAGE_ID={name}\n"
        f"IMAGE_VERSION={version}\n"
    )


def _skip_special_files(directory: str, names: list[str]) -> set[str]:
    """``shutil.copytree`` ignore hook: leave out device nodes, sockets and FIFOs (reported on stderr).

    Reading them would hang or copy device contents; the initrd mounts devtmpfs on /dev anyway.
    """
    import stat

    skipped: set[str] = set()
    for name in names:
        mode = os.lstat(os.path.join(directory, name)).st_mode
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISSOCK(mode) or stat.S_ISFIFO(mode):
            skipped.add(name)
            print(f"teeform: skipping special file {os.path.join(directory, name)}", file=sys.stderr)
    return skipped


def _init_path(extra: str) -> str:
    for word in extra.split():
        if word.startswith("init="):
            return word[5:]
    return "/sbin/init"


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _link_or_copy(src: str, dst: str) -> None:
    """``shutil.copytree`` copy hook: hard-link ``src`` to ``dst`` (same inode, no data copied), else copy it.

    A link is refused across file systems (EXDEV), for files the user does not own under
    ``fs.protected_hardlinks`` (EPERM) or past the link limit (EMLINK); those are copied with
    :func:`shutil.copy2`. mkfs.erofs / mksquashfs count links inside the tree only, so the image is
    the same either way.
    """
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


def _modules_digest(ctx: BuildContext) -> str:
    import hashlib

    h = hashlib.sha256()
    for name, digest in ctx.initrd.host_files:
        if name.startswith("lib/modules/"):
            h.update(f"{Path(name).name} {digest}\n".encode())
    return h.hexdigest()


__all__ = [
    "BASE_CMDLINE", "FILESYSTEMS", "FORMAT_SUFFIX", "PIPELINE", "BuildConfig", "BuildContext", "BuildResult",
    "build_vm_image", "check_config", "generated_os_release", "kernel_cmdline",
]
