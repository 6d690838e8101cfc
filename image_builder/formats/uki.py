"""Assemble a Unified Kernel Image (UKI) exactly the way ukify does, and read the layout of any PE/UKI file.

Public API::

    SectionOrder                      # "ukify-257" (default) | "ukify-254": where ukify puts .linux/.sbat
    UkiInputs(stub, linux, initrd, cmdline, osrel, uname=None, sbat=None,
              section_order=SectionOrder.UKIFY_257, time_date_stamp=None)
    UkiSection(name, virtual_address, virtual_size, raw_offset, raw_size, origin, digests)
    UkiLayout(path, size, time_date_stamp, section_alignment, file_alignment, size_of_image, sections)
    build_uki(inputs, out_path) -> UkiLayout            # streaming, atomic
    read_uki_layout(path) -> UkiLayout                  # any PE file; streams each section once
    kernel_uname(linux) -> bytes | None                  # ukify's x86 "uname -r" scrape
    merge_sbat(stub, linux, sbat=None) -> bytes          # ukify's merged .sbat text

Measurement predictions from a UKI live in :mod:`image_builder.measure.vm`
(``predict_vm_measurements``, ``linux_authenticode``) and ``teeform measure``'s report in
:mod:`image_builder.pipelines.report`: this module is the byte format only and imports no
measurement code (layers contract in pyproject.toml).

How ukify lays out a UKI (shared/reference/uki-verity.md §3 "How ukify lays out a UKI"; systemd
254.26 ``/lib/systemd/ukify`` ``pe_add_sections()``/``merge_sbat()``/``make_uki()``, read here;
systemd 257 ``src/ukify/ukify.py``), reproduced byte for byte:

1. strip a COFF symbol (+ string) table that ends the stub, clear PointerToSymbolTable and
   NumberOfSymbols (COFF Characteristics stay as they are: ukify's attempt to set
   IMAGE_FILE_LOCAL_SYMS_STRIPPED is a no-op in pefile);
2. realign every stub section's PointerToRawData/SizeOfRawData to FileAlignment (zero padding);
   round SizeOfHeaders up to FileAlignment; refuse a signed stub (Certificate Table present);
3. add sections in ukify's order - 257: ``.osrel .cmdline .uname .linux .initrd`` then ``.sbat``;
   254: ``.osrel .cmdline .uname .initrd`` then ``.sbat`` then ``.linux``. Each new section gets a
   40-byte header after the last one (error if it would pass SizeOfHeaders), VirtualSize = data
   length, PointerToRawData = round_up(file length, FileAlignment), SizeOfRawData =
   round_up(length, FileAlignment), VirtualAddress = round_up(previous VA + previous VirtualSize,
   SectionAlignment), Characteristics MEM_READ|CNT_INITIALIZED_DATA (MEM_READ|CNT_CODE for
   ``.linux``); NumberOfSections += 1; SizeOfInitializedData += VirtualSize;
4. a section whose name the stub already has (``.sbat``) replaces the stub's data in place;
5. CheckSum = 0, SizeOfImage = round_up(last VA + last VirtualSize, SectionAlignment);
   TimeDateStamp is the stub's (ukify never changes it; pass ``time_date_stamp`` to override).

The result has no trailing data and its size is a multiple of FileAlignment (0x200), so its
Authenticode digest does not change when it is signed (uki-verity.md §4). Outputs were checked
byte-identical to ukify 257 (TV-2) and to ukify 254 run live (tests/test_uki.py).

Caveat copied from ukify: with the bookworm 252 stub (SectionAlignment 0x200) the merged 308-byte
``.sbat`` keeps its RVA 0x19000, so in memory it overlaps ``.sdmagic`` (0x19100); the loader copies
``.sdmagic`` last, the stub is unaffected (it never reads ``.sbat``) and shim reads SBAT from the file.
"""

from __future__ import annotations

import enum
import hashlib
import os
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from image_builder.formats.pe import (
    PE_SECTION_HEADER_SIZE,
    PeHeaders,
    iter_section_data,
    parse_pe_headers,
    read_pe_headers,
    read_pe_headers_fh,
)
from teeform.errors import TeeformError
from teeform.fsutil import CHUNK, atomic_output

