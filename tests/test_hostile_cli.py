"""Hostile inputs to the teeform/ parsers and commands (issue 7 item 3): one error line naming the file
and field, exit status 2 (or the documented exit-1 "failed check" table for certificates that do not
verify), no traceback, no hang, nothing written.

Each test builds its hostile input from first principles (raw CBOR bytes written out here, RFC 8949
§3; certificates edited with asn1crypto and re-signed with the test CA so the bug is reached past
every signature check) and asserts the exact message.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path

import cbor2
import nitro_testca as tca
import pytest
from asn1crypto import core, keys
from asn1crypto import x509 as ax
from conftest import NITRO_FIXTURES
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from test_seal import project  # noqa: F401  (fixture: a project with stacks dev and prod)

from teeform.cli import main
from teeform.errors import TeeformError
from teeform.manifest import Artifact, ArtifactKind, Builder, InputDigest, Manifest, write_manifest
from teeform.nitro import verify as V
from teeform.nitro.attestation import MAX_INPUT_BYTES, parse_attestation_document
from teeform.nitro.cbor_guard import check_cbor

AT = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
FIXTURE = NITRO_FIXTURES / "evervault-2022-10-13-nondebug.cose"


def run(capsys, argv: list[str]) -> tuple[int, str, str]:
    """Run the CLI; return (status, stdout, stderr). A traceback would propagate and fail the test."""
    status = main(argv)
    out = capsys.readouterr()
    return status, out.out, out.err


def one_error_line(err: str) -> str:
    """The CLI's error output is ``error: ...`` (plus an optional ``hint: ...``) and nothing else."""
    lines = err.strip().splitlines()
    assert lines and lines[0].startswith("error: "), err
    assert all(line.startswith("hint: ") for line in lines[1:]), err
    return lines[0]


# ------------------------------------------------------------------------------------- CBOR guard
def cose(payload: bytes, *, protected: bytes = b"\xa1\x01\x38\x22", unprotected: bytes = b"\xa0") -> bytes:
    """COSE_Sign1 bytes (RFC 9052 §4.2) written by hand: array(4) [bstr protected, unprotected, bstr payload, sig]."""
    def bstr(b: bytes) -> bytes:
        return (bytes([0x58, len(b)]) if len(b) < 256 else b"\x59" + len(b).to_bytes(2, "big")) + b if len(b) >= 24 \
            else bytes([0x40 | len(b)]) + b
    return b"\x84" + bstr(protected) + unprotected + bstr(payload) + bstr(b"\0" * 96)


@pytest.mark.parametrize("data, message", [
    (b"\x5b" + b"\x7f" + b"\xff" * 7, "is truncated"),                        # bstr of 2^63-1 bytes declared
    (b"\x9b\x00\x00\x00\x01\x00\x00\x00\x00", "declares 4294967296 elements but only 0 byte(s) remain"),
    (b"\xbb\x00\x00\x00\x00\xff\xff\xff\xff", "declares 4294967295 pairs"),
    (b"\x81" * 100_000 + b"\x00", "nested more than 16 arrays/maps deep"),
    (b"\xc1\x1b\x00\x00\xe8\xd4\xa5\x10\x00\x00", "CBOR tag 1 is not accepted"),  # epoch datetime, year > 9999
    (b"\xd8\x1c\x81\xd8\x1d\x00", "CBOR tag 28 is not accepted"),              # shareable + sharedref: a cycle
    (b"\xd8\x1e\x82\x01\x00", "CBOR tag 30 is not accepted"),                  # rational 1/0
    (b"\xc2\x41\x01", "CBOR tag 2 is not accepted"),                           # bignum
    (b"\xa2\x61a\x00\x61a\x01", "duplicate map key 'a'"),
    (b"\xa2\x01\x00\x01\x01", "duplicate map key 1"),
    (b"\xa1\x81\x00\x00", "map key is a array"),
    (b"\xa1\x41a\x00", "map key is a byte string"),
    (b"\xa1\xf5\x00", "map key is a simple value or float"),
    (b"\x1c", "reserved additional information 28"),
    (b"\x1f", "indefinite length on a unsigned integer"),
    (b"\xf8\x10", "two-byte simple value 16 below 32"),
    (b"\xff", "unexpected break byte"),
    (b"\x5f\x61a\xff", "holds a chunk that is not a definite byte string"),
    (b"\x62\xc3\x28", "text string is not valid UTF-8"),
    (b"\x62\xed\xa0", "text string is not valid UTF-8"),                      # a lone surrogate, UTF-8 encoded
    (b"\xbf\x61a\xff", "ends after a key, without its value"),
    (b"\x00\x00", "1 trailing byte(s)"),
    (b"", "is empty"),
])
def test_cbor_guard_refuses_before_decoding(data, message):
    t0 = time.monotonic()
    with pytest.raises(TeeformError, match="^doc.cbor: payload: ") as exc:
        check_cbor(data, source="doc.cbor", what="payload", fld="payload")
    assert message in str(exc.value)
    assert time.monotonic() - t0 < 1.0


def test_cbor_guard_accepts_real_documents(nitro_fixtures):
    for f in sorted(nitro_fixtures.glob("*.cose")):
        data = f.read_bytes()
        check_cbor(data, source=f.name, what="attestation document", allow_tag=18)
        check_cbor(cbor2.loads(data)[2], source=f.name, what="payload")


