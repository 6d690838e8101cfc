"""The offline preview's summary of an Azure Key Vault key: its Secure Key Release policy, walked whole.

Expected lines are written by hand from the policy-grammar semantics (``allOf`` ANDs, ``anyOf`` ORs, at any
depth; an ``authority`` applies to its branch), not taken from the code under test.
"""

from __future__ import annotations

from typing import Any

from teeform.azure_release import GATE_PINS, encode_policy, policy_bytes, release_policy
from teeform.preview.clouds.azure import KEY, PLUGIN, _condition_text

SHARED = "https://sharedeus.eus.attest.azure.net"
OTHER = "https://other.weu.attest.azure.net"
TEE = "x-ms-isolation-tee.x-ms-attestation-type"
COMPLIANCE = "x-ms-isolation-tee.x-ms-compliance-status"
HEAD = "kty=RSA-HSM keySize=3072 exportable=True"


def _key(policy: dict[str, Any]) -> dict[str, Any]:
    return {"properties": {"kty": "RSA-HSM", "keySize": 3072, "attributes": {"exportable": True},
                           "releasePolicy": {"data": encode_policy(policy_bytes(policy))}}}


def _claim(name: str, value: str) -> dict[str, str]:
    return {"claim": name, "equals": value}


def test_teeforms_own_flat_policy_is_one_line_per_group() -> None:
    lines = PLUGIN.summarize(KEY, _key(release_policy(SHARED, "sev-snp")))
    assert lines == [HEAD, f"release to tokens of {SHARED} with {TEE} == 'sevsnpvm' and {COMPLIANCE} == 'azure-compliant-cvm'",
                     f"gate: {GATE_PINS}"]


def test_nested_any_of_and_all_of_claims_are_shown() -> None:
    policy = {"version": "1.0.0", "anyOf": [
        {"authority": SHARED, "allOf": [
            _claim(COMPLIANCE, "azure-compliant-cvm"),
            {"anyOf": [_claim(TEE, "sevsnpvm"), _claim(TEE, "tdxvm")]}]},
        {"authority": OTHER, "anyOf": [
            {"allOf": [_claim("x-ms-attestation-type", "sevsnpvm"), _claim("x-ms-compliance-status", "azure-compliant-cvm")]},
            {"allOf": [{"anyOf": [_claim("a", "1"), {"allOf": [_claim("b", "2"), _claim("c", "3")]}]}]}]},
    ]}
    assert PLUGIN.summarize(KEY, _key(policy)) == [
        HEAD,
        f"release to tokens of {SHARED} with {COMPLIANCE} == 'azure-compliant-cvm' and "
        f"({TEE} == 'sevsnpvm' or {TEE} == 'tdxvm')",
        f"release to tokens of {OTHER} with (x-ms-attestation-type == 'sevsnpvm' and "
        "x-ms-compliance-status == 'azure-compliant-cvm') or (a == '1' or (b == '2' and c == '3'))",
        f"gate: {GATE_PINS}",
    ]


def test_nested_authority_and_unsupported_operator_are_said() -> None:
    policy = {"version": "1.0.0", "anyOf": [
        {"authority": SHARED, "anyOf": [
            _claim(TEE, "sevsnpvm"),
            {"authority": OTHER, "allOf": [_claim(TEE, "tdxvm"), {"claim": COMPLIANCE, "notEquals": "x"}]}]}]}
    assert PLUGIN.summarize(KEY, _key(policy))[1] == (
        f"release to tokens of {SHARED} with {TEE} == 'sevsnpvm' or (tokens of {OTHER} with ({TEE} == 'tdxvm' and "
        f"{COMPLIANCE} ['notEquals'] (no 'equals', the only operator Key Vault implements)))")


def test_walk_depth_is_bounded() -> None:
    node: dict[str, Any] = _claim("c", "v")
    for _ in range(5000):  # far deeper than the recursion limit: the walk must stop at its bound
        node = {"anyOf": [node]}
    assert _condition_text(node) == ("(nested deeper than 64 levels, not shown)", False)