#: Digests kept for every section (bank names as used by pcr11.BANKS).
SECTION_DIGESTS = ("sha1", "sha256", "sha384")
MAX_STUB_SIZE = 64 << 20
#: Most zero fill (VirtualSize beyond the data in the file, which the loader zero-fills and
#: systemd-stub measures, uki-verity.md §1.2) that :func:`read_uki_layout` hashes over all sections.
#: teeform's own bound: a real stub's fill is a few KiB (its .data/.bss); without a bound a 1 KiB PE
#: claiming VirtualSize 0xFFFFFFFF in 96 sections would make ``teeform measure`` hash 384 GiB.
MAX_ZERO_FILL = 64 << 20
#: Largest .sbat section read (shim's SBAT.md CSV is a few lines; same bound as pcr11.detect_stub_version).
MAX_SBAT = 1 << 20

IMAGE_SCN_CNT_CODE = 0x00000020
IMAGE_SCN_CNT_INITIALIZED_DATA = 0x00000040
IMAGE_SCN_MEM_READ = 0x40000000

SBAT_HEADER = "sbat,1,SBAT Version,sbat,1,https://github.com/rhboot/shim/blob/main/SBAT.md\n"
#: ukify's default SBAT text when no --sbat is given (254.26 ``make_uki``; 257 identical).
UKIFY_DEFAULT_SBAT = SBAT_HEADER + "uki,1,UKI,uki,1,https://uapi-group.org/specifications/specs/unified_kernel_image/\n"


class SectionOrder(enum.StrEnum):
    """Which ukify version's section order to reproduce (uki-verity.md §3; ukify 254.26 ``make_uki``).

    * ``ukify-257``: ``.osrel .cmdline .uname .linux .initrd`` then ``.sbat`` (TV-2 layout).
    * ``ukify-254``: ``.osrel .cmdline .uname .initrd`` then ``.sbat``, ``.linux`` last.

    The order changes RVAs and file offsets (so the Authenticode digest) but not PCR 11, which is
    measured in the stub's enum order.
    """

    UKIFY_257 = "ukify-257"
    UKIFY_254 = "ukify-254"


@dataclass(frozen=True)
class UkiInputs:
    """Everything :func:`build_uki` puts into a UKI.

    Attributes:
        stub: systemd-stub EFI binary (``linuxx64.efi.stub``), must be unsigned.
        linux: the kernel (bzImage with EFI stub) -> ``.linux``; streamed.
        initrd: initrd file -> ``.initrd`` (None: no section); streamed.
        cmdline: exact ``.cmdline`` bytes (ukify ``--cmdline=@FILE`` semantics: verbatim; b"" = no
            section, which lets systemd-stub accept any command line - see PCR12_NOTE).
        osrel: exact ``.osrel`` bytes (os-release text); b"" = no section.
        uname: ``.uname`` bytes (``uname -r``), None = no section (see :func:`kernel_uname`).
        sbat: SBAT CSV replacing ukify's default ``uki,1,...`` text (must start with ``sbat,``);
            merged with the stub's and the kernel's ``.sbat`` lines like ukify (:func:`merge_sbat`).
        section_order: :class:`SectionOrder`.
        time_date_stamp: COFF TimeDateStamp to write (u32); None keeps the stub's (ukify behaviour).
    """

    stub: Path
    linux: Path
    initrd: Path | None
    cmdline: bytes
    osrel: bytes
    uname: bytes | None = None
    sbat: bytes | None = None
    section_order: SectionOrder = SectionOrder.UKIFY_257
    time_date_stamp: int | None = None


