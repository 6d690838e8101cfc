"""Property-based fuzzing of the teeform/ parsers (issue 7 item 3): any input either parses or raises
:class:`~teeform.errors.TeeformError`; nothing else escapes (no ``ValueError``, ``KeyError``,
``RecursionError``, ``UnicodeEncodeError``...).

Inputs are mutations of real or canonical documents, not only random bytes: the attestation parser
gets the real Nitro fixture with one node of its CBOR structure replaced (RFC 8949 data model:
integers, strings, arrays, maps, floats, simple values) and byte-level edits; the CMS parser gets the
real KMS ``CiphertextForRecipient`` test vector with byte edits. Each test is bounded
(``max_examples``, small sizes) and runs in a few seconds; no example database is written.
``TEEFORM_FUZZ_EXAMPLES`` raises the number of examples for a deeper run.
"""

from __future__ import annotations

import base64
import json
import os

import cbor2
import pytest
from conftest import NITRO_FIXTURES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from measurements_diff_reference import reference_pair_inputs
from test_seal_recipient import ENCLAVER_CIPHERTEXT, ENCLAVER_KEY

from teeform.errors import TeeformError
from teeform.manifest import Manifest, _plainly_valid_input, _validators
from teeform.measurements_diff import _pair_inputs

#: ``TEEFORM_FUZZ_EXAMPLES=5000`` for a deeper local run; 200 keeps each test to about a second.
FUZZ = settings(max_examples=int(os.environ.get("TEEFORM_FUZZ_EXAMPLES", "200")), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

json_scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                                                                     max_size=4), max_leaves=12)


def byte_edits(data: bytes):
    """A strategy of ``data`` with a few overwrites, insertions, deletions, or a truncation."""
    edit = st.tuples(st.sampled_from(["set", "insert", "delete", "truncate"]), st.integers(0, len(data) - 1),
                     st.binary(min_size=1, max_size=8))

    def apply(edits) -> bytes:
        b = bytearray(data)
        for op, pos, blob in edits:
            pos = min(pos, max(len(b) - 1, 0))
            if op == "set":
                b[pos:pos + len(blob)] = blob
            elif op == "insert":
                b[pos:pos] = blob
            elif op == "delete":
                del b[pos:pos + len(blob)]
            else:
                del b[pos:]
        return bytes(b)

    return st.lists(edit, min_size=1, max_size=4).map(apply)


# ------------------------------------------------------------------------------------- manifest loader
MANIFEST = {"schema_version": 1, "kind": "eif", "name": "agent", "version": "1.0.0",
            "artifact": {"file_name": "agent.eif", "size": 1, "sha256": "0" * 64, "sha384": "0" * 96},
            "measurements": {"PCR0": "11" * 48, "PCR1": "22" * 48, "PCR2": "33" * 48, "ImageSha384": "11" * 48},
            "inputs": [{"role": "image", "name": "agent:1", "sha256": "1" * 64, "size": 3}],
            "builder": {"name": "teeform", "version": "0.1.0"}, "source_date_epoch": 0, "details": {}}
#: The same as a schema-2 manifest without artifact.sha384 (what `teeform build eif` writes now).
MANIFEST_V2 = {**MANIFEST, "schema_version": 2, "artifact": {k: v for k, v in MANIFEST["artifact"].items() if k != "sha384"}}
PATHS = [("schema_version",), ("kind",), ("name",), ("artifact",), ("artifact", "size"), ("artifact", "sha256"),
         ("artifact", "sha384"),
         ("measurements",), ("measurements", "PCR0"), ("inputs",), ("inputs", 0), ("inputs", 0, "size"),
         ("inputs", 0, "sha256"), ("builder",), ("source_date_epoch",), ("details",)]


def _replaced(doc, path, value):
    doc = json.loads(json.dumps(doc))
    node = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return doc


