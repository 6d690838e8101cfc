"""A throwaway Nitro-shaped PKI for tests: mint attestation documents the real fixtures do not cover.

The shape copies the certificate chains of the real documents in ``tests/fixtures/nitro`` (checked as in
aws-nitro-enclaves-nsm-api ``docs/attestation_process.md`` §3.2.3, "Semantical validation"): a root
(critical CA:TRUE, no pathLen, keyUsage keyCertSign/cRLSign/digitalSignature), a regional CA
(pathLen 2), a zonal CA (pathLen 1), an instance CA (pathLen 0, keyUsage keyCertSign only, no
key identifiers), and a leaf (CA:FALSE, keyUsage digitalSignature + nonRepudiation, not critical).
Every key is P-384 and every signature ecdsa-with-SHA384. Documents are COSE_Sign1 (§4.2) with the
payload map of §4.3, signed over ``["Signature1", protected, h'', payload]`` (RFC 8152 §4.4).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

PROTECTED_ES384 = bytes.fromhex("a1013822")  # {1: -35}, eif-nitro.md §4.2

UTC = dt.UTC


def _name(cn: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Teeform Test"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "AWS"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def _ku(*, digital_signature=False, content_commitment=False, key_cert_sign=False, crl_sign=False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature, content_commitment, False, False, False, key_cert_sign, crl_sign, False, False)


def make_cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    not_before: dt.datetime,
    not_after: dt.datetime,
    *,
    ca: bool,
    path_length: int | None = None,
    key_usage: x509.KeyUsage | None = None,
    ku_critical: bool = True,
    key_ids: bool = True,
) -> x509.Certificate:
    """One certificate; ``issuer`` None means self-signed."""
    issuer_name = issuer[0].subject if issuer else _name(subject)
    signing_key = issuer[1] if issuer else key
    b = (x509.CertificateBuilder()
         .subject_name(_name(subject)).issuer_name(issuer_name)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(not_before).not_valid_after(not_after)
         .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True))
    if key_usage is not None:
        b = b.add_extension(key_usage, critical=ku_critical)
    if key_ids:
        b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        if issuer:
            b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), critical=False)
    return b.sign(signing_key, hashes.SHA384())


@dataclass
class TestCA:
    """root -> regional -> zonal -> instance -> leaf. ``certs``/``keys`` are in that order."""

    keys: list[ec.EllipticCurvePrivateKey] = field(default_factory=list)
    certs: list[x509.Certificate] = field(default_factory=list)

    @property
    def root(self) -> x509.Certificate:
        return self.certs[0]

    @property
    def leaf(self) -> x509.Certificate:
        return self.certs[-1]

    @property
    def leaf_key(self) -> ec.EllipticCurvePrivateKey:
        return self.keys[-1]

    def cabundle(self) -> list[bytes]:
        """DER ``[ROOT, INTERM_1, ..., INTERM_N]`` (eif-nitro.md §4.3)."""
        return [c.public_bytes(serialization.Encoding.DER) for c in self.certs[:-1]]

    def root_pem(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.PEM)


def make_ca(at: dt.datetime, *, leaf_hours: int = 3, overrides: dict[Any, dict[str, Any]] | None = None,
            extra_intermediate: bool = False) -> TestCA:
    """A fresh chain whose leaf is valid from ``at - 1 min`` for ``leaf_hours``.

    ``overrides[i]`` replaces :func:`make_cert` keyword arguments of certificate ``i`` (0 = root,
    1..3 = regional/zonal/instance CAs, ``"leaf"`` = the leaf), e.g. ``{"leaf": {"ca": True}}``. ``extra_intermediate`` adds a
    fifth CA under the instance CA (violating its pathLen 0).
    """
    overrides = overrides or {}
    day = dt.timedelta(days=1)
    specs: list[dict[str, Any]] = [
        dict(subject="test.nitro-enclaves", not_before=at - 3650 * day, not_after=at + 3650 * day, ca=True,
             key_usage=_ku(digital_signature=True, key_cert_sign=True, crl_sign=True)),
        dict(subject="0123abcd.us-east-1.test.nitro-enclaves", not_before=at - 5 * day, not_after=at + 15 * day, ca=True,
             path_length=2, key_usage=_ku(digital_signature=True, key_cert_sign=True, crl_sign=True)),
        dict(subject="4567ef.zonal.us-east-1.test.nitro-enclaves", not_before=at - day, not_after=at + 4 * day, ca=True,
             path_length=1, key_usage=_ku(digital_signature=True, key_cert_sign=True, crl_sign=True)),
        dict(subject="i-0000000000000000a.us-east-1.test.nitro-enclaves", not_before=at - dt.timedelta(hours=1),
             not_after=at + day, ca=True, path_length=0, key_usage=_ku(key_cert_sign=True), key_ids=False),
    ]
    if extra_intermediate:
        specs.append(dict(subject="extra.test.nitro-enclaves", not_before=at - dt.timedelta(hours=1), not_after=at + day,
                          ca=True, path_length=None, key_usage=_ku(key_cert_sign=True), key_ids=False))
    specs.append(dict(subject="i-0000000000000000a-enc0000000000000001.us-east-1.test", not_before=at - dt.timedelta(minutes=1),
                      not_after=at + dt.timedelta(hours=leaf_hours), ca=False,
                      key_usage=_ku(digital_signature=True, content_commitment=True), ku_critical=False, key_ids=False))
    leaf_index = len(specs) - 1
    ca = TestCA()
    for i, spec in enumerate(specs):
        spec.update(overrides.get("leaf" if i == leaf_index else i, {}))
        key = ec.generate_private_key(ec.SECP384R1())
        issuer = (ca.certs[-1], ca.keys[-1]) if ca.certs else None
        subject = spec.pop("subject")
        ca.certs.append(make_cert(subject, key, issuer, **spec))
        ca.keys.append(key)
    return ca


def es384_raw(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ECDSA P-384/SHA-384 signature as raw ``r || s`` (48 + 48 bytes, big-endian; eif-nitro.md §4.2)."""
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA384())))
    return r.to_bytes(48, "big") + s.to_bytes(48, "big")


