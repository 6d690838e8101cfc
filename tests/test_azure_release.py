"""Azure secure key release policies (issue 10, item 3): the document and its encoding.

Oracles:

* the encoding: ``azure-keyvault-keys`` (pinned 4.11.3) itself. ``KeyClient.create_key(...,
  release_policy=KeyReleasePolicy(encoded_policy=<the policy bytes>))`` is run against a loopback
  HTTPS fake of Key Vault (tests/azure_kv_fake.py) and the ``release_policy.data`` string the SDK's
  own serializer put on the wire must equal teeform's string byte for byte; the SDK's
  ``_serialize_bytes(..., "base64url")`` is compared too. Policies of all three lengths mod 3 are
  used, so no, one and two padding characters are all exercised.
* the document: the sample of the Key Vault policy-grammar page (clouds.md §2.4, copied below as a
  literal), with the claim values of the guest-attestation token sample (clouds.md §2.2).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from azure_kv_fake import FakeCredential, fake_key_vault

from teeform import azure_release as ar
from teeform.errors import TeeformError

AUTHORITIES = [
    "https://sharedeus.eus.attest.azure.net",
    "https://sharedweu.weu.attest.azure.net",
    "https://teeformmaa1.eus.attest.azure.net",
    "https://shareduks.uks.attest.azure.net/",
    "https://maa1.eus.attest.azure.net",
]

#: The policy-grammar sample (learn.microsoft.com/azure/key-vault/keys/policy-grammar, clouds.md §2.4).
GRAMMAR_SAMPLE = json.loads("""
{"version": "1.0.0",
 "anyOf": [ {"authority": "https://sharedeus.eus.attest.azure.net",
             "allOf": [ {"claim": "x-ms-isolation-tee.x-ms-attestation-type", "equals": "sevsnpvm"},
                        {"claim": "x-ms-isolation-tee.x-ms-compliance-status", "equals": "azure-compliant-cvm"} ]} ]}
""")


def test_policy_document_is_the_grammar_sample() -> None:
    assert ar.release_policy("https://sharedeus.eus.attest.azure.net", "sev-snp") == GRAMMAR_SAMPLE
    tdx = ar.release_policy("https://sharedeus.eus.attest.azure.net", "tdx")
    assert tdx["anyOf"][0]["allOf"][0] == {"claim": "x-ms-isolation-tee.x-ms-attestation-type", "equals": "tdxvm"}
    assert tdx["anyOf"][0]["allOf"][1] == GRAMMAR_SAMPLE["anyOf"][0]["allOf"][1]


def test_encoding_matches_the_sdk_serializer_byte_for_byte(tmp_path: Path) -> None:
    from azure.keyvault.keys import KeyClient, KeyReleasePolicy
    from azure.keyvault.keys._generated._utils.model_base import _serialize_bytes

    cases = [(a, t) for a in AUTHORITIES for t in ("sev-snp", "tdx")]
    raws = [ar.policy_bytes(ar.release_policy(a, t)) for a, t in cases]
    assert {len(r) % 3 for r in raws} == {0, 1, 2}, "want policies needing 0, 1 and 2 padding characters"
    with fake_key_vault(tmp_path) as kv:
        client = KeyClient(kv.url, FakeCredential(), connection_verify=kv.ca_file, verify_challenge_resource=False)
        for i, ((authority, tee), raw) in enumerate(zip(cases, raws, strict=True)):
            ours = ar.encoded_release_policy(authority, tee)
            client.create_rsa_key(f"k{i}", hardware_protected=True, exportable=True,
                                  release_policy=KeyReleasePolicy(raw))
            method, path, body = kv.requests[-1]
            assert (method, path) == ("POST", f"/keys/k{i}/create")
            wire = body["release_policy"]
            assert wire["data"] == ours  # what the SDK sends, byte for byte
            assert ours == _serialize_bytes(raw, "base64url")
            assert "=" not in ours and "+" not in ours and "/" not in ours
            assert body["kty"] == "RSA-HSM" and body["attributes"]["exportable"] is True
            assert ar.decode_policy(ours) == ar.release_policy(authority, tee)


def test_content_type_is_the_sdk_default() -> None:
    from azure.keyvault.keys import KeyReleasePolicy

    doc = " ".join((KeyReleasePolicy.__doc__ or "").split())
    assert f'Defaults to "{ar.CONTENT_TYPE}" if omitted' in doc


@pytest.mark.parametrize("bad", ["http://sharedeus.eus.attest.azure.net", "https://evil.example.com",
                                 "https://sharedeus.eus.attest.azure.net/path", "https://SHAREDEUS.eus.attest.azure.net",
                                 "https://x.attest.azure.net:8443", "", "https://.attest.azure.net"])
def test_bad_authority_is_refused_naming_the_field(bad: str) -> None:
    with pytest.raises(TeeformError) as e:
        ar.release_policy(bad, "sev-snp")
    assert e.value.field == "attestation.authority" and "attest.azure.net" in e.value.message


def test_unknown_tee_is_refused() -> None:
    with pytest.raises(TeeformError, match="no TEE-type claim"):
        ar.release_policy(AUTHORITIES[0], "nitro-enclave")


@pytest.mark.parametrize("bad", ["a+b/", "!!", "eyJ", "WzFd"])  # not base64url / not JSON / a JSON list
def test_decode_refuses_garbage(bad: str) -> None:
    with pytest.raises(TeeformError):
        ar.decode_policy(bad)


def test_readme_shows_the_policy_teeform_writes_for_the_shipped_stack() -> None:
    """README "### Azure confidential VM" must show what the program writes for stacks/Pulumi.azure.yaml's snp target."""
    import re

    import yaml

    repo = Path(__file__).resolve().parents[1]
    readme = (repo / "README.md").read_text()
    section = readme[readme.index("### Azure confidential VM"):]
    section = section[: section.index("\n## ")]
    stack = yaml.safe_load((repo / "stacks" / "Pulumi.azure.yaml").read_text())
    snp = next(t for t in stack["config"]["teeform:targets"] if t["name"] == "snp")
    shown = re.search(r"```json\n(.*?)```", section, re.S)
    encoded = re.search(r"```text\n(.*?)\n```", section, re.S)
    assert shown and encoded
    assert json.loads(shown.group(1)) == ar.release_policy(snp["attestation"]["authority"], snp["tee"])
    assert encoded.group(1) == ar.encoded_release_policy(snp["attestation"]["authority"], snp["tee"])
    from teeform.targets.azure_sev_snp import PLUGIN

    for out in PLUGIN.outputs:
        if out.name != "public_ip":
            assert f"`{out.name}`" in section, out.name
    assert "not the image" in section


@pytest.mark.parametrize("doc", [b"[" * 100_000, b'{"version": "1.0.0", "version": "1.0.0", "anyOf": []}'])
def test_hostile_release_policy_is_refused_naming_the_field(doc: bytes) -> None:
    """A release policy nested 100,000 deep or with a duplicate key (e.g. inside a `teeform preview diff`
    input) is one TeeformError naming the field, never a RecursionError or a last-wins read."""
    import base64

    data = base64.urlsafe_b64encode(doc).decode().rstrip("=")
    with pytest.raises(TeeformError, match="does not decode to a JSON policy") as ei:
        ar.decode_policy(data, field="releasePolicy.data")
    assert ei.value.field == "releasePolicy.data"