@dataclass(frozen=True)
class UkiSection:
    """One section of a UKI.

    Attributes:
        name: e.g. ``.linux``.
        virtual_address: RVA.
        virtual_size: VirtualSize (= content length for sections ukify adds).
        raw_offset: PointerToRawData (file offset).
        raw_size: SizeOfRawData.
        origin: ``"stub"`` (unchanged stub section), ``"replaced"`` (stub section whose data was
            swapped in place, i.e. ``.sbat``) or ``"added"``; ``"file"`` from :func:`read_uki_layout`.
        digests: ``{"sha1"|"sha256"|"sha384": hex}`` of the VirtualSize bytes systemd-stub measures
            (uki-verity.md §1.2): the file data, zero-filled by the loader when VirtualSize >
            SizeOfRawData (never the case for sections ukify/teeform add, where the digest is simply
            that of the input file, = what ``objcopy -O binary --only-section`` extracts).
    """

    name: str
    virtual_address: int
    virtual_size: int
    raw_offset: int
    raw_size: int
    origin: str
    digests: Mapping[str, str]

    @property
    def size(self) -> int:
        """Bytes the stub measures: VirtualSize (SizeOfRawData for the rare VirtualSize 0)."""
        return self.virtual_size if self.virtual_size else self.raw_size


@dataclass(frozen=True)
class UkiLayout:
    """The layout of a built (or read) UKI. ``sections`` are in section-table order."""

    path: str
    size: int
    time_date_stamp: int
    section_alignment: int
    file_alignment: int
    size_of_image: int
    sections: tuple[UkiSection, ...]

    def section(self, name: str) -> UkiSection | None:
        """The first section called ``name`` or None."""
        return next((s for s in self.sections if s.name == name), None)

    def section_digests(self) -> dict[str, UkiSection]:
        """``{name: UkiSection}``, the first section of each name, in section-table order.

        Each value has ``size`` and ``digests``, so the mapping is what
        :func:`image_builder.measure.pcr11.predict_pcr11` takes (its ``MeasuredSection`` protocol;
        systemd-stub measures the first section of a name, uki-verity.md §1.2).
        """
        out: dict[str, UkiSection] = {}
        for s in self.sections:
            out.setdefault(s.name, s)
        return out


# ----------------------------------------------------------------------------------------- helpers
def _round_up(x: int, align: int) -> int:
    return (x + align - 1) // align * align if align else x


def _file_size(path: Path, what: str) -> int:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise TeeformError(f"cannot read {what}: {exc.strerror}", path=path) from exc
    if not os.path.isfile(path):
        raise TeeformError(f"{what} is not a regular file", path=path)
    return st.st_size


_UNAME_RE = re.compile(r"(?P<version>[a-z0-9._-]+) \([^ )]+\) (?:#.*)")


def kernel_uname(linux: os.PathLike[str] | str) -> bytes | None:
    """Return the ``uname -r`` string of an x86 bzImage as bytes, or None if it cannot be found.

    Same method as ukify's ``Uname.scrape_x86`` (254.26): the real-mode header magic ``HdrS`` at
    0x202, the u16 ``kernel_version`` pointer at 0x20E, the NUL-terminated version text at
    0x200 + pointer, matched against ``<version> (<builder>) #...`` (Linux Documentation/x86/boot.rst).
    """
    try:
        with open(linux, "rb") as fh:
            fh.seek(0x202)
            if fh.read(4) != b"HdrS":
                return None
            fh.seek(0x20E)
            (ptr,) = struct.unpack("<H", fh.read(2))
            fh.seek(0x200 + ptr)
            text = fh.read(128).split(b"\0", 1)[0].decode("ascii", "replace")
    except (OSError, struct.error):
        return None
    m = _UNAME_RE.match(text)
    return m.group("version").encode() if m else None


def _sbat_lines_of_pe(path: Path) -> list[str]:
    """The non-header lines of every valid ``.sbat`` section of PE file ``path`` ([] if not a PE)."""
    try:
        hdr = read_pe_headers(path)
    except TeeformError:
        return []  # ukify: "is not a valid PE file, not extracting SBAT section"
    from teeform.safeload import open_regular

    lines: list[str] = []
    with open_regular(path, what="PE image") as fh:
        for sec in hdr.sections:
            if sec.name != ".sbat":
                continue
            # pefile get_data(): SizeOfRawData bytes, clipped to the file; then rstrip(NUL).
            if sec.size_of_raw_data > MAX_SBAT:
                raise TeeformError(f".sbat section is {sec.size_of_raw_data} bytes, over the {MAX_SBAT}-byte limit",
                                   path=path, field=".sbat")
            fh.seek(sec.pointer_to_raw_data)
            raw = fh.read(sec.size_of_raw_data)
            try:
                split = raw.rstrip(b"\0").decode("utf-8").splitlines()
            except UnicodeDecodeError as exc:
                raise TeeformError(".sbat section is not UTF-8 text", path=path, field=".sbat") from exc
            if not split or not split[0].startswith("sbat,"):
                continue
            lines += split[1:]
    return lines


