"""Signed measurement manifests: in-toto Statements in DSSE envelopes, and cosign blob signatures.

Why: a key policy pins the measurements a manifest says; signing the manifest lets a stack trust only
manifests a release key vouched for (``teeform:trustedManifestKeys``, docs/signing.md).

**What ``teeform sign`` writes** (:func:`sign_manifest`): ``<MANIFEST>.intoto.jsonl`` next to the
manifest (the manifest's full file name plus ``.intoto.jsonl``, e.g.
``openclaw-agent.manifest.json.intoto.jsonl``), two lines, each one DSSE JSON envelope
(``{"payload": b64, "payloadType": "application/vnd.in-toto+json", "signatures": [{"keyid", "sig"}]}``;
the ``.intoto.jsonl`` one-envelope-per-line layout is the one SLSA provenance generators write),
over the same subject:

1. an in-toto Statement v1 with ``predicateType`` ``https://slsa.dev/provenance/v1``:
   ``buildDefinition{buildType "https://teeform.dev/build/<kind>/v1", externalParameters{name, version,
   kind, sourceDateEpoch}, resolvedDependencies[{name, digest{sha256}, annotations{role, size}}]}`` (the
   manifest's ``inputs``) and ``runDetails{builder{id "https://teeform.dev/builder/<builder name>",
   version{<name>: <version>}}, byproducts[the manifest file: {name, digest{sha256}}]}``;
2. an in-toto Statement v1 with ``predicateType`` ``https://teeform.dev/measurements/v1``:
   ``{kind, name, version, measurements{name: lowercase hex}, manifest{name, digest{sha256}}}``.

The subject of both is the artifact: ``[{"name": artifact.file_name, "digest": {"sha256": ...}}]``, plus
``"sha384"`` in ``digest`` when the manifest's artifact records one (schema 1, vm-image; a schema-2 EIF
manifest has none: the EIF is identified by its SHA-256, its attested SHA-384 values are the PCRs).

Formats: in-toto Statement v1 (in-toto/attestation ``spec/v1/statement.md``: ``_type``
``https://in-toto.io/Statement/v1``, each subject MUST have a digest), in-toto envelope = DSSE with
``payloadType`` ``application/vnd.in-toto+json`` (``spec/v1/envelope.md``), SLSA provenance v1
(slsa-framework/slsa ``spec/schema/provenance.cue``; ``predicateType`` is always
``https://slsa.dev/provenance/v1``): gitops-signing-terraform.md §2.4. The payload is canonical JSON
written here (sorted keys, no spaces, UTF-8), not by protobuf (which turns integers into floats, §2.4).

**DSSE** (secure-systems-lab/dsse ``protocol.md`` at eebf7b5): the signature is over
``PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`` (:func:`pae`); base64 may be
standard or URL-safe, verifiers MUST accept both. Signing uses securesystemslib 1.6
(``securesystemslib.dsse.Envelope.sign`` with a ``CryptoSigner``, scheme ``ecdsa-sha2-nistp256``: ECDSA
P-256 over SHA-256, ASN.1 DER signature); the ``keyid`` is :func:`key_fingerprint` (hex SHA-256 of the
DER SubjectPublicKeyInfo).

**Verifying** (:func:`verify_manifest`) is offline, against pinned public keys, with plain
``cryptography``: each envelope's signatures are checked against **every** pinned key by value, not
by ``keyid`` (the keyid is unauthenticated in DSSE; securesystemslib's own ``Envelope.verify`` matches
keyids first and says so is "not DSSE spec compliant", its issue #416; gitops-signing-terraform.md
§2.4). A signature may be ASN.1 DER (securesystemslib, cosign, OpenSSL) or IEEE P1363 ``r || s``
(64 bytes, the encoding of the DSSE spec's own test vector). Then the ``payloadType``, the Statement
type, both predicate types, the subject digests (exactly the manifest's ``artifact`` digests: the same
algorithms, the same values), the measurements and
the manifest's SHA-256 (= the bytes on disk) are checked, so a changed manifest fails.

**cosign** ``sign-blob --key`` (:func:`verify_blob_signature`): the signature file holds the base64 of
an ASN.1 DER ECDSA signature over SHA-256 of the blob (the manifest file's bytes), which cosign writes
with ``--new-bundle-format=false`` (``--output-signature``) for a P-256 key (sigstore/cosign@d6d86c2
``cmd/cosign/cli/sign/sign_blob.go``; gitops-signing-terraform.md §2.3); ``openssl dgst -sha256 -sign``
plus ``base64`` gives the same bytes.

Keys: a private key is a PEM PKCS#8 (``PRIVATE KEY``) or SEC1 (``EC PRIVATE KEY``) P-256 key, e.g.
``openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt``; an encrypted one
is decrypted with the password in ``$TEEFORM_SIGNING_KEY_PASSWORD``. A cosign key file
(``ENCRYPTED SIGSTORE PRIVATE KEY``) is refused with a hint (export it to PKCS#8 first). Public keys are
PEM SubjectPublicKeyInfo (``PUBLIC KEY``; ``cosign.pub`` is one).

Errors: every bad input is a :class:`~teeform.errors.TeeformError` naming the file and the field (the
envelope line, ``payloadType``, ``subject[0].digest.sha256``...); nothing is half-written (temp file +
rename, :func:`teeform.fsutil.atomic_write_text`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from teeform.errors import TeeformError
from teeform.fsutil import atomic_write_text
from teeform.manifest import MAX_MANIFEST_BYTES, Manifest
from teeform.safeload import loads_json, read_limited

# The payload bytes teeform signs are teeform.seal's canonical JSON: json.dumps(sort_keys=True,
# separators=(",", ":"), ensure_ascii=False) as UTF-8 (deterministic; gitops-signing-terraform.md §2.4).
from teeform.seal import canonical_json

#: DSSE payloadType of an in-toto envelope (in-toto/attestation spec/v1/envelope.md).
PAYLOAD_TYPE = "application/vnd.in-toto+json"
#: in-toto Statement v1 ``_type`` (spec/v1/statement.md).
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
#: SLSA provenance v1 predicate type (slsa spec/build-provenance.md: "always use this string").
SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
#: teeform's measurements predicate (a stable URI owned by teeform; docs/signing.md documents its fields).
MEASUREMENTS_V1 = "https://teeform.dev/measurements/v1"
#: Both predicates a signed manifest must carry.
PREDICATE_TYPES = (SLSA_PROVENANCE_V1, MEASUREMENTS_V1)
#: Suffix appended to the manifest's file name for the envelopes file.
ENVELOPE_SUFFIX = ".intoto.jsonl"
#: Suffix of a cosign ``sign-blob`` signature next to the manifest (cosign's own examples use ``.sig``).
COSIGN_SIGNATURE_SUFFIX = ".sig"
#: Environment variable holding the password of an encrypted PEM private key.
PASSWORD_ENV = "TEEFORM_SIGNING_KEY_PASSWORD"

#: Largest key, signature or envelopes file read (a P-256 PEM is ~250 bytes; two envelopes a few KiB
#: plus the manifest's inputs).
KEY_FILE_LIMIT = 64 * 1024
ENVELOPES_LIMIT = 4 * MAX_MANIFEST_BYTES
#: At most this many envelopes (lines) and signatures per envelope are looked at.
MAX_ENVELOPES = 16
MAX_SIGNATURES = 16


class SignatureInvalid(TeeformError):
    """Well-formed input whose signature does not hold: unsigned, signed by no pinned key, a wrong
    ``payloadType`` or predicate, or a manifest that differs from what was signed
    (``teeform verify manifest`` exits 1 for it, 2 for other errors)."""


# ---------------------------------------------------------------------------------------------- format
def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 Pre-Authentication Encoding (secure-systems-lab/dsse ``protocol.md``):
    ``b"DSSEv1 " + len(type) + b" " + type + b" " + len(body) + b" " + body``, lengths as ASCII
    decimal byte counts without leading zeros, ``type`` UTF-8 encoded."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def subject(manifest: Manifest) -> list[dict[str, Any]]:
    """The Statement subject: ``[{"name": artifact.file_name, "digest": {alg: lowercase hex}}]``, the digest
    set being the manifest's artifact digests: ``sha256`` always, ``sha384`` only when the artifact has one."""
    a = manifest.artifact
    digest = {"sha256": a.sha256}
    if a.sha384 is not None:
        digest["sha384"] = a.sha384
    return [{"name": a.file_name, "digest": digest}]


