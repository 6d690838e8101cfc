"""Offline verification of a stored Rekor v1 entry (``teeform.rekor``, ``teeform verify manifest --rekor``).

Oracles:

* a **production** entry: ``tests/fixtures/rekor/bundle_v3_github.whl.tlog-entry.json`` is
  ``verificationMaterial.tlogEntries[0]`` of sigstore-python's test asset ``test/assets/bundle_v3_github.whl.sigstore``
  (sigstore/sigstore-python at 27db13db157ecae5606eb22ec0be299ef348c370; the trailofbits/rfc8785.py v0.1.2 release,
  logIndex 79605083), copied unchanged: its inclusion proof, checkpoint and SET were made by rekor.sigstore.dev and
  must verify with the pinned log key ``teeform/data/rekor.sigstore.dev.pub`` (from the trusted root embedded in the
  same sigstore-python commit; its SHA-256 is the entry's ``logId.keyId``);
* RFC 6962 §2.1 Merkle tree hashes and §2.1.1 audit paths computed here from their recursive definitions (an
  implementation independent of the RFC 9162 iterative verifier under test), for every leaf of trees of 1..40 leaves;
* OpenSSL ``dgst -sha256 -sign`` for the cosign-format signature of the synthetic manifest entry.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from conftest import FIXTURES, require_tool
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pulumi_support import write_fake_eif_manifest
from test_signing import _openssl_keypair

from teeform import rekor
from teeform.cli import main

PROD_ENTRY = FIXTURES / "rekor" / "bundle_v3_github.whl.tlog-entry.json"


# ------------------------------------------------------------------ RFC 6962 reference (recursive definitions)
def _mth(leaves: list[bytes]) -> bytes:
    n = len(leaves)
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1 << ((n - 1).bit_length() - 1)  # the largest power of two smaller than n
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


def _path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return _path(m, leaves[:k]) + [_mth(leaves[k:])]
    return _path(m - k, leaves[k:]) + [_mth(leaves[:k])]


def test_inclusion_proofs_for_every_leaf_of_small_trees():
    for n in range(1, 41):
        leaves = [b"leaf-%d" % i for i in range(n)]
        root = _mth(leaves)
        for m in range(n):
            proof = _path(m, leaves)
            assert rekor.root_from_inclusion_proof(m, n, rekor.leaf_hash(leaves[m]), proof) == root
            if proof:  # a flipped hash, a wrong index or a truncated proof does not give the root
                bad = [bytes(32)] + proof[1:]
                assert rekor.root_from_inclusion_proof(m, n, rekor.leaf_hash(leaves[m]), bad) != root
                with pytest.raises(ValueError):
                    rekor.root_from_inclusion_proof(m, n, rekor.leaf_hash(leaves[m]), proof[:-1])
            if n > 1:  # the same proof for another index: another root, or a length the tree does not have
                try:
                    assert rekor.root_from_inclusion_proof((m + 1) % n, n, rekor.leaf_hash(leaves[m]), proof) != root
                except ValueError:
                    pass


# ------------------------------------------------------------------ the production entry
def test_production_entry_verifies_with_the_pinned_log_key():
    entry = json.loads(PROD_ENTRY.read_text())
    key = rekor.load_log_key()
    assert base64.b64encode(key.key_id).decode() == entry["logId"]["keyId"]
    logged = rekor.verify_entry(entry, [key], "prod")
    assert (logged.origin, logged.tree_size, logged.index) == ("rekor.sigstore.dev - 2605736670972794746", 75441653,
                                                               75441652)
    assert logged.body["kind"] == "hashedrekord"


@pytest.mark.parametrize("change, message", [
    (lambda e: e["inclusionProof"]["hashes"].__setitem__(0, base64.b64encode(bytes(32)).decode()),
     "inclusionProof: the proof leads to root"),
    (lambda e: e.__setitem__("integratedTime", str(int(e["integratedTime"]) + 1)),
     "inclusionPromise.signedEntryTimestamp: does not verify with the log key"),
    (lambda e: e["inclusionProof"].__setitem__("checkpoint", {"envelope": e["inclusionProof"]["checkpoint"]["envelope"]
                                                              .replace("\n75441653\n", "\n75441654\n")}),
     "inclusionProof.checkpoint.envelope: no signature by a pinned log key"),
])
def test_changed_production_entry_fails(change, message):
    entry = json.loads(PROD_ENTRY.read_text())
    change(entry)
    with pytest.raises(rekor.SignatureInvalid, match=message):
        rekor.verify_entry(entry, [rekor.load_log_key()], "prod")


def test_another_log_key_is_refused(tmp_path):
    other = tmp_path / "log.pub"
    other.write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(rekor.SignatureInvalid, match="no signature by a pinned log key"):
        rekor.verify_entry(json.loads(PROD_ENTRY.read_text()), [rekor.load_log_key(other)], "prod")


# ------------------------------------------------------------------ a synthetic log holding our manifest's signature
def _synthetic_entry(tmp_path: Path, manifest: Path, key: Path, pub: Path, *, digest: str | None = None) -> tuple[Path, Path]:
    openssl = require_tool("openssl")
    sig = subprocess.run([openssl, "dgst", "-sha256", "-sign", str(key), str(manifest)], check=True,
                         capture_output=True).stdout
    (manifest.parent / (manifest.name + ".sig")).write_bytes(base64.b64encode(sig))
    body = json.dumps({"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {
        "data": {"hash": {"algorithm": "sha256", "value": digest or hashlib.sha256(manifest.read_bytes()).hexdigest()}},
        "signature": {"content": base64.b64encode(sig).decode(),
                      "publicKey": {"content": base64.b64encode(pub.read_bytes()).decode()}}}},
        sort_keys=True, separators=(",", ":")).encode()
    leaves = [b"other-%d" % i for i in range(6)]
    leaves.insert(3, body)
    log = ec.generate_private_key(ec.SECP256R1())
    log_pub = tmp_path / "testlog.pub"
    log_pub.write_bytes(log.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))
    key_id = hashlib.sha256(log.public_key().public_bytes(serialization.Encoding.DER,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo)).digest()
    root = _mth(leaves)
    text = f"test.log - 1\n{len(leaves)}\n{base64.b64encode(root).decode()}\n"
    note_sig = log.sign(text.encode(), ec.ECDSA(hashes.SHA256()))
    envelope = text + "\n\u2014 test.log " + base64.b64encode(key_id[:4] + note_sig).decode() + "\n"
    body_b64 = base64.b64encode(body).decode()
    set_payload = json.dumps({"body": body_b64, "integratedTime": 1700000000, "logID": key_id.hex(), "logIndex": 42},
                             sort_keys=True, separators=(",", ":")).encode()
    entry = {
        "logIndex": "42", "logId": {"keyId": base64.b64encode(key_id).decode()},
        "kindVersion": {"kind": "hashedrekord", "version": "0.0.1"}, "integratedTime": "1700000000",
        "inclusionPromise": {"signedEntryTimestamp": base64.b64encode(log.sign(set_payload, ec.ECDSA(hashes.SHA256())))
                             .decode()},
        "inclusionProof": {"logIndex": "3", "rootHash": base64.b64encode(root).decode(), "treeSize": str(len(leaves)),
                           "hashes": [base64.b64encode(h).decode() for h in _path(3, leaves)],
                           "checkpoint": {"envelope": envelope}},
        "canonicalizedBody": body_b64,
    }
    path = manifest.parent / (manifest.name + ".rekor.json")
    path.write_text(json.dumps(entry, indent=2))
    return path, log_pub


def test_verify_manifest_with_a_stored_entry(tmp_path, capsys):
    img = write_fake_eif_manifest(tmp_path / "build")
    key, pub = _openssl_keypair(tmp_path)
    entry, log_pub = _synthetic_entry(tmp_path, img.manifest_path, key, pub)
    capsys.readouterr()
    argv = ["verify", "manifest", str(img.manifest_path), "--key", str(pub), "--rekor", str(entry),
            "--rekor-key", str(log_pub)]
    assert main(argv) == 0
    assert "in 'test.log - 1' at leaf 3 of 7 (inclusion proof, checkpoint and SET by" in capsys.readouterr().out
    # the default pinned key is rekor.sigstore.dev's, which did not sign this log
    assert main(argv[:-2]) == 1
    assert "no signature by a pinned log key" in capsys.readouterr().err


def test_entry_of_another_manifest_fails(tmp_path, capsys):
    img = write_fake_eif_manifest(tmp_path / "build")
    key, pub = _openssl_keypair(tmp_path)
    entry, log_pub = _synthetic_entry(tmp_path, img.manifest_path, key, pub, digest="ab" * 32)
    capsys.readouterr()
    assert main(["verify", "manifest", str(img.manifest_path), "--key", str(pub), "--rekor", str(entry),
                 "--rekor-key", str(log_pub)]) == 1
    err = capsys.readouterr().err
    assert "canonicalizedBody.spec.data.hash: spec.data.hash is" in err and "not the manifest file's sha256" in err