def merge_sbat(stub: Path, linux: Path, sbat: bytes | None = None) -> bytes:
    """Return the merged ``.sbat`` content ukify writes (254.26 / 257 ``merge_sbat``).

    ``"sbat,1,SBAT Version,...\\n"`` + the stub's lines + the kernel's lines + the lines of
    ``sbat`` (default :data:`UKIFY_DEFAULT_SBAT`), each source without its ``sbat,`` header line,
    joined with ``\\n``, then ``"\\n\\0"``. The trailing NUL is part of the section (and of PCR 11
    on 254+ stubs; uki-verity.md §1.1).

    Raises:
        TeeformError: ``sbat`` is not UTF-8 or does not start with an ``sbat,`` line.
    """
    lines = _sbat_lines_of_pe(stub) + _sbat_lines_of_pe(linux)
    text = UKIFY_DEFAULT_SBAT if sbat is None else None
    if text is None:
        try:
            text = sbat.decode("utf-8")  # type: ignore[union-attr]
        except UnicodeDecodeError as exc:
            raise TeeformError("SBAT text is not UTF-8", field="sbat") from exc
    split = text.splitlines()
    if not split or not split[0].startswith("sbat,"):
        raise TeeformError("SBAT text must start with an 'sbat,1,SBAT Version,...' line", field="sbat",
                           hint="see https://github.com/rhboot/shim/blob/main/SBAT.md")
    lines += split[1:]
    return (SBAT_HEADER + "\n".join(lines) + "\n\0").encode("utf-8")


# ------------------------------------------------------------------------------------- the layout
@dataclass
class _Sec:
    """Mutable section record used while laying out (mirrors pefile's SectionStructure fields)."""

    name: str
    vs: int
    va: int
    raw: int
    ptr: int
    chars: int
    hdr_off: int
    origin: str = "stub"
    source: Path | None = None  # streamed content for added sections
    data: bytes | None = None   # in-memory content for small added/replaced sections


def _patch(buf: bytearray, off: int, fmt: str, *values: int | bytes) -> None:
    """``struct.pack_into(fmt, buf, off, *values)``: integers, and bytes for ``s`` fields (section names)."""
    struct.pack_into(fmt, buf, off, *values)