def test_cbor2_declared_lengths_are_bounded_first():
    """cbor2 itself (6.3) reads declared lengths in chunks and caps nesting; the guard is still first:
    a payload declaring a 2^63-byte string costs nothing and names the field."""
    huge = b"\xa1\x69module_id\x7b\x7f" + b"\xff" * 7          # {"module_id": tstr of 2^63-1 bytes}
    with pytest.raises(cbor2.CBORDecodeEOF):  # what cbor2 alone does (no 2^63-byte allocation)
        cbor2.loads(huge)
    with pytest.raises(cbor2.CBORDecodeError, match="nesting depth"):
        cbor2.loads(b"\x81" * 100_000 + b"\x00")
    with pytest.raises(TeeformError) as exc:
        parse_attestation_document(cose(huge), source="doc.cbor")
    assert str(exc.value) == "doc.cbor: payload: payload is truncated (20 bytes; the CBOR ends early)"


def _payload(**over) -> bytes:
    body = cbor2.loads(cbor2.loads(FIXTURE.read_bytes())[2])
    body.update(over)
    return cbor2.dumps(body)


@pytest.mark.parametrize("field, value, message", [
    ("timestamp", 253402300800000, "payload field 'timestamp' is 253402300800000 ms, after 9999-12-31T23:59:59.999Z"),
    ("timestamp", 2**64 - 1, "payload field 'timestamp' is 18446744073709551615 ms, after 9999-12-31T23:59:59.999Z"),
    ("certificate", b"\x30" * 1025, "payload field 'certificate' is 1025 bytes, more than 1024 (NSM CDDL cert)"),
])
def test_payload_bounds(nitro_fixtures, field, value, message):
    with pytest.raises(TeeformError) as exc:
        parse_attestation_document(cose(_payload(**{field: value})), source="doc.cbor")
    assert str(exc.value).startswith(f"doc.cbor: {field}: {message}")


def test_latest_timestamp_is_exact(nitro_fixtures):
    doc = parse_attestation_document(cose(_payload(timestamp=253402300799999)), source="doc.cbor")
    assert doc.time == dt.datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=dt.UTC)


