"""Reproducible EIF build: OCI image + Nitro blobs -> ``<name>.eif`` + ``<name>.manifest.json``.

The pipeline (one flat list of named steps over a :class:`BuildContext`, see :func:`build_eif`):

``check_inputs`` -> ``open_oci_image`` -> ``snapshot_blobs`` -> ``flatten_layers`` ->
``make_bootstrap_ramdisk`` -> ``make_customer_ramdisk`` -> ``write_eif_file`` -> ``write_outputs``

What goes into the EIF mirrors ``nitro-cli build-enclave`` (``shared/reference/eif-nitro.md`` §3):

* kernel section: the ``--kernel`` file (bzImage);
* cmdline section: the ``--cmdline`` text with surrounding whitespace removed as Rust's
  ``str::trim`` does (Unicode White_Space), stored without a NUL (§1.3, §3.1);
* metadata section (§1.6): ImageName/ImageVersion (``--name``/``--version``; defaults: the image's
  repository name or ``enclave``, and the image ID = config digest hex as nitro-cli), BuildTime =
  SOURCE_DATE_EPOCH in RFC 3339, BuildTool ``teeform`` + version, OperatingSystem ``Linux``,
  KernelVersion from the bzImage header's ``kernel_version`` string (Linux boot protocol,
  ``Documentation/arch/x86/boot.rst`` field 0x020E; ``unknown`` if absent), DockerInfo = **the
  image config JSON** (content-addressed, so deterministic; nitro-cli stores ``docker inspect``,
  which needs a daemon), CustomMetadata ``null``;
* ramdisk #0, the bootstrap ramdisk (§3.2): ``dev/`` 0755, ``init`` 0755, ``nsm.ko`` 0755;
* ramdisk #1, the customer ramdisk (§3.2): ``cmd`` 0644 and ``env`` 0644 (one entry per line, each
  ending in ``\\n``; see :func:`image_builder.inputs.oci.select_command`), ``rootfs/`` 0755 holding the
  flattened image, plus ``rootfs/{dev,run,sys,var,proc,tmp}`` (0755) where the image lacks them;
* both ramdisks are uncompressed newc cpio (nitro-cli >= 1.3.2) written by
  :mod:`image_builder.formats.cpio` straight into their EIF sections: sorted paths, every mtime = SOURCE_DATE_EPOCH,
  uid/gid 0 for every entry (the Nitro ``init`` runs the command as root and never switches user,
  eif-nitro.md §3.3), stable inode numbers. The byte layout therefore differs from linuxkit's, so
  PCR2 will not equal nitro-cli's for the same image (PCR1 neither, for the same blobs): teeform's
  PCRs are reproducible from teeform's inputs plus the SOURCE_DATE_EPOCH recorded in the manifest;
* an optional signature section (§1.7) over PCR0 (:mod:`image_builder.formats.eif_sign`).

SOURCE_DATE_EPOCH is the mtime of every ramdisk entry and the metadata BuildTime, so it is a
measured input: PCR1 and PCR2 depend on it, and the manifest records it so anyone can rebuild with
the same value and get the same PCRs.

Nothing is written to ``--out`` unless every step succeeds: the EIF goes to a temporary file in
the output directory, its digests are computed and the manifest validated, and only then are the
EIF and the manifest renamed into place.

Temporary files (the layer spool: the contents of *compressed* layers, about their unpacked size;
uncompressed layers of an image layout are read in place, see :mod:`image_builder.inputs.oci`) go to
``$TMPDIR``.

Data path (what a user waits for with a large image; ``benchmarks/eif_build_vs_sha384.py`` and
``benchmarks/eif_memory.py`` measure it): an uncompressed layer blob of an image layout is not
copied; only its tar headers are parsed (seeking over the contents, which are read in place later),
and its digest is checked on a background thread during the EIF's write pass
(:meth:`image_builder.inputs.oci.FlatTree.start_verification`), awaited before anything is published;
compressed layers are verified while their contents are spooled. The ramdisks are planned (sizes
known without writing) and streamed into the EIF twice (:func:`image_builder.formats.eif.write_eif`):
a measure pass computes the CRC and PCR0/PCR1/PCR2 on two worker threads, writing nothing, then the
write pass writes the file once while computing its SHA-256, the small sections' SHA-384 (the
customer ramdisk's is PCR2's inner digest) and a check CRC (ISA-L's CRC-32,
:func:`teeform.hashlanes.crc32`); the EIF is never read back, and :class:`teeform.fsutil.DirectWriter`
writes it around the page cache (``O_DIRECT``) on its own thread, which saves the kernel's copy and
writeback work (about 0.5 CPU-s per GiB). The manifest records the EIF's SHA-256 only (schema 2,
:mod:`teeform.manifest`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import teeform
from image_builder.formats import cpio, eif
from image_builder.inputs import oci
from teeform.errors import TeeformError
from teeform.fsutil import CHUNK, DirectWriter, ensure_output_dir
from teeform.manifest import (
    Artifact,
    ArtifactKind,
    Builder,
    InputDigest,
    Manifest,
    validate_manifest_dict,
    write_manifest,
)
from teeform.safeload import open_regular
from teeform.timefmt import rfc3339

if TYPE_CHECKING:  # imported when signing only: cryptography's x509 costs about 0.05 s at start-up
    from image_builder.formats.eif_sign import EifSigner

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: Directories nitro-cli's customer ramdisk always has under ``rootfs/`` (§3.2).
ROOTFS_DIRS = ("dev", "proc", "run", "sys", "tmp", "var")
#: Unicode White_Space characters, which Rust's ``str::trim`` removes (nitro-cli trims the cmdline).
RUST_WHITESPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"

Progress = Callable[[str], None]

#: Largest --kernel/--init/--nsm file accepted (teeform's own bound; a Nitro bzImage is ~10 MiB, init
#: and nsm.ko well under 1 MiB). Each is copied with this bound, so a file that grows is caught too.
MAX_BLOB_FILE = 256 << 20
#: Bytes per MiB (progress lines).
MIB = 1 << 20
#: Largest ``--cmdline @FILE`` read (x86 COMMAND_LINE_SIZE is 2,048 bytes, arch/x86/include/asm/setup.h;
#: the file may carry comments-free padding whitespace, which is trimmed).
MAX_CMDLINE_FILE = 64 << 10


def stderr_progress(message: str) -> None:
    """Default progress sink: one line on stderr."""
    print(f"teeform: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class EifBuildConfig:
    """Everything a build depends on (frozen once the CLI has parsed and defaulted it).

    Attributes:
        image: OCI layout directory or ``docker save`` tar.
        kernel, init, nsm: the Nitro blobs (bzImage, init, nsm.ko).
        cmdline: the kernel command line exactly as stored (already trimmed; see :func:`parse_cmdline`).
        cmdline_source: ``"@<path>"`` or ``"inline"`` (recorded in the manifest).
        out_dir: where ``<name>.eif`` and ``<name>.manifest.json`` are written.
        name, version: override ImageName/ImageVersion (and the output file name).
        signing_key, signing_cert: PEM files; both or neither.
        platform: ``os/arch[/variant]`` for multi-platform images.
        source_date_epoch: seconds since 1970 UTC; the mtime of every ramdisk entry (measured: PCR0,
            PCR1, PCR2) and the metadata BuildTime (not measured).
    """

    image: Path
    kernel: Path
    init: Path
    nsm: Path
    cmdline: bytes
    out_dir: Path
    cmdline_source: str = "inline"
    name: str | None = None
    version: str | None = None
    signing_key: Path | None = None
    signing_cert: Path | None = None
    platform: str | None = None
    source_date_epoch: int = 0


@dataclass
class BuildContext:
    """Mutable state of one build (the config stays frozen)."""

    config: EifBuildConfig
    work: Path
    progress: Progress
    signer: EifSigner | None = None
    image: oci.OciImage | None = None
    tree: oci.FlatTree | None = None
    name: str = ""
    version: str = ""
    flags: int = 0
    cmd: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    blobs: dict[str, tuple[Path, str, int]] = field(default_factory=dict)  # role -> (copy, sha256, size)
    bootstrap: cpio.ArchivePlan | None = None
    customer: cpio.ArchivePlan | None = None
    ramdisk_entries: dict[str, int] = field(default_factory=dict)
    written: eif.EifWriteResult | None = None
    eif_tmp: Path | None = None
    metadata: bytes = b""
    kernel_version: str = "unknown"


@dataclass(frozen=True)
class EifBuildResult:
    """The outputs: file paths, the manifest written, and the PCRs."""

    eif_path: Path
    manifest_path: Path
    manifest: Manifest
    pcrs: eif.EifPcrs


def parse_cmdline(value: str) -> tuple[bytes, str]:
    """Turn the ``--cmdline`` argument into the stored bytes and a source label.

    ``@path`` reads the file (at most :data:`MAX_CMDLINE_FILE` bytes; like nitro-cli reads
    ``blobs/cmdline``); anything else is the text
    itself. Either way the text is trimmed like Rust's ``str::trim`` (§3.1) and must not contain
    NUL (it becomes a C string).

    Raises:
        TeeformError: unreadable file, not UTF-8, NUL byte, or empty after trimming.
    """
    if value.startswith("@"):
        from teeform.safeload import read_limited

        path = Path(value[1:])
        raw = read_limited(path, MAX_CMDLINE_FILE, what="--cmdline file")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TeeformError("the kernel command line is not UTF-8", path=path, field="--cmdline") from exc
        source = f"@{path.name}"
    else:
        text, source = value, "inline"
    text = text.strip(RUST_WHITESPACE)
    if "\0" in text:
        raise TeeformError("the kernel command line contains a NUL byte", field="--cmdline")
    if not text:
        raise TeeformError("the kernel command line is empty", field="--cmdline",
                           hint="on a Nitro host pass @/usr/share/nitro_enclaves/blobs/cmdline")
    return text.encode("utf-8"), source


def kernel_release(path: Path) -> str | None:
    """The release string of a bzImage (``"6.1.0-56-amd64"``), or None if ``path`` is not one.

    Linux x86 boot protocol (``Documentation/arch/x86/boot.rst``): ``HdrS`` at 0x202; the u16
    (little-endian) at 0x20E plus 0x200 is the file offset of a NUL-terminated version string
    whose first word is the release.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(0x210)
            if len(head) < 0x210 or head[0x202:0x206] != b"HdrS":
                return None
            ptr = int.from_bytes(head[0x20E:0x210], "little")
            if not ptr:
                return None
            fh.seek(ptr + 0x200)
            text = fh.read(256).split(b"\0", 1)[0].decode("ascii", "replace")
    except OSError:
        return None
    word = text.split(" ", 1)[0]
    return word or None


