"""Azure policies (issue 10, item 5): passing and failing cases, tokens in the installed SDK, and the
program's own Azure resources passing every mandatory rule.

The failing inputs are written by hand in the wire form the SDK sends (the passing ones come from the
real program under mocks, tests/test_azure_components.py), so each rule is seen to fire on exactly
the field it names. Release policies are encoded here with the standard library (base64url of JSON).
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from pulumi_support import REPO, policy_violations, resource, run
from test_azure_components import azure_target, write_vhd_manifest

sys.path.insert(0, str(REPO / "policies"))
from teeform_policies import tokens  # noqa: E402

sys.path.remove(str(REPO / "policies"))

KEY = "azure-native:keyvault:Key"
AUTH = "https://sharedweu.weu.attest.azure.net"


def enc(doc: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()


def policy(*conds: dict[str, Any], under: str = "allOf", authority: str | None = AUTH) -> dict[str, Any]:
    group: dict[str, Any] = {under: list(conds)}
    if authority is not None:
        group["authority"] = authority
    return {"version": "1.0.0", "anyOf": [group]}


TEE = {"claim": "x-ms-isolation-tee.x-ms-attestation-type", "equals": "sevsnpvm"}
COMPLIANT = {"claim": "x-ms-isolation-tee.x-ms-compliance-status", "equals": "azure-compliant-cvm"}


def key(data: str | None, *, exportable: bool = True, kty: str = "RSA-HSM") -> Any:
    props: dict[str, Any] = {"kty": kty, "attributes": {"exportable": exportable}}
    if data is not None:
        props["releasePolicy"] = {"contentType": "application/json; charset=utf-8", "data": data}
    return resource(KEY, {"properties": props}, "k")


def messages(pid: str, res: list[Any]) -> list[str]:
    return [v.message for v in policy_violations(pid, res)]


@pytest.mark.parametrize(("res", "expect"), [
    (key(enc(policy(TEE, COMPLIANT))), []),
    (key(enc(policy({"claim": "x-ms-attestation-type", "equals": "tdxvm"}))), []),  # SevSnpVm-type token form
    (key(None, exportable=False), []),  # not exportable, no policy: nothing to release
    (key(None), ["'properties.attributes.exportable' is true but there is no 'properties.releasePolicy'"]),
    (key(enc(policy(COMPLIANT))), ["does not require x-ms-isolation-tee.x-ms-attestation-type"]),
    (key(enc(policy(TEE, COMPLIANT, under="anyOf"))), ["its conditions are under anyOf"]),
    (key(enc(policy({**TEE, "equals": "sgx"}))), ["does not require"]),
    (key(enc(policy(TEE, authority=None))), ["has no https authority"]),
    (key(enc({"version": "1.0.0"})), ["has no authority group"]),
    (key("not base64!"), ["is not base64url-encoded JSON"]),
    (key(enc(policy(TEE)), kty="RSA"), ["must be HSM-backed"]),
])
def test_key_release_requires_attestation(res: Any, expect: list[str]) -> None:
    got = messages("azure-key-release-requires-attestation", [res])
    assert len(got) == len(expect), got
    for m, e in zip(got, expect, strict=True):
        assert e in m and "'k'" in m


def _vm(security_type: Any = "ConfidentialVM", vtpm: Any = True, disk: Any = "VMGuestStateOnly") -> Any:
    return resource(tokens.AZURE_COMPUTE_VIRTUAL_MACHINE, {
        "securityProfile": {"securityType": security_type, "uefiSettings": {"vTpmEnabled": vtpm, "secureBootEnabled": False}},
        "storageProfile": {"osDisk": {"managedDisk": {"securityProfile": {"securityEncryptionType": disk}}}},
    }, "vm")


@pytest.mark.parametrize(("res", "fields"), [
    (_vm(), []),
    (_vm(disk="NonPersistedTPM"), []),
    (_vm("TrustedLaunch"), ["securityProfile.securityType"]),
    (_vm(vtpm=False), ["securityProfile.uefiSettings.vTpmEnabled"]),
    (_vm(disk=None), ["securityEncryptionType"]),
    (resource(tokens.AZURE_COMPUTE_VIRTUAL_MACHINE, {}, "vm"),
     ["securityProfile.securityType", "vTpmEnabled", "securityEncryptionType"]),
])
def test_cvm_confidential(res: Any, fields: list[str]) -> None:
    got = messages("azure-cvm-confidential", [res])
    assert len(got) == len(fields) and all(f in m for f, m in zip(fields, got, strict=True)), got


def _nsg(*sources: str) -> Any:
    rules = [{"name": f"r{i}", "direction": "Inbound", "access": "Allow", "protocol": "Tcp", "priority": 100 + i,
              "sourceAddressPrefix": s, "destinationPortRange": "22"} for i, s in enumerate(sources)]
    return resource(tokens.AZURE_NETWORK_SECURITY_GROUP, {"securityRules": rules}, "nsg")


@pytest.mark.parametrize(("res", "count", "text"), [
    (_nsg(), 0, ""),
    (_nsg("10.0.0.0/8", "203.0.113.0/24"), 0, ""),
    (_nsg("Internet"), 1, "'securityRules[0].sourceAddressPrefix' is Internet"),
    (_nsg("10.0.0.0/8", "*"), 1, "'securityRules[1].sourceAddressPrefix' is *"),
    (_nsg("0.0.0.0/0"), 1, "to the whole internet"),
    (_nsg("::0/0", "0::/0", "0.0.0.0/00"), 3, "to the whole internet"),  # spellings of the same networks
    (resource(tokens.AZURE_NETWORK_SECURITY_RULE, {"direction": "Inbound", "access": "Allow",
                                                    "sourceAddressPrefix": "Any", "destinationPortRange": "*"}), 1, "port(s) all"),
    (resource(tokens.AZURE_NETWORK_SECURITY_RULE, {"direction": "Inbound", "access": "Deny", "sourceAddressPrefix": "*"}), 0, ""),
    (resource(tokens.AZURE_NETWORK_PUBLIC_IP_ADDRESS, {"publicIpAddressName": "p"}), 1, "public IP address"),
    (resource(tokens.AZURE_NETWORK_INTERFACE, {"ipConfigurations": [{"name": "a", "publicIPAddress": {"id": "/x"}}]}), 1,
     "ipConfigurations[0].publicIPAddress"),
    (resource(tokens.AZURE_NETWORK_INTERFACE, {"ipConfigurations": [{"name": "a", "subnet": {"id": "/s"}}]}), 0, ""),
])
def test_no_public_ingress(res: Any, count: int, text: str) -> None:
    got = messages("azure-no-public-ingress", [res])
    assert len(got) == count and all(text in m for m in got), got


@pytest.mark.parametrize(("props", "count", "text"), [
    ({"enablePurgeProtection": True, "enableSoftDelete": True}, 0, ""),
    ({"enablePurgeProtection": False}, 1, "'properties.enablePurgeProtection' is not true"),
    ({}, 1, "enablePurgeProtection"),
    ({"enablePurgeProtection": True, "enableSoftDelete": False}, 1, "enableSoftDelete"),
])
def test_vault_purge_protection(props: dict[str, Any], count: int, text: str) -> None:
    got = messages("azure-vault-purge-protection", [resource(tokens.AZURE_KEYVAULT_VAULT, {"properties": props}, "v")])
    assert len(got) == count and all(text in m for m in got), got


AZURE_CONSTS = sorted(n for n in dir(tokens) if n.startswith("AZURE_") and isinstance(getattr(tokens, n), str))


@pytest.mark.parametrize("const", AZURE_CONSTS)
def test_azure_tokens_are_resources_of_the_installed_sdk(const: str) -> None:
    import importlib

    import pulumi
    import pulumi_azure_native  # noqa: F401  (registers the SDK's resource modules)
    from pulumi.runtime.rpc import get_resource_module

    token = getattr(tokens, const)
    pkg, mod, _ = token.split(":")
    module = get_resource_module(pkg, mod, "")
    assert module is not None, token
    cls_name = module.mod_info["classes"].get(token)
    assert cls_name, f"{token} is not a resource of {pkg}:{mod}"
    assert issubclass(getattr(importlib.import_module(module.mod_info["fqn"]), cls_name), pulumi.CustomResource)


def test_program_resources_pass_every_azure_rule(tmp_path: Path) -> None:
    m = write_vhd_manifest(tmp_path)
    resources, _, _ = run([azure_target(m), azure_target(m, "td", "tdx", vmSize="Standard_DC4es_v5")])
    for pid in ("azure-key-release-requires-attestation", "azure-cvm-confidential", "azure-no-public-ingress",
                "azure-vault-purge-protection", "no-public-ingress"):
        assert messages(pid, resources) == [], pid


def test_program_public_ip_is_reported(tmp_path: Path) -> None:
    m = write_vhd_manifest(tmp_path)
    resources, _, _ = run([azure_target(m, network={"publicIp": True})])
    got = messages("azure-no-public-ingress", resources)
    assert len(got) == 2 and "public IP address" in got[0] and "ipConfigurations[0].publicIPAddress" in got[1]