@pytest.mark.parametrize("at", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+00:01"])
def test_at_outside_datetime_range(tmp_path, capsys, at):
    status, out, err = run(capsys, ["verify", "attestation", str(FIXTURE), "--manifest", str(_manifest(tmp_path)),
                                    "--at", at])
    assert status == 2 and out == ""
    assert one_error_line(err) == f"error: --at: {at!r} is outside 0001-01-01 .. 9999-12-31 in UTC"


def test_timestamp_past_9999_cli_exit_2(nitro_fixtures, tmp_path, capsys):
    doc = tmp_path / "doc.cbor"
    doc.write_bytes(cose(_payload(timestamp=10**15)))
    status, out, err = run(capsys, ["verify", "attestation", str(doc), "--manifest", str(_manifest(tmp_path))])
    assert status == 2 and out == ""
    assert one_error_line(err) == (f"error: {doc}: timestamp: payload field 'timestamp' is 1000000000000000 ms, "
                                   "after 9999-12-31T23:59:59.999Z (limit 253402300799999)")


# every payload field x every CBOR major type: parses, or one TeeformError naming that field
CBOR_VALUES = {"uint": 7, "nint": -7, "bstr": b"\x01" * 48, "tstr": "SHA384", "array": [b"\x01"], "map": {0: b"\0" * 48},
               "float": 1.5, "bool": True, "null": None}
FIELDS = ("module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle", "public_key", "user_data", "nonce")


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("kind", sorted(CBOR_VALUES))
def test_wrong_cbor_type_in_every_field(nitro_fixtures, field, kind):
    data = cose(_payload(**{field: CBOR_VALUES[kind]}))
    try:
        doc = parse_attestation_document(data, source="doc.cbor")
    except TeeformError as exc:
        assert exc.path == "doc.cbor" and exc.field == field, str(exc)
        assert field in exc.message
    else:  # accepted only where the type is the field's (§4.3): check it was read as given
        ok = {("module_id", "tstr"), ("digest", "tstr"), ("timestamp", "uint"), ("pcrs", "map"), ("certificate", "bstr"),
              ("cabundle", "array"), ("public_key", "bstr"), ("user_data", "bstr"), ("nonce", "bstr"),
              ("public_key", "null"), ("user_data", "null"), ("nonce", "null")}
        assert (field, kind) in ok
        assert getattr(doc, field) in (CBOR_VALUES[kind], tuple(CBOR_VALUES[kind]) if kind == "array" else None)


@pytest.mark.parametrize("make", [
    lambda p: os.mkdir(p),
    lambda p: os.mkfifo(p),
    lambda p: p.write_bytes(b"\x84" + b"\0" * MAX_INPUT_BYTES),
])
def test_document_file_that_is_not_a_small_regular_file(tmp_path, capsys, make):
    doc = tmp_path / "doc.cbor"
    make(doc)
    status, out, err = run(capsys, ["verify", "attestation", str(doc), "--manifest", str(_manifest(tmp_path))])
    assert status == 2 and out == ""
    line = one_error_line(err)
    assert line.startswith(f"error: {doc}: attestation document is ")
    assert any(w in line for w in ("a directory", "not a regular file", f"over the {MAX_INPUT_BYTES}-byte limit"))


def test_dev_zero_as_document(tmp_path, capsys):
    t0 = time.monotonic()
    status, _out, err = run(capsys, ["verify", "attestation", "/dev/zero", "--manifest", str(_manifest(tmp_path))])
    assert status == 2 and one_error_line(err) == "error: /dev/zero: attestation document is not a regular file"
    assert time.monotonic() - t0 < 5


# ------------------------------------------------------------------------------------- certificates
def _manifest(tmp_path: Path) -> Path:
    p = tmp_path / "m.manifest.json"
    if not p.exists():
        m = Manifest(ArtifactKind.EIF, "agent", "1.0.0", Artifact("agent.eif", 1, "0" * 64, "0" * 96),
                     {"PCR0": "11" * 48, "PCR1": "22" * 48, "PCR2": "33" * 48, "ImageSha384": "11" * 48},
                     (InputDigest("image", "agent:1", "1" * 64),), Builder("teeform", "0.1.0"), 0)
        write_manifest(m, p)
    return p


def _resign(der: bytes, edit, issuer_key: ec.EllipticCurvePrivateKey) -> bytes:
    """Edit a certificate's TBSCertificate (RFC 5280 §4.1) and sign it again. ``edit`` changes the
    asn1crypto object in place, or (when it returns bytes) maps the TBSCertificate DER to new DER."""
    c = ax.Certificate.load(der)
    raw = edit(c["tbs_certificate"])
    tbs = raw if isinstance(raw, bytes) else c["tbs_certificate"].dump(force=True)
    sig = issuer_key.sign(tbs, ec.ECDSA(hashes.SHA384()))
    body = tbs + c["signature_algorithm"].dump() + ax.Certificate.load(der)["signature_value"].__class__(sig).dump()
    return b"\x30\x82" + len(body).to_bytes(2, "big") + body


def _dup_basic_constraints(tbs):
    tbs["extensions"].append(tbs["extensions"][0])  # make_cert puts basicConstraints first


def _unknown_curve(tbs):
    tbs["subject_public_key_info"]["algorithm"]["parameters"] = keys.ECDomainParameters({"named": "1.3.132.0.99"})


def _unknown_key_type(tbs):
    tbs["subject_public_key_info"]["algorithm"] = keys.PublicKeyAlgorithm({"algorithm": "1.2.3.4.5", "parameters": core.Null()})


def _universalstring_cn(tbs):
    # the leaf CN (54 bytes) as a UniversalString: well-formed DER, but not UCS-4 (X.690 §8.23.7: 4 bytes
    # per character), so the subject cannot be decoded
    der = tbs.dump()
    cn = b"i-0000000000000000a-enc0000000000000001.us-east-1.test"
    assert der.count(b"\x0c\x36" + cn) == 1
    return der.replace(b"\x0c\x36" + cn, b"\x1c\x36" + cn)


def _escape_cn(tbs):
    tbs["subject"] = ax.Name.build({"common_name": "evil\nRESULT: PASS\x1b[2J"})


def _bad_extension_value(tbs):
    # basicConstraints cA FALSE is OCTET STRING {SEQUENCE {}} = 04 02 30 00; make the SEQUENCE claim 1 byte
    der = tbs.dump()
    ext = bytes.fromhex("0603551d130101ff04023000")
    assert der.count(ext) == 1
    return der.replace(ext, bytes.fromhex("0603551d130101ff04023001"))


@pytest.mark.parametrize("which, edit, check, detail", [
    ("leaf", _unknown_curve, "signature",
     "cannot read the leaf certificate's key (expected ECDSA P-384): UnsupportedAlgorithm: Curve 1.3.132.0.99 is not supported"),
    ("leaf", _unknown_key_type, "signature",
     "cannot read the leaf certificate's key (expected ECDSA P-384): UnsupportedAlgorithm: Unknown key type: 1.2.3.4.5"),
    ("leaf", _dup_basic_constraints, "chain", "has a duplicate 2.5.29.19 extension (RFC 5280 §4.2"),
    ("instance", _dup_basic_constraints, "chain", "has a duplicate 2.5.29.19 extension (RFC 5280 §4.2"),
    ("leaf", _bad_extension_value, "chain", "has a malformed extension"),
    ("instance", _unknown_curve, "chain", "UnsupportedAlgorithm: Curve 1.3.132.0.99 is not supported"),
    ("leaf", _universalstring_cn, "chain", "leaf certificate is not valid DER: error parsing asn1 value"),
])
def test_hostile_certificate_fails_its_check(tmp_path, capsys, which, edit, check, detail):
    ca = tca.make_ca(AT)
    body = tca.payload_map(ca, AT)
    if which == "leaf":
        body["certificate"] = _resign(body["certificate"], edit, ca.keys[-2])
    else:  # the instance CA, cabundle[3], re-signed by the zonal CA
        body["cabundle"][3] = _resign(body["cabundle"][3], edit, ca.keys[2])
    doc, root = tmp_path / "doc.cbor", tmp_path / "root.pem"
    doc.write_bytes(tca.mint(ca, AT, payload=body))
    root.write_bytes(ca.root_pem())
    status, out, err = run(capsys, ["verify", "attestation", str(doc), "--manifest", str(_manifest(tmp_path)),
                                    "--root", str(root), "--allow-debug"])
    assert status == 1 and err == ""
    row = next(line for line in out.splitlines() if line.startswith(f"{check:<10} "))
    assert row.startswith(f"{check:<10} FAIL   ") and detail in row, out


def test_certificate_text_is_shown_on_one_line(tmp_path, capsys):
    """A subject with a newline and a terminal escape cannot forge report lines (it is escaped)."""
    ca = tca.make_ca(AT)
    body = tca.payload_map(ca, AT)
    body["certificate"] = _resign(body["certificate"], _escape_cn, ca.keys[-2])
    doc, root = tmp_path / "doc.cbor", tmp_path / "root.pem"
    doc.write_bytes(tca.mint(ca, AT, payload=body))
    root.write_bytes(ca.root_pem())
    status, out, _err = run(capsys, ["verify", "attestation", str(doc), "--manifest", str(_manifest(tmp_path)),
                                     "--root", str(root)])
    assert status == 0
    assert "with leaf 'CN=evil\\nRESULT: PASS\\x1b[2J'" in out and "\x1b" not in out
    assert [line for line in out.splitlines() if line.startswith("RESULT")] == ["RESULT: PASS (every check passed)"]


def test_certificate_validity_of_year_0000(tmp_path, capsys):
    """GeneralizedTime 00000101000000Z is valid DER (X.690 §8.26) but no datetime: chain and time fail."""
    ca = tca.make_ca(AT, overrides={"leaf": {"not_after": dt.datetime(2050, 1, 1, tzinfo=dt.UTC)}})
    body = tca.payload_map(ca, AT)

    def year_0000(tbs):
        old = b"\x18\x0f20500101000000Z"  # notAfter as GeneralizedTime (RFC 5280 §4.1.2.5: years >= 2050)
        assert tbs.dump().count(old) == 1
        return tbs.dump().replace(old, b"\x18\x0f00000101000000Z")

    body["certificate"] = _resign(body["certificate"], year_0000, ca.keys[-2])
    doc, root = tmp_path / "doc.cbor", tmp_path / "root.pem"
    doc.write_bytes(tca.mint(ca, AT, payload=body))
    root.write_bytes(ca.root_pem())
    status, out, err = run(capsys, ["verify", "attestation", str(doc), "--manifest", str(_manifest(tmp_path)),
                                    "--root", str(root)])
    assert status == 1 and err == ""
    why = ("leaf certificate 'CN=i-0000000000000000a-enc0000000000000001.us-east-1.test' has an unreadable validity "
           "time (RFC 5280 §4.1.2.5): year 0 is out of range")
    assert f"chain      FAIL   {why}" in out.splitlines()
    assert f"time       FAIL   {why}" in out.splitlines()


@pytest.mark.parametrize("kind", ["dev-zero", "directory", "garbage"])
def test_root_option_that_is_not_a_certificate(tmp_path, capsys, kind):
    root = {"dev-zero": Path("/dev/zero"), "directory": tmp_path, "garbage": tmp_path / "root.pem"}[kind]
    if kind == "garbage":
        root.write_bytes(b"-----BEGIN CERTIFICATE-----\n\x00\n")
    doc = tmp_path / "doc.cbor"
    doc.write_bytes(FIXTURE.read_bytes())
    status, out, err = run(capsys, ["verify", "attestation", str(doc), "--manifest", str(_manifest(tmp_path)),
                                    "--root", str(root)])
    line = one_error_line(err)
    assert status == 2 and out == ""
    assert line == {"dev-zero": "error: /dev/zero: root certificate is not a regular file",
                    "directory": f"error: {tmp_path}: root certificate is a directory"}.get(kind, line)
    assert line.startswith(f"error: {root}: ")


def test_far_future_certificate_dates_are_fine(tmp_path, capsys):
    """GeneralizedTime 99991231235959Z (RFC 5280 §4.1.2.5: the "no well-defined expiration" value)."""
    ca = tca.make_ca(AT, overrides={"leaf": {"not_after": dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)}})
    report = V.verify_attestation(parse_attestation_document(tca.mint(ca, AT)), root=V.Root(ca.root, "x", "t", False),
                                  allowed=[V.AllowedMeasurements("m", {"PCR0": "11" * 48})])
    assert report.check("time").status == "pass" and "9999-12-31T23:59:59Z" in report.check("time").detail
    assert report.check("chain").status == "pass"