# ------------------------------------------------------------------------------------ steps


@contextlib.contextmanager
def step(ctx: BuildContext, title: str) -> Iterator[None]:
    """Log ``title`` before a step and its duration after it."""
    ctx.progress(f"{title} ...")
    t0 = time.monotonic()
    yield
    ctx.progress(f"{title}: done in {time.monotonic() - t0:.1f} s")


def check_inputs(ctx: BuildContext) -> None:
    """Fail before any work: input files readable, name/version valid, signing key and cert usable."""
    c = ctx.config
    for opt, p in (("--kernel", c.kernel), ("--init", c.init), ("--nsm", c.nsm)):
        if not p.is_file():
            raise TeeformError("not found (or not a regular file)", path=p, field=opt)
        if not os.access(p, os.R_OK):
            raise TeeformError("not readable", path=p, field=opt)
        if p.stat().st_size > MAX_BLOB_FILE:
            raise TeeformError(f"{p.stat().st_size} bytes, over the {MAX_BLOB_FILE}-byte limit", path=p, field=opt)
    if c.kernel.stat().st_size == 0:
        raise TeeformError("the kernel file is empty", path=c.kernel, field="--kernel")
    if not c.image.exists():
        raise TeeformError("image not found", path=c.image, field="--image")
    if c.name is not None and not NAME_RE.match(c.name):
        raise TeeformError(f"invalid name {c.name!r}", field="--name",
                           hint="use letters, digits, '.', '_' and '-' (it becomes the output file name)")
    if c.version is not None and (not c.version or len(c.version) > 255):
        raise TeeformError("the version must be 1 to 255 characters", field="--version")
    if (c.signing_key is None) != (c.signing_cert is None):
        raise TeeformError("--signing-key and --signing-cert must be given together", field="--signing-key")
    if c.signing_key is not None and c.signing_cert is not None:
        from image_builder.formats.eif_sign import EifSigner

        ctx.signer = EifSigner.load(c.signing_key, c.signing_cert)
        now = time.time()
        cert = ctx.signer.certificate
        if not cert.not_valid_before_utc.timestamp() <= now <= cert.not_valid_after_utc.timestamp():
            ctx.progress("warning: the signing certificate is not valid now; `nitro-cli run-enclave` refuses "
                         "EIFs whose certificate is outside its validity window")
    if c.out_dir.exists() and not c.out_dir.is_dir():
        raise TeeformError("the output path exists and is not a directory", path=c.out_dir, field="--out")


