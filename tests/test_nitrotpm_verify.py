"""`teeform verify attestation` with NitroTPM documents (teeform/nitro/nitrotpm.py).

Documents are minted with the test PKI of tests/nitro_testca.py in the NitroTPM shape of clouds.md
§1.2 (the enclave COSE_Sign1/payload with ``nitrotpm_pcrs`` instead of ``pcrs``) and verified with
``--root`` set to the test root. The manifests are vm-image manifests carrying ``pcr4_sha384``,
``pcr11_sha384`` and ``pcr12_sha384``; their values are arbitrary inputs here (the prediction of
those values is proven in tests/test_pcr4.py and by the boot in tests/test_boot.py). The tests assert
WHICH check fails for a tampered document, a wrong PCR 4, a mix of two manifests, and that unusable
input exits 2 with one line naming the file and field.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import cbor2
import nitro_testca as tca
import pytest

from teeform.cli import main
from teeform.manifest import Artifact, ArtifactKind, Builder, InputDigest, Manifest, write_manifest
from teeform.nitro import nitrotpm
from teeform.nitro import verify as V
from teeform.nitro.attestation import parse_attestation_document

AT = dt.datetime(2026, 11, 2, 10, 0, tzinfo=dt.UTC)
ZERO48 = bytes(48)


def h(tag: str, n: int = 48) -> str:
    return hashlib.sha384(tag.encode()).hexdigest()[: 2 * n]


def vm_manifest(path: Path, tag: str, *, drop: str | None = None) -> Path:
    """A vm-image manifest whose measurements are derived from ``tag`` (PCR 12 all zeros, as built)."""
    meas = {
        "roothash": h(tag + "root", 32), "uki_authenticode_sha256": h(tag + "ac", 32), "uki_authenticode_sha384": h(tag + "ac"),
        "pcr11_sha256": h(tag + "p11", 32), "pcr11_sha384": h(tag + "p11"),
        "pcr12_sha256": "0" * 64, "pcr12_sha384": "0" * 96,
        "pcr4_sha256": h(tag + "p4", 32), "pcr4_sha384": h(tag + "p4"),
    }
    if drop:
        del meas[drop]
    m = Manifest(ArtifactKind.VM_IMAGE, tag, "1", Artifact(f"{tag}.raw", 1, "0" * 64, "0" * 96), meas,
                 (InputDigest("kernel", "vmlinuz", "1" * 64),), Builder("teeform", "0.1.0"), 0)
    write_manifest(m, path)
    return path


def tpm_pcrs(tag: str, **override: str) -> dict[int, bytes]:
    """nitrotpm_pcrs of an instance that booted the image ``tag``: PCR 0-15 like a document, 4/11 from
    the manifest, 12 zeros (``override`` = {"PCR4": hex} replaces one)."""
    p = {i: hashlib.sha384(f"platform{i}".encode()).digest() for i in range(16)}
    p[4], p[11], p[12] = bytes.fromhex(h(tag + "p4")), bytes.fromhex(h(tag + "p11")), ZERO48
    for name, value in override.items():
        p[int(name[3:])] = bytes.fromhex(value)
    return p


def mint_tpm(ca: tca.TestCA, pcrs: dict[int, bytes], *, both: bool = False, nonce: bytes | None = None) -> bytes:
    body = tca.payload_map(ca, AT, pcrs=pcrs, nonce=nonce)
    body["module_id"] = "i-0123456789abcdef0-tpm0123456789abcdef"
    body["nitrotpm_pcrs"] = body["pcrs"] if both else body.pop("pcrs")
    return tca.mint(ca, AT, payload=body)


@pytest.fixture(scope="module")
def ca() -> tca.TestCA:
    return tca.make_ca(AT)


@pytest.fixture
def env(tmp_path: Path, ca: tca.TestCA) -> dict[str, Path]:
    root = tmp_path / "root.pem"
    root.write_bytes(ca.root_pem())
    return {"root": root, "a": vm_manifest(tmp_path / "a.manifest.json", "a"),
            "b": vm_manifest(tmp_path / "b.manifest.json", "b"), "dir": tmp_path}


def run(capsys, doc: bytes, env: dict[str, Path], *manifests: str, extra: tuple[str, ...] = ()) -> tuple[int, dict, str]:
    f = env["dir"] / "doc.cbor"
    f.write_bytes(doc)
    args = ["verify", "attestation", str(f), "--root", str(env["root"]), "--json", *extra]
    for m in manifests:
        args += ["--manifest", str(env[m]) if m in env else m]
    status = main(args)
    out = capsys.readouterr()
    return status, (json.loads(out.out) if out.out.strip().startswith("{") else {}), out.err


def statuses(report: dict) -> dict[str, str]:
    return {c["check"]: c["status"] for c in report["checks"]}


def test_parse_reads_nitrotpm_pcrs(ca) -> None:
    doc = parse_attestation_document(mint_tpm(ca, tpm_pcrs("a")))
    assert doc.is_nitrotpm and doc.pcr_field == "nitrotpm_pcrs" and doc.pcr_hex(4) == h("ap4")
    enclave = parse_attestation_document(tca.mint(ca, AT))
    assert not enclave.is_nitrotpm and enclave.pcr_field == "pcrs"


def test_matching_document_passes(capsys, ca, env) -> None:
    status, rep, _ = run(capsys, mint_tpm(ca, tpm_pcrs("a")), env, "a", "b")
    assert status == 0, rep
    assert statuses(rep) == {"document": "pass", "signature": "pass", "chain": "pass", "time": "pass",
                             "PCR4": "pass", "PCR12": "pass", "nonce": "skip"}
    assert rep["matched_manifest"].endswith("a.manifest.json")
    assert any("pin our image" in n for n in rep["notes"])


def test_pcr11_is_compared_when_asked(capsys, ca, env) -> None:
    status, rep, _ = run(capsys, mint_tpm(ca, tpm_pcrs("b")), env, "a", "b", extra=("--nitrotpm-pcrs", "4,11,12"))
    assert status == 0 and statuses(rep)["PCR11"] == "pass" and rep["matched_manifest"].endswith("b.manifest.json")


def test_wrong_pcr4_fails_pcr4_only(capsys, ca, env) -> None:
    status, rep, _ = run(capsys, mint_tpm(ca, tpm_pcrs("a", PCR4=h("other"))), env, "a")
    assert status == 1
    st = statuses(rep)
    assert st["PCR4"] == "fail" and st["signature"] == st["chain"] == st["PCR12"] == "pass"


def test_pcr12_extended_fails(capsys, ca, env) -> None:
    """A command line override (PCR 12 no longer zero) must not pass, even with the right PCR 4."""
    status, rep, _ = run(capsys, mint_tpm(ca, tpm_pcrs("a", PCR12=h("cmdline"))), env, "a")
    assert status == 1 and statuses(rep)["PCR12"] == "fail" and statuses(rep)["PCR4"] == "pass"


def test_mix_of_two_manifests_is_refused(capsys, ca, env) -> None:
    pcrs = tpm_pcrs("a", PCR11=h("bp11"))  # PCR 4 of a, PCR 11 of b
    status, rep, _ = run(capsys, mint_tpm(ca, pcrs), env, "a", "b", extra=("--nitrotpm-pcrs", "4,11,12"))
    assert status == 1 and rep["matched_manifest"] is None
    row = next(c for c in rep["checks"] if c["check"] == "PCR11")
    assert row["status"] == "fail" and "b.manifest.json" in row["detail"] and "other PCRs do not" in row["detail"]


def test_tampered_document_fails_signature(capsys, ca, env) -> None:
    good = mint_tpm(ca, tpm_pcrs("a"))
    cose = cbor2.loads(good)
    body = cbor2.loads(cose[2])
    pcr4 = bytearray(body["nitrotpm_pcrs"][4])
    pcr4[-1] ^= 0x01  # one bit changed, not re-signed
    body["nitrotpm_pcrs"][4] = bytes(pcr4)
    cose[2] = cbor2.dumps(body)
    status, rep, _ = run(capsys, cbor2.dumps(cose), env, "a")
    assert status == 1
    st = statuses(rep)
    assert st["signature"] == "fail" and st["PCR4"] == "fail" and st["chain"] == "pass"


def test_nonce_is_checked(capsys, ca, env) -> None:
    doc = mint_tpm(ca, tpm_pcrs("a"), nonce=b"\x01\x02")
    assert run(capsys, doc, env, "a", extra=("--nonce", "0102"))[0] == 0
    status, rep, _ = run(capsys, doc, env, "a", extra=("--nonce", "0103"))
    assert status == 1 and statuses(rep)["nonce"] == "fail"


def test_manifest_without_pcr4_is_unusable_input(capsys, ca, env) -> None:
    old = vm_manifest(env["dir"] / "old.manifest.json", "a", drop="pcr4_sha384")
    status, _, err = run(capsys, mint_tpm(ca, tpm_pcrs("a")), env, str(old))
    assert status == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "old.manifest.json" in lines[0] and "measurements.pcr4_sha384" in lines[0] and "Traceback" not in err


def test_kinds_are_not_mixed(capsys, ca, env, tmp_path) -> None:
    from test_attestation_verify import write_eif_manifest

    eif = write_eif_manifest(tmp_path / "e.manifest.json", {"0": "11" * 48, "1": "22" * 48, "2": "33" * 48})
    status, _, err = run(capsys, mint_tpm(ca, tpm_pcrs("a")), env, str(eif))
    assert status == 2 and "no vm-image manifest" in err
    status, _, err = run(capsys, tca.mint(ca, AT), env, "a")
    assert status == 2 and "no EIF manifest" in err
    # the library refuses a NitroTPM document in the enclave verifier, and vice versa
    root = V.load_root(env["root"])
    tpm_doc = parse_attestation_document(mint_tpm(ca, tpm_pcrs("a")))
    rep = V.verify_attestation(tpm_doc, root=root, allowed=[V.AllowedMeasurements("x", {"PCR0": "11" * 48})])
    assert rep.check("document").status == "fail" and not rep.ok
    enc = parse_attestation_document(tca.mint(ca, AT))
    allowed, _ = nitrotpm.allowed_from_vm_manifests([env["a"]])
    assert nitrotpm.verify_nitrotpm(enc, root=root, allowed=allowed).check("document").status == "fail"


def test_both_pcr_maps_is_unusable(capsys, ca, env) -> None:
    status, _, err = run(capsys, mint_tpm(ca, tpm_pcrs("a"), both=True), env, "a")
    assert status == 2 and "nitrotpm_pcrs" in err and "both" in err


@pytest.mark.parametrize(("arg", "msg"), [("4", "PCR 12 must be compared"), ("4,7,12", "no value for PCR 7"),
                                          ("four", "comma-separated")])
def test_bad_pcr_list(capsys, ca, env, arg: str, msg: str) -> None:
    status, _, err = run(capsys, mint_tpm(ca, tpm_pcrs("a")), env, "a", extra=("--nitrotpm-pcrs", arg))
    assert status == 2 and msg in err and "--nitrotpm-pcrs" in err


def test_malformed_nitrotpm_pcrs_names_the_field(capsys, ca, env) -> None:
    body = tca.payload_map(ca, AT)
    body.pop("pcrs")
    body["nitrotpm_pcrs"] = {4: "not bytes"}
    status, _, err = run(capsys, tca.mint(ca, AT, payload=body), env, "a")
    assert status == 2 and "nitrotpm_pcrs" in err and "map of int -> bytes" in err and "Traceback" not in err


def test_both_loaders_note_manifests_of_the_other_kind(env, tmp_path) -> None:
    """One loader (teeform.nitro.verify.allowed_from_kind) for both kinds: a manifest of the other kind
    is skipped with a note naming it, never compared."""
    from test_attestation_verify import write_eif_manifest

    eif = write_eif_manifest(tmp_path / "e.manifest.json", {"0": "11" * 48, "1": "22" * 48, "2": "33" * 48})
    allowed, notes = nitrotpm.allowed_from_vm_manifests([eif, env["a"]], (4, 11, 12))
    assert notes == [f"skipped {eif}: kind 'eif' is not a vm-image manifest"]
    assert [dict(a.pcrs) for a in allowed] == [{"PCR4": h("ap4"), "PCR11": h("ap11"), "PCR12": "0" * 96}]
    allowed, notes = V.allowed_from_manifests([env["a"], eif])
    assert notes == [f"skipped {env['a']}: kind 'vm-image' is not an EIF manifest"]
    assert [dict(a.pcrs) for a in allowed] == [{"PCR0": "11" * 48, "PCR1": "22" * 48, "PCR2": "33" * 48}]


def test_pinned_root_is_named_alike_for_both_kinds(ca) -> None:
    """Both verifiers describe the trust anchor with one text (the pinned root is the Root-G1 file for both)."""
    root = V.Root(ca.root, "ab" * 32, "shipped", pinned=True)
    want = f"CN=test.nitro-enclaves (pinned AWS Nitro Enclaves Root-G1, DER sha256 {'ab' * 32})"
    tpm = nitrotpm.verify_nitrotpm(parse_attestation_document(mint_tpm(ca, tpm_pcrs("a"))), root=root,
                                   allowed=[V.AllowedMeasurements("m", {"PCR4": h("ap4"), "PCR12": "0" * 96})])
    enc = V.verify_attestation(parse_attestation_document(tca.mint(ca, AT)), root=root,
                               allowed=[V.AllowedMeasurements("m", {"PCR0": "11" * 48})])
    assert tpm.root == enc.root == want
    assert [c.name for c in tpm.checks] == ["document", "signature", "chain", "time", "PCR4", "PCR12", "nonce"]
    assert [c.name for c in enc.checks] == ["signature", "chain", "time", "PCR0", "nonce", "debug"]
