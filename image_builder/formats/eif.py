"""The AWS Nitro Enclave Image File (EIF) format: PCR maths, a streaming writer and a strict reader.

Every format fact below comes from ``shared/reference/eif-nitro.md`` (written from
aws-nitro-enclaves-image-format, nitro-cli and QEMU ``hw/core/eif.c``):

* §1.1-§1.3: all integers big-endian; a 548-byte header (magic ``.eif``, u16 version, u16 flags,
  u64 default_mem, u64 default_cpus, u16 reserved, u16 num_sections, u64 section_offsets[32],
  u64 section_sizes[32], u32 unused, u32 eif_crc32); 12-byte section headers (u16 type, u16 flags,
  u64 size) directly followed by their data; no padding; at most 32 sections.
* §1.4: section order kernel, cmdline, metadata, ramdisk..., [signature].
* §1.5: CRC-32/ISO-HDLC (zlib's) over the whole file except bytes 544..547.
* §1.6: metadata = compact JSON with the keys ImageName, ImageVersion, BuildMetadata{BuildTime,
  BuildTool, BuildToolVersion, OperatingSystem, KernelVersion}, DockerInfo, CustomMetadata.
* §2.1-§2.2: ``PCR = SHA384(0^48 || SHA384(data))``; PCR0 over kernel, cmdline and every ramdisk
  data; PCR1 over kernel, cmdline and the first ramdisk; PCR2 over the later ramdisks; PCR8 over
  the DER of the signing certificate. Section headers, metadata and signature are not measured.
* §2.5: ImageSha384 (the KMS condition key) equals PCR0.

The writer streams every section through the CRC and the PCR hashers in
:data:`teeform.fsutil.CHUNK` pieces and never reads the file it writes. When the caller wants
digests of the whole file (the manifest's artifact SHA-256/SHA-384), a CRC-only pass over the
section inputs fixes the header first (it ends with the CRC of everything after it), and then one
write pass feeds every chunk to every digest; otherwise it seeks back and writes the header last,
joining the header's CRC to the sections' with :func:`crc32_combine` (zlib's algorithm). Memory
does not grow with the image (:func:`write_eif`).
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from teeform.errors import TeeformError
from teeform.fsutil import CHUNK
from teeform.hashlanes import Crc32, HashLanes
from teeform.hashlanes import crc32 as _hl_crc32
from teeform.report import MeasurementReport

EIF_MAGIC = b".eif"
EIF_VERSION = 4
#: Oldest version we measure: v2 introduced the CRC (§1.5 version history).
MIN_READ_VERSION = 2
HEADER_SIZE = 548
SECTION_HEADER_SIZE = 12
MAX_SECTIONS = 32
CRC_OFFSET = 544
DEFAULT_MEM = 0x40000000  # §1.2: the builder always writes 1 GiB
DEFAULT_CPUS = 2
FLAG_ARM64 = 0x0001  # §1.2 EIF_HDR_ARCH_ARM64
PCR_SIZE = 48
PCR_ZERO = bytes(PCR_SIZE)
MAX_METADATA = 16 << 20
MAX_SIGNATURE = 1 << 20
#: Largest cmdline section read into memory (x86 COMMAND_LINE_SIZE is 2,048; nitro-cli passes it as is).
MAX_CMDLINE = 1 << 20

_HEADER = struct.Struct(">4sHHQQHH32Q32QII")
_SECTION = struct.Struct(">HHQ")
assert _HEADER.size == HEADER_SIZE and _SECTION.size == SECTION_HEADER_SIZE


class SectionType(enum.IntEnum):
    """EIF section types (§1.3; a ``repr(u16)`` Rust enum in declaration order)."""

    INVALID = 0
    KERNEL = 1
    CMDLINE = 2
    RAMDISK = 3
    SIGNATURE = 4
    METADATA = 5

    @property
    def label(self) -> str:
        """Lower-case name used in messages and reports (``"ramdisk"``)."""
        return self.name.lower()


# ------------------------------------------------------------------------------- PCR maths


def pcr_extend(pcr: bytes, data: bytes) -> bytes:
    """One extend: ``SHA-384(pcr || data)`` (§2.1). ``pcr`` is 48 bytes; returns 48 bytes."""
    if len(pcr) != PCR_SIZE:
        raise ValueError("a PCR is 48 bytes")
    return hashlib.sha384(pcr + data).digest()


def pcr_from_digest(digest: bytes) -> bytes:
    """``extend(0^48, digest)``: the image PCRs extend once with the SHA-384 of their data (§2.2)."""
    return pcr_extend(PCR_ZERO, digest)


@dataclass(frozen=True)
class EifPcrs:
    """PCR0/1/2 (48 bytes each) and PCR8 (None when unsigned). ``ImageSha384`` = PCR0 (§2.5)."""

    pcr0: bytes
    pcr1: bytes
    pcr2: bytes
    pcr8: bytes | None = None

    def as_hex(self) -> dict[str, str]:
        """``{"PCR0", "PCR1", "PCR2", ["PCR8"], "ImageSha384"}`` as lowercase hex, in that order."""
        out = {"PCR0": self.pcr0.hex(), "PCR1": self.pcr1.hex(), "PCR2": self.pcr2.hex()}
        if self.pcr8 is not None:
            out["PCR8"] = self.pcr8.hex()
        out["ImageSha384"] = self.pcr0.hex()
        return out


class EifPcrHasher:
    """Streams section data into the three SHA-384 hashers of §2.2.

    Call :meth:`begin` for each section in file order, then :meth:`update` with its data chunks.
    """

    def __init__(self) -> None:
        self._h0 = hashlib.sha384()
        self._h1 = hashlib.sha384()
        self._h2 = hashlib.sha384()
        self._ramdisks = 0
        self._targets: tuple[Any, ...] = ()

    def begin(self, section_type: SectionType) -> None:
        """Select which hashers the next :meth:`update` calls feed."""
        if section_type in (SectionType.KERNEL, SectionType.CMDLINE):
            self._targets = (self._h0, self._h1)
        elif section_type is SectionType.RAMDISK:
            self._targets = (self._h0, self._h1) if self._ramdisks == 0 else (self._h0, self._h2)
            self._ramdisks += 1
        else:
            self._targets = ()

    def update(self, data: bytes) -> None:
        """Feed data of the current section."""
        for h in self._targets:
            h.update(data)

    def current(self) -> tuple[Any, ...]:
        """The hashers the current section feeds (PCR0's first), for callers that update them elsewhere."""
        return self._targets

    def pcr2_inner_hexdigest(self) -> str:
        """The SHA-384 (hex) of every user ramdisk's data fed so far: PCR2 before the extend (§2.2)."""
        return self._h2.hexdigest()

    def pcrs(self, pcr8: bytes | None = None) -> EifPcrs:
        """The PCRs of everything fed so far."""
        return EifPcrs(pcr_from_digest(self._h0.digest()), pcr_from_digest(self._h1.digest()),
                       pcr_from_digest(self._h2.digest()), pcr8)


def section_digesters(types: Sequence[SectionType]) -> list[Any]:
    """One SHA-384 hasher per section of an EIF with section types ``types`` (file order), or None
    for the section whose SHA-384 the PCR2 hasher already computes.

    PCR2's inner hash covers the data of every ramdisk after the first (§2.2); when there is exactly
    one such ramdisk (the customer ramdisk of nitro-cli's and teeform's EIFs) its section digest is
    :meth:`EifPcrHasher.pcr2_inner_hexdigest`, so the largest section is hashed once less.
    """
    ramdisks = [i for i, t in enumerate(types) if t is SectionType.RAMDISK]
    sole_user = ramdisks[1] if len(ramdisks) == 2 else None
    return [None if i == sole_user else hashlib.sha384() for i in range(len(types))]


def _section_hex(sha: Any, pcr_hasher: EifPcrHasher) -> str:
    return pcr_hasher.pcr2_inner_hexdigest() if sha is None else sha.hexdigest()


# ------------------------------------------------------------------------------------ CRC


def crc32(data: bytes, value: int = 0) -> int:
    """CRC-32/ISO-HDLC (§1.5), continuing from ``value``; zlib's CRC, computed by
    :func:`teeform.hashlanes.crc32` (ISA-L where installed)."""
    return _hl_crc32(data, value)


_CRC_POLY = 0xEDB88320  # reflected 0x04C11DB7


def _multmodp(a: int, b: int) -> int:
    """Multiply two polynomials modulo the CRC polynomial (reflected bit order; zlib ``multmodp``)."""
    m = 1 << 31
    p = 0
    while True:
        if a & m:
            p ^= b
            if (a & (m - 1)) == 0:
                break
        m >>= 1
        b = (b >> 1) ^ _CRC_POLY if b & 1 else b >> 1
    return p


def _x2n_table() -> list[int]:
    table = []
    p = 1 << 30  # x^1
    for _ in range(32):
        table.append(p)
        p = _multmodp(p, p)
    return table


_X2N = _x2n_table()


def _x2nmodp(n: int, k: int) -> int:
    """``x^(n * 2^k)`` modulo the CRC polynomial (zlib ``x2nmodp``)."""
    p = 1 << 31  # x^0
    while n:
        if n & 1:
            p = _multmodp(_X2N[k & 31], p)
        n >>= 1
        k += 1
    return p


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC of ``A || B`` from ``crc1 = crc32(A)``, ``crc2 = crc32(B)`` and ``len2 = len(B)``.

    The zlib 1.2.12+ algorithm (``crc32_combine64``): ``multmodp(x^(8*len2), crc1) ^ crc2``.
    """
    return (_multmodp(_x2nmodp(len2, 3), crc1 & 0xFFFFFFFF) ^ (crc2 & 0xFFFFFFFF)) & 0xFFFFFFFF


# --------------------------------------------------------------------------------- header


@dataclass(frozen=True)
class EifHeader:
    """The 548-byte EIF header (§1.2). ``section_offsets``/``section_sizes`` hold 32 slots each."""

    version: int
    flags: int
    default_mem: int
    default_cpus: int
    reserved: int
    num_sections: int
    section_offsets: tuple[int, ...]
    section_sizes: tuple[int, ...]
    unused: int
    crc32: int
    magic: bytes = EIF_MAGIC

    def pack(self) -> bytes:
        """The 548 header bytes, big-endian."""
        return _HEADER.pack(self.magic, self.version, self.flags, self.default_mem, self.default_cpus, self.reserved,
                            self.num_sections, *self.section_offsets, *self.section_sizes, self.unused, self.crc32)

    @classmethod
    def unpack(cls, data: bytes) -> EifHeader:
        """Parse 548 bytes (no validation beyond the length)."""
        v = _HEADER.unpack(data)
        return cls(magic=v[0], version=v[1], flags=v[2], default_mem=v[3], default_cpus=v[4], reserved=v[5],
                   num_sections=v[6], section_offsets=tuple(v[7:39]), section_sizes=tuple(v[39:71]),
                   unused=v[71], crc32=v[72])


def pack_section_header(section_type: SectionType, size: int) -> bytes:
    """The 12-byte section header (§1.3): type, flags 0, data size."""
    return _SECTION.pack(int(section_type), 0, size)


# --------------------------------------------------------------------------------- metadata


def metadata_json(*, image_name: str, image_version: str, build_time: str, build_tool: str,
                  build_tool_version: str, operating_system: str, kernel_version: str,
                  docker_info: Any = None, custom_metadata: Any = None) -> bytes:
    """The metadata section (§1.6): compact UTF-8 JSON with keys in nitro-cli's declaration order.

    ``build_time`` is RFC 3339 (see :func:`teeform.timefmt.rfc3339`). ``docker_info``/``custom_metadata`` are any
    JSON values (None -> ``null``).
    """
    obj = {
        "ImageName": image_name,
        "ImageVersion": image_version,
        "BuildMetadata": {
            "BuildTime": build_time,
            "BuildTool": build_tool,
            "BuildToolVersion": build_tool_version,
            "OperatingSystem": operating_system,
            "KernelVersion": kernel_version,
        },
        "DockerInfo": docker_info,
        "CustomMetadata": custom_metadata,
    }
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# ----------------------------------------------------------------------------------- writer


@dataclass(frozen=True)
class SectionSource:
    """Content of one section to write: ``data`` (bytes), ``path`` (a file streamed in chunks), or
    ``writer`` (a callable that writes exactly ``length`` bytes to the binary stream it is given,
    e.g. :meth:`image_builder.formats.cpio.ArchivePlan.write`, so a ramdisk goes straight into the
    EIF without a temporary file)."""

    type: SectionType
    data: bytes | None = None
    path: Path | None = None
    label: str = ""
    writer: Callable[[BinaryIO], Any] | None = None
    length: int | None = None

    @property
    def size(self) -> int:
        """Data size in bytes."""
        if self.data is not None:
            return len(self.data)
        if self.writer is not None:
            assert self.length is not None
            return self.length
        assert self.path is not None
        return os.stat(self.path).st_size


@dataclass(frozen=True)
class SectionInfo:
    """One section as written or read: slot index, type, offset of its 12-byte header, data size (bytes),
    and ``sha384``, the SHA-384 of the section's data (lowercase hex, 96 digits).

    SHA-384 because that is the hash the PCRs are built from (eif-nitro.md §2.2): for the one user
    ramdisk of an EIF with exactly two ramdisks (what nitro-cli and teeform write) it *is* the inner
    digest of PCR2, ``PCR2 = SHA-384(0^48 || bytes.fromhex(sha384))``, so it costs no extra pass
    (:func:`section_digesters`)."""

    index: int
    type: SectionType
    offset: int
    size: int
    sha384: str
    label: str = ""


@dataclass(frozen=True)
class EifWriteResult:
    """What :func:`write_eif` produced: PCRs, sections, file size (bytes), header CRC (as stored), and
    ``{algorithm: hex}`` digests of the whole file when ``file_digests`` was asked for."""

    pcrs: EifPcrs
    sections: tuple[SectionInfo, ...]
    size: int
    crc32: int
    file_digests: dict[str, str] = field(default_factory=dict)


Signer = Callable[[bytes], tuple[bytes, bytes]]
"""``signer(pcr0) -> (signature_section_bytes, certificate_der)``, see :mod:`image_builder.formats.eif_sign`."""


Progress = Callable[[str, int, int], object]
"""``progress(pass_name, bytes_done, bytes_total)``: how far a pass over the section data is."""


#: Seconds between two :data:`Progress` calls of a pass.
PROGRESS_EVERY = 2.0


class _Meter:
    """Counts the section bytes of one pass and calls ``progress`` at most every
    :data:`PROGRESS_EVERY` seconds (nothing for a pass that ends sooner), then once at the end when
    it reported before."""

    def __init__(self, progress: Progress | None, name: str, total: int) -> None:
        import time

        self._progress, self._name, self._total, self._every = progress, name, total, PROGRESS_EVERY
        self._clock = time.monotonic
        self._last = self._clock()
        self.done = 0
        self._reported = False

    def add(self, n: int) -> None:
        self.done += n
        if self._progress is not None and (now := self._clock()) - self._last >= self._every:
            self._last = now
            self._reported = True
            self._progress(self._name, self.done, self._total)

    def finish(self) -> None:
        if self._progress is not None and self._reported:
            self._progress(self._name, self.done, self._total)


class _SectionSink:
    """Writable stream for one section's data: writes to the EIF file (unless ``fh`` is None) and
    feeds the CRC and hashers.

    Small writes (cpio headers and names) are gathered into pieces of about :data:`CHUNK` bytes
    before they are hashed, so per-call overhead does not grow with the number of entries.
    """

    def __init__(self, fh: BinaryIO | None, lanes: HashLanes, targets: tuple[tuple[Any, ...], ...],
                 meter: _Meter | None = None) -> None:
        self._fh = fh
        self._lanes = lanes
        self._targets = targets  # one tuple of hashers per lane
        self._meter = meter
        self._buf = bytearray()
        self.written = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:
        n = len(data)
        if n >= _DIRECT:
            self._flush()
            self._feed(bytes(data))
        else:
            self._buf += data
            if len(self._buf) >= CHUNK:
                self._flush()
        return n

    def _flush(self) -> None:
        if self._buf:
            piece = bytes(self._buf)
            self._buf.clear()
            self._feed(piece)

    def _feed(self, piece: bytes) -> None:
        if self._fh is not None:
            self._fh.write(piece)
        self.written += len(piece)
        for lane, hashers in enumerate(self._targets):
            self._lanes.update_all(lane, hashers, piece)
        if self._meter is not None:
            self._meter.add(len(piece))

    def close(self) -> None:
        self._flush()


_DIRECT = 64 << 10  # writes at least this long are hashed as they are, not gathered


def write_eif(fh: BinaryIO, sections: Sequence[SectionSource], *, flags: int = 0,
              signer: Signer | None = None, file_digests: Sequence[str] = (),
              before_write_pass: Callable[[], object] | None = None,
              progress: Progress | None = None) -> EifWriteResult:
    """Write an EIF v4 to the seekable binary stream ``fh`` (positioned at 0, empty); never reads ``fh``.

    Without ``file_digests`` one pass writes the sections and computes the CRC, the PCR hashes
    and every section's SHA-384 (:func:`section_digesters`) on worker threads (:class:`teeform.hashlanes.HashLanes`), then
    seeks back and writes the header; the header's CRC is joined to the sections' CRC with
    :func:`crc32_combine`.

    With ``file_digests`` (hashlib names, e.g. ``("sha256",)`` for the manifest's artifact)
    the digests of the *whole file* are computed while it is written, so the header must be written
    first. The header ends with the CRC-32 of everything after it (eif-nitro.md §1.2, §1.5), and a
    SHA-2 state cannot be started from a prefix that is only known at the end, so:

    1. a *measure pass* streams the section data, writing nothing, through the CRC and the three
       PCR hashers (PCR0/PCR1/PCR2 cover section data only, never the EIF header, eif-nitro.md
       §2.2; a signature section, which the CRC covers, signs PCR0): lane 0 gets the CRC and
       PCR0, lane 1 PCR1/PCR2, about one SHA-384 stream each (two cores). The CRC fixes the header;
    2. the *write pass* writes header and sections once, and every chunk feeds the whole-file
       digests, the section's SHA-384 (none for the sole user ramdisk, whose digest is PCR2's
       inner hash) and a second CRC: lane 0 the non-SHA-384/512 file digests and the section
       digest, lane 1 the check CRC and any SHA-384/512 file digest. With only a SHA-256 file
       digest this pass leaves a core mostly free, which ``before_write_pass`` can use (the EIF
       build verifies its layer blobs there, :meth:`image_builder.inputs.oci.FlatTree.start_verification`).

    The two passes must see the same bytes: a ``path`` source is kept open between them and a
    ``writer`` is called once per pass (it must write the same bytes each time, as
    :meth:`image_builder.formats.cpio.ArchivePlan.write` does for unchanged inputs); the second CRC
    must equal the first, else the inputs changed while the EIF was written and it is refused
    (so the PCRs of the measure pass are those of the bytes written).
    Memory stays bounded (:data:`teeform.fsutil.CHUNK` pieces, at most eight queued per lane).

    Args:
        sections: kernel, cmdline, metadata, then ramdisks, in that order (§1.4); the signature
            section is added by ``signer`` after PCR0 is known.
        flags: header flags (0 for x86_64, :data:`FLAG_ARM64` for aarch64).
        signer: optional; called with PCR0, returns the signature section and certificate DER.
        file_digests: digests of the complete file to return in :attr:`EifWriteResult.file_digests`.
        before_write_pass: called once, with no arguments, just before the first byte is written
            (after the measure pass when there is one).
        progress: optional :data:`Progress`, called at most every 2 s of a pass with the pass name
            (``"measure pass"``, ``"write pass"``) and the section bytes done and in all; a pass
            that takes less than that reports nothing.

    Returns:
        :class:`EifWriteResult`; the stream is left positioned at its end.

    Raises:
        TeeformError: more than 32 sections, an unreadable input file, a file or writer whose size
            differs from the planned one, or section contents that changed between the two passes.
    """
    import contextlib

    order = [s.type for s in sections]
    expected_prefix = [SectionType.KERNEL, SectionType.CMDLINE, SectionType.METADATA]
    if order[:3] != expected_prefix or any(t is not SectionType.RAMDISK for t in order[3:]) or len(order) < 4:
        raise ValueError("sections must be kernel, cmdline, metadata, ramdisk... (§1.4)")
    if len(sections) + (1 if signer else 0) > MAX_SECTIONS:
        raise TeeformError(f"an EIF holds at most {MAX_SECTIONS} sections, got {len(sections) + (1 if signer else 0)}")
    with contextlib.ExitStack() as stack:
        sources = [_Source.of(s, stack) for s in sections]
        if file_digests:
            return _write_header_first(fh, sources, flags, signer, file_digests, before_write_pass, progress)
        return _write_header_last(fh, sources, flags, signer, before_write_pass, progress)


@dataclass(frozen=True)
class _Source:
    """One section ready to stream: type, data size (bytes), label, and ``produce(sink)``."""

    type: SectionType
    size: int
    label: str
    produce: Callable[[_SectionSink], object]

    @classmethod
    def of(cls, s: SectionSource, stack: Any) -> _Source:
        """Open ``s`` (a ``path`` stays open on ``stack`` until the EIF is written)."""
        if s.data is not None:
            data = s.data
            return cls(s.type, len(data), s.label, lambda sink: sink.write(data))
        if s.writer is not None:
            assert s.length is not None
            writer = s.writer
            return cls(s.type, s.length, s.label, lambda sink: writer(sink))  # type: ignore[arg-type]
        assert s.path is not None
        try:
            src = stack.enter_context(open(s.path, "rb"))
            size = os.fstat(src.fileno()).st_size
        except OSError as exc:
            raise TeeformError(f"cannot read: {exc.strerror}", path=s.path) from exc

        def produce(sink: _SectionSink, src: BinaryIO = src, path: Path = s.path) -> None:
            try:
                src.seek(0)
                while chunk := src.read(CHUNK):
                    sink.write(chunk)
            except OSError as exc:
                raise TeeformError(f"cannot read: {exc.strerror}", path=path) from exc

        return cls(s.type, size, s.label or str(s.path), produce)


def _stream(source: _Source, index: int, fh: BinaryIO | None, lanes: HashLanes,
            targets: tuple[tuple[Any, ...], ...], meter: _Meter | None = None) -> None:
    """Stream one section's data to ``fh`` (None: nowhere) and ``targets`` (one hasher tuple per lane)."""
    sink = _SectionSink(fh, lanes, targets, meter)
    source.produce(sink)
    sink.close()
    if sink.written != source.size:
        raise TeeformError(f"section {index} ({source.type.label}) changed size while it was written: "
                           f"expected {source.size} bytes, copied {sink.written}", path=source.label or None)


def _header(flags: int, infos: Sequence[SectionInfo], sections_crc: int, end: int) -> tuple[bytes, int]:
    """(the 548 header bytes, the CRC stored in them) for ``infos``; ``sections_crc`` is the CRC-32
    of bytes 548..``end`` (§1.5: the header's CRC covers bytes 0..543 and everything after 547)."""
    offsets = [s.offset for s in infos] + [0] * (MAX_SECTIONS - len(infos))
    sizes = [s.size for s in infos] + [0] * (MAX_SECTIONS - len(infos))
    header = EifHeader(EIF_VERSION, flags, DEFAULT_MEM, DEFAULT_CPUS, 0, len(infos), tuple(offsets), tuple(sizes), 0, 0)
    head = header.pack()
    total_crc = crc32_combine(crc32(head[:CRC_OFFSET]), sections_crc, end - HEADER_SIZE)
    return head[:CRC_OFFSET] + struct.pack(">I", total_crc), total_crc


def _sign(signer: Signer, pcr0: bytes) -> tuple[_Source, bytes]:
    """(the signature section, PCR8) for ``pcr0``."""
    from image_builder.formats.eif_sign import pcr8_from_certificate_der

    sig, cert_der = signer(pcr0)
    return _Source(SectionType.SIGNATURE, len(sig), "signature", lambda sink: sink.write(sig)), \
        pcr8_from_certificate_der(cert_der)


def _write_header_last(fh: BinaryIO, sources: list[_Source], flags: int, signer: Signer | None,
                       before_write_pass: Callable[[], object] | None = None,
                       progress: Progress | None = None) -> EifWriteResult:
    """One pass: sections with CRC, PCRs and section SHA-384, then the header (see :func:`write_eif`)."""
    if before_write_pass is not None:
        before_write_pass()
    fh.write(bytes(HEADER_SIZE))
    offset = HEADER_SIZE
    crc = Crc32()
    hasher = EifPcrHasher()
    infos: list[SectionInfo] = []
    shas: list[Any] = section_digesters([s.type for s in sources])
    pcr8 = None
    meter = _Meter(progress, "write pass", sum(x.size for x in sources))
    with HashLanes() as lanes:

        def emit(source: _Source) -> None:
            nonlocal offset
            index = len(infos)
            head = pack_section_header(source.type, source.size)
            fh.write(head)
            lanes.submit(0, crc.update, head)
            hasher.begin(source.type)
            targets = hasher.current()
            sha = shas[index]
            lane0 = (targets[0], crc) if targets else (crc,)
            _stream(source, index, fh, lanes, (lane0, tuple(targets[1:]) + ((sha,) if sha is not None else ())), meter)
            infos.append(SectionInfo(index, source.type, offset, source.size, "", source.label))
            offset += SECTION_HEADER_SIZE + source.size

        for source in sources:
            emit(source)
        if signer is not None:
            lanes.wait()
            sig_source, pcr8 = _sign(signer, hasher.pcrs().pcr0)
            shas.append(hashlib.sha384())  # the signature section is no ramdisk: its own digest
            emit(sig_source)
        lanes.wait()
    meter.finish()
    head, total_crc = _header(flags, infos, crc.value, offset)
    fh.seek(0)
    fh.write(head)
    fh.seek(offset)
    done = tuple(SectionInfo(s.index, s.type, s.offset, s.size, _section_hex(sha, hasher), s.label)
                 for s, sha in zip(infos, shas, strict=True))
    return EifWriteResult(hasher.pcrs(pcr8), done, offset, total_crc, {})


def _write_header_first(fh: BinaryIO, sources: list[_Source], flags: int, signer: Signer | None,
                        file_digests: Sequence[str], before_write_pass: Callable[[], object] | None = None,
                        progress: Progress | None = None) -> EifWriteResult:
    """The measure pass, then the write pass that computes the file digests (see :func:`write_eif`)."""
    # 1. Measure pass: the sections' CRC and their PCRs (they do not depend on the header); nothing written.
    crc = Crc32()
    hasher = EifPcrHasher()
    pcr8 = None
    meter = _Meter(progress, "measure pass", sum(x.size for x in sources))
    with HashLanes() as lanes:
        for i, source in enumerate(sources):
            lanes.submit(0, crc.update, pack_section_header(source.type, source.size))
            hasher.begin(source.type)
            targets: tuple[Any, ...] = hasher.current()
            _stream(source, i, None, lanes, ((crc,) + targets[:1], targets[1:]), meter)
        if signer is not None:
            lanes.wait()
            sig_source, pcr8 = _sign(signer, hasher.pcrs().pcr0)
            sources = [*sources, sig_source]
            lanes.submit(0, crc.update, pack_section_header(sig_source.type, sig_source.size))
            _stream(sig_source, len(sources) - 1, None, lanes, ((crc,), ()))
        lanes.wait()
    meter.finish()
    infos: list[SectionInfo] = []
    offset = HEADER_SIZE
    for i, source in enumerate(sources):
        infos.append(SectionInfo(i, source.type, offset, source.size, "", source.label))
        offset += SECTION_HEADER_SIZE + source.size
    head, total_crc = _header(flags, infos, crc.value, offset)

    # 2. Write pass: header and sections once; every chunk feeds the file digests, the section
    #    digests and the check CRC.
    if before_write_pass is not None:
        before_write_pass()
    whole = [hashlib.new(a) for a in file_digests]
    big = tuple(h for h in whole if h.name in ("sha384", "sha512"))
    small = tuple(h for h in whole if h not in big)
    check = Crc32()
    shas = section_digesters([s.type for s in sources])
    meter = _Meter(progress, "write pass", sum(x.size for x in sources))
    with HashLanes() as lanes:
        fh.write(head)
        lanes.update_all(0, small, head)
        lanes.update_all(1, big, head)
        for i, source in enumerate(sources):
            shead = pack_section_header(source.type, source.size)
            fh.write(shead)
            lanes.update_all(0, small, shead)
            lanes.update_all(1, (check,) + big, shead)
            sha = shas[i]
            mine = (sha,) if sha is not None else ()
            _stream(source, i, fh, lanes, (small + mine, (check,) + big), meter)
        lanes.wait()
    meter.finish()
    if check.value & 0xFFFFFFFF != crc.value & 0xFFFFFFFF:
        raise TeeformError("the EIF's inputs changed while it was written (the sections' CRC-32 differs between the "
                           f"measure pass, {crc.value & 0xFFFFFFFF:#010x}, and the write pass, {check.value & 0xFFFFFFFF:#010x})",
                           hint="do not modify the image, kernel or init files during a build; rebuild")
    done = tuple(SectionInfo(s.index, s.type, s.offset, s.size, _section_hex(sha, hasher), s.label)
                 for s, sha in zip(infos, shas, strict=True))
    return EifWriteResult(hasher.pcrs(pcr8), done, offset, total_crc, {h.name: h.hexdigest() for h in whole})


# ----------------------------------------------------------------------------------- reader


@dataclass(frozen=True)
class EifInfo:
    """Everything :func:`read_eif` checked and computed.

    Attributes:
        path: the file.
        header: the parsed header.
        sections: in file order.
        pcrs: PCR0/1/2 and PCR8 (when signed).
        crc32: the CRC as stored (verified equal to the computed one).
        file_size: bytes.
        cmdline: the kernel command line bytes.
        metadata: the parsed metadata JSON (None when absent or not valid JSON).
        signing_certificate_pem: PEM bytes from the signature section (None when unsigned).
        signature_check: True/False when signed (COSE signature valid and payload == CBOR(PcrInfo
            {0, PCR0}), as ``describe-eif``'s ``SignatureCheck``); None when unsigned.
        notes: caveats (e.g. an old EIF version).
    """

    path: Path
    header: EifHeader
    sections: tuple[SectionInfo, ...]
    pcrs: EifPcrs
    crc32: int
    file_size: int
    cmdline: bytes
    metadata: Any
    signing_certificate_pem: bytes | None
    signature_check: bool | None
    notes: tuple[str, ...] = field(default=())

    @property
    def is_signed(self) -> bool:
        """True when the EIF has a signature section."""
        return self.signing_certificate_pem is not None

    @property
    def architecture(self) -> str:
        """``"aarch64"`` when the ARM64 flag is set, else ``"x86_64"`` (§1.2)."""
        return "aarch64" if self.header.flags & FLAG_ARM64 else "x86_64"


def _fail(path: Path, message: str, *, field: str | None = None, hint: str | None = None) -> TeeformError:
    if field and message.startswith(field):
        field = None  # "section 3 (ramdisk) extends ..." already names it
    return TeeformError(message, path=path, field=field,
                        hint=hint or "the file is not a valid EIF (corrupt, truncated, or not an EIF)")


def read_eif(path: os.PathLike[str] | str) -> EifInfo:
    """Validate an EIF (ours or nitro-cli's) and compute its PCRs, streaming.

    Checks (§1.8): magic; version (2..4 accepted, v2/v3 with a note; others refused);
    1 <= num_sections <= 32; each section's header lies in the file, its type is 1..5, its flags
    are 0, its size equals the header slot, its data ends inside the file; sections follow each
    other from byte 548 to the end of the file without gaps (both the IMGFMT reader, which walks
    from 548 to EOF, and QEMU, which follows the offsets, must see the same sections); exactly one
    kernel and one cmdline, at least one ramdisk, at most one metadata and one signature section;
    the CRC.

    Limits: the file must be a regular file (a FIFO or ``/dev/zero`` is refused before reading);
    the cmdline section at most :data:`MAX_CMDLINE` bytes, metadata at most :data:`MAX_METADATA`
    bytes of JSON parsed with :func:`teeform.safeload.loads_json` (nesting <= 64, integers <= 20
    digits, no NaN, no lone surrogates; anything else is refused like any other corruption) and
    the signature section at most :data:`MAX_SIGNATURE` bytes, all checked against the header before
    anything is read; every other section is only streamed (hashed in :data:`CHUNK` pieces), so a
    section's size costs time proportional to the bytes actually present in the file, never memory.

    Raises:
        TeeformError: naming exactly what is wrong, e.g. ``section 3 (ramdisk) extends beyond end
            of file: ...`` or ``CRC mismatch: header says 0x..., computed 0x...``.
    """
    from teeform.safeload import open_regular

    p = Path(path)
    with open_regular(p, what="EIF") as fh:
        file_size = os.fstat(fh.fileno()).st_size
        raw = fh.read(HEADER_SIZE)
        if len(raw) < HEADER_SIZE:
            if raw[:4] != EIF_MAGIC:
                raise _fail(p, f"bad magic {raw[:4]!r} (an EIF starts with b'.eif')", field="magic")
            raise _fail(p, f"truncated: the file is {file_size} bytes, an EIF header alone is {HEADER_SIZE}")
        hdr = EifHeader.unpack(raw)
        if hdr.magic != EIF_MAGIC:
            raise _fail(p, f"bad magic {hdr.magic!r} (an EIF starts with b'.eif')", field="magic")
        notes: list[str] = []
        if hdr.version > EIF_VERSION or hdr.version < MIN_READ_VERSION:
            raise _fail(p, f"unsupported EIF version {hdr.version} (teeform reads versions {MIN_READ_VERSION} to {EIF_VERSION})",
                        field="version", hint="versions 0-1 have no CRC; versions above 4 are not documented yet")
        if hdr.version < EIF_VERSION:
            notes.append(f"EIF version {hdr.version} predates the metadata section (v4); QEMU refuses versions below 4, "
                         "but the PCRs are computed the same way")
        if hdr.num_sections > MAX_SECTIONS:
            raise _fail(p, f"num_sections is {hdr.num_sections}, more than the maximum of {MAX_SECTIONS}", field="num_sections")
        if hdr.num_sections == 0:
            raise _fail(p, "num_sections is 0", field="num_sections")

        sections: list[tuple[int, SectionType, int, int]] = []
        expected = HEADER_SIZE
        for i in range(hdr.num_sections):
            off, slot_size = hdr.section_offsets[i], hdr.section_sizes[i]
            where = f"section {i}"
            if off != expected:
                raise _fail(p, f"{where} starts at offset {off}, expected {expected} "
                               "(sections follow each other with no gap, eif-nitro.md §1.1)", field=where)
            if off + SECTION_HEADER_SIZE > file_size:
                raise _fail(p, f"{where} header at offset {off} extends beyond end of file ({file_size} bytes)", field=where)
            fh.seek(off)
            stype_raw, sflags, ssize = _SECTION.unpack(fh.read(SECTION_HEADER_SIZE))
            if stype_raw not in (1, 2, 3, 4, 5):
                raise _fail(p, f"{where} has invalid section type {stype_raw}", field=where)
            stype = SectionType(stype_raw)
            where = f"section {i} ({stype.label})"
            if ssize != slot_size:
                raise _fail(p, f"{where}: section header says size {ssize}, EIF header slot says {slot_size}", field=where)
            if sflags != 0:
                raise _fail(p, f"{where}: section flags are {sflags:#x}, must be 0", field=where)
            limit = {SectionType.CMDLINE: MAX_CMDLINE, SectionType.METADATA: MAX_METADATA,
                     SectionType.SIGNATURE: MAX_SIGNATURE}.get(stype)
            if limit is not None and ssize > limit:
                raise _fail(p, f"{where} is {ssize} bytes, over the {limit}-byte limit", field=where)
            end = off + SECTION_HEADER_SIZE + ssize
            if end > file_size:
                raise _fail(p, f"{where} extends beyond end of file: data ends at byte {end}, "
                               f"the file is {file_size} bytes", field=where)
            sections.append((i, stype, off, ssize))
            expected = end
        if expected != file_size:
            raise _fail(p, f"{file_size - expected} unexpected bytes after the last section (ends at {expected}, "
                           f"file is {file_size} bytes)")
        counts = {t: sum(1 for s in sections if s[1] is t) for t in SectionType}
        for t, lo, hi in ((SectionType.KERNEL, 1, 1), (SectionType.CMDLINE, 1, 1), (SectionType.RAMDISK, 1, MAX_SECTIONS),
                          (SectionType.METADATA, 0, 1), (SectionType.SIGNATURE, 0, 1)):
            if not lo <= counts[t] <= hi:
                want = f"exactly {lo}" if lo == hi else f"{lo} to {hi}"
                raise _fail(p, f"the EIF has {counts[t]} {t.label} section(s), needs {want}")

        # One streaming pass: CRC over everything but bytes 544..547, PCR hashers, per-section SHA-384
        # (the sole user ramdisk's from the PCR2 hasher, section_digesters). The hashing runs on two
        # worker lanes (lane 0: PCR0 and the CRC, lane 1: PCR1 or PCR2 and the section digest) while
        # this thread reads, so the two SHA-384 streams over a large ramdisk use two cores.
        crc = Crc32(crc32(raw[:CRC_OFFSET]))
        hasher = EifPcrHasher()
        infos: list[SectionInfo] = []
        cmdline = b""
        metadata_raw = b""
        signature_raw = b""
        shas = section_digesters([s[1] for s in sections])
        with HashLanes() as lanes:
            for i, stype, off, size in sections:
                fh.seek(off)
                lanes.submit(0, crc.update, fh.read(SECTION_HEADER_SIZE))
                hasher.begin(stype)
                targets = hasher.current()
                lane0 = (*targets[:1], crc)
                lane1 = (*targets[1:], *((shas[i],) if shas[i] is not None else ()))
                keep = stype in (SectionType.CMDLINE, SectionType.METADATA, SectionType.SIGNATURE)
                kept: list[bytes] = []
                remaining = size
                while remaining:
                    chunk = fh.read(min(CHUNK, remaining))
                    if not chunk:
                        raise _fail(p, f"section {i} ({stype.label}): file ended while reading")
                    lanes.update_all(0, lane0, chunk)
                    lanes.update_all(1, lane1, chunk)
                    if keep:
                        kept.append(chunk)
                    remaining -= len(chunk)
                infos.append(SectionInfo(i, stype, off, size, "", stype.label))
                if stype is SectionType.CMDLINE:
                    cmdline = b"".join(kept)
                elif stype is SectionType.METADATA:
                    metadata_raw = b"".join(kept)
                elif stype is SectionType.SIGNATURE:
                    signature_raw = b"".join(kept)
        infos = [SectionInfo(s.index, s.type, s.offset, s.size, _section_hex(sha, hasher), s.label)
                 for s, sha in zip(infos, shas, strict=True)]
        computed = crc.value & 0xFFFFFFFF
        if computed != hdr.crc32:
            raise _fail(p, f"CRC mismatch: header says {hdr.crc32:#010x}, computed {computed:#010x}", field="eif_crc32",
                        hint="the file is corrupt or was modified after it was built")

    metadata: Any = None
    if metadata_raw:
        from teeform.safeload import loads_json

        where = next(f"section {i} (metadata)" for i, t, _, _ in sections if t is SectionType.METADATA)
        try:
            metadata = loads_json(metadata_raw, source=where)
        except TeeformError as exc:
            raise _fail(p, exc.message, hint="nitro-cli writes compact JSON metadata (eif-nitro.md §1.6); "
                        "the file is corrupt or was not built by an EIF builder") from None
    pcr8 = None
    cert_pem = None
    sig_ok = None
    pcrs = hasher.pcrs()
    if counts[SectionType.SIGNATURE]:
        from image_builder.formats import eif_sign

        try:
            entries = eif_sign.parse_signature_section(signature_raw)
        except TeeformError as exc:
            raise _fail(p, f"signature section: {exc.message}", field="signature") from exc
        cert_pem = entries[0].signing_certificate
        pcr8 = eif_sign.pcr8_from_pem(cert_pem, source=p)
        sig_ok = eif_sign.verify_pcr_signature(entries[0], pcrs.pcr0)
        if len(entries) > 1:
            notes.append(f"the signature section holds {len(entries)} signatures; PCR8 uses the first (as nitro-cli)")
    return EifInfo(p, hdr, tuple(infos), EifPcrs(pcrs.pcr0, pcrs.pcr1, pcrs.pcr2, pcr8), hdr.crc32, file_size,
                   cmdline, metadata, cert_pem, sig_ok, tuple(notes))


def measure_report(path: os.PathLike[str] | str) -> MeasurementReport:
    """``teeform measure`` for an EIF: PCR0, PCR1, PCR2, [PCR8], ImageSha384 plus facts and the section table.

    Facts mirror ``nitro-cli describe-eif`` names where one exists (§6.5): EifVersion, CheckCRC,
    IsSigned, SignatureCheck (signed only), ImageName, ImageVersion; plus Architecture, Flags,
    FileSize and the kernel command line.

    Raises:
        TeeformError: see :func:`read_eif`.
    """
    info = read_eif(path)
    meta = info.metadata if isinstance(info.metadata, dict) else {}
    facts: dict[str, Any] = {
        "EifVersion": info.header.version,
        "CheckCRC": True,
        "IsSigned": info.is_signed,
    }
    if info.is_signed:
        facts["SignatureCheck"] = info.signature_check
    facts["ImageName"] = _meta_text(meta.get("ImageName"))
    facts["ImageVersion"] = _meta_text(meta.get("ImageVersion"))
    build = meta.get("BuildMetadata") if isinstance(meta.get("BuildMetadata"), dict) else {}
    if build:
        facts["BuildTool"] = f"{_meta_text(build.get('BuildTool'))} {_meta_text(build.get('BuildToolVersion'))}"
        facts["BuildTime"] = _meta_text(build.get("BuildTime"))
    facts["Architecture"] = info.architecture
    facts["Flags"] = f"{info.header.flags:#06x}"
    facts["FileSize"] = info.file_size
    facts["Cmdline"] = info.cmdline.decode("utf-8", "replace")
    rows = [{"index": s.index, "type": s.type.label, "offset": s.offset, "size": s.size,
             "measured_in": _measured_in(s, info.sections), "sha384": s.sha384} for s in info.sections]
    notes = list(info.notes)
    notes.append("ImageSha384 (the KMS condition key kms:RecipientAttestation:ImageSha384) equals PCR0; "
                 "metadata and signature sections are not measured (eif-nitro.md §2.2, §2.5)")
    if info.is_signed and info.signature_check is False:
        notes.append("the signature does not verify against PCR0 with the embedded certificate (SignatureCheck false)")
    return MeasurementReport(path=str(path), kind="eif", measurements=info.pcrs.as_hex(), facts=facts,
                             sections=rows, notes=notes)


def _meta_text(value: Any, limit: int = 256) -> str | None:
    """A metadata string for display: None unless it is a string; cut to ``limit`` characters (the
    metadata is unmeasured, untrusted text)."""
    if not isinstance(value, str):
        return None
    return value if len(value) <= limit else value[:limit] + "..."


def _measured_in(s: SectionInfo, sections: Sequence[SectionInfo]) -> str:
    if s.type in (SectionType.KERNEL, SectionType.CMDLINE):
        return "PCR0,PCR1"
    if s.type is SectionType.RAMDISK:
        first = next(x for x in sections if x.type is SectionType.RAMDISK)
        return "PCR0,PCR1" if s is first else "PCR0,PCR2"
    if s.type is SectionType.SIGNATURE:
        return "PCR8 (certificate)"
    return "-"