def open_oci_image(ctx: BuildContext) -> None:
    """Parse and verify the image's index/manifest/config; derive name, version, flags, cmd and env."""
    c = ctx.config
    image = oci.open_image(c.image, platform=c.platform)
    ctx.image = image
    if image.platform.os != "linux":
        raise TeeformError(f"the image is for {image.platform}, Nitro Enclaves run linux images", path=c.image)
    arch = image.platform.architecture
    if arch == "amd64":
        ctx.flags = 0
    elif arch == "arm64":
        ctx.flags = eif.FLAG_ARM64
    else:
        raise TeeformError(f"image architecture {arch!r} is not supported by Nitro Enclaves (amd64 or arm64)",
                           path=c.image, hint="build the image for linux/amd64, or pick one with --platform")
    ctx.cmd, ctx.env = oci.select_command(image.config, source=c.image)
    cfg = image.config.get("config") or {}
    if cfg.get("Cmd") is not None and cfg.get("Entrypoint") is not None and cfg.get("Env") is not None:
        ctx.progress("note: the image sets both Entrypoint and Cmd; like nitro-cli, only Cmd is run")
    ctx.name = c.name or image.default_name or "enclave"
    if not NAME_RE.match(ctx.name):
        ctx.name = "enclave"
    ctx.version = c.version or image.config_digest.split(":", 1)[1]
    ctx.progress(f"image {image.ref_name or image.source.name} {image.platform} ({image.format}), "
                 f"{len(image.layers)} layer(s), {image.identity_digest}")