def _prepare_stub(stub: Path) -> tuple[bytearray, PeHeaders, list[_Sec]]:
    """Steps 1-2 of the module docstring: strip the symbol table, realign raw data, pad SizeOfHeaders."""
    from teeform.safeload import read_limited

    _file_size(stub, "systemd-stub")
    data = bytearray(read_limited(stub, MAX_STUB_SIZE, what="systemd-stub"))
    hdr = parse_pe_headers(bytes(data), path=stub)
    fa = hdr.file_alignment
    if fa == 0 or hdr.section_alignment == 0:
        raise TeeformError("FileAlignment/SectionAlignment is 0", path=stub)
    # PE Format, "Optional Header Windows-Specific Fields": FileAlignment "should be a power of 2
    # between 512 and 64 K"; realigning with a huge one would allocate gigabytes of padding.
    if fa & (fa - 1) or not 512 <= fa <= 0x10000:
        raise TeeformError(f"FileAlignment {fa:#x} is not a power of two in 512..64 KiB", path=stub,
                           field="FileAlignment")
    for ps in hdr.sections:
        if ps.pointer_to_raw_data + ps.size_of_raw_data > len(data):
            raise TeeformError(f"section {ps.name} extends beyond the end of the file", path=stub, field=ps.name)
    # 1. COFF symbol table (+ string table) at the end of the file.
    symptr = hdr.pointer_to_symbol_table
    if symptr:
        symsize = 18 * hdr.number_of_symbols
        if symptr + symsize + 4 <= len(data):
            (strsize,) = struct.unpack_from("<I", data, symptr + symsize)
            symsize += strsize
        if symptr + symsize == len(data):
            del data[symptr:]
            # ukify also assigns pe.FILE_HEADER.IMAGE_FILE_LOCAL_SYMS_STRIPPED = True, but pefile does not
            # write flag attributes back into Characteristics, so the field stays unchanged (checked
            # against ukify 254 + pefile 2023.2.7 and the ukify 257 TV-2 output).
            _patch(data, hdr.coff_offset + 8, "<II", 0, 0)
    secs = [_Sec(s.name, s.virtual_size, s.virtual_address, s.size_of_raw_data, s.pointer_to_raw_data,
                 s.characteristics, s.header_offset) for s in hdr.sections]
    # 2. Realign raw data (ukify: "Old stubs might have been stripped, leading to unaligned raw data").
    for i, s in enumerate(secs):
        oldp, oldsz = s.ptr, s.raw
        s.ptr, s.raw = _round_up(oldp, fa), _round_up(oldsz, fa)
        padp, padsz = s.ptr - oldp, s.raw - oldsz
        for later in secs[i + 1:]:
            later.ptr += padp + padsz
        if padp or padsz:
            data[oldp:oldp + oldsz] = bytes(padp) + data[oldp:oldp + oldsz] + bytes(padsz)
    soh = _round_up(hdr.size_of_headers, fa)
    if hdr.cert_table[0] != 0:
        raise TeeformError("the systemd-stub is signed (it has a Certificate Table); ukify refuses signed stubs",
                           path=stub, hint="use the unsigned linuxx64.efi.stub and sign the finished UKI")
    _patch(data, hdr.optional_offset + 60, "<I", soh)
    return data, hdr, secs