def statements(manifest: Manifest, manifest_bytes: bytes, manifest_name: str) -> list[dict[str, Any]]:
    """The two in-toto Statements ``teeform sign`` signs for ``manifest`` (module docstring).

    Args:
        manifest: the parsed manifest.
        manifest_bytes: the manifest file's exact bytes (their SHA-256 is recorded).
        manifest_name: the manifest's file name (no directory), recorded next to that digest.

    Returns:
        ``[SLSA provenance v1 statement, teeform measurements v1 statement]`` as plain dicts.
    """
    digest = hashlib.sha256(manifest_bytes).hexdigest()
    manifest_ref = {"name": manifest_name, "digest": {"sha256": digest}}
    deps = []
    for i in manifest.inputs:
        ann: dict[str, Any] = {"role": i.role}
        if i.size is not None:
            ann["size"] = i.size
        deps.append({"name": i.name, "digest": {"sha256": i.sha256}, "annotations": ann})
    provenance = {
        "buildDefinition": {
            "buildType": f"https://teeform.dev/build/{manifest.kind.value}/v1",
            "externalParameters": {
                "name": manifest.name,
                "version": manifest.version,
                "kind": manifest.kind.value,
                "sourceDateEpoch": manifest.source_date_epoch,
            },
            "resolvedDependencies": deps,
        },
        "runDetails": {
            "builder": {
                "id": f"https://teeform.dev/builder/{manifest.builder.name}",
                "version": {manifest.builder.name: manifest.builder.version},
            },
            "byproducts": [manifest_ref],
        },
    }
    measurements = {
        "kind": manifest.kind.value,
        "name": manifest.name,
        "version": manifest.version,
        "measurements": dict(sorted(manifest.measurements.items())),
        "manifest": manifest_ref,
    }
    return [
        {"_type": STATEMENT_TYPE, "subject": subject(manifest), "predicateType": SLSA_PROVENANCE_V1,
         "predicate": provenance},
        {"_type": STATEMENT_TYPE, "subject": subject(manifest), "predicateType": MEASUREMENTS_V1,
         "predicate": measurements},
    ]


