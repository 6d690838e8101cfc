"""Key-release readers for Azure Key Vault release policies and Trustee registrations (release.py),
used by ``measurements-match-manifest`` and ``policy-coverage``: passing on what the real program
registers, failing (or ``NOT CHECKED``, never passed) on tampered inputs.

Oracles: release policies are written here as JSON and encoded with ``base64.urlsafe_b64encode`` (the
grammar of Key Vault "policy-grammar", clouds.md §2.4); RVPS messages with ``base64`` + ``json``; the
manifests are the files' own values.
"""

from __future__ import annotations

import base64
import copy
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from pulumi_support import REPO, by_type, fake_hex, policy_violations, resource, write_fake_vm_manifest
from test_azure_components import azure_target, write_vhd_manifest
from test_broker_targets import run_with

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

sys.path.insert(0, str(REPO / "policies"))
from teeform_policies import tokens  # noqa: E402
from teeform_policies.families import NOT_CHECKED  # noqa: E402
from teeform_policies.release import KEY_RELEASE  # noqa: E402

sys.path.remove(str(REPO / "policies"))

MMM = "measurements-match-manifest"
KEY = tokens.AZURE_KEYVAULT_KEY
REG = tokens.TRUSTEE_KBS_REGISTRATION
AUTHORITY = "https://sharedweu.weu.attest.azure.net"


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> tuple[list[Any], Path, Path]:
    """An Azure SEV-SNP target with two allowed manifests and the key broker, and an alicloud TDX one."""
    from components.trustee import broker

    broker._reset_for_tests()
    d = tmp_path_factory.mktemp("m")
    a = write_vhd_manifest(d / "a", version="1.0.0")
    b = write_vhd_manifest(d / "b", version="1.1.0", extra={"pcr11_sha256": fake_hex("b-pcr11", 64)})
    ali = write_fake_vm_manifest(d / "ali")
    res, _ = run_with([
        azure_target(a, "az", manifests=[str(a), str(b)], keyBroker={"kbs": "https://kbs.example:8080"}),
        {"name": "td", "cloud": "alicloud", "region": "cn-beijing", "tee": "tdx", "manifests": [str(ali)],
         "instanceType": "ecs.g8i.xlarge", "zone": "cn-beijing-i", "keyBroker": {"deploy": {"adminCidr": "203.0.113.0/24"}}},
    ], **{"teeform:kbsAdminKey": "pem"})
    broker._reset_for_tests()
    return res, a, b


def msgs(vs) -> list[str]:
    return [v.message for v in vs]