def snapshot_blobs(ctx: BuildContext) -> None:
    """Copy kernel/init/nsm.ko into the work dir while hashing them, so the manifest digests are
    exactly the bytes that go into the EIF even if the originals change during the build."""
    c = ctx.config
    for role, src in (("kernel", c.kernel), ("init", c.init), ("nsm", c.nsm)):
        dst = ctx.work / f"blob-{role}"
        h = hashlib.sha256()
        copied = 0
        try:
            with open_regular(src, what=f"--{role} file") as fin, open(dst, "wb") as fout:
                while chunk := fin.read(CHUNK):
                    copied += len(chunk)
                    if copied > MAX_BLOB_FILE:
                        raise TeeformError(f"over the {MAX_BLOB_FILE}-byte limit", path=src, field=f"--{role}")
                    h.update(chunk)
                    fout.write(chunk)
        except OSError as exc:
            raise TeeformError(f"cannot read: {exc.strerror}", path=src, field=f"--{role}") from exc
        ctx.blobs[role] = (dst, h.hexdigest(), dst.stat().st_size)
    ctx.kernel_version = kernel_release(ctx.blobs["kernel"][0]) or "unknown"


def flatten_layers(ctx: BuildContext) -> None:
    """Read and flatten the image layers (:func:`image_builder.inputs.oci.flatten`): compressed
    layers are verified and spooled here; uncompressed layout blobs, read in place, only have their
    tar headers parsed, and their digest check runs during the EIF's write pass
    (:func:`write_eif_file`) and is awaited before anything is published (:func:`write_outputs`)."""
    assert ctx.image is not None
    ctx.tree = oci.flatten(ctx.image, ctx.work, progress=lambda m: ctx.progress(f"  {m}"), defer_verification=True)
    ctx.progress(f"  {ctx.tree.file_count} files, {ctx.tree.content_bytes} bytes of file content")


def _bytes_opener(data: bytes) -> cpio.Opener:
    return lambda: contextlib.nullcontext(io.BytesIO(data))


def _file_opener(path: Path) -> cpio.Opener:
    return lambda: open(path, "rb")


