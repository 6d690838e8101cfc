"""Offline verification of a stored Rekor (v1) transparency-log entry for a cosign-signed manifest.

A CI job that runs ``cosign sign-blob --key`` with transparency-log upload gets a Rekor entry back; stored
next to the manifest as ``<MANIFEST>.rekor.json`` it lets a verifier check, **offline**, that the signature
was published in the log. The file is one transparency-log entry in the Sigstore bundle's
``verificationMaterial.tlogEntries[]`` JSON form (sigstore/protobuf-specs ``sigstore_rekor.proto``
``TransparencyLogEntry``; gitops-signing-terraform.md §2.2, §2.5)::

    {"logIndex": "<int>", "logId": {"keyId": "<b64 sha256 of the log key's DER SPKI>"},
     "kindVersion": {"kind": "hashedrekord", "version": "0.0.1"}, "integratedTime": "<unix seconds>",
     "inclusionPromise": {"signedEntryTimestamp": "<b64 DER ECDSA>"},
     "inclusionProof": {"logIndex": "<int, index in the shard>", "rootHash": "<b64>", "treeSize": "<int>",
                        "hashes": ["<b64>", ...], "checkpoint": {"envelope": "<signed note>"}},
     "canonicalizedBody": "<b64 of the entry body JSON>"}

:func:`verify_entry` checks, against **pinned** log keys (default: ``teeform/data/rekor.sigstore.dev.pub``,
the ``https://rekor.sigstore.dev`` ECDSA P-256 key copied from the trusted root embedded in sigstore-python
4.5 at 27db13d, ``sigstore/_store/https%3A%2F%2Ftuf-repo-cdn.sigstore.dev/trusted_root.json``, ``tlogs[0]``,
valid from 2021-01-12; its SHA-256 is that entry's ``logId.keyId``):

1. the **inclusion proof** (RFC 9162 §2.1.3.2 verification over RFC 6962 hashing: leaf =
   SHA-256(0x00 || body), node = SHA-256(0x01 || left || right)) from the body to ``rootHash`` at ``treeSize``;
2. the **checkpoint** (a C2SP signed note: text ``<origin>\\n<size>\\n<b64 root>\\n[extensions]``, then a blank
   line and signature lines ``— <name> <b64(key hint[4] || signature)>``, key hint = first 4 bytes of the log's
   key id): a signature by a pinned key over the text, whose size and root equal the proof's;
3. the **signed entry timestamp** (SET): ECDSA-P256-SHA256 by the log key over the canonical JSON
   ``{"body": <canonicalizedBody>, "integratedTime": <int>, "logID": <hex key id>, "logIndex": <int>}``
   (sorted keys, no spaces);

and :func:`bind_manifest` then checks that the body is a ``hashedrekord`` 0.0.1 of **this** manifest: its
``spec.data.hash`` is the manifest file's SHA-256, its ``spec.signature.content`` verifies over those bytes
with a pinned signing key, and its ``spec.signature.publicKey.content`` is that key (by value).

What it proves: the signature was in the log at tree size N. Not proved offline: that the log is
consistent with what others see (consistency proofs and witnesses need online checkpoints). Rekor v2
(Ed25519 checkpoints, no SET) is not handled.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from teeform.errors import TeeformError
from teeform.manifest import MAX_MANIFEST_BYTES
from teeform.safeload import loads_json, read_limited
from teeform.signing import SignatureInvalid, TrustedKey

#: Pinned default log key (module docstring).
DEFAULT_LOG_KEY = Path(__file__).parent / "data" / "rekor.sigstore.dev.pub"
#: Suffix of the stored entry next to a manifest.
ENTRY_SUFFIX = ".rekor.json"
#: Largest entry file read, most proof hashes accepted (a tree of 2**64 leaves needs 64).
MAX_ENTRY_BYTES = 1024 * 1024
MAX_PROOF_HASHES = 64


@dataclass(frozen=True)
class LogKey:
    """A pinned transparency-log key: source, P-256 key, key id (SHA-256 of the DER SPKI)."""

    source: str
    key: ec.EllipticCurvePublicKey
    key_id: bytes


def load_log_key(path: os.PathLike[str] | str = DEFAULT_LOG_KEY) -> LogKey:
    """Read a PEM P-256 log public key.

    Raises:
        TeeformError: unreadable, not PEM, not P-256 (naming the file).
    """
    pem = read_limited(path, 64 * 1024, what="log public key")
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise TeeformError(f"not a PEM public key ({exc})", path=path) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise TeeformError("a Rekor v1 log key must be ECDSA P-256", path=path)
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return LogKey(str(path), key, hashlib.sha256(der).digest())


def leaf_hash(body: bytes) -> bytes:
    """RFC 6962 §2.1 leaf hash: SHA-256(0x00 || body)."""
    return hashlib.sha256(b"\x00" + body).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root hash an inclusion proof implies (RFC 9162 §2.1.3.2).

    Raises:
        ValueError: ``index`` outside ``[0, size)``, or a proof of the wrong length.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not below the tree size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ValueError("the proof is longer than the tree is deep")
        if fn % 2 == 1 or fn == sn:
            r = _node(p, r)
            while fn % 2 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("the proof is shorter than the tree is deep")
    return r


def _b64(v: Any, source: str, fld: str) -> bytes:
    if not isinstance(v, str):
        raise TeeformError("must be a base64 string", path=source, field=fld)
    try:
        return base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError):
        raise TeeformError("not valid base64", path=source, field=fld) from None


_DECIMAL = re.compile(r"[0-9]{1,20}")


def _int(v: Any, source: str, fld: str) -> int:
    # ASCII digits only: str.isdigit() is also true of "²" (int() then raises) and of other scripts' digits
    if isinstance(v, bool) or not isinstance(v, int | str) or not _DECIMAL.fullmatch(str(v)):
        raise TeeformError(f"must be a non-negative integer (or its decimal string), got {v!r}", path=source, field=fld)
    return int(v)


def _ecdsa_ok(key: ec.EllipticCurvePublicKey, sig: bytes, msg: bytes) -> bool:
    try:
        key.verify(sig, msg, ec.ECDSA(hashes.SHA256()))
        return True
    except (InvalidSignature, ValueError):
        return False


def verify_checkpoint(envelope: str, keys: Sequence[LogKey], source: str) -> tuple[str, int, bytes, LogKey]:
    """Verify a checkpoint signed note (module docstring); return (origin, size, root hash, the key that signed).

    Raises:
        TeeformError: malformed; SignatureInvalid: no pinned key signed it.
    """
    fld = "inclusionProof.checkpoint.envelope"
    text, sep, sigs = envelope.partition("\n\n")
    if not sep:
        raise TeeformError("is not a signed note (no blank line before the signatures)", path=source, field=fld)
    lines = text.split("\n")
    if len(lines) < 3:
        raise TeeformError("needs origin, size and root hash lines", path=source, field=fld)
    origin, size, root = lines[0], _int(lines[1], source, fld + " (size)"), _b64(lines[2], source, fld + " (root)")
    signed = (text + "\n").encode()
    for line in sigs.split("\n"):
        if not line.startswith("\u2014 "):
            continue
        parts = line[2:].rsplit(" ", 1)
        if len(parts) != 2:
            continue
        raw = _b64(parts[1], source, fld + " (signature)")
        for k in keys:
            if raw[:4] == k.key_id[:4] and _ecdsa_ok(k.key, raw[4:], signed):
                return origin, size, root, k
    raise SignatureInvalid("no signature by a pinned log key", path=source, field=fld)


@dataclass(frozen=True)
class LoggedEntry:
    """A verified entry: its body (parsed JSON), the checkpoint's origin, the tree size, the leaf index in
    that tree, and the log key that signed checkpoint and SET."""

    body: dict[str, Any]
    origin: str
    tree_size: int
    index: int
    log_key: LogKey


def verify_entry(entry: Any, keys: Sequence[LogKey], source: str) -> LoggedEntry:
    """Verify inclusion proof, checkpoint and SET of one stored entry (module docstring).

    Returns:
        the verified :class:`LoggedEntry`.

    Raises:
        TeeformError: malformed entry; SignatureInvalid: a proof, checkpoint or SET that does not verify.
    """
    if not isinstance(entry, Mapping):
        raise TeeformError("must be a transparency-log entry (a JSON object)", path=source)
    body_b64 = entry.get("canonicalizedBody")
    body = _b64(body_b64, source, "canonicalizedBody")
    proof = entry.get("inclusionProof")
    if not isinstance(proof, Mapping):
        raise TeeformError("missing (an entry without an inclusion proof cannot be checked offline)", path=source,
                           field="inclusionProof")
    hashes_raw = proof.get("hashes")
    if not isinstance(hashes_raw, list) or len(hashes_raw) > MAX_PROOF_HASHES:
        raise TeeformError(f"must be a list of at most {MAX_PROOF_HASHES} hashes", path=source,
                           field="inclusionProof.hashes")
    path_hashes = [_b64(h, source, f"inclusionProof.hashes[{i}]") for i, h in enumerate(hashes_raw)]
    index = _int(proof.get("logIndex"), source, "inclusionProof.logIndex")
    size = _int(proof.get("treeSize"), source, "inclusionProof.treeSize")
    root = _b64(proof.get("rootHash"), source, "inclusionProof.rootHash")
    try:
        computed = root_from_inclusion_proof(index, size, leaf_hash(body), path_hashes)
    except ValueError as exc:
        raise SignatureInvalid(str(exc), path=source, field="inclusionProof") from None
    if computed != root:
        raise SignatureInvalid(f"the proof leads to root {computed.hex()[:16]}…, not rootHash {root.hex()[:16]}…",
                               path=source, field="inclusionProof")
    cp = proof.get("checkpoint")
    env = cp.get("envelope") if isinstance(cp, Mapping) else None
    if not isinstance(env, str):
        raise TeeformError("missing", path=source, field="inclusionProof.checkpoint.envelope")
    origin, cp_size, cp_root, log_key = verify_checkpoint(env, keys, source)
    if (cp_size, cp_root) != (size, root):
        raise SignatureInvalid(f"the checkpoint is for size {cp_size}, not the proof's tree size {size} and root",
                               path=source, field="inclusionProof.checkpoint")
    log_id = entry.get("logId")
    key_id = _b64(log_id.get("keyId") if isinstance(log_id, Mapping) else None, source, "logId.keyId")
    if key_id != log_key.key_id:
        raise SignatureInvalid("logId.keyId is not the key that signed the checkpoint", path=source, field="logId")
    promise = entry.get("inclusionPromise")
    set_sig = _b64(promise.get("signedEntryTimestamp") if isinstance(promise, Mapping) else None, source,
                   "inclusionPromise.signedEntryTimestamp")
    payload = json.dumps({"body": body_b64, "integratedTime": _int(entry.get("integratedTime"), source, "integratedTime"),
                          "logID": key_id.hex(), "logIndex": _int(entry.get("logIndex"), source, "logIndex")},
                         sort_keys=True, separators=(",", ":")).encode()
    if not _ecdsa_ok(log_key.key, set_sig, payload):
        raise SignatureInvalid("does not verify with the log key", path=source, field="inclusionPromise.signedEntryTimestamp")
    doc = loads_json(body, source=f"{source}: canonicalizedBody")
    if not isinstance(doc, dict):
        raise TeeformError("must be a JSON object", path=source, field="canonicalizedBody")
    return LoggedEntry(doc, origin, size, index, log_key)


def _obj(v: Any) -> Mapping[str, Any]:
    return v if isinstance(v, Mapping) else {}


def bind_manifest(body: Mapping[str, Any], manifest_bytes: bytes, keys: Sequence[TrustedKey], source: str) -> TrustedKey:
    """Check that a verified entry body is a ``hashedrekord`` 0.0.1 of ``manifest_bytes`` signed by a pinned key.

    Raises:
        SignatureInvalid: another kind, another hash, a signature or key that is not a pinned one's.
    """
    from teeform.signing import _verify_sig, parse_public_key

    if (body.get("kind"), body.get("apiVersion")) != ("hashedrekord", "0.0.1"):
        raise SignatureInvalid(f"is {body.get('kind')!r} {body.get('apiVersion')!r}, expected hashedrekord 0.0.1",
                               path=source, field="canonicalizedBody.kind")
    spec = _obj(body.get("spec"))
    h = _obj(_obj(spec.get("data")).get("hash"))
    want = hashlib.sha256(manifest_bytes).hexdigest()
    if h.get("algorithm") != "sha256" or h.get("value") != want:
        raise SignatureInvalid(f"spec.data.hash is {h!r}, not the manifest file's sha256 {want}", path=source,
                               field="canonicalizedBody.spec.data.hash")
    sig = _obj(spec.get("signature"))
    raw_sig = _b64(sig.get("content"), source, "canonicalizedBody.spec.signature.content")
    pub = _obj(sig.get("publicKey"))
    logged = parse_public_key(_b64(pub.get("content"), source, "canonicalizedBody.spec.signature.publicKey.content"),
                              f"{source}: canonicalizedBody.spec.signature.publicKey")
    for k in keys:
        if k.fingerprint == logged.fingerprint and _verify_sig(k.key, raw_sig, manifest_bytes):
            return k
    raise SignatureInvalid("the logged signature is not a pinned key's signature of this manifest", path=source,
                           field="canonicalizedBody.spec.signature")


def verify_manifest_entry(manifest_path: os.PathLike[str] | str, entry_path: os.PathLike[str] | str,
                          keys: Sequence[TrustedKey], log_keys: Sequence[LogKey]) -> tuple[LoggedEntry, TrustedKey]:
    """Read the manifest and its stored entry; :func:`verify_entry` then :func:`bind_manifest`."""
    data = read_limited(manifest_path, MAX_MANIFEST_BYTES, what="manifest")
    entry = loads_json(read_limited(entry_path, MAX_ENTRY_BYTES, what="Rekor entry"), source=str(entry_path))
    logged = verify_entry(entry, log_keys, str(entry_path))
    return logged, bind_manifest(logged.body, data, keys, str(entry_path))


__all__ = ["DEFAULT_LOG_KEY", "ENTRY_SUFFIX", "LogKey", "LoggedEntry", "load_log_key", "leaf_hash", "root_from_inclusion_proof",
           "verify_checkpoint", "verify_entry", "bind_manifest", "verify_manifest_entry"]