# ------------------------------------------------------------------------------------- manifests
def _manifest_text(**over) -> str:
    d = {"schema_version": 1, "kind": "eif", "name": "agent", "version": "1.0.0",
         "artifact": {"file_name": "agent.eif", "size": 1, "sha256": "0" * 64, "sha384": "0" * 96},
         "measurements": {"PCR0": "11" * 48, "PCR1": "22" * 48, "PCR2": "33" * 48, "ImageSha384": "11" * 48},
         "inputs": [{"role": "image", "name": "agent:1", "sha256": "1" * 64}],
         "builder": {"name": "teeform", "version": "0.1.0"}, "source_date_epoch": 0, "details": {}}
    text = json.dumps(d)
    for k, v in over.items():  # raw JSON text replacements, so hostile literals survive
        text = text.replace(k, v, 1)
    return text


@pytest.mark.parametrize("over, message", [
    ({'"details": {}': '"details": ' + "[" * 5000 + "]" * 5000}, "JSON nested 5001 levels deep (limit 64)"),
    ({'"size": 1': '"size": ' + "9" * 4301}, "JSON integer of 4301 digits (limit 20)"),
    ({'"source_date_epoch": 0': '"source_date_epoch": NaN'}, "JSON constant NaN is not allowed"),
    ({'"source_date_epoch": 0': '"source_date_epoch": -Infinity'}, "JSON constant -Infinity is not allowed"),
    ({'"name": "agent"': '"name": "a\\ud800"'}, "name: string holds a lone surrogate at index 1"),
    ({'"details": {}': '"details": {"\\udfff": 1}'}, "'\\udfff': string holds a lone surrogate at index 0"),
    ({'"size": 1': '"size": 1.0'}, "artifact/size: must be a JSON integer, got 1.0"),
    ({'"source_date_epoch": 0': '"source_date_epoch": 1e300'}, "source_date_epoch: must be a JSON integer"),
    ({'"sha256": "' + "0" * 64 + '"': '"sha256": "' + "0" * 64 + '\\n"'}, "artifact/sha256: must be 64 lowercase hex digits"),
    ({'"sha256": "' + "1" * 64 + '"': '"sha256": "' + "1" * 64 + '\\n"'}, "inputs/0/sha256: must be 64 lowercase hex digits"),
])
def test_hostile_manifest_json(tmp_path, capsys, over, message):
    good, bad = tmp_path / "good.manifest.json", tmp_path / "bad.manifest.json"
    good.write_text(_manifest_text())
    bad.write_text(_manifest_text(**over))
    status, out, err = run(capsys, ["measurements", "diff", str(good), str(bad)])
    assert status == 2 and out == ""
    line = one_error_line(err)
    assert line.startswith(f"error: {bad}: ") and message in line, line


