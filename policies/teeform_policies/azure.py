"""Azure policies (ids ``azure-*``): secure key release, confidential VMs, public ingress, vault purge protection.

Props are the wire (camelCase) inputs of pulumi-azure-native 3.29 resources (pulumi.md §4.2; the
names are those the SDK sends, checked in tests/test_azure_policies.py against the program's own
registrations). Like the rest of the pack this module depends only on ``pulumi_policy`` and the
standard library; the few Azure facts it needs are copies, each with its source:

* SKR policy grammar and claims: Key Vault "policy-grammar" page and the guest-attestation token
  sample (clouds.md §2.2, §2.4); ``data`` is base64url of the JSON policy
  (azure-keyvault-keys ``KeyReleasePolicy.encoded_policy``, ``format="base64url"``).
* Confidential VM settings: ``securityProfile.securityType = ConfidentialVM``,
  ``uefiSettings.vTpmEnabled``, ``osDisk.managedDisk.securityProfile.securityEncryptionType``
  (clouds.md §2.5; Compute API ``SecurityTypes``, ``SecurityEncryptionTypes``).
* NSG "any address" source tags ``*``, ``Internet``, ``Any``: the ``ingress`` family
  (:mod:`teeform_policies.ingress`).

=====================================  =========  ==========================================================
id                                     default    checks
=====================================  =========  ==========================================================
azure-key-release-requires-attestation mandatory  an exportable Key Vault key has a release policy, and
                                                  every authority group of it requires the TEE-type claim
                                                  (``sevsnpvm``/``tdxvm``); HSM key type
azure-cvm-confidential                 mandatory  VMs are ConfidentialVM with vTPM and a CVM disk security type
azure-no-public-ingress                advisory   no NSG rule from the internet (ingress family) and no public
                                                  IP address (prod config: mandatory)
azure-vault-purge-protection           mandatory  key vaults have purge protection (and soft delete) on
=====================================  =========  ==========================================================
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from pulumi_policy import EnforcementLevel, ResourceValidationArgs, ResourceValidationPolicy, Severity

from teeform_policies import tokens
from teeform_policies.common import ReportViolation, get, label
from teeform_policies.iam import as_list
from teeform_policies.ingress import forbidden_sources

LEARN = "https://learn.microsoft.com/azure"
#: Claims naming the TEE type: nested in guest-attestation tokens, top-level in SevSnpVm-type tokens
#: (clouds.md §2.4 "Claim paths").
TEE_TYPE_CLAIMS = ("x-ms-isolation-tee.x-ms-attestation-type", "x-ms-attestation-type")
TEE_TYPES = ("sevsnpvm", "tdxvm")
#: ``securityEncryptionType`` values of a confidential VM's OS disk (Compute API SecurityEncryptionTypes).
CVM_DISK_TYPES = ("VMGuestStateOnly", "DiskWithVMGuestState", "NonPersistedTPM")
#: Sources meaning "every address" (ingress family, Azure service tags).
PUBLIC_CIDRS = ("0.0.0.0/0", "::/0")


def decode_release_policy(data: Any) -> dict[str, Any] | None:
    """The JSON object a ``releasePolicy.data`` string (base64url, padding optional) encodes, else None."""
    if not isinstance(data, str) or not data:
        return None
    try:
        raw = base64.urlsafe_b64decode(data.rstrip("=") + "=" * (-len(data.rstrip("=")) % 4))
        doc = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _groups(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [g for g in as_list(doc.get("anyOf")) + as_list(doc.get("allOf")) if isinstance(g, Mapping)]


def release_policy_problems(doc: Mapping[str, Any]) -> list[str]:
    """Why a decoded SKR policy does not gate on a TEE (empty = it does). Pure.

    Every authority group must name an ``authority`` and carry, among its ``allOf`` conditions (ANDed;
    in an ``anyOf`` each condition alone would admit), a TEE-type claim equal to ``sevsnpvm`` or ``tdxvm``.
    """
    groups = _groups(doc)
    if not groups:
        return ["has no authority group (anyOf/allOf)"]
    problems = []
    for n, g in enumerate(groups):
        if not isinstance(g.get("authority"), str) or not g["authority"].startswith("https://"):
            problems.append(f"authority group {n} has no https authority")
        conds = [c for c in as_list(g.get("allOf")) if isinstance(c, Mapping)]
        alone = [c for c in as_list(g.get("anyOf")) if isinstance(c, Mapping)]
        tee = [c for c in conds if c.get("claim") in TEE_TYPE_CLAIMS and c.get("equals") in TEE_TYPES]
        if not tee:
            why = " (its conditions are under anyOf, so any one admits)" if alone else ""
            problems.append(f"authority group {n} does not require {TEE_TYPE_CLAIMS[0]} in {list(TEE_TYPES)}{why}")
    return problems


def validate_key_release(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """See :data:`KEY_RELEASE_REQUIRES_ATTESTATION`."""
    if args.resource_type != tokens.AZURE_KEYVAULT_KEY:
        return
    p = args.props.get("properties") or {}
    where = label(args.resource_type, args.name)
    exportable = get(p, "attributes", "exportable") is True
    data = get(p, "releasePolicy", "data")
    if data is None:
        if exportable:
            report(f"{where}: field 'properties.attributes.exportable' is true but there is no "
                   "'properties.releasePolicy': the key could be exported without any attestation.")
        return
    if str(p.get("kty", "")) not in ("RSA-HSM", "EC-HSM", "oct-HSM"):
        report(f"{where}: field 'properties.kty' is {p.get('kty')!r}; a key with a release policy must be HSM-backed "
               "(RSA-HSM or EC-HSM).")
    doc = decode_release_policy(data)
    if doc is None:
        report(f"{where}: field 'properties.releasePolicy.data' is not base64url-encoded JSON, so Key Vault cannot "
               "evaluate it as a release policy.")
        return
    for problem in release_policy_problems(doc):
        report(f"{where}: field 'properties.releasePolicy.data': the release policy {problem}, so a key release "
               "is not bound to a confidential VM's attestation.")


def validate_cvm(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """See :data:`CVM_CONFIDENTIAL`."""
    if args.resource_type != tokens.AZURE_COMPUTE_VIRTUAL_MACHINE:
        return
    where = label(args.resource_type, args.name)
    sp = args.props.get("securityProfile") or {}
    if sp.get("securityType") != "ConfidentialVM":
        report(f"{where}: field 'securityProfile.securityType' is {sp.get('securityType')!r}, not 'ConfidentialVM': "
               "the VM's memory is not protected by SEV-SNP/TDX and it cannot obtain a release-gated key.")
    if get(sp, "uefiSettings", "vTpmEnabled") is not True:
        report(f"{where}: field 'securityProfile.uefiSettings.vTpmEnabled' is not true: without the vTPM the "
               "image's PCR 4/11 are not measured and guest attestation fails.")
    enc = get(args.props, "storageProfile", "osDisk", "managedDisk", "securityProfile", "securityEncryptionType")
    if enc not in CVM_DISK_TYPES:
        report(f"{where}: field 'storageProfile.osDisk.managedDisk.securityProfile.securityEncryptionType' is {enc!r}; "
               f"a confidential VM's OS disk needs one of {list(CVM_DISK_TYPES)}.")


def validate_no_public_ingress(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """See :data:`NO_PUBLIC_INGRESS`."""
    where = label(args.resource_type, args.name)
    if args.resource_type in (tokens.AZURE_NETWORK_SECURITY_GROUP, tokens.AZURE_NETWORK_SECURITY_RULE):
        for src in forbidden_sources(args.resource_type, args.props, PUBLIC_CIDRS):
            report(f"{where}: field '{src.field}' is {src.written}, which opens port(s) {src.ports} to the whole "
                   "internet. Allow only the client CIDRs (teeform:targets[].network.ingress), or none.")
    elif args.resource_type == tokens.AZURE_NETWORK_PUBLIC_IP_ADDRESS:
        report(f"{where}: a public IP address makes the VM reachable from the internet (network.publicIp: true). "
               "Remove it unless the workload must accept connections from outside the virtual network.")
    elif args.resource_type == tokens.AZURE_NETWORK_INTERFACE:
        for i, cfg_ in enumerate(as_list(args.props.get("ipConfigurations"))):
            if isinstance(cfg_, Mapping) and cfg_.get("publicIPAddress"):
                report(f"{where}: field 'ipConfigurations[{i}].publicIPAddress' attaches a public IP address.")


def validate_purge_protection(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """See :data:`VAULT_PURGE_PROTECTION`."""
    if args.resource_type != tokens.AZURE_KEYVAULT_VAULT:
        return
    p = args.props.get("properties") or {}
    where = label(args.resource_type, args.name)
    if p.get("enablePurgeProtection") is not True:
        report(f"{where}: field 'properties.enablePurgeProtection' is not true: a deleted vault or key (and the only "
               "copy of what was sealed to it) could be purged before the retention period ends.")
    if p.get("enableSoftDelete") is False:
        report(f"{where}: field 'properties.enableSoftDelete' is false: deleted keys are gone at once.")


KEY_RELEASE_REQUIRES_ATTESTATION = ResourceValidationPolicy(
    name="azure-key-release-requires-attestation",
    description=("Checks that an exportable Azure Key Vault key has a release policy, that the policy decodes, and "
                 "that every authority group requires the TEE-type claim (sevsnpvm/tdxvm) of an attestation token; "
                 "and that such keys are HSM-backed."),
    validate=validate_key_release,
    enforcement_level=EnforcementLevel.MANDATORY,
    severity=Severity.CRITICAL,
    remediation_steps="Create the key with teeform (components/azure/release_key.py) or add a release policy whose "
                      "allOf requires x-ms-isolation-tee.x-ms-attestation-type.",
    url=f"{LEARN}/key-vault/keys/policy-grammar",
)

CVM_CONFIDENTIAL = ResourceValidationPolicy(
    name="azure-cvm-confidential",
    description="Checks that Azure VMs are confidential VMs (securityType ConfidentialVM, vTPM on, CVM OS disk security).",
    validate=validate_cvm,
    enforcement_level=EnforcementLevel.MANDATORY,
    severity=Severity.HIGH,
    remediation_steps="Use a DCasv5/ECasv5 (SEV-SNP) or DCesv5/ECesv5 (TDX) size with security_type ConfidentialVM.",
    url=f"{LEARN}/confidential-computing/confidential-vm-overview",
)

NO_PUBLIC_INGRESS = ResourceValidationPolicy(
    name="azure-no-public-ingress",
    description=("Checks that no Azure NSG rule admits the whole internet (*, Internet, Any, 0.0.0.0/0, ::/0; the "
                 "ingress family) and that no public IP address is created or attached. Advisory by default; "
                 "mandatory in production through policies/config/prod.json."),
    validate=validate_no_public_ingress,
    enforcement_level=EnforcementLevel.ADVISORY,
    severity=Severity.HIGH,
    remediation_steps="List only client CIDRs in network.ingress and keep network.publicIp false.",
    url=f"{LEARN}/virtual-network/network-security-groups-overview",
)

VAULT_PURGE_PROTECTION = ResourceValidationPolicy(
    name="azure-vault-purge-protection",
    description="Checks that Azure key vaults have purge protection on and soft delete not disabled.",
    validate=validate_purge_protection,
    enforcement_level=EnforcementLevel.MANDATORY,
    severity=Severity.HIGH,
    remediation_steps="Set properties.enable_purge_protection=True on the vault.",
    url=f"{LEARN}/key-vault/general/soft-delete-overview",
)

POLICIES = (KEY_RELEASE_REQUIRES_ATTESTATION, CVM_CONFIDENTIAL, NO_PUBLIC_INGRESS, VAULT_PURGE_PROTECTION)

__all__ = ["POLICIES", "KEY_RELEASE_REQUIRES_ATTESTATION", "CVM_CONFIDENTIAL", "NO_PUBLIC_INGRESS",
           "VAULT_PURGE_PROTECTION", "decode_release_policy", "release_policy_problems"]
