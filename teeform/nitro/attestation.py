"""Parse an AWS Nitro Enclaves attestation document (COSE_Sign1 carrying a CBOR payload).

Format facts (all from ``shared/reference/eif-nitro.md``):

* §4.2: the document is a COSE_Sign1 (RFC 8152 §4.2): a CBOR array of 4 items, untagged in every real
  document, but CBOR tag 18 is accepted too (§8 item 3). Items: ``protected`` (bstr holding the CBOR map
  ``{1: -35}``, alg ES384), ``unprotected`` (map, empty in practice), ``payload`` (bstr), ``signature``
  (bstr, 96 bytes = raw ``r || s``, big-endian, P-384).
* NitroTPM documents (clouds.md §1.2) have the same COSE_Sign1 and payload, except that the PCR map
  is called ``nitrotpm_pcrs`` (exactly one of ``pcrs`` / ``nitrotpm_pcrs``; same bounds);
  :attr:`AttestationDocument.pcr_field` says which.
* §4.3: the payload is a CBOR map with text keys ``module_id`` (non-empty tstr), ``digest`` (tstr,
  only ``"SHA384"``), ``timestamp`` (uint, UTC milliseconds since the Unix epoch), ``pcrs`` (map uint
  0..31 -> bstr of 32/48/64 bytes, 1..32 entries), ``certificate`` (bstr, DER), ``cabundle`` (array of
  DER bstr, ``[ROOT, INTERM_1, ..., INTERM_N]``), ``public_key`` / ``user_data`` / ``nonce`` (bstr, or
  CBOR null / absent meaning "not supplied", §8 item 5). Size limits: ``public_key`` 1..1024 bytes,
  ``user_data`` and ``nonce`` 0..1024 bytes (the NSM CDDL; its prose says 512, §8 item 4, so 1024 is
  the accepting bound here); ``certificate`` and each ``cabundle`` entry 1..1024 bytes (NSM CDDL
  ``cert = bytes .size (1..1024)``).

Hostile input (every bound is checked before the bytes are decoded):

* the whole document is at most :data:`MAX_DOCUMENT_BYTES`; a file argument is read through
  :func:`teeform.safeload.read_limited` (regular files only, at most :data:`MAX_INPUT_BYTES`), so a
  directory, FIFO or ``/dev/zero`` is refused instead of read forever;
* the document, its protected header and its payload each pass
  :func:`teeform.nitro.cbor_guard.check_cbor` (RFC 8949 well-formedness, no tags but an outer 18, only
  integer/text map keys, no duplicate keys, nesting <= 16) before ``cbor2`` sees them;
* ``timestamp`` is at most :data:`MAX_TIMESTAMP_MS` (9999-12-31T23:59:59.999Z, Python's
  ``datetime.MAXYEAR``), so :attr:`AttestationDocument.time` cannot overflow.

The raw ``protected`` and ``payload`` byte strings are kept exactly as received: the signature is over
them (§4.2, "do not re-encode"). Nothing here checks signatures or certificates; see
:mod:`teeform.nitro.verify`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import io
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2

from teeform.errors import TeeformError
from teeform.nitro.cbor_guard import check_cbor
from teeform.safeload import read_limited

#: COSE algorithm identifier of ES384 (ECDSA P-384 with SHA-384), RFC 8152 §8.1; eif-nitro.md §4.2.
COSE_ALG_ES384 = -35
#: CBOR tag of COSE_Sign1 (RFC 8152 §2).
COSE_SIGN1_TAG = 18
#: Bytes of an ES384 COSE signature: raw r || s, 48 bytes each (eif-nitro.md §4.2).
ES384_SIGNATURE_LEN = 96
#: Largest document accepted (the NSM driver's response limit is 12288 bytes, eif-nitro.md §4.1; KMS
#: accepts up to 262144, §5.2). Anything larger is not an attestation document.
MAX_DOCUMENT_BYTES = 262144
#: Largest file or stdin input read: a document as base64 text (4/3 of the bytes) plus line breaks.
MAX_INPUT_BYTES = 2 * MAX_DOCUMENT_BYTES
#: Latest accepted ``timestamp`` (ms): 9999-12-31T23:59:59.999Z, the last instant ``datetime`` holds.
MAX_TIMESTAMP_MS = 253402300799999
#: Size bounds of a DER certificate in ``certificate`` / ``cabundle`` (NSM CDDL ``cert``).
CERT_MIN_BYTES, CERT_MAX_BYTES = 1, 1024

#: Payload key of the PCR map: Nitro Enclaves (eif-nitro.md §4.3) and NitroTPM (clouds.md §1.2, AWS EC2
#: User Guide "nitrotpm-attestation-document-validate": ``nitrotpm_pcrs: { + index => pcr }``).
PCRS_FIELD, NITROTPM_PCRS_FIELD = "pcrs", "nitrotpm_pcrs"

_PCR_LENGTHS = (32, 48, 64)
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


@dataclass(frozen=True)
class AttestationDocument:
    """A decoded Nitro attestation document (``eif-nitro.md`` §4.2-§4.3).

    Attributes:
        module_id: the enclave ID, e.g. ``i-020b6af9246d90e92-enc0183d09086c24190``.
        digest: the PCR hash algorithm name, always ``"SHA384"``.
        timestamp: UTC milliseconds since the Unix epoch (when the NSM produced the document).
        pcrs: PCR index -> raw value (48 bytes each for SHA-384).
        certificate: the DER leaf certificate whose key signed the COSE_Sign1.
        cabundle: DER certificates in document order ``[ROOT, INTERM_1, ..., INTERM_N]``.
        public_key / user_data / nonce: raw bytes, or None when absent or CBOR null.
        protected: the raw ``protected`` header bstr content (e.g. ``a1 01 38 22``).
        unprotected: the decoded unprotected header map (empty in practice).
        payload: the raw payload bstr content, exactly as signed.
        signature: the raw signature bstr content (96 bytes ``r || s`` for ES384).
        tagged: True when the COSE_Sign1 carried CBOR tag 18.
        alg: the ``alg`` (label 1) from the protected header, or None when absent.
        pcr_field: the payload key the PCRs came from: ``"pcrs"`` (Nitro Enclaves, eif-nitro.md §4.3)
            or ``"nitrotpm_pcrs"`` (NitroTPM, clouds.md §1.2; ``pcrs`` then holds the NitroTPM's SHA-384
            PCR bank, PCR 0-15, 16 and 23).
    """

    module_id: str
    digest: str
    timestamp: int
    pcrs: Mapping[int, bytes]
    certificate: bytes
    cabundle: tuple[bytes, ...]
    public_key: bytes | None
    user_data: bytes | None
    nonce: bytes | None
    protected: bytes
    unprotected: Mapping[Any, Any]
    payload: bytes
    signature: bytes
    tagged: bool
    alg: int | None
    pcr_field: str = "pcrs"

    @property
    def is_nitrotpm(self) -> bool:
        """True for a NitroTPM document (PCRs in ``nitrotpm_pcrs``), False for a Nitro Enclaves one."""
        return self.pcr_field == NITROTPM_PCRS_FIELD

    @property
    def time(self) -> _dt.datetime:
        """:attr:`timestamp` as an aware UTC datetime (millisecond precision)."""
        return _EPOCH + _dt.timedelta(milliseconds=self.timestamp)  # exact (no float division)

    def pcr_hex(self, index: int) -> str | None:
        """PCR ``index`` as lowercase hex, or None when the document has no such PCR."""
        v = self.pcrs.get(index)
        return v.hex() if v is not None else None


def _decode_one(data: bytes, what: str, source: str, fld: str | None = None, *, allow_tag: int | None = None) -> Any:
    """Decode exactly one CBOR item from ``data`` after :func:`~teeform.nitro.cbor_guard.check_cbor`
    (well-formed, no tags but ``allow_tag`` outermost, integer/text keys, no duplicates, no trailing bytes)."""
    check_cbor(data, source=source, what=what, fld=fld, allow_tag=allow_tag,
               truncated_hint="the file was probably cut off while copying; fetch the attestation document again")
    fp = io.BytesIO(data)
    try:
        item = cbor2.CBORDecoder(fp).decode()
    except cbor2.CBORDecodeEOF:
        raise TeeformError(
            f"{what} is truncated ({len(data)} bytes; the CBOR ends early)", path=source, field=fld,
            hint="the file was probably cut off while copying; fetch the attestation document again",
        ) from None
    except (cbor2.CBORError, ValueError, TypeError, OverflowError, RecursionError) as exc:  # defence in depth
        raise TeeformError(f"{what} is not valid CBOR: {exc}", path=source, field=fld) from None
    if fp.tell() != len(data):
        raise TeeformError(
            f"{what} has {len(data) - fp.tell()} trailing byte(s) after the CBOR item", path=source, field=fld
        )
    return item


def _opt_bytes(payload: Mapping[str, Any], key: str, lo: int, hi: int, source: str) -> bytes | None:
    v = payload.get(key)
    if v is None:
        return None
    if not isinstance(v, bytes):
        raise TeeformError(f"payload field {key!r} must be a byte string or null, got {type(v).__name__}", path=source, field=key)
    if not lo <= len(v) <= hi:
        raise TeeformError(f"payload field {key!r} must be {lo}..{hi} bytes, got {len(v)}", path=source, field=key)
    return v


def parse_attestation_document(data: bytes, *, source: str = "<attestation document>") -> AttestationDocument:
    """Decode a COSE_Sign1 Nitro attestation document from raw CBOR bytes.

    Args:
        data: the COSE_Sign1 bytes (first byte ``0x84`` untagged, or ``0xd2`` for tag 18).
        source: file name used in error messages.

    Returns:
        the decoded :class:`AttestationDocument` (no signature or certificate checks done).

    Raises:
        TeeformError: truncated or non-CBOR input, wrong COSE structure, or a payload field of the wrong
            type/size (the message names the field, e.g. ``payload field 'pcrs' must be a map of int -> bytes``).
    """
    if not data:
        raise TeeformError("attestation document is empty", path=source)
    if len(data) > MAX_DOCUMENT_BYTES:
        raise TeeformError(f"attestation document is {len(data)} bytes, more than {MAX_DOCUMENT_BYTES}", path=source)
    top = _decode_one(data, "attestation document", source, allow_tag=COSE_SIGN1_TAG)
    tagged = False
    if isinstance(top, cbor2.CBORTag):
        if top.tag != COSE_SIGN1_TAG:
            raise TeeformError(f"CBOR tag {top.tag} is not COSE_Sign1 (tag 18)", path=source)
        tagged, top = True, top.value
    if not isinstance(top, (list, tuple)) or len(top) != 4:
        got = f"an array of {len(top)} items" if isinstance(top, (list, tuple)) else type(top).__name__
        raise TeeformError(
            f"not a COSE_Sign1: expected a CBOR array of 4 items [protected, unprotected, payload, signature], got {got}",
            path=source,
        )
    protected, unprotected, payload, signature = top
    for name, value, typ in (("protected", protected, bytes), ("unprotected", unprotected, Mapping),
                             ("payload", payload, bytes), ("signature", signature, bytes)):
        if not isinstance(value, typ):
            want = "a byte string" if typ is bytes else "a map"
            raise TeeformError(f"COSE_Sign1 item {name!r} must be {want}, got {type(value).__name__}", path=source, field=name)

    alg: int | None = None
    if protected:
        hdr = _decode_one(protected, "protected header", source, "protected")
        if not isinstance(hdr, Mapping):
            raise TeeformError("protected header must be a CBOR map", path=source, field="protected")
        a = hdr.get(1)
        alg = a if isinstance(a, int) and not isinstance(a, bool) else None

    body = _decode_one(payload, "payload", source, "payload")
    if not isinstance(body, Mapping):
        raise TeeformError(f"payload must be a CBOR map with text keys, got {type(body).__name__}", path=source, field="payload")
    # A NitroTPM document carries its PCRs as ``nitrotpm_pcrs`` instead of ``pcrs`` (clouds.md §1.2).
    if PCRS_FIELD in body and NITROTPM_PCRS_FIELD in body:
        raise TeeformError(f"payload has both {PCRS_FIELD!r} (Nitro Enclaves) and {NITROTPM_PCRS_FIELD!r} (NitroTPM)",
                           path=source, field=NITROTPM_PCRS_FIELD)
    pcr_key = NITROTPM_PCRS_FIELD if NITROTPM_PCRS_FIELD in body else PCRS_FIELD
    for req in ("module_id", "digest", "timestamp", pcr_key, "certificate", "cabundle"):
        if req not in body:
            raise TeeformError(f"payload is missing required field {req!r}", path=source, field=req)

    module_id = body["module_id"]
    if not isinstance(module_id, str) or not module_id:
        raise TeeformError("payload field 'module_id' must be a non-empty text string", path=source, field="module_id")
    digest = body["digest"]
    if not isinstance(digest, str):
        raise TeeformError("payload field 'digest' must be a text string", path=source, field="digest")
    if digest != "SHA384":
        raise TeeformError(f"payload field 'digest' must be 'SHA384', got {digest!r}", path=source, field="digest")
    ts = body["timestamp"]
    if not isinstance(ts, int) or isinstance(ts, bool) or not 0 < ts < 2**64:
        raise TeeformError("payload field 'timestamp' must be a positive integer (UTC milliseconds)", path=source, field="timestamp")
    if ts > MAX_TIMESTAMP_MS:
        raise TeeformError(f"payload field 'timestamp' is {ts} ms, after 9999-12-31T23:59:59.999Z "
                           f"(limit {MAX_TIMESTAMP_MS})", path=source, field="timestamp")

    raw_pcrs = body[pcr_key]
    ok = isinstance(raw_pcrs, Mapping) and all(
        isinstance(k, int) and not isinstance(k, bool) and isinstance(v, bytes) for k, v in raw_pcrs.items()
    )
    if not ok:
        raise TeeformError(f"payload field {pcr_key!r} must be a map of int -> bytes", path=source, field=pcr_key)
    if not 1 <= len(raw_pcrs) <= 32:
        raise TeeformError(f"payload field {pcr_key!r} must hold 1..32 entries, got {len(raw_pcrs)}", path=source, field=pcr_key)
    for k, v in raw_pcrs.items():
        if not 0 <= k <= 31:
            raise TeeformError(f"payload field {pcr_key!r} has index {k}, outside 0..31", path=source, field=pcr_key)
        if len(v) not in _PCR_LENGTHS:
            raise TeeformError(f"payload field {pcr_key!r}: PCR{k} is {len(v)} bytes, not 32, 48 or 64", path=source, field=pcr_key)

    cert = body["certificate"]
    if not isinstance(cert, bytes) or not cert:
        raise TeeformError("payload field 'certificate' must be a non-empty byte string (DER)", path=source, field="certificate")
    if len(cert) > CERT_MAX_BYTES:
        raise TeeformError(f"payload field 'certificate' is {len(cert)} bytes, more than {CERT_MAX_BYTES} (NSM CDDL cert)",
                           path=source, field="certificate")
    bundle = body["cabundle"]
    if not isinstance(bundle, (list, tuple)) or not bundle or not all(isinstance(c, bytes) and c for c in bundle):
        raise TeeformError("payload field 'cabundle' must be a non-empty array of byte strings (DER)", path=source, field="cabundle")
    for i, c in enumerate(bundle):
        if len(c) > CERT_MAX_BYTES:
            raise TeeformError(f"payload field 'cabundle': entry {i} is {len(c)} bytes, more than {CERT_MAX_BYTES} "
                               "(NSM CDDL cert)", path=source, field=f"cabundle[{i}]")

    return AttestationDocument(
        module_id=module_id,
        digest=digest,
        timestamp=ts,
        pcrs=dict(sorted(raw_pcrs.items())),
        certificate=cert,
        cabundle=tuple(bundle),
        public_key=_opt_bytes(body, "public_key", 1, 1024, source),
        user_data=_opt_bytes(body, "user_data", 0, 1024, source),
        nonce=_opt_bytes(body, "nonce", 0, 1024, source),
        protected=protected,
        unprotected=dict(unprotected),
        payload=payload,
        signature=signature,
        tagged=tagged,
        alg=alg,
        pcr_field=pcr_key,
    )


def decode_document_bytes(raw: bytes, *, source: str = "<attestation document>") -> bytes:
    """Return COSE bytes from ``raw``, which is either CBOR or base64 text (standard or URL-safe).

    CBOR is recognised by its first byte (``0x84`` array of 4, ``0xd2`` tag 18); anything else is
    tried as base64 (whitespace ignored).

    Raises:
        TeeformError: empty input, or neither CBOR nor base64.
    """
    if not raw:
        raise TeeformError("attestation document is empty", path=source)
    if raw[0] in (0x84, 0xD2):
        return raw
    text = b"".join(raw.split())
    altchars = b"-_" if (b"-" in text or b"_" in text) else None
    try:
        decoded = base64.b64decode(text + b"=" * (-len(text) % 4), altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if not decoded or decoded[0] not in (0x84, 0xD2):
        raise TeeformError(
            "not an attestation document: neither CBOR (COSE_Sign1 starts with byte 0x84 or 0xd2) nor base64 text",
            path=source,
            hint="pass the raw document bytes, or its base64 encoding",
        )
    return decoded


def read_attestation_bytes(arg: str | os.PathLike[str]) -> tuple[bytes, str]:
    """Read a document's COSE bytes from a file path, or from standard input when ``arg`` is ``-``.

    Accepts raw CBOR or base64 text (see :func:`decode_document_bytes`).

    Returns:
        (the COSE_Sign1 bytes, the source name used in messages).

    Raises:
        TeeformError: unreadable or not a regular file, more than :data:`MAX_INPUT_BYTES`, or neither
            CBOR nor base64.
    """
    if str(arg) == "-":
        source = "<stdin>"
        raw = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
        if len(raw) > MAX_INPUT_BYTES:
            raise TeeformError(f"attestation document is over the {MAX_INPUT_BYTES}-byte limit", path=source)
    else:
        source = str(arg)
        raw = read_limited(Path(arg), MAX_INPUT_BYTES, what="attestation document")
    return decode_document_bytes(raw, source=source), source


def read_attestation_document(arg: str | os.PathLike[str]) -> tuple[AttestationDocument, str]:
    """Read (see :func:`read_attestation_bytes`) and parse a document.

    Returns:
        (the parsed document, the source name used in messages).

    Raises:
        TeeformError: unreadable file or invalid document (see :func:`parse_attestation_document`).
    """
    data, source = read_attestation_bytes(arg)
    return parse_attestation_document(data, source=source), source