def _parses_or_teeform_error(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except TeeformError as exc:
        assert exc.render(), "an error must say something"
        return None


def test_canonical_manifest_parses():
    m = Manifest.from_json(json.dumps(MANIFEST), source="m.json")
    assert m.inputs[0].size == 3 and m.measurements["PCR0"] == "11" * 48


def test_canonical_v2_manifest_parses_without_sha384():
    m = Manifest.from_json(json.dumps(MANIFEST_V2), source="m.json")
    assert m.schema_version == 2 and m.artifact.sha384 is None
    assert json.loads(m.to_json()) == MANIFEST_V2


@FUZZ
@given(st.sampled_from([MANIFEST, MANIFEST_V2]), st.sampled_from(PATHS), json_values)
def test_manifest_field_replaced(base, path, value):
    text = json.dumps(_replaced(base, path, value))
    m = _parses_or_teeform_error(Manifest.from_json, text, source="m.json")
    if m is not None:  # accepted: it round-trips through the canonical form
        assert Manifest.from_json(m.to_json(), source="m2.json") == m


@FUZZ
@given(byte_edits(json.dumps(MANIFEST).encode()))
def test_manifest_bytes_edited(data):
    _parses_or_teeform_error(Manifest.from_json, data, source="m.json")


input_items = st.dictionaries(st.sampled_from(["role", "name", "sha256", "size", "extra"]),
                              json_scalars | st.sampled_from(["1" * 64, "A" * 64, "1" * 64 + "\n", "", "kernel"]),
                              max_size=5)


@FUZZ
@given(input_items)
def test_plainly_valid_input_implies_schema_valid(item):
    """The fast path of manifest validation never accepts an item the JSON Schema refuses."""
    if _plainly_valid_input(item):
        assert list(_validators()[1].iter_errors(item)) == []


# ------------------------------------------------------------------------------------- secrets parsers
env_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
env_values = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"), max_size=30)


@FUZZ
@given(st.text(max_size=200))
def test_parse_env_any_text(text):
    from teeform.seal import parse_env

    out = _parses_or_teeform_error(parse_env, text, source="s.env")
    if out is not None:
        assert out and all(isinstance(k, str) and isinstance(v, str) and "\0" not in v for k, v in out.items())


@FUZZ
@given(st.dictionaries(env_names, env_values, min_size=1, max_size=6))
def test_env_round_trip(secrets):
    from teeform.seal import format_env, parse_env

    assert parse_env(format_env(secrets), source="s.env") == secrets


@FUZZ
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_parse_secrets_json_any_bytes(data):
    from teeform.seal import parse_secrets_json

    out = _parses_or_teeform_error(parse_secrets_json, data, source="s.json")
    if out is not None:
        assert out and all(isinstance(v, str) for v in out.values())


# ------------------------------------------------------------------------------------- sealed-file parser
def _sealed() -> dict:
    key = "arn:aws:kms:eu-west-1:111122223333:key/k"
    ctx = {"teeform:stack": "dev", "teeform:target": "agent", "teeform:manifest-sha256": "ab" * 32}
    return {"format": "teeform-sealed-secrets", "version": 1, "algorithm": "AES-256-GCM", "key_id": key,
            "encryption_context": ctx, "encrypted_data_key": base64.b64encode(b"k" * 40).decode(),
            "nonce": base64.b64encode(b"n" * 12).decode(), "ciphertext": base64.b64encode(b"c" * 40).decode(),
            "aad": {"key_id": key, "manifest_sha256": "ab" * 32, "stack": "dev", "version": 1}}


SEALED_PATHS = [(k,) for k in _sealed()] + [("aad", k) for k in ("key_id", "manifest_sha256", "stack", "version")] + \
    [("encryption_context", "teeform:stack")]


def test_canonical_sealed_file_parses():
    from teeform.seal import SealedSecrets

    s = SealedSecrets.from_json(json.dumps(_sealed()), source="s.json")
    assert s.nonce == b"n" * 12 and SealedSecrets.from_json(s.to_json()) == s


@FUZZ
@given(st.sampled_from(SEALED_PATHS), json_values)
def test_sealed_field_replaced(path, value):
    from teeform.seal import SealedSecrets

    _parses_or_teeform_error(SealedSecrets.from_json, json.dumps(_replaced(_sealed(), path, value)), source="s.json")


@FUZZ
@given(byte_edits(json.dumps(_sealed()).encode()))
def test_sealed_bytes_edited(data):
    from teeform.seal import SealedSecrets

    _parses_or_teeform_error(SealedSecrets.from_json, data, source="s.json")


# ------------------------------------------------------------------------------------- attestation documents
cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**64, 2**64 - 1) | st.floats() | st.binary(max_size=64) | st.text(max_size=16),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.integers(-5, 40) | st.text(max_size=8), kids, max_size=4),
    max_leaves=10)


@pytest.fixture(scope="module")
def fixture_doc(nitro_fixtures):
    raw = (NITRO_FIXTURES / "evervault-2022-10-13-nondebug.cose").read_bytes()
    return raw, cbor2.loads(raw), cbor2.loads(cbor2.loads(raw)[2])


