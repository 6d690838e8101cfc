"""PE Authenticode image digest (what UEFI firmware measures into PCR 4 / RTMR1, and what db/dbx hold).

Public API::

    authenticode_digest(path, algorithms=("sha256",)) -> dict[str, str]   # {"sha256": hex, ...}
    authenticode_digest_fh(fh, algorithms, *, path=None) -> dict[str, str]

Algorithm: Microsoft, "Windows Authenticode Portable Executable Signature Format", section
"Calculating the PE Image Hash" (also restated in shared/reference/uki-verity.md §4; the same
steps are implemented by EDK2 ``DxeTpm2MeasureBootLib`` / ``HashPeImage`` and by pesign)::

    1. hash file bytes [0, CheckSum)                       (CheckSum = optional header + 64)
    2. skip the 4 CheckSum bytes
    3. hash [CheckSum + 4, Certificate Table entry)        (data directory 4, 8 bytes)
    4. skip the 8-byte Certificate Table entry
    5. hash [entry + 8, SizeOfHeaders);  SUM := SizeOfHeaders
    6. for each section with SizeOfRawData > 0, sorted by PointerToRawData:
         hash SizeOfRawData bytes at PointerToRawData;  SUM += SizeOfRawData
    7. if file_size > SUM + cert_table_size: hash [SUM, file_size - cert_table_size)

Digests are lowercase hex. The file is streamed in :data:`teeform.fsutil.CHUNK` pieces; only the
header area is held in memory. Images without a Certificate Table directory entry (fewer than five
data directories) skip step 4 (as EDK2 does).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import BinaryIO

from image_builder.formats.pe import read_pe_headers_fh
from teeform.errors import TeeformError
from teeform.fsutil import CHUNK

SUPPORTED_ALGORITHMS = ("sha1", "sha256", "sha384", "sha512")


def authenticode_digest(path: os.PathLike[str] | str, algorithms: Sequence[str] = ("sha256",)) -> dict[str, str]:
    """Return the Authenticode digest of the PE file ``path`` for each of ``algorithms``.

    Args:
        algorithms: hashlib names out of :data:`SUPPORTED_ALGORITHMS`.

    Returns:
        ``{algorithm: lowercase hex}``.

    Raises:
        TeeformError: unreadable file, not a PE image, or section/certificate data outside the file.
    """
    try:
        with open(path, "rb") as fh:
            return authenticode_digest_fh(fh, algorithms, path=path)
    except OSError as exc:
        raise TeeformError(f"cannot read: {exc.strerror}", path=path) from exc


def authenticode_digest_fh(fh: BinaryIO, algorithms: Sequence[str] = ("sha256",), *,
                           path: os.PathLike[str] | str | None = None) -> dict[str, str]:
    """:func:`authenticode_digest` for an already open, seekable binary file."""
    for a in algorithms:
        if a not in SUPPORTED_ALGORITHMS:
            raise TeeformError(f"unsupported Authenticode digest {a!r}", hint=f"use one of {SUPPORTED_ALGORITHMS}")
    hdr = read_pe_headers_fh(fh, path=path)
    fh.seek(0, os.SEEK_END)
    file_size = fh.tell()
    hashers = [hashlib.new(a) for a in algorithms]

    def update(data: bytes) -> None:
        for h in hashers:
            h.update(data)

    def hash_range(start: int, end: int) -> None:
        if end < start or end > file_size:
            raise TeeformError(f"PE data range {start:#x}..{end:#x} lies outside the file ({file_size:#x} bytes)",
                               path=path)
        fh.seek(start)
        remaining = end - start
        while remaining:
            chunk = fh.read(min(CHUNK, remaining))
            if not chunk:
                raise TeeformError("file ended while hashing", path=path)
            update(chunk)
            remaining -= len(chunk)

    if hdr.size_of_headers > file_size or hdr.size_of_headers < hdr.checksum_offset + 4:
        raise TeeformError(f"SizeOfHeaders {hdr.size_of_headers:#x} is inconsistent with the file", path=path)
    # Steps 1-5: the headers minus CheckSum and the Certificate Table directory entry.
    hash_range(0, hdr.checksum_offset)
    if hdr.cert_dir_offset is not None:
        hash_range(hdr.checksum_offset + 4, hdr.cert_dir_offset)
        hash_range(hdr.cert_dir_offset + 8, hdr.size_of_headers)
    else:
        hash_range(hdr.checksum_offset + 4, hdr.size_of_headers)
    total = hdr.size_of_headers
    # Step 6: sections in file order.
    for sec in sorted((s for s in hdr.sections if s.size_of_raw_data > 0), key=lambda s: s.pointer_to_raw_data):
        hash_range(sec.pointer_to_raw_data, sec.pointer_to_raw_data + sec.size_of_raw_data)
        total += sec.size_of_raw_data
    # Step 7: trailing data (e.g. a COFF symbol table), excluding the attribute certificate table.
    cert_size = hdr.cert_table[1] if hdr.cert_table[0] else 0
    if file_size > total + cert_size:
        hash_range(total, file_size - cert_size)
    return {a: h.hexdigest() for a, h in zip(algorithms, hashers, strict=True)}
