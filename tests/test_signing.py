"""``teeform sign`` / ``teeform verify manifest``: in-toto Statements in DSSE envelopes, and cosign blob signatures.

Oracles (none of them is the code under test):

* the DSSE spec's test vector (secure-systems-lab/dsse ``protocol.md`` "Test Vectors", commit
  eebf7b59b17a06efd2d8a531fc30d1d193520adb): the PAE bytes, and its envelope signed by the published
  P-256 key (X, Y below), with the signature as raw ``r || s``;
* securesystemslib 1.6.0's own ``Envelope.from_dict(...).verify`` on the envelopes teeform writes;
* OpenSSL: ``openssl dgst -sha256 -verify`` of the PAE teeform's envelopes sign (built here by hand from
  the spec's formula), ``openssl dgst -sha256 -sign`` + base64 for a cosign-style blob signature
  (cosign ``sign-blob --key`` writes base64 DER ECDSA over SHA-256 of the blob, gitops-signing-terraform.md
  §2.3), and ``openssl pkey -pubin -outform DER`` for the key fingerprint;
* a signature made by ``cosign sign-blob`` itself: edgelesssys/constellation ``internal/sigstore/verify_test.go``
  at c9e8ac75e10cff1dc2a56c8b7e7c39a113db1b09 (``TestVerifySignature`` "success": content, signature,
  public key; three strings of test data, copied with this provenance).
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from conftest import require_tool
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pulumi_support import write_fake_eif_manifest

from teeform import signing
from teeform.cli import main
from teeform.errors import TeeformError

# DSSE protocol.md test vector (see the module docstring).
DSSE_X = 46950820868899156662930047687818585632848591499744589407958293238635476079160
DSSE_Y = 5640078356564379163099075877009565129882514886557779369047442380624545832820
DSSE_TYPE = "http://example.com/HelloWorld"
DSSE_PAE = b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
DSSE_ENVELOPE = {
    "payload": "aGVsbG8gd29ybGQ=",
    "payloadType": "http://example.com/HelloWorld",
    "signatures": [{"sig": "A3JqsQGtVsJ2O2xqrI5IcnXip5GToJ3F+FnZ+O88SjtR6rDAajabZKciJTfUiHqJPcIAriEGAHTVeCUjW2JIZA=="}],
}

# Constellation's cosign sign-blob vector (see the module docstring).
COSIGN_CONTENT = b"This is some content to be signed!\n"
COSIGN_SIG = "MEUCIQDzMN3yaiO9sxLGAaSA9YD8rLwzvOaZKWa/bzkcjImUFAIgXLLGzClYUd1dGbuEiY3O/g/eiwQYlyxqLQalxjFmz+8="
COSIGN_PUB = (b"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAElWUhon39eAqzEC+/GP03oY4/MQg+\n"
              b"gCDlEzkuOCybCHf+q766bve799L7Y5y5oRsHY1MrUCUwYF/tL7Sg7EYMsA==\n-----END PUBLIC KEY-----\n")


def _openssl_keypair(d: Path, name: str = "release") -> tuple[Path, Path]:
    """A P-256 key pair made by OpenSSL (PKCS#8 private key, SPKI public key)."""
    openssl = require_tool("openssl")
    key, pub = d / f"{name}.key", d / f"{name}.pub"
    ec_key = subprocess.run([openssl, "ecparam", "-name", "prime256v1", "-genkey", "-noout"], check=True,
                            capture_output=True).stdout
    subprocess.run([openssl, "pkcs8", "-topk8", "-nocrypt", "-out", str(key)], input=ec_key, check=True)
    subprocess.run([openssl, "pkey", "-in", str(key), "-pubout", "-out", str(pub)], check=True)
    return key, pub


def sign_for_repo_stack(doc: dict, manifest: Path, tmp_path: Path, *more: Path) -> None:
    """For tests that preview a repository stack (``doc``, parsed YAML) on test manifests: when the stack pins
    ``teeform:trustedManifestKeys`` (prod pins the key ``make demo`` generates), sign ``manifest`` (and ``more``)
    with a fresh test key and pin that key instead."""
    if "teeform:trustedManifestKeys" not in doc["config"]:
        return
    key, pub = _openssl_keypair(tmp_path, "test-release")
    for m in (manifest, *more):
        signing.sign_manifest(m, key)
    doc["config"]["teeform:trustedManifestKeys"] = [str(pub)]


@pytest.fixture
def signed(tmp_path):
    img = write_fake_eif_manifest(tmp_path / "build")
    key, pub = _openssl_keypair(tmp_path)
    assert main(["sign", str(img.manifest_path), "--key", str(key)]) == 0
    return img, key, pub


def _lines(p: Path) -> list[dict]:
    return [json.loads(ln) for ln in p.read_text().splitlines() if ln.strip()]


# ------------------------------------------------------------------------------------ DSSE spec vector
def test_pae_matches_the_dsse_spec_vector():
    assert signing.pae(DSSE_TYPE, b"hello world") == DSSE_PAE


def test_dsse_spec_envelope_verifies_with_the_spec_key():
    pub = ec.EllipticCurvePublicNumbers(DSSE_X, DSSE_Y, ec.SECP256R1()).public_key()
    pem = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    k = signing.parse_public_key(pem, "dsse-spec-key")
    payload, who = signing.verify_envelope(DSSE_ENVELOPE, [k], "spec", "envelope", payload_type=DSSE_TYPE)
    assert payload == b"hello world" and who is k
    # the same envelope with another body, or read as an in-toto envelope, does not pass
    other = dict(DSSE_ENVELOPE, payload=base64.b64encode(b"hello World").decode())
    with pytest.raises(signing.SignatureInvalid, match="no signature verifies"):
        signing.verify_envelope(other, [k], "spec", "envelope", payload_type=DSSE_TYPE)
    with pytest.raises(signing.SignatureInvalid, match="payloadType: is 'http://example.com/HelloWorld'"):
        signing.verify_envelope(DSSE_ENVELOPE, [k], "spec", "envelope")


# ------------------------------------------------------------------------------------ sign, and oracles
def test_sign_writes_two_in_toto_statements_over_the_artifact(signed):
    img, _, _ = signed
    env_file = img.manifest_path.with_name(img.manifest_path.name + ".intoto.jsonl")
    envs = _lines(env_file)
    assert [e["payloadType"] for e in envs] == ["application/vnd.in-toto+json"] * 2
    sts = [json.loads(base64.b64decode(e["payload"])) for e in envs]
    assert [s["predicateType"] for s in sts] == ["https://slsa.dev/provenance/v1", "https://teeform.dev/measurements/v1"]
    art = json.loads(img.manifest_path.read_text())["artifact"]  # the manifest file this test wrote
    digests = {alg: art[alg] for alg in ("sha256", "sha384") if alg in art}
    assert digests["sha256"] == hashlib.sha256(img.eif_path.read_bytes()).hexdigest()
    manifest_sha = hashlib.sha256(img.manifest_path.read_bytes()).hexdigest()
    for s in sts:
        assert s["_type"] == "https://in-toto.io/Statement/v1"
        assert s["subject"] == [{"name": art["file_name"], "digest": digests}]
    prov, meas = sts[0]["predicate"], sts[1]["predicate"]
    assert prov["buildDefinition"]["resolvedDependencies"] == [
        {"name": i.name, "digest": {"sha256": i.sha256}, "annotations": {"role": i.role, "size": i.size}}
        for i in img.manifest.inputs
    ]
    assert prov["runDetails"]["byproducts"] == [{"name": img.manifest_path.name, "digest": {"sha256": manifest_sha}}]
    assert meas["measurements"] == dict(img.manifest.measurements)
    assert meas["manifest"]["digest"]["sha256"] == manifest_sha


def test_envelopes_verify_with_securesystemslib_and_openssl(signed, tmp_path):
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey

    img, _, pub = signed
    openssl = require_tool("openssl")
    fp = hashlib.sha256(subprocess.run([openssl, "pkey", "-pubin", "-in", str(pub), "-outform", "DER"],
                                       check=True, capture_output=True).stdout).hexdigest()
    assert signing.load_public_key(pub).fingerprint == fp
    env_file = img.manifest_path.with_name(img.manifest_path.name + ".intoto.jsonl")
    for i, env in enumerate(_lines(env_file)):
        assert [s["keyid"] for s in env["signatures"]] == [fp]
        # securesystemslib's own verifier (it matches keyids first: give the key the envelope's keyid)
        key = SSlibKey.from_crypto(serialization.load_pem_public_key(pub.read_bytes()), keyid=fp,
                                   scheme="ecdsa-sha2-nistp256")
        assert list(Envelope.from_dict(json.loads(json.dumps(env))).verify([key], 1)) == [fp]
        # OpenSSL over the PAE built from the DSSE formula
        body = base64.b64decode(env["payload"])
        t = env["payloadType"].encode()
        pae = b"DSSEv1 " + str(len(t)).encode() + b" " + t + b" " + str(len(body)).encode() + b" " + body
        (tmp_path / f"pae{i}").write_bytes(pae)
        (tmp_path / f"sig{i}").write_bytes(base64.b64decode(env["signatures"][0]["sig"]))
        r = subprocess.run([openssl, "dgst", "-sha256", "-verify", str(pub), "-signature", str(tmp_path / f"sig{i}"),
                            str(tmp_path / f"pae{i}")], capture_output=True, text=True)
        assert r.returncode == 0 and "Verified OK" in r.stdout, r.stdout + r.stderr


def test_verify_manifest_passes_and_reports_the_signer(signed, capsys):
    img, _, pub = signed
    capsys.readouterr()
    assert main(["verify", "manifest", str(img.manifest_path), "--key", str(pub), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verified"] is True and out["method"] == "dsse"
    assert out["signer"] == "sha256:" + signing.load_public_key(pub).fingerprint
    assert out["manifest_sha256"] == hashlib.sha256(img.manifest_path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------ failures: exit 1, one line
def _fail_line(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err
    first = err.splitlines()[0]
    assert first.startswith("FAIL: ") and "Traceback" not in err
    return first


def test_tampered_manifest_fails(signed, capsys):
    img, _, pub = signed
    data = json.loads(img.manifest_path.read_text())
    data["measurements"]["PCR1"] = "ab" * 48
    img.manifest_path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    line = _fail_line(capsys, ["verify", "manifest", str(img.manifest_path), "--key", str(pub)])
    assert ".intoto.jsonl: line 1.payload.predicate.runDetails.byproducts:" in line
    assert "the manifest was changed after signing" in line


def test_tampered_envelope_payload_fails(signed, capsys):
    img, _, pub = signed
    env_file = img.manifest_path.with_name(img.manifest_path.name + ".intoto.jsonl")
    envs = _lines(env_file)
    st = json.loads(base64.b64decode(envs[1]["payload"]))
    st["predicate"]["measurements"]["PCR0"] = "cd" * 48
    envs[1]["payload"] = base64.b64encode(signing.canonical_json(st)).decode()
    env_file.write_text("".join(json.dumps(e) + "\n" for e in envs))
    line = _fail_line(capsys, ["verify", "manifest", str(img.manifest_path), "--key", str(pub)])
    assert line.endswith("line 2.signatures: no signature verifies with a pinned key "
                         f"({pub} (sha256:{signing.load_public_key(pub).fingerprint[:16]}…))")


def test_wrong_key_fails(signed, tmp_path, capsys):
    img, _, _ = signed
    _, other = _openssl_keypair(tmp_path, "other")
    line = _fail_line(capsys, ["verify", "manifest", str(img.manifest_path), "--key", str(other)])
    assert "line 1.signatures: no signature verifies with a pinned key" in line


def test_wrong_payload_type_fails_even_when_signed_by_the_pinned_key(signed, capsys):
    img, key, pub = signed
    data = img.manifest_path.read_bytes()
    sts = signing.statements(img.manifest, data, img.manifest_path.name)
    envs = signing.sign_statements(sts, signing.load_private_key(key), payload_type="application/json")
    env_file = img.manifest_path.with_name(img.manifest_path.name + ".intoto.jsonl")
    env_file.write_text("".join(json.dumps(e) + "\n" for e in envs))
    line = _fail_line(capsys, ["verify", "manifest", str(img.manifest_path), "--key", str(pub)])
    assert line.endswith("line 1.payloadType: is 'application/json', expected 'application/vnd.in-toto+json' "
                         "(an in-toto envelope)")


def test_missing_predicate_fails(signed, capsys):
    img, key, pub = signed
    data = img.manifest_path.read_bytes()
    sts = signing.statements(img.manifest, data, img.manifest_path.name)[:1]
    env_file = img.manifest_path.with_name(img.manifest_path.name + ".intoto.jsonl")
    env_file.write_text(json.dumps(signing.sign_statements(sts, signing.load_private_key(key))[0]) + "\n")
    line = _fail_line(capsys, ["verify", "manifest", str(img.manifest_path), "--key", str(pub)])
    assert "no signed statement with predicateType 'https://teeform.dev/measurements/v1'" in line


@pytest.mark.parametrize("schema_version, artifact_sha384", [(2, False), (2, True), (1, True)])
def test_dsse_subject_digests_are_the_manifests(tmp_path, capsys, schema_version, artifact_sha384):
    """A schema-2 EIF manifest (no artifact.sha384) is signed over {sha256} only; a manifest recording a
    sha384 (an old schema-1 one, or schema 2 with it) over {sha256, sha384}; each verifies. Expected values:
    hashlib over the EIF bytes the test wrote."""
    img = write_fake_eif_manifest(tmp_path / "build", schema_version=schema_version, artifact_sha384=artifact_sha384)
    key, pub = _openssl_keypair(tmp_path)
    assert main(["sign", str(img.manifest_path), "--key", str(key)]) == 0
    eif = img.eif_path.read_bytes()
    want = {"sha256": hashlib.sha256(eif).hexdigest()}
    if artifact_sha384:
        want["sha384"] = hashlib.sha384(eif).hexdigest()
    for env in _lines(img.manifest_path.with_name(img.manifest_path.name + ".intoto.jsonl")):
        st = json.loads(base64.b64decode(env["payload"]))
        assert st["subject"] == [{"name": "openclaw-agent.eif", "digest": want}]
    capsys.readouterr()
    assert main(["verify", "manifest", str(img.manifest_path), "--key", str(pub), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["artifact"] == {"file_name": "openclaw-agent.eif", "sha256": want["sha256"], "sha384": want.get("sha384")}


def _resign_with_subject_digest(img, key: Path, digest: dict) -> None:
    """Re-sign both statements of ``img`` with the pinned key, the subject's digest set replaced by ``digest``."""
    sts = signing.statements(img.manifest, img.manifest_path.read_bytes(), img.manifest_path.name)
    for st in sts:
        st["subject"][0]["digest"] = digest
    envs = signing.sign_statements(sts, signing.load_private_key(key))
    env_file = img.manifest_path.with_name(img.manifest_path.name + ".intoto.jsonl")
    env_file.write_text("".join(json.dumps(e) + "\n" for e in envs))


@pytest.mark.parametrize("artifact_sha384", [False, True])
def test_subject_digest_set_must_be_exactly_the_manifests(tmp_path, capsys, artifact_sha384):
    """Signed by the pinned key, yet refused: a subject without sha256, with another sha256, without the
    manifest's sha384 or with another one, or with a sha384 the manifest does not record."""
    img = write_fake_eif_manifest(tmp_path / "build", artifact_sha384=artifact_sha384)
    key, pub = _openssl_keypair(tmp_path)
    eif = img.eif_path.read_bytes()
    sha256, sha384 = hashlib.sha256(eif).hexdigest(), hashlib.sha384(eif).hexdigest()
    argv = ["verify", "manifest", str(img.manifest_path), "--key", str(pub)]
    cases = [({"sha384": sha384}, "subject[0].digest.sha256: is None, but the manifest's artifact.sha256 is"),
             ({"sha256": "00" * 32, **({"sha384": sha384} if artifact_sha384 else {})},
              "subject[0].digest.sha256: is '" + "00" * 32 + "', but the manifest's artifact.sha256 is"),
             ({}, "subject[0].digest.sha256: is None"),
             ("sha256:" + sha256, "subject[0].digest: must be an object of digests")]
    if artifact_sha384:
        cases += [({"sha256": sha256}, "subject[0].digest.sha384: is None, but the manifest's artifact.sha384 is"),
                  ({"sha256": sha256, "sha384": "00" * 48}, "subject[0].digest.sha384: is '" + "00" * 48 + "'")]
    else:
        cases += [({"sha256": sha256, "sha384": sha384}, "subject[0].digest: has sha384, which the manifest's "
                   "artifact does not record")]
    for digest, message in cases:
        _resign_with_subject_digest(img, key, digest)  # type: ignore[arg-type]
        line = _fail_line(capsys, argv)
        assert ".intoto.jsonl: line 1.payload." + message in line, line
    # and the exact set verifies
    _resign_with_subject_digest(img, key, {"sha256": sha256, **({"sha384": sha384} if artifact_sha384 else {})})
    capsys.readouterr()
    assert main(argv) == 0


def test_unsigned_manifest_fails(tmp_path, capsys):
    img = write_fake_eif_manifest(tmp_path / "build")
    _, pub = _openssl_keypair(tmp_path)
    line = _fail_line(capsys, ["verify", "manifest", str(img.manifest_path), "--key", str(pub)])
    assert "no signature: envelopes file not found" in line


# ------------------------------------------------------------------------------------ cosign blob signatures
def test_cosign_vector_from_constellation_verifies(tmp_path):
    k = signing.parse_public_key(COSIGN_PUB, "constellation-test-key")
    assert signing._verify_sig(k.key, base64.b64decode(COSIGN_SIG), COSIGN_CONTENT)
    assert not signing._verify_sig(k.key, base64.b64decode(COSIGN_SIG), b"This is some completely different content!\n")


def test_openssl_blob_signature_verifies_and_tampering_fails(tmp_path, capsys):
    openssl = require_tool("openssl")
    img = write_fake_eif_manifest(tmp_path / "build")
    key, pub = _openssl_keypair(tmp_path)
    der = subprocess.run([openssl, "dgst", "-sha256", "-sign", str(key), str(img.manifest_path)], check=True,
                         capture_output=True).stdout
    sig = img.manifest_path.with_name(img.manifest_path.name + ".sig")
    sig.write_text(base64.b64encode(der).decode() + "\n")
    capsys.readouterr()
    assert main(["verify", "manifest", str(img.manifest_path), "--key", str(pub), "--signature", str(sig)]) == 0
    assert "cosign sign-blob signature" in capsys.readouterr().out
    # without --signature the .sig next to the manifest is used when there are no envelopes
    assert main(["verify", "manifest", str(img.manifest_path), "--key", str(pub)]) == 0
    img.manifest_path.write_bytes(img.manifest_path.read_bytes().replace(b'"1.0.0"', b'"1.0.1"'))
    line = _fail_line(capsys, ["verify", "manifest", str(img.manifest_path), "--key", str(pub), "--signature", str(sig)])
    assert line.startswith(f"FAIL: {sig}: does not verify the manifest's bytes with a pinned key")


# ------------------------------------------------------------------------------------ unusable input: exit 2
def _error_line(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err.splitlines()[0]


def test_bad_inputs_are_one_line_exit_2(signed, tmp_path, capsys):
    img, key, pub = signed
    assert "is a private key; pin the public key" in _error_line(
        capsys, ["verify", "manifest", str(img.manifest_path), "--key", str(key)])
    rsa_pub = tmp_path / "rsa.pub"
    rsa_pub.write_bytes(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    assert "public key must be an ECDSA P-256 (prime256v1) key" in _error_line(
        capsys, ["verify", "manifest", str(img.manifest_path), "--key", str(rsa_pub)])
    env_file = img.manifest_path.with_name(img.manifest_path.name + ".intoto.jsonl")
    env_file.write_text("{not json\n")
    line = _error_line(capsys, ["verify", "manifest", str(img.manifest_path), "--key", str(pub)])
    assert f"{env_file}: line 1: not valid JSON" in line
    env_file.write_text(json.dumps({"payload": "!!", "payloadType": "x", "signatures": []}) + "\n")
    assert "line 1.payload: not valid base64" in _error_line(
        capsys, ["verify", "manifest", str(img.manifest_path), "--key", str(pub)])
    p384 = tmp_path / "p384.key"
    p384.write_bytes(ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    before = env_file.read_bytes()
    assert "signing key must be an ECDSA P-256 (prime256v1) key, got secp384r1" in _error_line(
        capsys, ["sign", str(img.manifest_path), "--key", str(p384)])
    assert env_file.read_bytes() == before  # nothing written


def test_encrypted_key_needs_the_password(tmp_path, monkeypatch, capsys):
    img = write_fake_eif_manifest(tmp_path / "build")
    enc = tmp_path / "enc.key"
    k = ec.generate_private_key(ec.SECP256R1())
    enc.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.BestAvailableEncryption(b"pw")))
    assert "hint: set TEEFORM_SIGNING_KEY_PASSWORD" in (
        main(["sign", str(img.manifest_path), "--key", str(enc)]) == 2 and capsys.readouterr().err)
    monkeypatch.setenv("TEEFORM_SIGNING_KEY_PASSWORD", "pw")
    assert main(["sign", str(img.manifest_path), "--key", str(enc)]) == 0


def test_keyid_is_not_trusted_only_the_key_value(signed):
    """A signature whose keyid names another key still verifies by value (DSSE: keyid is unauthenticated)."""
    img, _, pub = signed
    env_file = img.manifest_path.with_name(img.manifest_path.name + ".intoto.jsonl")
    envs = _lines(env_file)
    for e in envs:
        e["signatures"][0]["keyid"] = "someone-else"
    env_file.write_text("".join(json.dumps(e) + "\n" for e in envs))
    assert signing.verify_manifest(img.manifest_path, [signing.load_public_key(pub)]).method == "dsse"


def test_verify_needs_a_key():
    with pytest.raises(TeeformError, match="no trusted public key"):
        signing.verify_envelopes("x.json", [])
