"""EIF signing: the signature section (type 4) and PCR8.

Byte layout (``shared/reference/eif-nitro.md`` §1.7, vectors §7.3; IMGFMT ``src/utils/cbor.rs``):

* the section is the CBOR encoding of an **array** of ``PcrSignature`` maps (nitro-cli writes one);
* ``PcrSignature`` = map with text keys, in this order: ``"signing_certificate"`` (the certificate
  **PEM file bytes**) and ``"signature"`` (an **untagged** COSE_Sign1, RFC 8152 §4.2);
* both values are CBOR **arrays of unsigned integers, one per byte** (serde's ``Vec<u8>``), not
  byte strings;
* the COSE_Sign1 payload is CBOR(``PcrInfo``) = map ``{"register_index": 0, "register_value":
  [48 uints of PCR0]}``; protected header ``{1: -35}`` (ES384) = ``a1 01 38 22``; unprotected
  header empty; signature = raw ``r || s`` (48 + 48 bytes, big-endian) of ECDSA P-384 / SHA-384
  over ``Sig_structure1 = ["Signature1", protected, h'', payload]`` (RFC 8152 §4.4).

cbor2 produces exactly these bytes when given Python lists of ints (minimal-length integer heads,
definite-length arrays, dict insertion order); ``tests/test_eif_sign.py`` checks that against the
§7.3 vectors. ECDSA uses RFC 6979 deterministic nonces (``cryptography`` ``deterministic_signing``),
so a signed EIF is byte-for-byte reproducible too; verifiers cannot tell the difference.

Only P-384 keys are accepted (the key type the Nitro Enclaves user guide tells users to create,
§1.7); other curves are refused with a clear error.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from teeform.errors import TeeformError

#: COSE protected header ``{1: -35}`` (alg ES384), RFC 8152 §8.1 / eif-nitro.md §4.2.
PROTECTED_ES384 = bytes.fromhex("a1013822")
COORD = 48  # P-384 coordinate size in bytes


#: Largest --signing-key / --signing-cert file read (PEM key ~300 bytes, certificate chain a few KiB).
MAX_PEM_FILE = 1 << 20

def _uints(data: bytes) -> list[int]:
    return list(data)


def pcr_info_cbor(pcr_value: bytes, register_index: int = 0) -> bytes:
    """CBOR of ``PcrInfo{register_index, register_value}`` (§1.7; vector in §7.3)."""
    return cbor2.dumps({"register_index": register_index, "register_value": _uints(pcr_value)})


def sig_structure1(protected: bytes, payload: bytes, external_aad: bytes = b"") -> bytes:
    """CBOR of ``["Signature1", protected, external_aad, payload]`` (RFC 8152 §4.4), the bytes ECDSA signs."""
    return cbor2.dumps(["Signature1", protected, external_aad, payload])


def cose_sign1_es384(payload: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    """An untagged COSE_Sign1 ``[h'a1013822', {}, payload, r||s]`` signed with ES384 (deterministic ECDSA)."""
    der = key.sign(sig_structure1(PROTECTED_ES384, payload), ec.ECDSA(hashes.SHA384(), deterministic_signing=True))
    r, s = decode_dss_signature(der)
    return cbor2.dumps([PROTECTED_ES384, {}, payload, r.to_bytes(COORD, "big") + s.to_bytes(COORD, "big")])


def signature_section_cbor(entries: list[tuple[bytes, bytes]]) -> bytes:
    """CBOR of the signature section: ``[{"signing_certificate": [uints], "signature": [uints]}, ...]``.

    ``entries`` are ``(certificate PEM bytes, COSE_Sign1 bytes)`` pairs.
    """
    return cbor2.dumps([{"signing_certificate": _uints(pem), "signature": _uints(cose)} for pem, cose in entries])


@dataclass(frozen=True)
class PcrSignature:
    """One decoded ``PcrSignature``: the certificate PEM bytes and the COSE_Sign1 bytes."""

    signing_certificate: bytes
    signature: bytes


def _as_bytes(value: Any, what: str) -> bytes:
    if isinstance(value, list) and all(isinstance(v, int) and 0 <= v <= 255 for v in value):
        return bytes(value)
    raise TeeformError(f"{what} must be a CBOR array of byte values (eif-nitro.md §1.7)")


def parse_signature_section(data: bytes) -> list[PcrSignature]:
    """Decode a signature section (§1.7).

    Raises:
        TeeformError: not CBOR, not a non-empty array of maps with the two keys, or values that
            are not arrays of uints 0..255.
    """
    try:
        obj = cbor2.loads(data)
    except Exception as exc:  # cbor2 raises several types
        raise TeeformError(f"not valid CBOR: {exc}") from exc
    if not isinstance(obj, list) or not obj:
        raise TeeformError("must be a non-empty CBOR array of PcrSignature maps")
    out = []
    for i, item in enumerate(obj):
        if not isinstance(item, dict) or set(item) != {"signing_certificate", "signature"}:
            raise TeeformError(f"entry {i} must be a map with keys signing_certificate and signature")
        out.append(PcrSignature(_as_bytes(item["signing_certificate"], f"entry {i} signing_certificate"),
                                _as_bytes(item["signature"], f"entry {i} signature")))
    return out


def load_certificate_pem(pem: bytes, *, source: os.PathLike[str] | str | None = None) -> x509.Certificate:
    """Parse the first certificate in ``pem`` (as OpenSSL ``X509::from_pem`` does for nitro-cli).

    Raises:
        TeeformError: no parseable PEM certificate.
    """
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise TeeformError(f"not a PEM X.509 certificate: {exc}", path=source) from exc


def pcr8_from_certificate_der(der: bytes) -> bytes:
    """PCR8 (48 bytes) = ``SHA384(0^48 || SHA384(DER of the signing certificate))``.

    One extend of a zero PCR with the certificate digest (shared/reference/eif-nitro.md §2.1-§2.3;
    aws-nitro-enclaves-image-format ``src/utils/eif_signer.rs`` / ``defs/eif_hasher.rs``). Written out
    here rather than via :func:`image_builder.formats.eif.pcr_from_digest` so that ``eif`` may import
    this module without an import cycle.
    """
    return hashlib.sha384(bytes(48) + hashlib.sha384(der).digest()).digest()


def pcr8_from_pem(pem: bytes, *, source: os.PathLike[str] | str | None = None) -> bytes:
    """PCR8 from certificate PEM bytes: DER re-encoding of the first certificate, then §2.2."""
    cert = load_certificate_pem(pem, source=source)
    return pcr8_from_certificate_der(cert.public_bytes(serialization.Encoding.DER))


def verify_pcr_signature(sig: PcrSignature, pcr0: bytes) -> bool:
    """``describe-eif``'s SignatureCheck (§1.7): the COSE_Sign1 verifies with the certificate's key
    and its payload equals CBOR(PcrInfo{0, pcr0}). Returns False (never raises) on any failure."""
    try:
        cert = x509.load_pem_x509_certificate(sig.signing_certificate)
        cose = cbor2.loads(sig.signature)
        if isinstance(cose, cbor2.CBORTag) and cose.tag == 18:  # accept tagged too (eif-nitro.md §8.3)
            cose = cose.value
        protected, _unprotected, payload, raw_sig = cose
        pub = cert.public_key()
        if not isinstance(pub, ec.EllipticCurvePublicKey):
            return False
        alg = cbor2.loads(protected).get(1)
        digest = {-7: hashes.SHA256(), -35: hashes.SHA384(), -36: hashes.SHA512()}.get(alg)
        if digest is None:
            return False
        half = len(raw_sig) // 2
        der = encode_dss_signature(int.from_bytes(raw_sig[:half], "big"), int.from_bytes(raw_sig[half:], "big"))
        pub.verify(der, sig_structure1(protected, payload), ec.ECDSA(digest))
        return bool(payload == pcr_info_cbor(pcr0, 0))
    except (InvalidSignature, ValueError, TypeError, KeyError, AttributeError, cbor2.CBORDecodeError):
        return False


@dataclass(frozen=True)
class EifSigner:
    """A loaded P-384 signing key and its certificate; call it with PCR0 to get the signature section.

    Use :meth:`load` to build one from files; ``cert_pem`` is stored in the EIF exactly as read
    (nitro-cli stores the certificate file's bytes).
    """

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    cert_pem: bytes

    @classmethod
    def load(cls, key_path: os.PathLike[str] | str, cert_path: os.PathLike[str] | str) -> EifSigner:
        """Load and check a PEM private key and PEM certificate.

        Both files are read with a :data:`MAX_PEM_FILE` bound (a P-384 key PEM is ~300 bytes, a
        certificate ~1 KiB); directories, FIFOs and devices are refused.

        Raises:
            TeeformError: unreadable or oversized files, an encrypted or non-EC key, a curve other than P-384,
                or a certificate whose public key does not match the private key.
        """
        from teeform.safeload import read_limited

        kp, cp = Path(key_path), Path(cert_path)
        key_bytes = read_limited(kp, MAX_PEM_FILE, what="--signing-key (PEM private key)")
        cert_pem = read_limited(cp, MAX_PEM_FILE, what="--signing-cert (PEM certificate)")
        try:
            key = serialization.load_pem_private_key(key_bytes, password=None)
        except (ValueError, TypeError) as exc:
            raise TeeformError(f"not an unencrypted PEM private key: {exc}", path=kp, field="--signing-key",
                               hint="create one with `openssl ecparam -name secp384r1 -genkey -noout -out key.pem`") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP384R1):
            raise TeeformError("the signing key must be an EC P-384 (secp384r1) key", path=kp, field="--signing-key",
                               hint="create one with `openssl ecparam -name secp384r1 -genkey -noout -out key.pem`")
        cert = load_certificate_pem(cert_pem, source=cp)
        spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
            raise TeeformError("the certificate's public key does not match the signing key", path=cp,
                               field="--signing-cert")
        return cls(key, cert, cert_pem)

    @property
    def certificate_der(self) -> bytes:
        """DER of the certificate (what PCR8 measures)."""
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def certificate_sha256(self) -> str:
        """SHA-256 (hex) of the certificate DER, recorded in the manifest."""
        return hashlib.sha256(self.certificate_der).hexdigest()

    def __call__(self, pcr0: bytes) -> tuple[bytes, bytes]:
        """Return ``(signature section bytes, certificate DER)`` for ``pcr0`` (the :data:`image_builder.formats.eif.Signer` protocol)."""
        cose = cose_sign1_es384(pcr_info_cbor(pcr0, 0), self.key)
        return signature_section_cbor([(self.cert_pem, cose)]), self.certificate_der