def _plan(inputs: UkiInputs) -> tuple[bytearray, PeHeaders, list[_Sec], int, int]:
    """Compute the complete layout without writing anything. Returns (stub bytes, stub headers,
    sections, number of original sections, final file length)."""
    if inputs.time_date_stamp is not None and not 0 <= inputs.time_date_stamp < 1 << 32:
        raise TeeformError("time_date_stamp must fit in 32 bits", field="time_date_stamp")
    linux_size = _file_size(inputs.linux, "kernel (.linux)")
    if linux_size == 0:
        raise TeeformError("the kernel file is empty", path=inputs.linux)
    initrd_size = _file_size(inputs.initrd, "initrd (.initrd)") if inputs.initrd is not None else 0
    data, hdr, secs = _prepare_stub(inputs.stub)
    fa, sa = hdr.file_alignment, hdr.section_alignment
    soh = _round_up(hdr.size_of_headers, fa)
    sbat = merge_sbat(inputs.stub, inputs.linux, inputs.sbat)

    small = [(".osrel", inputs.osrel), (".cmdline", inputs.cmdline), (".uname", inputs.uname)]
    new: list[tuple[str, int, Path | None, bytes | None]] = [
        (name, len(content), None, content) for name, content in small if content
    ]
    linux_entry = (".linux", linux_size, inputs.linux, None)
    initrd_entry = [(".initrd", initrd_size, inputs.initrd, None)] if inputs.initrd is not None and initrd_size else []
    sbat_entry = (".sbat", len(sbat), None, sbat)
    if inputs.section_order == SectionOrder.UKIFY_257:
        new += [linux_entry, *initrd_entry, sbat_entry]
    elif inputs.section_order == SectionOrder.UKIFY_254:
        new += [*initrd_entry, sbat_entry, linux_entry]
    else:  # pragma: no cover - enum exhausted
        raise TeeformError(f"unknown section order {inputs.section_order!r}")

    n_orig = len(secs)
    size_init = hdr.size_of_initialized_data
    file_len = len(data)
    for name, length, source, content in new:
        last = secs[-1]
        hdr_off = last.hdr_off + PE_SECTION_HEADER_SIZE
        if hdr_off + PE_SECTION_HEADER_SIZE > soh:
            raise TeeformError(f"not enough header space in the stub to add section {name}", path=inputs.stub,
                               hint="this stub has too few free section-header slots (uki-verity.md §3)")
        raw = _round_up(length, fa)
        chars = IMAGE_SCN_MEM_READ | (IMAGE_SCN_CNT_CODE if name == ".linux" else IMAGE_SCN_CNT_INITIALIZED_DATA)
        for s in secs[:n_orig]:
            if s.name == name:  # 4. replace in place (.sbat)
                if length > s.raw:
                    raise TeeformError(f"{name} ({length} bytes) does not fit into the stub's {name} section "
                                       f"({s.raw} bytes)", path=inputs.stub, field=name)
                # ukify sets SizeOfRawData to round_up(length); equal to s.raw whenever the data keeps
                # its FileAlignment block count. We keep s.raw so later offsets stay valid otherwise.
                s.vs, s.data, s.origin = length, content, "replaced"
                break
        else:
            va = _round_up(last.va + last.vs, sa)
            ptr = _round_up(file_len, fa)
            secs.append(_Sec(name, length, va, raw, ptr, chars, hdr_off, "added", source, content))
            file_len = ptr + raw
            size_init += length
    if size_init >= 1 << 32 or file_len >= 1 << 32:
        raise TeeformError("the UKI would exceed 4 GiB, which PE/COFF cannot describe", path=inputs.initrd)

    # Headers: NumberOfSections, SizeOfInitializedData, CheckSum, SizeOfImage, TimeDateStamp, section table.
    _patch(data, hdr.coff_offset + 2, "<H", len(secs))
    if inputs.time_date_stamp is not None:
        _patch(data, hdr.coff_offset + 4, "<I", inputs.time_date_stamp)
    _patch(data, hdr.optional_offset + 8, "<I", size_init)
    _patch(data, hdr.checksum_offset, "<I", 0)
    _patch(data, hdr.optional_offset + 56, "<I", _round_up(secs[-1].va + secs[-1].vs, sa))
    for s in secs:
        if s.origin == "added":  # Name, VirtualSize, VirtualAddress, SizeOfRawData, PointerToRawData, 0 x4, Characteristics
            _patch(data, s.hdr_off, "<8sIIIIIIHHI", s.name.encode("ascii"), s.vs, s.va, s.raw, s.ptr, 0, 0, 0, 0, s.chars)
        else:
            _patch(data, s.hdr_off + 8, "<I", s.vs)
            _patch(data, s.hdr_off + 16, "<II", s.raw, s.ptr)
    for s in secs:
        if s.origin == "replaced":
            assert s.data is not None
            data[s.ptr:s.ptr + s.raw] = s.data + bytes(s.raw - len(s.data))
    return data, hdr, secs, n_orig, file_len


def _digest_all(chunks: Sequence[bytes] | Any) -> tuple[dict[str, str], int]:
    hs = [hashlib.new(a) for a in SECTION_DIGESTS]
    n = 0
    for c in chunks:
        n += len(c)
        for h in hs:
            h.update(c)
    return {a: h.hexdigest() for a, h in zip(SECTION_DIGESTS, hs, strict=True)}, n


def _copy_stream(src: Path, length: int, out: BinaryIO) -> dict[str, str]:
    hs = [hashlib.new(a) for a in SECTION_DIGESTS]
    remaining = length
    try:
        with open(src, "rb") as fh:
            while remaining:
                chunk = fh.read(min(CHUNK, remaining))
                if not chunk:
                    break
                for h in hs:
                    h.update(chunk)
                out.write(chunk)
                remaining -= len(chunk)
            if remaining or fh.read(1):
                raise TeeformError("file changed size while the UKI was being written", path=src)
    except OSError as exc:
        raise TeeformError(f"cannot read: {exc.strerror}", path=src) from exc
    return {a: h.hexdigest() for a, h in zip(SECTION_DIGESTS, hs, strict=True)}


