"""Parser error handling and input forms (raw CBOR, base64, tagged COSE, stdin)."""

from __future__ import annotations

import base64
import datetime as dt
import io
import sys

import cbor2
import nitro_testca as tca
import pytest

from teeform.errors import TeeformError
from teeform.nitro.attestation import decode_document_bytes, parse_attestation_document, read_attestation_document

AT = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def ca():
    return tca.make_ca(AT)


def _doc(ca, **payload_over):
    body = tca.payload_map(ca, AT)
    body.update(payload_over)
    return tca.mint(ca, AT, payload=body)


def test_minted_document_round_trip(ca):
    nonce, ud, pk = b"\x01" * 32, b"hello", b"\x30\x2a" + b"k" * 40
    data = tca.mint(ca, AT, nonce=nonce, user_data=ud, public_key=pk)
    doc = parse_attestation_document(data)
    assert (doc.nonce, doc.user_data, doc.public_key) == (nonce, ud, pk)
    assert doc.timestamp == int(AT.timestamp() * 1000) and doc.time == AT
    assert doc.tagged is False and doc.protected == bytes.fromhex("a1013822")
    # the raw payload bytes are kept exactly (not re-encoded)
    assert cbor2.loads(data)[2] == doc.payload


def test_tagged_cose_accepted(ca):
    data = tca.mint(ca, AT, tagged=True)
    assert data[0] == 0xD2
    assert parse_attestation_document(data).tagged is True


def test_absent_optional_fields_are_none(ca):
    body = tca.payload_map(ca, AT)
    for k in ("public_key", "user_data", "nonce"):
        del body[k]
    doc = parse_attestation_document(tca.mint(ca, AT, payload=body))
    assert doc.public_key is doc.user_data is doc.nonce is None


@pytest.mark.parametrize("over, message", [
    ({"pcrs": {0: "ab" * 48}}, "payload field 'pcrs' must be a map of int -> bytes"),
    ({"pcrs": [b"\0" * 48]}, "payload field 'pcrs' must be a map of int -> bytes"),
    ({"pcrs": {0: b"\0" * 47}}, "PCR0 is 47 bytes"),
    ({"pcrs": {40: b"\0" * 48}}, "index 40, outside 0..31"),
    ({"module_id": ""}, "'module_id' must be a non-empty text string"),
    ({"digest": "SHA256"}, "'digest' must be 'SHA384'"),
    ({"timestamp": -5}, "'timestamp' must be a positive integer"),
    ({"timestamp": "1665651482136"}, "'timestamp' must be a positive integer"),
    ({"certificate": "not bytes"}, "'certificate' must be a non-empty byte string"),
    ({"cabundle": []}, "'cabundle' must be a non-empty array"),
    ({"nonce": "abc"}, "'nonce' must be a byte string or null"),
    ({"user_data": b"x" * 1025}, "'user_data' must be 0..1024 bytes"),
])
def test_wrong_payload_types(ca, over, message):
    with pytest.raises(TeeformError) as ei:
        parse_attestation_document(_doc(ca, **over), source="doc.cbor")
    assert message in str(ei.value) and "doc.cbor" in str(ei.value)


def test_missing_required_field(ca):
    body = tca.payload_map(ca, AT)
    del body["pcrs"]
    with pytest.raises(TeeformError, match="missing required field 'pcrs'"):
        parse_attestation_document(tca.mint(ca, AT, payload=body))


@pytest.mark.parametrize("obj, message", [
    ([b"", {}, b""], "expected a CBOR array of 4 items"),
    ({"a": 1}, "expected a CBOR array of 4 items"),
    (["x", {}, b"", b""], "item 'protected' must be a byte string"),
    ([b"", [], b"", b""], "item 'unprotected' must be a map"),
    ([b"", {}, cbor2.dumps([1, 2]), b""], "payload must be a CBOR map"),
    (cbor2.CBORTag(17, [b"", {}, b"", b""]), "CBOR tag 17 is not COSE_Sign1"),
])
def test_wrong_structure(obj, message):
    with pytest.raises(TeeformError, match=message):
        parse_attestation_document(cbor2.dumps(obj))


def test_truncated_and_trailing_and_garbage(ca):
    data = tca.mint(ca, AT)
    with pytest.raises(TeeformError, match=r"truncated \(100 bytes"):
        parse_attestation_document(data[:100])
    with pytest.raises(TeeformError, match="1 trailing byte"):
        parse_attestation_document(data + b"\0")
    with pytest.raises(TeeformError, match="not valid CBOR"):
        parse_attestation_document(b"\x84\x44\xa1\x01\x38\x22\xa0\x5f\x01")  # indefinite bstr with an int chunk
    with pytest.raises(TeeformError, match="neither CBOR .* nor base64"):
        decode_document_bytes(b"hello, this is not an attestation document\n")
    with pytest.raises(TeeformError, match="empty"):
        decode_document_bytes(b"")


def test_base64_forms(ca):
    data = tca.mint(ca, AT)
    std = base64.b64encode(data)
    assert decode_document_bytes(std) == data
    wrapped = b"\n".join(std[i:i + 76] for i in range(0, len(std), 76)) + b"\n"
    assert decode_document_bytes(wrapped) == data
    assert decode_document_bytes(base64.urlsafe_b64encode(data).rstrip(b"=")) == data


def test_read_from_file_and_stdin(ca, tmp_path, monkeypatch):
    data = tca.mint(ca, AT)
    p = tmp_path / "doc.b64"
    p.write_bytes(base64.b64encode(data))
    doc, src = read_attestation_document(p)
    assert src == str(p) and doc.payload == cbor2.loads(data)[2]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    doc2, src2 = read_attestation_document("-")
    assert src2 == "<stdin>" and doc2 == doc
    with pytest.raises(TeeformError, match="not found"):
        read_attestation_document(tmp_path / "missing.cbor")