def test_manifest_not_utf8(tmp_path, capsys):
    good, bad = tmp_path / "good.manifest.json", tmp_path / "bad.manifest.json"
    good.write_text(_manifest_text())
    bad.write_bytes(_manifest_text().replace('"agent"', '"ag\xffent"').encode("latin-1"))
    status, _out, err = run(capsys, ["measurements", "diff", str(good), str(bad)])
    assert status == 2
    assert one_error_line(err) == f"error: {bad}: not UTF-8 text (invalid byte at offset {_manifest_text().index('agent') + 2})"


@pytest.mark.parametrize("kind", ["directory", "fifo", "dev-zero", "oversized"])
def test_manifest_that_is_not_a_small_regular_file(tmp_path, capsys, kind):
    good = tmp_path / "good.manifest.json"
    good.write_text(_manifest_text())
    bad = tmp_path / "bad.manifest.json"
    if kind == "directory":
        bad.mkdir()
    elif kind == "fifo":
        os.mkfifo(bad)
    elif kind == "dev-zero":
        bad = Path("/dev/zero")
    else:
        with open(bad, "wb") as fh:  # sparse: costs no disk
            fh.truncate((16 << 20) + 1)
    t0 = time.monotonic()
    status, out, err = run(capsys, ["measurements", "diff", str(good), str(bad)])
    assert status == 2 and out == "" and time.monotonic() - t0 < 5
    expected = {"directory": "manifest is a directory", "fifo": "manifest is not a regular file",
                "dev-zero": "manifest is not a regular file",
                "oversized": f"manifest is {(16 << 20) + 1} bytes, over the {16 << 20}-byte limit"}[kind]
    assert one_error_line(err) == f"error: {bad}: {expected}"


# ------------------------------------------------------------------------------------- secrets input

KEY = "arn:aws:kms:eu-west-1:111122223333:key/00000000-0000-0000-0000-000000000000"


def _seal(proj: Path, secrets: Path) -> list[str]:
    # the endpoint is never contacted: every case fails while reading the secrets
    return ["seal", "--stack", "dev", "--in", str(secrets), "--out", str(proj / "sealed.json"), "--key-id", KEY,
            "--endpoint-url", "http://127.0.0.1:9", "--project-dir", str(proj)]


def _no_output(directory: Path, name: str) -> None:
    assert not (directory / name).exists()
    assert not [p.name for p in directory.iterdir() if p.name.startswith(f".{name}.")]  # no temp file left


@pytest.mark.parametrize("name, content, message", [
    ("s.json", b'{"A": ' + b"[" * 3000 + b"]" * 3000 + b"}", "JSON nested 3001 levels deep (limit 64)"),
    ("s.json", b'{"A": ' + b"1" * 4301 + b"}", "JSON integer of 4301 digits (limit 20)"),
    ("s.json", b'{"A": NaN}', "JSON constant NaN is not allowed (RFC 8259 has no NaN/Infinity)"),
    ("s.json", b'{"A": "x\\ud800"}', "A: string holds a lone surrogate at index 1"),
    ("s.json", b'{"\\ud800": "x"}', "'\\ud800': string holds a lone surrogate at index 0"),
    ("s.json", b'{"A\\n": "x"}', "'A\\n': 'A\\n' is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)"),
    ("s.json", b'{"A-B": "x"}', "'A-B': 'A-B' is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)"),
    ("s.json", b'{"": "x"}', "'': '' is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)"),
    ("s.json", b'{"A": "x\\u0000y"}', "A: value holds a NUL character (an environment variable cannot)"),
    ("s.json", b'{"A": {"B": "x"}}', "A: value must be a string, got dict"),
    ("s.json", b"[]", 'must be a non-empty JSON object of NAME: "value"'),
    ("s.env", b"A=1\nB=\xff\n", "not UTF-8 text (invalid byte at offset 6)"),
    ("s.env", b"A=\xed\xa0\x80\n", "not UTF-8 text (invalid byte at offset 2)"),      # a UTF-8 encoded surrogate
    ("s.env", b"A=1\nB-C=2\n", "line 2: 'B-C' is not a valid variable name"),
    ("s.env", b"A=1\nB\xc2\xa0=2\n", "line 2: 'B\\xa0' is not a valid variable name"),
    ("s.env", b'A="x\x00y"\n', "line 1: value holds a NUL character (an environment variable cannot)"),
])
def test_hostile_secrets_file(project, capsys, name, content, message):  # noqa: F811
    secrets = project / name
    secrets.write_bytes(content)
    status, out, err = run(capsys, _seal(project, secrets))
    assert status == 2 and out == ""
    assert one_error_line(err) == f"error: {secrets}: {message}"
    _no_output(project, "sealed.json")


