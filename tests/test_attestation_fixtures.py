"""Parse every real Nitro attestation document in tests/fixtures/nitro and compare with expected.json.

Oracle: ``tests/fixtures/nitro/expected.json`` was produced by an independent decoder (see the
fixtures README, "expected.json"); the PCR values of the 2023-01-18 signed document are also
published upstream (evervault/attestation-doc-validation@084ba280
``test-specs/beta/valid_attestation_doc_in_cert_der_encoding_time_sensitive.json``).
"""

from __future__ import annotations

import hashlib
import json

import pytest
from conftest import NITRO_FIXTURES

from teeform.nitro.attestation import parse_attestation_document

EXPECTED = json.loads((NITRO_FIXTURES / "expected.json").read_text())
NAMES = sorted(n for n in EXPECTED if n.endswith(".cose"))


def test_every_fixture_is_listed(nitro_fixtures):
    on_disk = sorted(p.name for p in nitro_fixtures.glob("*.cose"))
    assert on_disk == NAMES and len(NAMES) == 5


@pytest.mark.parametrize("name", NAMES)
def test_fixture_fields_match_expected(nitro_fixtures, name):
    exp = EXPECTED[name]
    data = (nitro_fixtures / name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == exp["sha256"] and len(data) == exp["size"]
    doc = parse_attestation_document(data, source=name)

    # all 16 PCRs, by index
    assert {str(i): v.hex() for i, v in doc.pcrs.items()} == exp["pcrs"]
    assert len(doc.pcrs) == 16
    assert doc.module_id == exp["module_id"]
    assert doc.digest == exp["digest"] == "SHA384"
    assert doc.timestamp == exp["timestamp_ms"]
    assert doc.time.isoformat() == exp["timestamp_utc"]
    assert len(doc.cabundle) == exp["cabundle_len"]
    assert doc.tagged is exp["cose_tagged"]
    assert doc.protected.hex() == exp["protected_header_hex"]
    assert doc.alg == -35
    assert len(doc.payload) == exp["payload_len"]
    assert len(doc.signature) == exp["signature_len"]
    for fld in ("public_key", "user_data", "nonce"):
        v = getattr(doc, fld)
        assert (None if v is None else len(v)) == exp[f"{fld}_len"], fld


def test_debug_fixture_optional_fields(nitro_fixtures):
    # README: public_key = "my super secret key", user_data = "hello, world!", nonce null
    doc = parse_attestation_document((nitro_fixtures / "evervault-2022-10-12-debug.cose").read_bytes())
    assert doc.public_key == b"my super secret key"
    assert doc.user_data == b"hello, world!"
    assert doc.nonce is None