def envelope_path(manifest_path: os.PathLike[str] | str) -> Path:
    """Where the envelopes of ``manifest_path`` live: the same path plus :data:`ENVELOPE_SUFFIX`."""
    p = Path(manifest_path)
    return p.with_name(p.name + ENVELOPE_SUFFIX)


# ---------------------------------------------------------------------------------------------- keys
def key_fingerprint(public_key: ec.EllipticCurvePublicKey) -> str:
    """Lowercase hex SHA-256 of the key's DER SubjectPublicKeyInfo (= ``openssl pkey -pubin -outform
    DER | sha256sum``); the envelope ``keyid`` and the ``signer`` teeform reports."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


@dataclass(frozen=True)
class TrustedKey:
    """A pinned public key: where it came from (file path or config field), the key, its fingerprint."""

    source: str
    key: ec.EllipticCurvePublicKey
    fingerprint: str

    @property
    def signer(self) -> str:
        """``sha256:<fingerprint>``, the ``signer`` recorded on a verified manifest."""
        return f"sha256:{self.fingerprint}"


def _p256(key: object, source: str, what: str) -> None:
    if not isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) or not isinstance(
            key.curve, ec.SECP256R1):
        curve = getattr(getattr(key, "curve", None), "name", type(key).__name__)
        raise TeeformError(f"{what} must be an ECDSA P-256 (prime256v1) key, got {curve}", path=source)


def parse_public_key(pem: bytes, source: str) -> TrustedKey:
    """Parse a PEM SubjectPublicKeyInfo P-256 public key (``-----BEGIN PUBLIC KEY-----``).

    Raises:
        TeeformError: not PEM, not a public key, or not P-256 (naming ``source``).
    """
    if b"PRIVATE KEY" in pem:
        raise TeeformError("is a private key; pin the public key (openssl pkey -in KEY -pubout)", path=source)
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise TeeformError(f"not a PEM public key ({exc})", path=source,
                           hint="expected -----BEGIN PUBLIC KEY----- (openssl pkey -in KEY -pubout)") from None
    _p256(key, source, "public key")
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return TrustedKey(source, key, key_fingerprint(key))


def load_public_key(path: os.PathLike[str] | str) -> TrustedKey:
    """Read and parse a public key file (:func:`parse_public_key`, at most :data:`KEY_FILE_LIMIT` bytes)."""
    return parse_public_key(read_limited(path, KEY_FILE_LIMIT, what="public key"), str(path))


def load_private_key(path: os.PathLike[str] | str) -> ec.EllipticCurvePrivateKey:
    """Read a PEM P-256 private key (PKCS#8 or SEC1; encrypted ones with ``$TEEFORM_SIGNING_KEY_PASSWORD``).

    Raises:
        TeeformError: unreadable, a cosign key file, a wrong password, not a private key, or not P-256.
    """
    data = read_limited(path, KEY_FILE_LIMIT, what="private key")
    if b"SIGSTORE PRIVATE KEY" in data or b"COSIGN PRIVATE KEY" in data:
        raise TeeformError("is a cosign key file (scrypt + secretbox), not a PEM key", path=path,
                           hint="export it as PKCS#8, or sign with `cosign sign-blob --key` and verify with "
                                "`teeform verify manifest --signature`")
    pw = os.environ.get(PASSWORD_ENV)
    try:
        key = serialization.load_pem_private_key(data, password=pw.encode() if pw is not None else None)
    except TypeError as exc:  # encrypted without a password, or a password for a plain key
        raise TeeformError(f"cannot load the private key: {exc}", path=path,
                           hint=f"set {PASSWORD_ENV} for an encrypted key") from None
    except ValueError as exc:
        raise TeeformError(f"not a PEM private key, or a wrong password ({exc})", path=path) from None
    _p256(key, str(path), "signing key")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


# ---------------------------------------------------------------------------------------------- sign
def read_manifest(path: os.PathLike[str] | str) -> tuple[bytes, Manifest]:
    """Read the manifest file once: its exact bytes and the validated :class:`Manifest` parsed from them."""
    p = Path(path)
    if not p.exists() and not p.is_symlink():
        raise TeeformError("manifest not found", path=p)
    data = read_limited(p, MAX_MANIFEST_BYTES, what="manifest")
    return data, Manifest.from_json(data, source=str(p))


def sign_statements(stmts: Sequence[Mapping[str, Any]], key: ec.EllipticCurvePrivateKey,
                    payload_type: str = PAYLOAD_TYPE) -> list[dict[str, Any]]:
    """DSSE envelopes (as dicts, securesystemslib's ``Envelope.to_dict`` form), one per statement,
    each signed by ``key`` with securesystemslib's ``CryptoSigner`` (``ecdsa-sha2-nistp256``, keyid =
    :func:`key_fingerprint`)."""
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import CryptoSigner, SSlibKey

    pub = SSlibKey.from_crypto(key.public_key(), keyid=key_fingerprint(key.public_key()),
                               scheme="ecdsa-sha2-nistp256")
    signer = CryptoSigner(key, pub)
    out = []
    for st in stmts:
        env = Envelope(payload=canonical_json(st), payload_type=payload_type, signatures={})
        env.sign(signer)
        out.append(env.to_dict())
    return out


def sign_manifest(manifest_path: os.PathLike[str] | str, key_path: os.PathLike[str] | str,
                  out: os.PathLike[str] | str | None = None) -> Path:
    """Sign the manifest at ``manifest_path`` with the P-256 key at ``key_path``; write the envelopes.

    Returns:
        the path written (``out``, default :func:`envelope_path`): one DSSE envelope JSON per line,
        provenance first, then measurements (module docstring).

    Raises:
        TeeformError: an unreadable or invalid manifest or key (nothing is written then).
    """
    data, manifest = read_manifest(manifest_path)
    key = load_private_key(key_path)
    envs = sign_statements(statements(manifest, data, Path(manifest_path).name), key)
    target = Path(out) if out is not None else envelope_path(manifest_path)
    atomic_write_text(target, "".join(json.dumps(e, sort_keys=True, separators=(",", ":")) + "\n" for e in envs))
    return target


# ---------------------------------------------------------------------------------------------- verify
@dataclass(frozen=True)
class Verified:
    """The result of a successful verification.

    Attributes:
        manifest: the verified manifest (parsed from the verified bytes).
        manifest_sha256: SHA-256 of those bytes (lowercase hex).
        signer: the pinned key that signed it (:attr:`TrustedKey.signer`, ``sha256:<fingerprint>``).
        key_source: where that key came from (file or config field).
        method: ``"dsse"`` (in-toto envelopes) or ``"cosign-blob"``.
        predicates: the verified predicate types (DSSE), empty for cosign.
    """

    manifest: Manifest
    manifest_sha256: str
    signer: str
    key_source: str
    method: str
    predicates: tuple[str, ...] = ()


def _b64(text: Any, source: str, fld: str) -> bytes:
    if not isinstance(text, str):
        raise TeeformError(f"must be a base64 string, got {type(text).__name__}", path=source, field=fld)
    s = "".join(text.split())
    try:
        if "-" in s or "_" in s:  # DSSE: standard or URL-safe base64, verifiers MUST accept both
            return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
        return base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise TeeformError("not valid base64", path=source, field=fld) from None


def _verify_sig(key: ec.EllipticCurvePublicKey, sig: bytes, message: bytes) -> bool:
    """ECDSA-P256-SHA256 over ``message``; ``sig`` ASN.1 DER, or 64-byte IEEE P1363 ``r || s``."""
    candidates = [sig]
    if len(sig) == 64:
        candidates.append(encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")))
    for c in candidates:
        try:
            key.verify(c, message, ec.ECDSA(hashes.SHA256()))
            return True
        except (InvalidSignature, ValueError):
            continue
    return False


def verify_envelope(env: Any, keys: Sequence[TrustedKey], source: str, fld: str,
                    payload_type: str = PAYLOAD_TYPE) -> tuple[bytes, TrustedKey]:
    """Verify one DSSE envelope (a parsed JSON object) against ``keys`` by value (module docstring).

    Returns:
        (the verified payload bytes, the first pinned key that verified a signature).

    Raises:
        TeeformError: malformed envelope, no signature by a pinned key, or (after a good signature)
            a ``payloadType`` other than ``payload_type``; naming ``source`` and ``fld``.
    """
    if not isinstance(env, Mapping):
        raise TeeformError("must be a DSSE envelope (a JSON object)", path=source, field=fld)
    payload = _b64(env.get("payload"), source, f"{fld}.payload")
    ptype = env.get("payloadType")
    if not isinstance(ptype, str):
        raise TeeformError("missing or not a string", path=source, field=f"{fld}.payloadType")
    sigs = env.get("signatures")
    if not isinstance(sigs, list) or not sigs:
        raise TeeformError("must be a non-empty list", path=source, field=f"{fld}.signatures")
    if len(sigs) > MAX_SIGNATURES:
        raise TeeformError(f"{len(sigs)} signatures (limit {MAX_SIGNATURES})", path=source, field=f"{fld}.signatures")
    message = pae(ptype, payload)
    for i, s in enumerate(sigs):
        if not isinstance(s, Mapping):
            raise TeeformError("must be an object", path=source, field=f"{fld}.signatures[{i}]")
        raw = _b64(s.get("sig"), source, f"{fld}.signatures[{i}].sig")
        for k in keys:
            if _verify_sig(k.key, raw, message):
                if ptype != payload_type:
                    raise SignatureInvalid(f"is {ptype!r}, expected {payload_type!r} (an in-toto envelope)",
                                       path=source, field=f"{fld}.payloadType")
                return payload, k
    pinned = ", ".join(f"{k.source} (sha256:{k.fingerprint[:16]}…)" for k in keys)
    raise SignatureInvalid(f"no signature verifies with a pinned key ({pinned})", path=source, field=f"{fld}.signatures",
                       hint="the manifest or envelope was changed after signing, or it was signed with another key")


def _expect(cond: bool, msg: str, source: str, fld: str) -> None:
    if not cond:
        raise SignatureInvalid(msg, path=source, field=fld)


def _check_statement(st: Any, manifest: Manifest, digest: str, source: str, fld: str) -> str:
    """Check one verified Statement against the manifest; return its predicateType."""
    _expect(isinstance(st, Mapping), "payload must be a JSON object (an in-toto Statement)", source, fld)
    _expect(st.get("_type") == STATEMENT_TYPE, f"is {st.get('_type')!r}, expected {STATEMENT_TYPE!r}", source,
            f"{fld}._type")
    want_subject = subject(manifest)
    got = st.get("subject")
    _expect(isinstance(got, list) and len(got) == 1 and isinstance(got[0], Mapping), "must list exactly one artifact",
            source, f"{fld}.subject")
    want = want_subject[0]["digest"]
    dg = got[0].get("digest")
    _expect(isinstance(dg, Mapping), "must be an object of digests", source, f"{fld}.subject[0].digest")
    for alg in want:  # sha256 always; sha384 when the manifest's artifact has one
        have = dg.get(alg)
        _expect(have == want[alg], f"is {have!r}, but the manifest's artifact.{alg} is {want[alg]!r}", source,
                f"{fld}.subject[0].digest.{alg}")
    extra = sorted(str(k) for k in dg if k not in want)
    _expect(not extra, f"has {', '.join(extra)}, which the manifest's artifact does not record (the subject's "
            "digests must be exactly the manifest's)", source, f"{fld}.subject[0].digest")
    ptype = st.get("predicateType")
    pred = st.get("predicate")
    _expect(isinstance(pred, Mapping), "must be an object", source, f"{fld}.predicate")
    if ptype == MEASUREMENTS_V1:
        ref = pred.get("manifest")
        have = ref.get("digest", {}).get("sha256") if isinstance(ref, Mapping) and isinstance(
            ref.get("digest"), Mapping) else None
        _expect(have == digest, f"is {have!r}, but the manifest file's sha256 is {digest!r} (the manifest was changed "
                "after signing)", source, f"{fld}.predicate.manifest.digest.sha256")
        _expect(pred.get("measurements") == dict(manifest.measurements),
                "differ from the manifest's measurements", source, f"{fld}.predicate.measurements")
        _expect(pred.get("kind") == manifest.kind.value, f"is {pred.get('kind')!r}, the manifest's is "
                f"{manifest.kind.value!r}", source, f"{fld}.predicate.kind")
    elif ptype == SLSA_PROVENANCE_V1:
        byp = pred.get("runDetails", {}).get("byproducts") if isinstance(pred.get("runDetails"), Mapping) else None
        digests = {b.get("digest", {}).get("sha256") for b in byp if isinstance(b, Mapping) and isinstance(
            b.get("digest"), Mapping)} if isinstance(byp, list) else set()
        _expect(digest in digests, f"do not record the manifest file's sha256 {digest!r} (the manifest was changed "
                "after signing)", source, f"{fld}.predicate.runDetails.byproducts")
    else:
        raise SignatureInvalid(f"is {ptype!r}; expected one of {list(PREDICATE_TYPES)}", path=source,
                           field=f"{fld}.predicateType")
    return str(ptype)


def verify_envelopes(manifest_path: os.PathLike[str] | str, keys: Sequence[TrustedKey],
                     envelopes: os.PathLike[str] | str | None = None) -> Verified:
    """Verify the ``.intoto.jsonl`` of a manifest against pinned ``keys`` (module docstring).

    Every line must verify with a pinned key; both predicates (:data:`PREDICATE_TYPES`) must be there,
    each bound to the manifest's bytes on disk (read once).

    Raises:
        TeeformError: missing or malformed file, a bad signature, a wrong payloadType or statement,
            or a manifest that differs from what was signed; naming the file and field.
    """
    if not keys:
        raise TeeformError("no trusted public key given", hint="pass --key PUB.pem (repeatable)")
    data, manifest = read_manifest(manifest_path)
    digest = hashlib.sha256(data).hexdigest()
    env_path = Path(envelopes) if envelopes is not None else envelope_path(manifest_path)
    if envelopes is not None and not env_path.exists() and not env_path.is_symlink():
        raise TeeformError("envelopes file not found", path=env_path, field="--envelopes")  # named by the user: exit 2
    if not env_path.exists():
        raise SignatureInvalid("no signature: envelopes file not found", path=env_path,
                           hint=f"sign it with `teeform sign {manifest_path} --key KEY.pem`")
    raw = read_limited(env_path, ENVELOPES_LIMIT, what="envelopes file")
    lines = [(i, ln) for i, ln in enumerate(raw.split(b"\n"), 1) if ln.strip()]
    if not lines:
        raise TeeformError("is empty (no DSSE envelope)", path=env_path)
    if len(lines) > MAX_ENVELOPES:
        raise TeeformError(f"{len(lines)} envelopes (limit {MAX_ENVELOPES})", path=env_path)
    seen: dict[str, str] = {}
    signer: TrustedKey | None = None
    for lineno, ln in lines:
        fld = f"line {lineno}"
        env = loads_json(ln, source=f"{env_path}: {fld}")
        payload, k = verify_envelope(env, keys, str(env_path), fld)
        signer = signer or k
        st = loads_json(payload, source=f"{env_path}: {fld}: payload")
        ptype = _check_statement(st, manifest, digest, str(env_path), f"{fld}.payload")
        seen.setdefault(ptype, k.signer)
    missing = [p for p in PREDICATE_TYPES if p not in seen]
    if missing:
        raise SignatureInvalid(f"no signed statement with predicateType {missing[0]!r}", path=env_path)
    assert signer is not None
    return Verified(manifest, digest, signer.signer, signer.source, "dsse", tuple(p for p in PREDICATE_TYPES))


def verify_blob_signature(manifest_path: os.PathLike[str] | str, signature_path: os.PathLike[str] | str,
                          keys: Sequence[TrustedKey]) -> Verified:
    """Verify a cosign ``sign-blob --key`` signature of the manifest file (module docstring).

    Raises:
        TeeformError: missing or non-base64 signature file, or no pinned key verifies it.
    """
    if not keys:
        raise TeeformError("no trusted public key given", hint="pass --key PUB.pem (repeatable)")
    data, manifest = read_manifest(manifest_path)
    text = read_limited(signature_path, KEY_FILE_LIMIT, what="signature").decode("ascii", "replace")
    sig = _b64(text, str(signature_path), "(signature)")
    if not sig:
        raise TeeformError("is empty (expected a base64 DER ECDSA signature, as cosign sign-blob writes)",
                           path=signature_path, field="(signature)")
    for k in keys:
        if _verify_sig(k.key, sig, data):
            return Verified(manifest, hashlib.sha256(data).hexdigest(), k.signer, k.source, "cosign-blob")
    pinned = ", ".join(f"{k.source} (sha256:{k.fingerprint[:16]}…)" for k in keys)
    raise SignatureInvalid(f"does not verify the manifest's bytes with a pinned key ({pinned})", path=signature_path,
                       hint="the manifest was changed after signing, or it was signed with another key")


def verify_manifest(manifest_path: os.PathLike[str] | str, keys: Sequence[TrustedKey], *,
                    envelopes: os.PathLike[str] | str | None = None,
                    signature: os.PathLike[str] | str | None = None) -> Verified:
    """Verify ``manifest_path`` against pinned ``keys``: the cosign signature when ``signature`` is
    given, else the DSSE envelopes (``envelopes`` or :func:`envelope_path`); when neither is given and
    no envelopes file exists, a ``<MANIFEST>.sig`` next to the manifest is used."""
    if signature is not None:
        return verify_blob_signature(manifest_path, signature, keys)
    if envelopes is None:
        sig = Path(manifest_path).with_name(Path(manifest_path).name + COSIGN_SIGNATURE_SUFFIX)
        if not envelope_path(manifest_path).exists() and sig.exists():
            return verify_blob_signature(manifest_path, sig, keys)
    return verify_envelopes(manifest_path, keys, envelopes)


__all__ = [
    "SignatureInvalid", "PAYLOAD_TYPE", "STATEMENT_TYPE", "SLSA_PROVENANCE_V1", "MEASUREMENTS_V1", "ENVELOPE_SUFFIX", "TrustedKey",
    "Verified", "pae", "canonical_json", "statements", "envelope_path", "key_fingerprint", "parse_public_key",
    "load_public_key", "load_private_key", "sign_statements", "sign_manifest", "verify_envelope", "verify_envelopes",
    "verify_blob_signature", "verify_manifest",
]