@pytest.mark.parametrize("kind", ["directory", "fifo", "dev-zero", "oversized"])
def test_secrets_file_that_is_not_a_small_regular_file(project, capsys, kind):  # noqa: F811
    from teeform.seal import MAX_SECRETS_BYTES

    secrets = project / "s.env"
    if kind == "directory":
        secrets.mkdir()
    elif kind == "fifo":
        os.mkfifo(secrets)
    elif kind == "dev-zero":
        secrets = Path("/dev/zero")
    else:
        secrets.write_bytes(b"A=" + b"x" * MAX_SECRETS_BYTES + b"\n")
    status, _out, err = run(capsys, _seal(project, secrets))
    expected = {"directory": "secrets file is a directory", "fifo": "secrets file is not a regular file",
                "dev-zero": "secrets file is not a regular file",
                "oversized": f"secrets file is {MAX_SECRETS_BYTES + 3} bytes, over the {MAX_SECRETS_BYTES}-byte limit"}
    assert status == 2 and one_error_line(err) == f"error: {secrets}: {expected[kind]}"
    _no_output(project, "sealed.json")


def test_env_lines_split_on_newline_only():
    """U+2028, U+0085, VT and FF are not line breaks in .env (str.splitlines would split a quoted value)."""
    from teeform.seal import format_env, parse_env

    secrets = {"A": "x\u2028y\x85z\x0b\x0c\x1cw", "B": "1"}
    assert format_env(secrets) == 'A="x\u2028y\x85z\x0b\x0c\x1cw"\nB="1"\n'
    assert parse_env(format_env(secrets)) == secrets
    assert parse_env("A=1\r\nB='2'\r\n") == {"A": "1", "B": "2"}


def test_parse_env_refuses_lone_surrogates_in_str():
    from teeform.seal import parse_env

    with pytest.raises(TeeformError) as exc:
        parse_env("A=1\nB=x\udc80\n", source="s.env")
    assert str(exc.value) == "s.env: line 2: string holds a lone surrogate at index 1"
    with pytest.raises(TeeformError) as exc:
        parse_env("\ud800=1\n", source="s.env")
    assert str(exc.value) == "s.env: line 1: string holds a lone surrogate at index 0"


# ------------------------------------------------------------------------------------- sealed files
def _sealed(**over) -> dict:
    import base64

    ctx = {"teeform:stack": "dev", "teeform:target": "agent", "teeform:manifest-sha256": "ab" * 32}
    d = {"format": "teeform-sealed-secrets", "version": 1, "algorithm": "AES-256-GCM", "key_id": KEY,
         "encryption_context": ctx, "encrypted_data_key": base64.b64encode(b"k" * 40).decode(),
         "nonce": base64.b64encode(b"n" * 12).decode(), "ciphertext": base64.b64encode(b"c" * 40).decode(),
         "aad": {"key_id": KEY, "manifest_sha256": "ab" * 32, "stack": "dev", "version": 1}}
    d.update(over)
    return d


@pytest.mark.parametrize("text, message", [
    (json.dumps(_sealed(version=True)), "version: unsupported version True"),
    (json.dumps(_sealed(version=1.0)), "version: unsupported version 1.0"),
    (json.dumps(_sealed(aad={"key_id": KEY, "manifest_sha256": "ab" * 32, "stack": "dev", "version": True})),
     "aad.version: must be the JSON integer 1, got True"),
    (json.dumps(_sealed(aad={"key_id": KEY, "manifest_sha256": ["x"], "stack": "dev", "version": 1})),
     "aad.manifest_sha256: expected a string, got a list"),
    (json.dumps(_sealed(nonce=[1, 2])), "nonce: expected a base64 string, got a list"),
    (json.dumps(_sealed(ciphertext="@@@@")), "ciphertext: not valid base64"),
    (json.dumps(_sealed(key_id=7)), "key_id: must be a non-empty string"),
    (json.dumps(_sealed(encryption_context=[])), "encryption_context: must be an object of strings"),
    (json.dumps(_sealed()).replace('"version": 1,', '"version": NaN,'), "JSON constant NaN is not allowed"),
    (json.dumps(_sealed()).replace('"version": 1,', '"version": ' + "1" * 5000 + ","), "JSON integer of 5000 digits"),
    (json.dumps(_sealed()).replace('"dev"', '"d\\udc00"', 1), "string holds a lone surrogate at index 1"),
    ('{"format": ' + "[" * 2000 + "]" * 2000 + "}", "JSON nested 2001 levels deep (limit 64)"),
])
def test_hostile_sealed_file(tmp_path, capsys, text, message):
    sealed = tmp_path / "sealed.json"
    sealed.write_text(text)
    status, out, err = run(capsys, ["unseal", "--in", str(sealed), "--out", str(tmp_path / "out.env"),
                                    "--endpoint-url", "http://127.0.0.1:9"])
    assert status == 2 and out == ""
    line = one_error_line(err)
    assert line.startswith(f"error: {sealed}: ") and message in line, line
    _no_output(tmp_path, "out.env")


