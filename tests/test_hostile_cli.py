"""Hostile inputs to the teeform/ parsers and commands (issue 7 item 3): one error line naming the file
and field, exit status 2 (or the documented exit-1 "failed check" table for certificates that do not
verify), no traceback, no hang, nothing written.

Each test builds its hostile input from first principles (raw CBOR bytes written out here, RFC 8949
§3; certificates edited with asn1crypto and re-signed with the test CA so the bug is reached past
every signature check) and asserts the exact message.
"""

from __future__ import annotations

import datetime as dt
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


def test_far_future_certificate_dates_are_fine(tmp_path, capsys):
    """GeneralizedTime 99991231235959Z (RFC 5280 §4.1.2.5: the "no well-defined expiration" value)."""
    ca = tca.make_ca(AT, overrides={"leaf": {"not_after": dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)}})
    report = V.verify_attestation(parse_attestation_document(tca.mint(ca, AT)), root=V.Root(ca.root, "x", "t", False),
                                  allowed=[V.AllowedMeasurements("m", {"PCR0": "11" * 48})])
    assert report.check("time").status == "pass" and "9999-12-31T23:59:59Z" in report.check("time").detail
    assert report.check("chain").status == "pass"