def build_uki(inputs: UkiInputs, out_path: os.PathLike[str] | str) -> UkiLayout:
    """Assemble a UKI from ``inputs`` into ``out_path`` (atomically) and return its layout.

    The kernel and initrd are streamed in :data:`teeform.fsutil.CHUNK` pieces and hashed on the
    way; only the stub (a few hundred KiB) is held in memory. Same inputs -> byte-identical output.

    Raises:
        TeeformError: a missing/unreadable input, a signed or malformed stub, no free header slot,
            a merged .sbat that does not fit the stub's .sbat, or bad SBAT text. Nothing is written then.
    """
    data, hdr, secs, n_orig, file_len = _plan(inputs)
    digests: dict[int, dict[str, str]] = {}
    with atomic_output(out_path) as out:
        out.write(data)
        pos = len(data)
        for i, s in enumerate(secs):
            if s.origin != "added":
                continue
            out.write(bytes(s.ptr - pos))
            if s.source is not None:
                digests[i] = _copy_stream(s.source, s.vs, out)
            else:
                assert s.data is not None
                digests[i], _ = _digest_all([s.data])
                out.write(s.data)
            out.write(bytes(s.raw - s.vs))
            pos = s.ptr + s.raw
        assert pos == file_len == out.tell()
    sections = []
    for i, s in enumerate(secs):
        if i not in digests:
            content = bytes(data[s.ptr:s.ptr + (min(s.vs, s.raw) if s.vs else s.raw)])
            digests[i], _ = _digest_all([content])
        sections.append(UkiSection(s.name, s.va, s.vs, s.ptr, s.raw, s.origin, digests[i]))
    tds = inputs.time_date_stamp if inputs.time_date_stamp is not None else hdr.time_date_stamp
    return UkiLayout(os.fspath(out_path), file_len, tds, hdr.section_alignment, hdr.file_alignment,
                     _round_up(secs[-1].va + secs[-1].vs, hdr.section_alignment), tuple(sections))


def _in_memory_bytes(fh: BinaryIO, s: Any) -> Any:
    """Yield the section as the PE loader leaves it in memory: file data, then zero fill up to VirtualSize."""
    yield from iter_section_data(fh, s)
    fill = s.virtual_size - s.data_size if s.virtual_size else 0
    while fill > 0:
        n = min(fill, CHUNK)
        yield bytes(n)
        fill -= n


def read_uki_layout(path: os.PathLike[str] | str) -> UkiLayout:
    """Read the section table of the PE file ``path`` and digest every section's content (streamed).

    Work is bounded by the file (never by header claims): every section's file data must lie inside
    the file, the sections' file data together may not exceed the file size (each byte of a
    non-overlapping layout is hashed once), and the zero fill of all sections together is at most
    :data:`MAX_ZERO_FILL` bytes.

    Raises:
        TeeformError: unreadable file (or not a regular file), not a PE image, section data beyond the
            end of the file, or more data/zero fill than those bounds.
    """
    from teeform.safeload import open_regular

    try:
        with open_regular(path, what="PE image") as fh:
            hdr = read_pe_headers_fh(fh, path=path)
            size = fh.seek(0, os.SEEK_END)
            sections = []
            data_total = sum(s.data_size for s in hdr.sections)
            fill_total = sum(s.virtual_size - s.data_size for s in hdr.sections if s.virtual_size)
            if data_total > size:
                raise TeeformError(f"the sections claim {data_total} bytes of file data, more than the "
                                   f"{size}-byte file (overlapping sections)", path=path, field="section table")
            if fill_total > MAX_ZERO_FILL:
                raise TeeformError(f"the sections' VirtualSize exceeds their file data by {fill_total} bytes in "
                                   f"total, over the {MAX_ZERO_FILL}-byte zero-fill limit", path=path,
                                   field="section table")
            for s in hdr.sections:
                if s.pointer_to_raw_data + s.data_size > size:
                    raise TeeformError(f"section {s.name} extends beyond the end of the file", path=path, field=s.name)
                d, _ = _digest_all(_in_memory_bytes(fh, s))
                sections.append(UkiSection(s.name, s.virtual_address, s.virtual_size, s.pointer_to_raw_data,
                                           s.size_of_raw_data, "file", d))
    except OSError as exc:
        raise TeeformError(f"cannot read: {exc.strerror}", path=path) from exc
    return UkiLayout(os.fspath(path), size, hdr.time_date_stamp, hdr.section_alignment, hdr.file_alignment,
                     hdr.size_of_image, tuple(sections))