@pytest.mark.parametrize("kind", ["directory", "dev-zero", "not-utf8"])
def test_sealed_file_that_is_not_readable_json(tmp_path, capsys, kind):
    sealed = tmp_path / "sealed.json"
    if kind == "directory":
        sealed.mkdir()
    elif kind == "dev-zero":
        sealed = Path("/dev/zero")
    else:
        sealed.write_bytes(b'{"format": "\xc3"}')
    status, _out, err = run(capsys, ["unseal", "--in", str(sealed), "--out", str(tmp_path / "out.env")])
    expected = {"directory": "sealed file is a directory", "dev-zero": "sealed file is not a regular file",
                "not-utf8": "not UTF-8 text (invalid byte at offset 12)"}[kind]
    assert status == 2 and one_error_line(err) == f"error: {sealed}: {expected}"
    _no_output(tmp_path, "out.env")


# ------------------------------------------------------------------------------------- KMS replies
class FakeKMS:
    """A KMS client whose Decrypt answers with a fixed reply (hostile or not)."""

    def __init__(self, reply: dict) -> None:
        self.reply = reply

    def decrypt(self, **kw):
        return {"KeyId": KEY, **self.reply}


def _sealed_for(data_key: bytes, payload: bytes):
    """A SealedSecrets whose ciphertext is ``payload`` under ``data_key`` (AES-256-GCM, the real AAD)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from teeform.seal import SealedSecrets, aad_fields, canonical_json, encryption_context

    aad = aad_fields("dev", KEY, "ab" * 32)
    nonce = b"\x01" * 12
    ct = AESGCM(data_key).encrypt(nonce, payload, canonical_json(aad))
    return SealedSecrets(KEY, encryption_context("dev", "agent", "ab" * 32), b"blob", nonce, ct, aad)


@pytest.fixture(scope="module")
def rsa_key():
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(65537, 2048)


def _cfr(rsa_key, data_key: bytes = b"\x07" * 32) -> bytes:
    from teeform.nitro.kms_recipient import envelop_for_recipient

    return envelop_for_recipient(data_key, rsa_key.public_key())


def _replace_algorithm(blob: bytes, old_hex: str, new_hex: str) -> bytes:
    assert blob.count(bytes.fromhex(old_hex)) == 1
    return blob.replace(bytes.fromhex(old_hex), bytes.fromhex(new_hex))


@pytest.mark.parametrize("make, message", [
    (lambda k: b"not CMS at all", "not a CMS EnvelopedData (BER)"),
    (lambda k: b"", "KMS returned no CiphertextForRecipient although the request carried Recipient"),
    (lambda k: "MIAGCSqGSIb3DQEHA6CA", "KMS CiphertextForRecipient is a str, not bytes"),
    (lambda k: _cfr(k)[:200], "not a CMS EnvelopedData (BER)"),
    (lambda k: _cfr(k) + b"\0\0", "not a CMS EnvelopedData (BER)"),
    (lambda k: b"\x30\x84\x7f\xff\xff\xff" + b"\0" * 100, "not a CMS EnvelopedData (BER)"),   # declares 2 GiB
    (lambda k: b"\x30\x80" * 40_000, "65536"),
    # id-envelopedData (1.2.840.113549.1.7.3) -> id-signedData (...7.2)
    (lambda k: _replace_algorithm(_cfr(k), "06092a864886f70d010703", "06092a864886f70d010702"),
     "content type is 'signed_data', expected enveloped_data"),
    # id-RSAES-OAEP (1.2.840.113549.1.1.7) -> rsaEncryption (...1.1.1): PKCS #1 v1.5
    (lambda k: _replace_algorithm(_cfr(k), "06092a864886f70d010107", "06092a864886f70d010101"),
     "key encryption algorithm is 'rsaes_pkcs1v15', expected rsaes_oaep"),
    # aes256-CBC (2.16.840.1.101.3.4.1.42) -> aes128-CBC (...1.2)
    (lambda k: _replace_algorithm(_cfr(k), "060960864801650304012a", "0609608648016503040102"),
     "content encryption is 'aes128_cbc', expected aes256_cbc"),
])
def test_hostile_ciphertext_for_recipient(tmp_path, capsys, monkeypatch, rsa_key, make, message):
    from teeform.seal import Recipient, unseal_secrets

    recipient = Recipient(b"doc", rsa_key)
    kms = FakeKMS({"CiphertextForRecipient": make(rsa_key)})
    with pytest.raises(TeeformError) as exc:
        unseal_secrets(_sealed_for(b"\x07" * 32, b'{"A": "1"}'), kms=kms, recipient=recipient)
    assert exc.value.field == "CiphertextForRecipient" and message in exc.value.message, str(exc.value)
    assert "\n" not in str(exc.value)


def test_hostile_ciphertext_for_recipient_cli(tmp_path, capsys, monkeypatch, rsa_key):
    """The CLI enclave path: a reply that is not CMS gives one line, exit 2, and no --out file."""
    from cryptography.hazmat.primitives import serialization as ser

    import teeform.seal as S

    sealed = tmp_path / "sealed.json"
    sealed.write_text(_sealed_for(b"\x07" * 32, b'{"A": "1"}').to_json())
    ca = tca.make_ca(AT)
    spki = rsa_key.public_key().public_bytes(ser.Encoding.DER, ser.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "doc.cbor").write_bytes(tca.mint(ca, AT, public_key=spki))
    (tmp_path / "rsa.pem").write_bytes(rsa_key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()))
    monkeypatch.setattr(S, "kms_client", lambda **kw: FakeKMS({"CiphertextForRecipient": b"\x30\x03\x02\x01\x01"}))
    status, out, err = run(capsys, ["unseal", "--in", str(sealed), "--out", str(tmp_path / "out.env"),
                                    "--recipient-key", str(tmp_path / "rsa.pem"), "--attestation-doc",
                                    str(tmp_path / "doc.cbor")])
    assert status == 2 and out == ""
    assert one_error_line(err).startswith("error: CiphertextForRecipient: not a CMS EnvelopedData (BER): ")
    _no_output(tmp_path, "out.env")
    # the same flow with a well-formed reply writes the file (so the failure above is the reply's)
    monkeypatch.setattr(S, "kms_client", lambda **kw: FakeKMS({"CiphertextForRecipient": _cfr(rsa_key)}))
    assert run(capsys, ["unseal", "--in", str(sealed), "--out", str(tmp_path / "out.env"), "--recipient-key",
                        str(tmp_path / "rsa.pem"), "--attestation-doc", str(tmp_path / "doc.cbor")])[0] == 0
    assert (tmp_path / "out.env").read_text() == '{\n  "A": "1"\n}\n'
    assert (tmp_path / "out.env").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("payload, message", [
    (b"[1]", "decrypted payload: must be a non-empty JSON object"),
    (b'{"A-B": "1"}', "decrypted payload: 'A-B': 'A-B' is not a valid variable name"),
    (b'{"A": "\\ud800"}', "decrypted payload: A: string holds a lone surrogate at index 0"),
    (b"\xff", "decrypted payload: not UTF-8 text (invalid byte at offset 0)"),
])
def test_hostile_decrypted_payload(payload, message):
    from teeform.seal import unseal_secrets

    with pytest.raises(TeeformError) as exc:
        unseal_secrets(_sealed_for(b"\x05" * 32, payload), kms=FakeKMS({"Plaintext": b"\x05" * 32}))
    assert str(exc.value).startswith(message), str(exc.value)


@pytest.mark.parametrize("reply, message", [
    ({"Plaintext": "x" * 32}, "the data key is a str, expected 32 bytes (AES-256)"),
    ({"Plaintext": b"x" * 31}, "the data key is 31 bytes, expected 32 (AES-256)"),
])
def test_hostile_plaintext_reply(reply, message):
    from teeform.seal import unseal_secrets

    with pytest.raises(TeeformError) as exc:
        unseal_secrets(_sealed_for(b"\x05" * 32, b'{"A": "1"}'), kms=FakeKMS(reply))
    assert str(exc.value) == message


@pytest.mark.parametrize("kind", ["directory", "dev-zero"])
def test_recipient_key_that_is_not_a_small_regular_file(tmp_path, kind):
    from teeform.nitro.kms_recipient import load_recipient_key

    path = tmp_path / "k.pem"
    if kind == "directory":
        path.mkdir()
    else:
        path = Path("/dev/zero")
    with pytest.raises(TeeformError) as exc:
        load_recipient_key(path)
    assert str(exc.value) == f"{path}: recipient key is {'a directory' if kind == 'directory' else 'not a regular file'}"


# ------------------------------------------------------------------------------------- measurements diff scale
DIFF_100K = r'''
import sys
from teeform.manifest import Artifact, ArtifactKind, Builder, InputDigest, Manifest
from teeform.measurements_diff import diff_manifests

def manifest(n, salt):
    roles = ("image", "kernel", "init", "x-unlisted")
    inputs = tuple(InputDigest(roles[i % 4], f"file-{(i * (salt + 1)) % (n // 2)}", f"{(i * 7 + salt) % 16:x}" * 64, i)
                   for i in range(n - salt))
    pcr = f"{salt:02x}" * 48
    return Manifest(ArtifactKind.EIF, "agent", "1.0.0", Artifact("agent.eif", 1, "0" * 64, "0" * 96),
                    {"PCR0": pcr, "PCR1": "22" * 48, "PCR2": pcr, "ImageSha384": pcr}, inputs, Builder("teeform", "0.1.0"), 0)

d = diff_manifests(manifest(100_000, 0), manifest(100_000, 1))
text = d.render_text()
print(len(d.inputs), sum(c.change == "removed" for c in d.inputs), text.count("\n"))
'''


def test_measurements_diff_of_100k_inputs_is_bounded():
    """100,000 inputs per manifest: the quadratic pairing took hours; linear takes about a second.

    Run in a child with a hard time limit, so a regression fails instead of hanging the suite."""
    import subprocess
    import sys

    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", DIFF_100K], capture_output=True, text=True, timeout=30,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    changed, removed, _lines = map(int, proc.stdout.split())
    # every pair differs (size, or the digest when the positions agree); the new side has one input fewer
    assert (changed, removed) == (100_000, 1)
    assert time.monotonic() - t0 < 30


def test_key_id_lookup_with_hostile_pulumi_output(project, monkeypatch, tmp_path):  # noqa: F811
    """`pulumi stack output` printing JSON nested 100,000 deep: no RecursionError, the text is not an ARN."""
    from teeform.seal import resolve_key_id

    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "pulumi"
    fake.write_text("#!/bin/sh\npython3 -c 'print(\"[\" * 100000 + \"]\" * 100000)'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("TEEFORM_TOOLS_DIR", str(bindir))
    assert resolve_key_id(None, "dev", project, "agent") == "[" * 100_000 + "]" * 100_000