def make_bootstrap_ramdisk(ctx: BuildContext) -> None:
    """Ramdisk #0 (PCR1): ``dev/`` 0755, ``init`` 0755, ``nsm.ko`` 0755, owned by root (§3.2).

    Only planned here (:func:`image_builder.formats.cpio.plan_archive`); :func:`write_eif_file`
    streams it straight into the EIF."""
    init, _, init_size = ctx.blobs["init"]
    nsm, _, nsm_size = ctx.blobs["nsm"]
    entries = [
        cpio.TreeEntry(b"dev", cpio.EntryKind.DIR, 0o755),
        cpio.TreeEntry(b"init", cpio.EntryKind.FILE, 0o755, size=init_size, opener=_file_opener(init)),
        cpio.TreeEntry(b"nsm.ko", cpio.EntryKind.FILE, 0o755, size=nsm_size, opener=_file_opener(nsm)),
    ]
    ctx.bootstrap = cpio.plan_archive(entries, mtime=ctx.config.source_date_epoch)
    ctx.ramdisk_entries["bootstrap"] = ctx.bootstrap.entries


def customer_entries(tree: oci.FlatTree, cmd: list[str], env: list[str]) -> list[cpio.TreeEntry]:
    """The entries of ramdisk #1 (§3.2): ``cmd``, ``env``, ``rootfs/`` + the image + the runtime dirs."""
    cmd_bytes = "".join(f"{a}\n" for a in cmd).encode("utf-8")
    env_bytes = "".join(f"{e}\n" for e in env).encode("utf-8")
    entries = [
        cpio.TreeEntry(b"cmd", cpio.EntryKind.FILE, 0o644, size=len(cmd_bytes), opener=_bytes_opener(cmd_bytes)),
        cpio.TreeEntry(b"env", cpio.EntryKind.FILE, 0o644, size=len(env_bytes), opener=_bytes_opener(env_bytes)),
        cpio.TreeEntry(b"rootfs", cpio.EntryKind.DIR, 0o755),
    ]
    top: set[str] = set()
    kinds = {oci.EntryKind.FILE: cpio.EntryKind.FILE, oci.EntryKind.DIR: cpio.EntryKind.DIR,
             oci.EntryKind.SYMLINK: cpio.EntryKind.SYMLINK, oci.EntryKind.FIFO: cpio.EntryKind.FIFO}
    for e in tree.entries():
        if "/" not in e.path:
            top.add(e.path)
        path = b"rootfs/" + os.fsencode(e.path)
        if e.kind is oci.EntryKind.FILE:
            entries.append(cpio.TreeEntry(path, cpio.EntryKind.FILE, e.mode, 0, 0, size=e.size,
                                          opener=functools.partial(tree.open, e), link_group=e.inode))
        else:
            entries.append(cpio.TreeEntry(path, kinds[e.kind], e.mode, 0, 0,
                                          link_target=os.fsencode(e.link_target)))
    for d in ROOTFS_DIRS:
        if d not in top:
            entries.append(cpio.TreeEntry(b"rootfs/" + d.encode(), cpio.EntryKind.DIR, 0o755))
    return entries


def make_customer_ramdisk(ctx: BuildContext) -> None:
    """Ramdisk #1 (PCR2): see :func:`customer_entries`; planned here, streamed from the spool into
    the EIF by :func:`write_eif_file` (no temporary cpio file)."""
    assert ctx.tree is not None
    ctx.customer = cpio.plan_archive(customer_entries(ctx.tree, ctx.cmd, ctx.env), mtime=ctx.config.source_date_epoch)
    ctx.ramdisk_entries["customer"] = ctx.customer.entries
    ctx.progress(f"  {ctx.customer.entries} entries, {ctx.customer.size} bytes")