def encode(doc: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()


def with_key_policy(res: list[Any], data: str) -> list[Any]:
    out = []
    for r in res:
        if r.type == KEY:
            inputs = copy.deepcopy(r.inputs)
            inputs["properties"]["releasePolicy"]["data"] = data
            r = resource(r.type, inputs, r.name)
        out.append(r)
    return out


def with_rvps(res: list[Any], target: str, prov: dict[str, Any]) -> list[Any]:
    msg = {"version": "0.1.0", "type": "sample", "payload": base64.b64encode(json.dumps(prov).encode()).decode()}
    return [resource(r.type, {**copy.deepcopy(r.inputs), "rvps_message": msg}, r.name)
            if r.type == REG and r.inputs["target"] == target else r for r in res]


def provenance(res: list[Any], target: str) -> dict[str, list[str]]:
    (reg,) = [r for r in by_type(res, REG) if r.inputs["target"] == target]
    return json.loads(base64.b64decode(reg.inputs["rvps_message"]["payload"]))


def test_program_passes_and_nothing_is_not_checked(program) -> None:
    res, _, _ = program
    assert msgs(policy_violations(MMM, res)) == []
    coverage = msgs(policy_violations("policy-coverage", res))
    assert not [m for m in coverage if KEY in m or REG in m], coverage


def test_azure_reader_reads_the_platform_claims_of_the_policy_teeform_wrote(program) -> None:
    res, _, _ = program
    (key,) = by_type(res, KEY)
    (rule,) = KEY_RELEASE.extract(KEY, key.inputs)
    # The policy as Key Vault's grammar writes it (clouds.md §2.4), encoded here: same claims read back.
    assert rule.values == {} and rule.unchecked is None and rule.target == "az"
    assert rule.platform == {"x-ms-isolation-tee.x-ms-attestation-type": ("sevsnpvm",),
                             "x-ms-isolation-tee.x-ms-compliance-status": ("azure-compliant-cvm",)}
    doc = {"version": "1.0.0", "anyOf": [{"authority": AUTHORITY, "allOf": [
        {"claim": "x-ms-isolation-tee.x-ms-attestation-type", "equals": "tdxvm"}]}]}
    (r2,) = KEY_RELEASE.extract(KEY, {"properties": {"releasePolicy": {"data": encode(doc)}}})
    assert r2.platform == {"x-ms-isolation-tee.x-ms-attestation-type": ("tdxvm",)} and r2.unchecked is None


@pytest.mark.parametrize(("doc", "why"), [
    ({"version": "1.0.0", "anyOf": [{"authority": AUTHORITY, "allOf": [
        {"claim": "x-ms-isolation-tee.x-ms-attestation-type", "equals": "sevsnpvm"},
        {"claim": "x-ms-sevsnpvm-launchmeasurement", "equals": "ab" * 48}]}]},
     "claim 'x-ms-sevsnpvm-launchmeasurement' is not one teeform maps"),
    ({"version": "1.0.0", "anyOf": [{"authority": AUTHORITY, "allOf": [
        {"claim": "x-ms-isolation-tee.x-ms-attestation-type", "notEquals": "none"}]}]},
     "uses ['notEquals'], not 'equals'"),
    ("not base64url JSON!", "not base64url-encoded JSON"),
])
def test_azure_policy_teeform_cannot_read_is_not_checked_never_passed(program, doc, why) -> None:
    res, _, _ = program
    bad = with_key_policy(res, doc if isinstance(doc, str) else encode(doc))
    found = msgs(policy_violations(MMM, bad))
    assert len(found) == 1 and found[0].startswith(f"{NOT_CHECKED}: {KEY} ") and why in found[0], found


def test_trustee_reader_pins_each_set_against_its_own_targets_manifests(program) -> None:
    res, a, b = program
    (reg,) = [r for r in by_type(res, REG) if r.inputs["target"] == "az"]
    rules = KEY_RELEASE.extract(REG, reg.inputs)
    files = [json.loads(p.read_text())["measurements"]["pcr11_sha256"] for p in (a, b)]
    assert sorted(r.values["pcr11_sha256"] for r in rules) == sorted((v,) for v in files)
    assert {r.target for r in rules} == {"az"} and not any(r.unchecked for r in rules)


def test_trustee_value_of_no_manifest_fails(program) -> None:
    res, _, _ = program
    prov = provenance(res, "az")
    rv = sorted(prov)[0]
    found = msgs(policy_violations(MMM, with_rvps(res, "az", {**prov, rv: ["ee" * 32]})))
    assert any(f"condition {rv} value eeeeeeeeeeeeeeee... does not come from a loaded manifest" in m for m in found), found


def test_trustee_set_mixing_two_builds_fails(program) -> None:
    res, _, _ = program
    prov = provenance(res, "td")  # one set: uki + rtmr_1 of the alicloud manifest
    uki = next(k for k in prov if k.endswith(".uki"))
    # A second manifest of td with its own UKI digest: both values are td's, but not of one build.
    mm = resource(tokens.TEEFORM_MEASUREMENT_MANIFEST, {"target": "td", "name": "other-vm", "measurements": {
        "uki_authenticode_sha384": "cd" * 48, "rtmr1": "ef" * 48}}, "mm-td-other")
    found = msgs(policy_violations(MMM, [*with_rvps(res, "td", {**prov, uki: ["cd" * 48]}), mm]))
    assert any("which no single MeasurementManifest of target 'td' records: it mixes measurements" in m
               for m in found), found


def test_trustee_ids_teeform_cannot_read_are_not_checked(program) -> None:
    res, _, _ = program
    prov = provenance(res, "az")
    found = msgs(policy_violations(MMM, with_rvps(res, "az", {**prov, "someone.else.value": ["00"]})))
    assert len(found) == 1 and found[0].startswith(f"{NOT_CHECKED}: {REG} ") and "someone.else.value" in found[0]


def test_coverage_still_reports_key_types_no_reader_reads() -> None:
    res = [resource("azure:keyvault/key:Key", {"keyVaultId": "v"}, "classic-key"),
           resource("azure-native:keyvault:AccessPolicy", {"policy": {}}, "ap"),
           resource(KEY, {"properties": {"kty": "RSA-HSM"}}, "plain-key")]
    found = [(v.resource_name, v.message) for v in policy_violations("policy-coverage", res)]
    assert [n for n, _ in found] == ["classic-key", "ap"] and all(m.startswith(NOT_CHECKED) for _, m in found)