def _check_document(data: bytes) -> None:
    """Parse; when it parses, every verification check must also run without an exception."""
    from teeform.nitro import verify as V
    from teeform.nitro.attestation import parse_attestation_document

    doc = _parses_or_teeform_error(parse_attestation_document, data, source="doc.cbor")
    if doc is not None:
        report = V.verify_attestation(doc, root=V.load_root(), allowed=[V.AllowedMeasurements("m", {"PCR0": "00" * 48})])
        assert report.render()


PAYLOAD_KEYS = ["module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle", "public_key", "user_data",
                "nonce", "extra"]


@FUZZ
@given(st.sampled_from(PAYLOAD_KEYS), cbor_values)
def test_attestation_payload_field_replaced(fixture_doc, key, value):
    raw, cose, payload = fixture_doc
    body = {**payload, key: value}
    _check_document(cbor2.dumps([cose[0], cose[1], cbor2.dumps(body), cose[3]]))


@FUZZ
@given(st.integers(0, 3), cbor_values)
def test_attestation_cose_item_replaced(fixture_doc, index, value):
    raw, cose, _payload = fixture_doc
    items = list(cose)
    items[index] = value
    _check_document(cbor2.dumps(items))


@FUZZ
@given(st.integers(0, 40), cbor_values, st.integers(0, 5), st.sampled_from(["pcrs", "cabundle"]))
def test_attestation_nested_node_replaced(fixture_doc, pcr, value, index, where):
    raw, cose, payload = fixture_doc
    body = dict(payload)
    if where == "pcrs":
        body["pcrs"] = {**payload["pcrs"], pcr: value}
    else:
        bundle = list(payload["cabundle"])
        bundle[index % len(bundle)] = value
        body["cabundle"] = bundle
    _check_document(cbor2.dumps([cose[0], cose[1], cbor2.dumps(body), cose[3]]))


@FUZZ
@given(st.data())
def test_attestation_certificate_bytes_edited(fixture_doc, data):
    """DER edits inside the leaf or a CA certificate: the parse succeeds, verification must not raise."""
    raw, cose, payload = fixture_doc
    which = data.draw(st.integers(0, len(payload["cabundle"])))
    der = payload["certificate"] if which == 0 else payload["cabundle"][which - 1]
    edited = data.draw(byte_edits(der))
    body = dict(payload)
    if which == 0:
        body["certificate"] = edited
    else:
        body["cabundle"] = [edited if i == which - 1 else c for i, c in enumerate(payload["cabundle"])]
    _check_document(cbor2.dumps([cose[0], cose[1], cbor2.dumps(body), cose[3]]))


@FUZZ
@given(st.data())
def test_attestation_bytes_edited(fixture_doc, data):
    raw, _cose, _payload = fixture_doc
    _check_document(data.draw(byte_edits(raw)))


@FUZZ
@given(st.binary(max_size=300))
def test_attestation_random_bytes(data):
    from teeform.nitro.attestation import decode_document_bytes

    _parses_or_teeform_error(decode_document_bytes, data, source="doc")
    _check_document(b"\x84" + data)


# ------------------------------------------------------------------------------------- CMS recipient parser
@pytest.fixture(scope="module")
def enclaver_key():
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_private_key(ENCLAVER_KEY, None)


@FUZZ
@given(byte_edits(ENCLAVER_CIPHERTEXT))
def test_ciphertext_for_recipient_edited(enclaver_key, data):
    from teeform.nitro.kms_recipient import decrypt_ciphertext_for_recipient, parse_ciphertext_for_recipient

    _parses_or_teeform_error(parse_ciphertext_for_recipient, data)
    out = _parses_or_teeform_error(decrypt_ciphertext_for_recipient, data, enclaver_key)
    assert out is None or isinstance(out, bytes)


@FUZZ
@given(st.binary(max_size=300))
def test_ciphertext_for_recipient_random(data):
    from teeform.nitro.kms_recipient import parse_ciphertext_for_recipient

    _parses_or_teeform_error(parse_ciphertext_for_recipient, b"\x30\x80" + data)
    _parses_or_teeform_error(parse_ciphertext_for_recipient, data)


# ------------------------------------------------------------------------------------- diff pairing
def _inputs():
    from teeform.manifest import InputDigest

    item = st.builds(InputDigest, st.sampled_from(["image", "Kernel", "kernel", "init_x", "init-x", "x"]),
                     st.sampled_from(["a", "b", "c", "d"]), st.sampled_from(["1" * 64, "2" * 64]),
                     st.none() | st.integers(0, 2))
    return st.lists(item, max_size=12)


@settings(max_examples=400, deadline=None, database=None)
@given(_inputs(), _inputs())
def test_linear_pairing_equals_reference(old, new):
    assert _pair_inputs(old, new) == reference_pair_inputs(old, new)