def write_eif_file(ctx: BuildContext) -> None:
    """Stream kernel, cmdline, metadata, both ramdisks [and the signature] into a temp file in ``--out``."""
    c = ctx.config
    assert ctx.image is not None and ctx.bootstrap is not None and ctx.customer is not None
    ctx.metadata = eif.metadata_json(
        image_name=ctx.name, image_version=ctx.version, build_time=rfc3339(c.source_date_epoch),
        build_tool="teeform", build_tool_version=teeform.__version__, operating_system="Linux",
        kernel_version=ctx.kernel_version, docker_info=dict(ctx.image.config), custom_metadata=None)
    sections = [
        eif.SectionSource(eif.SectionType.KERNEL, path=ctx.blobs["kernel"][0], label="kernel"),
        eif.SectionSource(eif.SectionType.CMDLINE, data=c.cmdline, label="cmdline"),
        eif.SectionSource(eif.SectionType.METADATA, data=ctx.metadata, label="metadata"),
        eif.SectionSource(eif.SectionType.RAMDISK, writer=ctx.bootstrap.write, length=ctx.bootstrap.size,
                          label="bootstrap ramdisk"),
        eif.SectionSource(eif.SectionType.RAMDISK, writer=ctx.customer.write, length=ctx.customer.size,
                          label="customer ramdisk"),
    ]
    ensure_output_dir(c.out_dir)
    fd, tmp = tempfile.mkstemp(prefix=f".{ctx.name}.eif.", suffix=".tmp", dir=c.out_dir)
    ctx.eif_tmp = Path(tmp)
    writer: DirectWriter | None = None
    try:
        writer = DirectWriter(fd)
        with writer:
            ctx.written = eif.write_eif(writer, sections, flags=ctx.flags,  # type: ignore[arg-type]
                                        signer=ctx.signer, file_digests=("sha256",),
                                        before_write_pass=ctx.tree.start_verification if ctx.tree else None,
                                        progress=lambda name, done, total: ctx.progress(
                                            f"  {name}: {done / MIB:.0f} of {total / MIB:.0f} MiB"))
        try:
            os.fsync(fd)
        except OSError as exc:
            raise _write_failed(exc, c.out_dir) from exc
    except OSError as exc:
        if writer is not None and exc is writer.error:  # the output failed (ENOSPC, EIO); an input's OSError stays what it is
            raise _write_failed(exc, c.out_dir) from exc
        raise
    finally:
        os.close(fd)
    os.chmod(tmp, 0o644)


def _write_failed(exc: OSError, out_dir: Path) -> TeeformError:
    """The one-line error for a failed write of the EIF into ``out_dir``."""
    return TeeformError(f"cannot write the EIF: {exc.strerror or exc}", path=out_dir, field="--out",
                        hint="free space there (the EIF is about the size of the image plus the kernel), "
                             "or choose another --out")


def build_manifest(ctx: BuildContext, eif_name: str) -> Manifest:
    """The measurement manifest (``teeform.manifest``) for the EIF in ``ctx.eif_tmp``."""
    c = ctx.config
    assert ctx.image is not None and ctx.written is not None and ctx.eif_tmp is not None
    image = ctx.image
    # The EIF's SHA-256, computed while write_eif wrote it (it never reads the file back). No
    # SHA-384 of the file: the SHA-384 values that attestation uses are the PCRs (manifest schema 2).
    artifact = Artifact(eif_name, ctx.written.size, ctx.written.file_digests["sha256"])
    ref = image.ref_name or image.source.name
    if image.manifest_digest:
        image_input = InputDigest("image", f"{ref} (OCI manifest digest)", image.manifest_digest.split(":", 1)[1],
                                  image.manifest_size)
    else:
        image_input = InputDigest("image", f"{ref} (image config digest; legacy docker-archive has no OCI manifest)",
                                  image.config_digest.split(":", 1)[1])
    inputs = [image_input]
    for role in ("kernel", "init", "nsm"):
        _, sha, size = ctx.blobs[role]
        inputs.append(InputDigest(role, getattr(c, role).name, sha, size))
    inputs.append(InputDigest("cmdline", c.cmdline_source, hashlib.sha256(c.cmdline).hexdigest(), len(c.cmdline)))
    ramdisks = [s for s in ctx.written.sections if s.type is eif.SectionType.RAMDISK]
    details: dict[str, Any] = {
        "eif_version": eif.EIF_VERSION,
        "flags": ctx.flags,
        "architecture": "aarch64" if ctx.flags & eif.FLAG_ARM64 else "x86_64",
        "cmdline": c.cmdline.decode("utf-8"),
        "cmd": list(ctx.cmd),
        "env": list(ctx.env),
        "ramdisks": [
            {"role": role, "size": s.size, "sha384": s.sha384, "entries": ctx.ramdisk_entries[role]}
            for role, s in zip(("bootstrap", "customer"), ramdisks, strict=True)
        ],
        "sections": [{"type": s.type.label, "offset": s.offset, "size": s.size, "sha384": s.sha384}
                     for s in ctx.written.sections],
        "image": {
            "format": image.format,
            "ref": image.ref_name,
            "platform": str(image.platform),
            "manifest_digest": image.manifest_digest,
            "config_digest": image.config_digest,
            "layers": [d.digest for d in image.layers],
            "diff_ids": list(image.diff_ids),
        },
        "metadata": {"ImageName": ctx.name, "ImageVersion": ctx.version, "BuildTime": rfc3339(c.source_date_epoch),
                     "KernelVersion": ctx.kernel_version, "DockerInfo": "the image config JSON"},
        "notes": [
            "ImageSha384 equals PCR0 (kms:RecipientAttestation:ImageSha384)",
            "PCR1 covers kernel, cmdline and the bootstrap ramdisk; PCR2 the customer ramdisk (eif-nitro.md §2.2)",
        ],
    }
    if ctx.signer is not None:
        details["signing_certificate_sha256"] = ctx.signer.certificate_sha256
        details["signing_certificate_subject"] = ctx.signer.certificate.subject.rfc4514_string()
    return Manifest(kind=ArtifactKind.EIF, name=ctx.name, version=ctx.version, artifact=artifact,
                    measurements=ctx.written.pcrs.as_hex(), inputs=tuple(inputs),
                    builder=Builder("teeform", teeform.__version__), source_date_epoch=c.source_date_epoch,
                    details=details)


