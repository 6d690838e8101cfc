"""Minimal, streaming PE/COFF header reader (the parts UKI assembly and Authenticode need).

Public API::

    PE_SECTION_HEADER_SIZE = 40
    PeSection                                   # frozen: one section header
    PeHeaders                                   # frozen: DOS/COFF/optional header facts + sections
    parse_pe_headers(head: bytes, *, path=None) -> PeHeaders
    read_pe_headers(path) -> PeHeaders           # reads only the header bytes
    iter_section_data(fh, section, length=None) -> Iterator[bytes]   # streamed, CHUNK pieces
    read_section_bytes(path, name, *, max_size=16 MiB) -> bytes | None  # small sections only

Layout facts (all little-endian), from the Microsoft PE Format specification
(https://learn.microsoft.com/windows/win32/debug/pe-format): "MS-DOS Stub" (``e_lfanew`` u32 at
0x3C), "Signature" (``PE\\0\\0``), "COFF File Header" (20 bytes), "Optional Header Standard Fields"
(magic 0x10B = PE32, 0x20B = PE32+), "Optional Header Windows-Specific Fields" (CheckSum at optional
header + 64 for both formats), "Optional Header Data Directories" (start at optional header + 96
for PE32 / + 112 for PE32+, 8 bytes each; index 4 = Certificate Table, whose VirtualAddress is a
*file offset*), "Section Table" (40-byte headers right after the optional header).

We parse by hand (instead of pefile) so that headers of a multi-GiB UKI can be read without loading
the file, and so that the assembler controls every byte it writes. Tests cross-check against pefile.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from teeform.errors import TeeformError
from teeform.fsutil import CHUNK

PE_SECTION_HEADER_SIZE = 40
COFF_HEADER_SIZE = 20
PE32_MAGIC = 0x10B
PE32PLUS_MAGIC = 0x20B
IMAGE_DIRECTORY_ENTRY_SECURITY = 4
#: Largest header area we are willing to read (the spec caps nothing; real stubs use 0x400-0x1000).
MAX_HEADER_BYTES = 1 << 20
#: Most sections accepted (PE Format, "COFF File Header": "the Windows loader limits the number of
#: sections to 96"; systemd-stub has 8, a UKI ~16).
MAX_SECTIONS = 96
#: Smallest optional header that holds NumberOfRvaAndSizes (PE Format, "Optional Header
#: Windows-Specific Fields": offset 92 in PE32, 108 in PE32+, 4 bytes).
_MIN_OPTIONAL = {PE32_MAGIC: 96, PE32PLUS_MAGIC: 112}


@dataclass(frozen=True)
class PeSection:
    """One 40-byte section header (PE Format, "Section Table (Section Headers)").

    Attributes:
        name: the 8-byte name with trailing NULs removed, decoded as ASCII (e.g. ``".linux"``).
        virtual_size: ``VirtualSize`` (bytes in memory; systemd-stub measures this many bytes).
        virtual_address: ``VirtualAddress`` (RVA, relative to ImageBase).
        size_of_raw_data: ``SizeOfRawData`` (bytes in the file, a multiple of FileAlignment).
        pointer_to_raw_data: ``PointerToRawData`` (file offset).
        characteristics: ``Characteristics`` flags.
        header_offset: file offset of this 40-byte header.
    """

    name: str
    virtual_size: int
    virtual_address: int
    size_of_raw_data: int
    pointer_to_raw_data: int
    characteristics: int
    header_offset: int

    @property
    def data_size(self) -> int:
        """Bytes of section content present in the file: ``min(VirtualSize, SizeOfRawData)``.

        This is what ``objcopy -O binary --only-section`` / ukify ``inspect`` extract and what
        ``systemd-measure --<section>=FILE`` must be given (uki-verity.md §1.2: the stub measures
        VirtualSize bytes; ukify always writes VirtualSize <= SizeOfRawData).
        """
        return min(self.virtual_size, self.size_of_raw_data) if self.virtual_size else self.size_of_raw_data


@dataclass(frozen=True)
class PeHeaders:
    """The header facts of a PE image (offsets are file offsets, sizes in bytes).

    Attributes:
        pe_offset: ``e_lfanew`` (offset of ``PE\\0\\0``).
        coff_offset: offset of the COFF file header (= pe_offset + 4).
        machine, number_of_sections, time_date_stamp, pointer_to_symbol_table, number_of_symbols,
        size_of_optional_header, characteristics: COFF file header fields.
        optional_offset: offset of the optional header.
        magic: 0x10B (PE32) or 0x20B (PE32+).
        image_base, section_alignment, file_alignment, size_of_image, size_of_headers, checksum,
        dll_characteristics, size_of_initialized_data, number_of_rva_and_sizes: optional header fields.
        checksum_offset: file offset of CheckSum (optional header + 64).
        cert_dir_offset: file offset of the Certificate Table data-directory entry, or None when the
            image has fewer than 5 data directories.
        cert_table: ``(file offset, size)`` of the attribute certificate table ((0, 0) if unsigned).
        section_table_offset: offset of the first section header.
        sections: the section headers in table order.
    """

    pe_offset: int
    coff_offset: int
    machine: int
    number_of_sections: int
    time_date_stamp: int
    pointer_to_symbol_table: int
    number_of_symbols: int
    size_of_optional_header: int
    characteristics: int
    optional_offset: int
    magic: int
    size_of_initialized_data: int
    image_base: int
    section_alignment: int
    file_alignment: int
    size_of_image: int
    size_of_headers: int
    checksum: int
    dll_characteristics: int
    number_of_rva_and_sizes: int
    checksum_offset: int
    cert_dir_offset: int | None
    cert_table: tuple[int, int]
    section_table_offset: int
    sections: tuple[PeSection, ...]

    def section(self, name: str) -> PeSection | None:
        """Return the first section called ``name`` (e.g. ``".sbat"``), or None."""
        return next((s for s in self.sections if s.name == name), None)


def _bad(msg: str, path: os.PathLike[str] | str | None) -> TeeformError:
    return TeeformError(f"not a valid PE/COFF image: {msg}", path=path,
                        hint="pass an EFI binary (systemd-stub, UKI or bzImage with EFI stub)")


def parse_pe_headers(head: bytes, *, path: os.PathLike[str] | str | None = None) -> PeHeaders:
    """Parse the PE headers contained in ``head`` (the first bytes of the file).

    ``head`` must cover the DOS header, COFF header, optional header and the whole section table.

    Limits: the optional header must be long enough for every field read (96 bytes for PE32, 112
    for PE32+, up to NumberOfRvaAndSizes) and at most :data:`MAX_SECTIONS` sections are accepted.

    Raises:
        TeeformError: bad magic, truncated headers, unknown optional-header magic, too many sections
            (naming ``path``).
    """
    if len(head) < 0x40 or head[:2] != b"MZ":
        raise _bad("missing 'MZ' DOS signature", path)
    (pe_off,) = struct.unpack_from("<I", head, 0x3C)
    if pe_off + 4 + COFF_HEADER_SIZE > len(head) or head[pe_off:pe_off + 4] != b"PE\0\0":
        raise _bad("missing 'PE\\0\\0' signature at e_lfanew", path)
    coff = pe_off + 4
    (machine, nsec, tds, symptr, nsym, opt_size, chars) = struct.unpack_from("<HHIIIHH", head, coff)
    opt = coff + COFF_HEADER_SIZE
    if opt + opt_size > len(head) or opt_size < 2:
        raise _bad("truncated optional header", path)
    (magic,) = struct.unpack_from("<H", head, opt)
    if magic in _MIN_OPTIONAL and opt_size < _MIN_OPTIONAL[magic]:
        raise _bad(f"truncated optional header: SizeOfOptionalHeader is {opt_size}, a "
                   f"{'PE32+' if magic == PE32PLUS_MAGIC else 'PE32'} optional header needs {_MIN_OPTIONAL[magic]}", path)
    if nsec > MAX_SECTIONS:
        raise _bad(f"NumberOfSections is {nsec}, over the loader's limit of {MAX_SECTIONS}", path)
    if magic == PE32_MAGIC:
        image_base = struct.unpack_from("<I", head, opt + 28)[0]
        nrva_off, dd_off = opt + 92, opt + 96
    elif magic == PE32PLUS_MAGIC:
        image_base = struct.unpack_from("<Q", head, opt + 24)[0]
        nrva_off, dd_off = opt + 108, opt + 112
    else:
        raise _bad(f"unknown optional header magic {magic:#x}", path)
    if nrva_off + 4 > opt + opt_size:
        raise _bad("optional header too short", path)
    size_init = struct.unpack_from("<I", head, opt + 8)[0]
    sect_align, file_align = struct.unpack_from("<II", head, opt + 32)
    size_of_image, size_of_headers, checksum = struct.unpack_from("<III", head, opt + 56)
    (dll_chars,) = struct.unpack_from("<H", head, opt + 70)
    (nrva,) = struct.unpack_from("<I", head, nrva_off)
    cert_dir_offset: int | None = None
    cert_table = (0, 0)
    if nrva > IMAGE_DIRECTORY_ENTRY_SECURITY:
        cert_dir_offset = dd_off + 8 * IMAGE_DIRECTORY_ENTRY_SECURITY
        if cert_dir_offset + 8 > opt + opt_size:
            raise _bad("data directories run past the optional header", path)
        cert_table = struct.unpack_from("<II", head, cert_dir_offset)
    sec_off = opt + opt_size
    if sec_off + nsec * PE_SECTION_HEADER_SIZE > len(head):
        raise _bad("truncated section table", path)
    sections = []
    for i in range(nsec):
        off = sec_off + i * PE_SECTION_HEADER_SIZE
        raw_name, vs, va, raw_size, raw_ptr, _, _, _, _, sc = struct.unpack_from("<8sIIIIIIHHI", head, off)
        name = raw_name.rstrip(b"\0").decode("ascii", "replace")
        sections.append(PeSection(name, vs, va, raw_size, raw_ptr, sc, off))
    return PeHeaders(
        pe_offset=pe_off, coff_offset=coff, machine=machine, number_of_sections=nsec,
        time_date_stamp=tds, pointer_to_symbol_table=symptr, number_of_symbols=nsym,
        size_of_optional_header=opt_size, characteristics=chars, optional_offset=opt, magic=magic,
        size_of_initialized_data=size_init, image_base=image_base, section_alignment=sect_align,
        file_alignment=file_align, size_of_image=size_of_image, size_of_headers=size_of_headers,
        checksum=checksum, dll_characteristics=dll_chars, number_of_rva_and_sizes=nrva,
        checksum_offset=opt + 64, cert_dir_offset=cert_dir_offset, cert_table=cert_table,
        section_table_offset=sec_off, sections=tuple(sections),
    )


def read_pe_headers_fh(fh: BinaryIO, *, path: os.PathLike[str] | str | None = None) -> PeHeaders:
    """Like :func:`read_pe_headers` for an open binary file (position is changed)."""
    fh.seek(0)
    head = fh.read(4096)
    if len(head) >= 0x40 and head[:2] == b"MZ":
        (pe_off,) = struct.unpack_from("<I", head, 0x3C)
        # Re-read enough to cover COFF + the largest optional header + up to 96 section headers,
        # or SizeOfHeaders when the first parse tells us it is bigger.
        need = pe_off + 4 + COFF_HEADER_SIZE + 0xFFFF + 96 * PE_SECTION_HEADER_SIZE
        if need > len(head):
            fh.seek(0)
            head = fh.read(min(need, MAX_HEADER_BYTES))
    hdr = parse_pe_headers(head, path=path)
    return hdr


def read_pe_headers(path: os.PathLike[str] | str) -> PeHeaders:
    """Read and parse only the header area of the PE file ``path`` (never the section data).

    Raises:
        TeeformError: unreadable file or not a PE image.
    """
    try:
        with open(path, "rb") as fh:
            return read_pe_headers_fh(fh, path=path)
    except OSError as exc:
        raise TeeformError(f"cannot read: {exc.strerror}", path=path) from exc


def iter_section_data(fh: BinaryIO, section: PeSection, length: int | None = None) -> Iterator[bytes]:
    """Yield ``length`` bytes (default :attr:`PeSection.data_size`) of ``section`` from ``fh``.

    Reads in :data:`teeform.fsutil.CHUNK` pieces. Raises TeeformError if the file is shorter.
    """
    remaining = section.data_size if length is None else length
    fh.seek(section.pointer_to_raw_data)
    while remaining > 0:
        chunk = fh.read(min(CHUNK, remaining))
        if not chunk:
            raise TeeformError(f"section {section.name} is truncated (file ends early)",
                               path=getattr(fh, "name", None), field=section.name)
        remaining -= len(chunk)
        yield chunk


def read_section_bytes(path: os.PathLike[str] | str, name: str, *, max_size: int = 16 << 20,
                       raw: bool = False) -> bytes | None:
    """Return the content of the small section ``name`` of PE file ``path`` (None if absent).

    Args:
        raw: return all ``SizeOfRawData`` bytes (padding included) instead of ``data_size`` bytes.
        max_size: refuse larger sections (use :func:`iter_section_data` for those).

    Raises:
        TeeformError: not a PE file, or the section exceeds ``max_size``.
    """
    try:
        with open(path, "rb") as fh:
            hdr = read_pe_headers_fh(fh, path=path)
            sec = hdr.section(name)
            if sec is None:
                return None
            n = sec.size_of_raw_data if raw else sec.data_size
            if n > max_size:
                raise TeeformError(f"section {name} is {n} bytes, larger than {max_size}", path=path, field=name)
            return b"".join(iter_section_data(fh, sec, n))
    except OSError as exc:
        raise TeeformError(f"cannot read: {exc.strerror}", path=path) from exc