def sign1(protected: bytes, payload: bytes, key: ec.EllipticCurvePrivateKey, *, tagged: bool = False) -> bytes:
    """COSE_Sign1 bytes over ``payload`` (RFC 8152 §4.2/§4.4)."""
    sig = es384_raw(key, cbor2.dumps(["Signature1", protected, b"", payload]))
    arr = [protected, {}, payload, sig]
    return cbor2.dumps(cbor2.CBORTag(18, arr) if tagged else arr)


def default_pcrs(pcr0: bytes = b"\x11" * 48) -> dict[int, bytes]:
    """PCRs 0..15 like a real document: 0/1/2/3/4/8 set, the rest zeros."""
    p = {i: bytes(48) for i in range(16)}
    p.update({0: pcr0, 1: b"\x22" * 48, 2: b"\x33" * 48, 3: b"\x44" * 48, 4: b"\x55" * 48})
    return p


def payload_map(ca: TestCA, at: dt.datetime, *, pcrs: dict[int, bytes] | None = None, nonce: bytes | None = None,
                user_data: bytes | None = None, public_key: bytes | None = None) -> dict[str, Any]:
    """The §4.3 payload map (keys in the order real documents use)."""
    return {
        "module_id": "i-0000000000000000a-enc0000000000000001",
        "digest": "SHA384",
        "timestamp": int(at.timestamp() * 1000),
        "pcrs": pcrs if pcrs is not None else default_pcrs(),
        "certificate": ca.leaf.public_bytes(serialization.Encoding.DER),
        "cabundle": ca.cabundle(),
        "public_key": public_key,
        "user_data": user_data,
        "nonce": nonce,
    }


def mint(ca: TestCA, at: dt.datetime, *, tagged: bool = False, protected: bytes = PROTECTED_ES384,
         sign_key: ec.EllipticCurvePrivateKey | None = None, payload: dict[str, Any] | None = None,
         **fields: Any) -> bytes:
    """A signed attestation document at time ``at`` (``fields`` go to :func:`payload_map`)."""
    body = payload if payload is not None else payload_map(ca, at, **fields)
    return sign1(protected, cbor2.dumps(body), sign_key or ca.leaf_key, tagged=tagged)