def write_outputs(ctx: BuildContext) -> tuple[Path, Path, Manifest]:
    """Validate the manifest, then rename the EIF into place and write the manifest next to it."""
    import json

    assert ctx.eif_tmp is not None
    eif_path = ctx.config.out_dir / f"{ctx.name}.eif"
    manifest_path = ctx.config.out_dir / f"{ctx.name}.manifest.json"
    manifest = build_manifest(ctx, eif_path.name)
    validate_manifest_dict(json.loads(manifest.to_json()), source=str(manifest_path))
    if ctx.tree is not None:
        pending = ctx.tree.pending_bytes
        ctx.tree.check_unchanged()  # deferred layer digest checks done; blobs read in place unchanged
        if pending:
            ctx.progress(f"  layer digests verified ({pending} bytes read in place)")
    os.replace(ctx.eif_tmp, eif_path)
    ctx.eif_tmp = None
    try:
        write_manifest(manifest, manifest_path)
    except BaseException:
        eif_path.unlink(missing_ok=True)
        raise
    return eif_path, manifest_path, manifest


def build_eif(config: EifBuildConfig, *, progress: Progress | None = stderr_progress) -> EifBuildResult:
    """Run the whole build (steps listed in the module docstring).

    Args:
        config: the frozen build configuration.
        progress: sink for progress lines (default: stderr); None for silence.

    Returns:
        :class:`EifBuildResult`.

    Raises:
        TeeformError: any input problem; no output file is left behind.
    """
    sink: Progress = progress or (lambda _m: None)
    work = Path(tempfile.mkdtemp(prefix="teeform-eif-"))
    ctx = BuildContext(config=config, work=work, progress=sink)
    try:
        check_inputs(ctx)
        with step(ctx, "reading the OCI image"):
            open_oci_image(ctx)
        snapshot_blobs(ctx)
        with step(ctx, "reading and flattening layers"):
            flatten_layers(ctx)
        with step(ctx, "planning the bootstrap ramdisk"):
            make_bootstrap_ramdisk(ctx)
        with step(ctx, "planning the customer ramdisk"):
            make_customer_ramdisk(ctx)
        with step(ctx, "writing the EIF" + (" (signed)" if ctx.signer else "")):
            write_eif_file(ctx)
        eif_path, manifest_path, manifest = write_outputs(ctx)
    finally:
        if ctx.tree is not None:
            ctx.tree.close()
        if ctx.eif_tmp is not None:
            ctx.eif_tmp.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
    assert ctx.written is not None
    sink(f"wrote {eif_path} ({ctx.written.size} bytes) and {manifest_path.name}")
    return EifBuildResult(eif_path, manifest_path, manifest, ctx.written.pcrs)
