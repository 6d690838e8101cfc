"""`teeform verify attestation`: real fixtures (oracle: expected.json + the AWS root) and minted documents.

Golden values come from ``tests/fixtures/nitro/expected.json`` (decoded by an independent script, see
its README) and the published root pin (eif-nitro.md §4.5); tampering and test-CA cases assert WHICH
check fails.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import cbor2
import nitro_testca as tca
import pytest
from conftest import NITRO_FIXTURES
from cryptography.hazmat.primitives.asymmetric import ec

from teeform.cli import main
from teeform.errors import TeeformError
from teeform.manifest import Artifact, ArtifactKind, Builder, InputDigest, Manifest, write_manifest
from teeform.nitro import verify as V
from teeform.nitro.attestation import parse_attestation_document

EXPECTED = json.loads((NITRO_FIXTURES / "expected.json").read_text())
FIXTURES = sorted(n for n in EXPECTED if n.endswith(".cose"))
NONDEBUG = [n for n in FIXTURES if "nondebug" in n]
DEBUG = [n for n in FIXTURES if "-debug" in n]
ZERO = "0" * 96


def write_eif_manifest(path: Path, pcrs: dict[str, str]) -> Path:
    """An EIF manifest allowing ``pcrs`` (``{"0": hex, ...}`` as in expected.json); PCR8 if non-zero."""
    meas = {"PCR0": pcrs["0"], "PCR1": pcrs["1"], "PCR2": pcrs["2"], "ImageSha384": pcrs["0"]}
    if pcrs.get("8", ZERO) != ZERO:
        meas["PCR8"] = pcrs["8"]
    m = Manifest(ArtifactKind.EIF, "agent", "1.0.0", Artifact("agent.eif", 1, "0" * 64, "0" * 96), meas,
                 (InputDigest("image", "agent:1", "1" * 64),), Builder("teeform", "0.1.0"), 0)
    write_manifest(m, path)
    return path


@pytest.fixture
def fixture_manifest(tmp_path, nitro_fixtures):
    def make(name: str) -> Path:
        return write_eif_manifest(tmp_path / f"{name}.manifest.json", EXPECTED[name]["pcrs"])
    return make


def run_json(capsys, args: list[str]) -> tuple[int, dict]:
    status = main(["verify", "attestation", *args, "--json"])
    out = capsys.readouterr().out
    return status, (json.loads(out) if out.strip().startswith("{") else {})


def statuses(report: dict) -> dict[str, str]:
    return {c["check"]: c["status"] for c in report["checks"]}


def detail(report: dict, name: str) -> str:
    return next(c["detail"] for c in report["checks"] if c["check"] == name)


# ----------------------------------------------------------------------------------------- fixtures
def test_fixture_lists_are_not_empty(nitro_fixtures):
    """The parametrised tests below are built from expected.json at import time; an empty list would
    make pytest skip them without running anything, so their presence is asserted here."""
    assert (nitro_fixtures / "expected.json").exists()
    assert len(NONDEBUG) >= 2 and len(DEBUG) >= 2, (NONDEBUG, DEBUG)
    assert sorted(NONDEBUG + DEBUG) == FIXTURES


@pytest.mark.parametrize("name", NONDEBUG)
def test_fixture_verifies_at_its_timestamp(capsys, fixture_manifest, name):
    status, rep = run_json(capsys, [str(NITRO_FIXTURES / name), "--manifest", str(fixture_manifest(name))])
    assert status == 0, rep
    assert statuses(rep) == {"signature": "pass", "chain": "pass", "time": "pass", "PCR0": "pass", "PCR1": "pass",
                             "PCR2": "pass", "PCR8": "pass", "nonce": "skip", "debug": "pass"}
    assert rep["validation_time"].startswith(EXPECTED[name]["timestamp_utc"][:19])
    pcr0 = next(c for c in rep["checks"] if c["check"] == "PCR0")
    assert pcr0["actual"] == pcr0["expected"][0] == EXPECTED[name]["pcrs"]["0"]


@pytest.mark.parametrize("name", DEBUG)
def test_debug_fixture_fails_unless_allowed(capsys, fixture_manifest, name):
    man = str(fixture_manifest(name))
    status, rep = run_json(capsys, [str(NITRO_FIXTURES / name), "--manifest", man])
    assert status == 1
    st = statuses(rep)
    assert st.pop("debug") == "fail" and "debug-mode" in detail(rep, "debug")
    assert set(st.values()) <= {"pass", "skip"}  # only the debug check fails
    status, rep = run_json(capsys, [str(NITRO_FIXTURES / name), "--manifest", man, "--allow-debug"])
    assert status == 0 and statuses(rep)["debug"] == "pass"


def test_expired_today(capsys, fixture_manifest):
    name = "evervault-2022-10-13-nondebug.cose"
    status, rep = run_json(capsys, [str(NITRO_FIXTURES / name), "--manifest", str(fixture_manifest(name)), "--at", "now"])
    assert status == 1
    st = statuses(rep)
    assert st["time"] == "fail" and st["chain"] == "pass" and st["signature"] == "pass"
    not_after = EXPECTED[name]["leaf_not_after"].replace("+00:00", "Z")  # 2022-10-13T11:58:02Z
    leaf_cn = EXPECTED[name]["leaf_subject"].split(",")[0]
    msg = detail(rep, "time")
    assert f"certificate '{leaf_cn}' expired at {not_after}" in msg and "(validation time " in msg


def test_at_inside_and_before_window(capsys, fixture_manifest):
    name = "evervault-2022-10-13-nondebug.cose"
    args = [str(NITRO_FIXTURES / name), "--manifest", str(fixture_manifest(name))]
    assert run_json(capsys, [*args, "--at", "2022-10-13T10:00:00Z"])[0] == 0
    status, rep = run_json(capsys, [*args, "--at", "2022-10-13T08:00:00+00:00"])
    not_before = EXPECTED[name]["leaf_not_before"].replace("+00:00", "Z")  # 2022-10-13T08:57:59Z
    assert status == 1 and f"is not valid before {not_before}" in detail(rep, "time")
    assert main(["verify", "attestation", *args, "--at", "yesterday"]) == 2


def _flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1:]


def test_tampered_payload_fails_signature(capsys, fixture_manifest, tmp_path):
    name = "evervault-2022-10-13-nondebug.cose"
    data = (NITRO_FIXTURES / name).read_bytes()
    off = data.index(EXPECTED[name]["module_id"].encode()) + 5   # a character of module_id
    bad = tmp_path / "bad.cose"
    bad.write_bytes(_flip(data, off))
    status, rep = run_json(capsys, [str(bad), "--manifest", str(fixture_manifest(name))])
    assert status == 1
    st = statuses(rep)
    assert st["signature"] == "fail" and "does not verify" in detail(rep, "signature")
    assert st["chain"] == st["time"] == st["PCR0"] == "pass"


def test_tampered_pcr_fails_signature_and_pcr(capsys, fixture_manifest, tmp_path):
    name = "evervault-2022-10-13-nondebug.cose"
    data = (NITRO_FIXTURES / name).read_bytes()
    off = data.index(bytes.fromhex(EXPECTED[name]["pcrs"]["0"])) + 10
    bad = tmp_path / "bad.cose"
    bad.write_bytes(_flip(data, off))
    status, rep = run_json(capsys, [str(bad), "--manifest", str(fixture_manifest(name))])
    st = statuses(rep)
    assert status == 1 and st["signature"] == "fail" and st["PCR0"] == "fail" and st["PCR1"] == "pass"


def test_tampered_signature_fails_signature_only(capsys, fixture_manifest, tmp_path):
    name = "evervault-2022-10-13-nondebug.cose"
    data = (NITRO_FIXTURES / name).read_bytes()
    bad = tmp_path / "bad.cose"
    bad.write_bytes(_flip(data, len(data) - 20))  # the last 96 bytes are the raw r || s
    status, rep = run_json(capsys, [str(bad), "--manifest", str(fixture_manifest(name))])
    st = statuses(rep)
    assert status == 1 and st["signature"] == "fail"
    assert {k: v for k, v in st.items() if k != "signature"} == {
        "chain": "pass", "time": "pass", "PCR0": "pass", "PCR1": "pass", "PCR2": "pass", "PCR8": "pass",
        "nonce": "skip", "debug": "pass"}


def test_tampered_cabundle_cert_fails_chain(capsys, fixture_manifest, tmp_path):
    name = "evervault-2022-10-13-nondebug.cose"
    data = (NITRO_FIXTURES / name).read_bytes()
    zonal = parse_attestation_document(data).cabundle[2]
    off = data.index(zonal) + len(zonal) - 10  # inside the zonal CA certificate's own signature
    bad = tmp_path / "bad.cose"
    bad.write_bytes(_flip(data, off))
    status, rep = run_json(capsys, [str(bad), "--manifest", str(fixture_manifest(name))])
    st = statuses(rep)
    # the cabundle is inside the signed payload, so the COSE signature breaks too
    assert status == 1 and st["chain"] == "fail" and st["signature"] == "fail"
    assert "zonal" in detail(rep, "chain") and "does not verify" in detail(rep, "chain")


def test_swapped_root_fails_chain(capsys, fixture_manifest, tmp_path):
    name = "evervault-2022-10-13-nondebug.cose"
    other = tca.make_ca(dt.datetime(2022, 10, 13, 9, tzinfo=dt.UTC))
    root = tmp_path / "other-root.pem"
    root.write_bytes(other.root_pem())
    status, rep = run_json(capsys, [str(NITRO_FIXTURES / name), "--manifest", str(fixture_manifest(name)),
                                    "--root", str(root)])
    st = statuses(rep)
    assert status == 1 and st["chain"] == "fail" and st["signature"] == "pass"
    assert "cabundle[0] is not the trusted root" in detail(rep, "chain")
    assert "NOT the pinned AWS root" in rep["root"]


def test_pcr0_not_allowed_shows_both_values(capsys, tmp_path, fixture_manifest):
    name = "evervault-2022-10-13-nondebug.cose"
    pcrs = dict(EXPECTED[name]["pcrs"])
    pcrs["0"] = "ab" * 48
    man = write_eif_manifest(tmp_path / "other.manifest.json", pcrs)
    status = main(["verify", "attestation", str(NITRO_FIXTURES / name), "--manifest", str(man)])
    out = capsys.readouterr().out
    assert status == 1
    line = next(ln for ln in out.splitlines() if ln.startswith("PCR0"))
    assert "FAIL" in line
    assert f"expected {'ab' * 48}" in out and f"actual   {EXPECTED[name]['pcrs']['0']}" in out
    assert "RESULT: FAIL (PCR0)" in out


def test_any_one_manifest_may_match_but_not_a_mix(capsys, tmp_path, fixture_manifest):
    name = "evervault-2022-10-13-nondebug.cose"
    real = fixture_manifest(name)
    p = dict(EXPECTED[name]["pcrs"])
    other = write_eif_manifest(tmp_path / "old.manifest.json", {**p, "0": "ab" * 48, "1": "cd" * 48})
    doc = str(NITRO_FIXTURES / name)
    status, rep = run_json(capsys, [doc, "--manifest", str(other), "--manifest", str(real)])
    assert status == 0 and rep["matched_manifest"] == str(real)
    # PCR0 from manifest A, PCR1 from manifest B: no single manifest matches -> fail
    a = write_eif_manifest(tmp_path / "a.manifest.json", {**p, "1": "cd" * 48})
    b = write_eif_manifest(tmp_path / "b.manifest.json", {**p, "0": "ab" * 48})
    status, rep = run_json(capsys, [doc, "--manifest", str(a), "--manifest", str(b)])
    assert status == 1 and rep["matched_manifest"] is None
    assert any("no allowed manifest matches every PCR" in n for n in rep["notes"])


def test_truncated_and_non_cbor_input(capsys, tmp_path, fixture_manifest):
    name = "evervault-2022-10-13-nondebug.cose"
    man = str(fixture_manifest(name))
    cut = tmp_path / "cut.cose"
    cut.write_bytes((NITRO_FIXTURES / name).read_bytes()[:2000])
    assert main(["verify", "attestation", str(cut), "--manifest", man]) == 2
    assert "truncated" in capsys.readouterr().err
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01\x02 not cbor at all")
    assert main(["verify", "attestation", str(junk), "--manifest", man]) == 2
    assert "neither CBOR" in capsys.readouterr().err


def test_needs_exactly_one_source(capsys, fixture_manifest):
    name = "evervault-2022-10-13-nondebug.cose"
    assert main(["verify", "attestation", str(NITRO_FIXTURES / name)]) == 2
    assert "exactly one of --stack" in capsys.readouterr().err


def test_stack_manifests(capsys, tmp_path, nitro_fixtures):
    name = "evervault-2023-01-18-nondebug-signed.cose"
    (tmp_path / "build").mkdir()
    write_eif_manifest(tmp_path / "build" / "agent.manifest.json", EXPECTED[name]["pcrs"])
    (tmp_path / "Pulumi.yaml").write_text("name: teeform\nruntime: python\nstackConfigDir: stacks\n")
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.dev.yaml").write_text(
        "config:\n  teeform:targets:\n    - name: agent\n      cloud: aws\n      region: us-east-1\n"
        "      tee: nitro-enclave\n      manifests: [build/agent.manifest.json]\n")
    status, rep = run_json(capsys, [str(NITRO_FIXTURES / name), "--stack", "dev", "--project-dir", str(tmp_path)])
    assert status == 0, rep
    assert rep["matched_manifest"] == str(tmp_path / "build" / "agent.manifest.json")


def test_shipped_root_is_pinned(tmp_path, monkeypatch):
    r = V.load_root()
    assert r.pinned and r.der_sha256 == "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"
    # same bytes as the root distributed with the fixtures
    fx = V.load_root(NITRO_FIXTURES / "aws-nitro-enclaves-root-g1.pem")
    assert fx.der_sha256 == r.der_sha256 and not fx.pinned
    fake = tmp_path / "root.pem"
    fake.write_bytes(tca.make_ca(dt.datetime(2024, 1, 1, tzinfo=dt.UTC)).root_pem())
    monkeypatch.setattr(V, "ROOT_PEM_PATH", fake)
    with pytest.raises(TeeformError, match="not the pinned 641a0321"):
        V.load_root()


# ----------------------------------------------------------------------------------------- test CA
AT = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
PCRS = tca.default_pcrs()
ALLOWED = [V.AllowedMeasurements("test.manifest.json", {f"PCR{i}": PCRS[i].hex() for i in (0, 1, 2)})]


@pytest.fixture(scope="module")
def ca():
    return tca.make_ca(AT)


def verify_minted(ca, data: bytes, **kw) -> V.VerificationReport:
    root = V.Root(ca.root, "test", "test-root", pinned=False)
    return V.verify_attestation(parse_attestation_document(data), root=root, allowed=kw.pop("allowed", ALLOWED), **kw)


def st(rep: V.VerificationReport) -> dict[str, str]:
    return {c.name: c.status for c in rep.checks}


def test_minted_document_passes(ca):
    rep = verify_minted(ca, tca.mint(ca, AT))
    assert rep.ok and st(rep) == {"signature": "pass", "chain": "pass", "time": "pass", "PCR0": "pass",
                                  "PCR1": "pass", "PCR2": "pass", "nonce": "skip", "debug": "pass"}


def test_tagged_cose_verifies(ca):
    assert verify_minted(ca, tca.mint(ca, AT, tagged=True)).ok


def test_nonce_match_and_mismatch(ca):
    nonce = bytes(range(32))
    data = tca.mint(ca, AT, nonce=nonce)
    assert st(verify_minted(ca, data, nonce=nonce))["nonce"] == "pass"
    rep = verify_minted(ca, data, nonce=b"\xff" * 32)
    assert not rep.ok and rep.check("nonce").status == "fail"
    assert rep.check("nonce").expected == ("ff" * 32,) and rep.check("nonce").actual == nonce.hex()
    rep = verify_minted(ca, tca.mint(ca, AT), nonce=nonce)  # document without nonce
    assert rep.check("nonce").status == "fail" and rep.check("nonce").actual == "null"


def test_user_data_and_public_key_are_signed(ca):
    data = tca.mint(ca, AT, user_data=b"agent v1", public_key=b"\x30" * 300)
    doc = parse_attestation_document(data)
    assert doc.user_data == b"agent v1" and doc.public_key == b"\x30" * 300
    assert verify_minted(ca, data).ok
    # swap user_data inside the payload without re-signing: the signature must break
    arr = cbor2.loads(data)
    body = cbor2.loads(arr[2])
    body["user_data"] = b"agent v2"
    arr[2] = cbor2.dumps(body)
    rep = verify_minted(ca, cbor2.dumps(arr))
    assert st(rep)["signature"] == "fail" and st(rep)["chain"] == "pass"


def test_wrong_alg_header_fails_signature(ca):
    rep = verify_minted(ca, tca.mint(ca, AT, protected=cbor2.dumps({1: -7})))
    assert rep.check("signature").status == "fail" and "exactly {1: -35}" in rep.check("signature").detail
    rep = verify_minted(ca, tca.mint(ca, AT, protected=cbor2.dumps({1: -35, 4: b"kid"})))
    assert rep.check("signature").status == "fail"


def test_signed_by_other_key_fails_signature_only(ca):
    rep = verify_minted(ca, tca.mint(ca, AT, sign_key=ec.generate_private_key(ec.SECP384R1())))
    assert st(rep)["signature"] == "fail" and st(rep)["chain"] == "pass"


def test_tampered_intermediate_re_signed_document_fails_chain_only(ca):
    body = tca.payload_map(ca, AT)
    bundle = list(body["cabundle"])
    bundle[2] = _flip(bundle[2], len(bundle[2]) - 5)
    body["cabundle"] = bundle
    rep = verify_minted(ca, tca.mint(ca, AT, payload=body))  # re-signed with the genuine leaf key
    assert st(rep)["signature"] == "pass" and st(rep)["chain"] == "fail"
    assert "zonal" in rep.check("chain").detail


def test_expired_intermediate_fails_time_naming_it():
    ca = tca.make_ca(AT, overrides={2: {"not_after": AT - dt.timedelta(minutes=5)}})
    rep = verify_minted(ca, tca.mint(ca, AT))
    assert st(rep)["time"] == "fail" and st(rep)["chain"] == "fail"  # no instant inside every window exists
    assert "certificate 'CN=4567ef.zonal.us-east-1.test.nitro-enclaves' expired at 2024-05-01T11:55:00Z" in rep.check("time").detail


def test_leaf_that_is_a_ca_fails_chain():
    ca = tca.make_ca(AT, overrides={"leaf": {"ca": True, "key_usage": tca._ku(digital_signature=True, key_cert_sign=True)}})
    rep = verify_minted(ca, tca.mint(ca, AT))
    assert st(rep)["chain"] == "fail" and "is a CA" in rep.check("chain").detail


def test_leaf_without_digital_signature_fails_chain():
    ca = tca.make_ca(AT, overrides={"leaf": {"key_usage": tca._ku(content_commitment=True)}})
    rep = verify_minted(ca, tca.mint(ca, AT))
    assert st(rep)["chain"] == "fail" and "digitalSignature" in rep.check("chain").detail


def test_path_length_violation_fails_chain():
    ca = tca.make_ca(AT, extra_intermediate=True)
    rep = verify_minted(ca, tca.mint(ca, AT))
    assert st(rep)["chain"] == "fail" and "pathLen 0" in rep.check("chain").detail


def test_ca_without_keycertsign_fails_chain():
    ca = tca.make_ca(AT, overrides={1: {"key_usage": tca._ku(digital_signature=True)}})
    rep = verify_minted(ca, tca.mint(ca, AT))
    assert st(rep)["chain"] == "fail" and "keyCertSign" in rep.check("chain").detail


def test_cabundle_root_mismatch_fails_chain(ca):
    body = tca.payload_map(ca, AT)
    body["cabundle"] = [tca.make_ca(AT).cabundle()[0], *body["cabundle"][1:]]
    rep = verify_minted(ca, tca.mint(ca, AT, payload=body))
    assert st(rep)["chain"] == "fail" and "cabundle[0] is not the trusted root" in rep.check("chain").detail


def test_path_validator_is_the_backstop(ca, monkeypatch):
    """The cryptography path validator alone rejects a broken link (explicit pre-checks disabled)."""
    body = tca.payload_map(ca, AT)
    bundle = list(body["cabundle"])
    bundle[3] = _flip(bundle[3], len(bundle[3]) - 5)
    body["cabundle"] = bundle
    data = tca.mint(ca, AT, payload=body)
    monkeypatch.setattr(V.x509.Certificate, "verify_directly_issued_by", lambda self, issuer: None, raising=False)
    rep = verify_minted(ca, data)
    assert st(rep)["chain"] == "fail" and "X.509 path validation failed" in rep.check("chain").detail


def test_debug_minted_pcr8_set_is_not_debug(ca):
    pcrs = tca.default_pcrs()
    pcrs[8] = bytes(48)  # unsigned production EIF: PCR8 zero, PCR0 not (eif-nitro.md §2.2)
    assert st(verify_minted(ca, tca.mint(ca, AT, pcrs=pcrs)))["debug"] == "pass"
