"""Azure (pulumi-azure-native, prefix ``azure-native:``) mocks and summaries for the offline preview.

Ids are deterministic (derived from resource names) and realistic in form: ARM resource ids
``/subscriptions/<sub>/resourceGroups/<rg>/providers/<namespace>/<type>/<name>`` (Azure Resource
Manager "Resource ID" format), Key Vault key URLs ``https://<vault>.vault.azure.net/keys/<name>[/<version>]``
(Key Vault "About keys": object identifiers), GUIDs for principal/client/VM ids. The subscription and
tenant are placeholders of the all-zero-and-one GUID form. Invokes answer what the program asks:
``authorization.getClientConfig`` and ``storage.listStorageAccountKeys``.

Summaries show what matters for a review: the VM's security profile (ConfidentialVM, vTPM, Secure
Boot, disk security type), the NSG's inbound rules, and for the key its type, exportability, the
decoded release policy **and what that policy pins** (:data:`teeform.azure_release.GATE_PINS`).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from typing import Any

from teeform.azure_release import GATE_PINS, decode_policy
from teeform.errors import TeeformError
from teeform.preview.clouds import CloudPlugin, register
from teeform.safeload import MAX_DEPTH

MOCK_SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
MOCK_TENANT = "00000000-0000-0000-0000-000000000002"
MOCK_DEPLOYER_OBJECT_ID = "00000000-0000-0000-0000-000000000003"

RESOURCE_GROUP = "azure-native:resources:ResourceGroup"
VM = "azure-native:compute:VirtualMachine"
GALLERY = "azure-native:compute:Gallery"
GALLERY_IMAGE = "azure-native:compute:GalleryImage"
GALLERY_IMAGE_VERSION = "azure-native:compute:GalleryImageVersion"
STORAGE_ACCOUNT = "azure-native:storage:StorageAccount"
BLOB_CONTAINER = "azure-native:storage:BlobContainer"
VNET = "azure-native:network:VirtualNetwork"
SUBNET = "azure-native:network:Subnet"
NSG = "azure-native:network:NetworkSecurityGroup"
NIC = "azure-native:network:NetworkInterface"
PUBLIC_IP = "azure-native:network:PublicIPAddress"
IDENTITY = "azure-native:managedidentity:UserAssignedIdentity"
VAULT = "azure-native:keyvault:Vault"
KEY = "azure-native:keyvault:Key"
ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"

GET_CLIENT_CONFIG = "azure-native:authorization:getClientConfig"
LIST_STORAGE_KEYS = "azure-native:storage:listStorageAccountKeys"

#: type token -> (ARM provider namespace/type, input holding the resource's name).
_ARM: dict[str, tuple[str, str]] = {
    VM: ("Microsoft.Compute/virtualMachines", "vmName"),
    GALLERY: ("Microsoft.Compute/galleries", "galleryName"),
    STORAGE_ACCOUNT: ("Microsoft.Storage/storageAccounts", "accountName"),
    VNET: ("Microsoft.Network/virtualNetworks", "virtualNetworkName"),
    NSG: ("Microsoft.Network/networkSecurityGroups", "networkSecurityGroupName"),
    NIC: ("Microsoft.Network/networkInterfaces", "networkInterfaceName"),
    PUBLIC_IP: ("Microsoft.Network/publicIPAddresses", "publicIpAddressName"),
    IDENTITY: ("Microsoft.ManagedIdentity/userAssignedIdentities", "resourceName"),
    VAULT: ("Microsoft.KeyVault/vaults", "vaultName"),
}


def _guid(seed: str) -> str:
    return str(uuid.UUID(hashlib.sha256(seed.encode()).hexdigest()[:32]))


def _rg_id(rg: Any) -> str:
    return f"/subscriptions/{MOCK_SUBSCRIPTION}/resourceGroups/{rg}"


class AzurePlugin(CloudPlugin):
    """Mocks and summaries for pulumi-azure-native resources (see the module docstring)."""

    prefix = "azure-native:"
    resource_tokens = frozenset({RESOURCE_GROUP, GALLERY_IMAGE, GALLERY_IMAGE_VERSION, BLOB_CONTAINER, SUBNET, KEY,
                                 ROLE_ASSIGNMENT, *_ARM})
    invoke_tokens = frozenset({GET_CLIENT_CONFIG, LIST_STORAGE_KEYS})

    def new_resource(self, typ: str, name: str, inputs: dict[str, Any], region: str) -> tuple[str, dict[str, Any]]:
        """ARM ids, names, key URLs, identity GUIDs (see the module docstring)."""
        i = inputs
        state = dict(i)
        rg = i.get("resourceGroupName")
        if typ == RESOURCE_GROUP:
            rname = str(i.get("resourceGroupName") or name)
            rid = _rg_id(rname)
        elif typ in _ARM:
            ns, key = _ARM[typ]
            rname = str(i.get(key) or name)
            rid = f"{_rg_id(rg)}/providers/{ns}/{rname}"
            if typ == VM:
                state["vmId"] = _guid("vm" + name)
                ident = i.get("identity")
                if isinstance(ident, Mapping) and isinstance(ident.get("userAssignedIdentities"), list):
                    # input: a list of identity ids; output: id -> {principalId, clientId} (compute API VirtualMachineIdentity)
                    state["identity"] = {**ident, "userAssignedIdentities": {
                        str(x): {"principalId": _guid("principal" + str(x)), "clientId": _guid("client" + str(x))}
                        for x in ident["userAssignedIdentities"]}}
            elif typ == IDENTITY:
                state.update(principalId=_guid("principal" + name), clientId=_guid("client" + name), tenantId=MOCK_TENANT)
            elif typ == VAULT:
                state["properties"] = {**(i.get("properties") or {}), "vaultUri": f"https://{rname}.vault.azure.net/"}
            elif typ == PUBLIC_IP:
                state["ipAddress"] = "203.0.113.10"
        elif typ == SUBNET:
            rname = str(i.get("subnetName") or name)
            rid = f"{_rg_id(rg)}/providers/Microsoft.Network/virtualNetworks/{i.get('virtualNetworkName')}/subnets/{rname}"
        elif typ == BLOB_CONTAINER:
            rname = str(i.get("containerName") or name)
            rid = (f"{_rg_id(rg)}/providers/Microsoft.Storage/storageAccounts/{i.get('accountName')}"
                   f"/blobServices/default/containers/{rname}")
        elif typ in (GALLERY_IMAGE, GALLERY_IMAGE_VERSION):
            rname = str(i.get("galleryImageName") if typ == GALLERY_IMAGE else i.get("galleryImageVersionName"))
            rid = f"{_rg_id(rg)}/providers/Microsoft.Compute/galleries/{i.get('galleryName')}/images/{i.get('galleryImageName')}"
            if typ == GALLERY_IMAGE_VERSION:
                rid += f"/versions/{rname}"
        elif typ == KEY:
            rname = str(i.get("keyName") or name)
            vault = i.get("vaultName")
            rid = f"{_rg_id(rg)}/providers/Microsoft.KeyVault/vaults/{vault}/keys/{rname}"
            version = hashlib.sha256(("keyver" + name).encode()).hexdigest()[:32]
            state.update(keyUri=f"https://{vault}.vault.azure.net/keys/{rname}",
                         keyUriWithVersion=f"https://{vault}.vault.azure.net/keys/{rname}/{version}")
        elif typ == ROLE_ASSIGNMENT:
            rname = str(i.get("roleAssignmentName") or _guid(name))
            rid = f"{i.get('scope')}/providers/Microsoft.Authorization/roleAssignments/{rname}"
        else:
            return f"{name}-id", state
        state.setdefault("name", rname)
        state.setdefault("location", i.get("location") or region)
        state["id"] = rid
        return rid, state

    def call(self, token: str, args: Mapping[str, Any], region: str) -> dict[str, Any]:
        """Client config (placeholder subscription/tenant/object ids) and a placeholder storage key."""
        if token == GET_CLIENT_CONFIG:
            return {"clientId": _guid("deployer-client"), "objectId": MOCK_DEPLOYER_OBJECT_ID,
                    "subscriptionId": MOCK_SUBSCRIPTION, "tenantId": MOCK_TENANT}
        if token == LIST_STORAGE_KEYS:
            return {"keys": [{"keyName": "key1", "permissions": "FULL", "value": "bW9jay1zdG9yYWdlLWtleQ=="}]}
        return {}

    def summarize(self, typ: str, inputs: Mapping[str, Any]) -> list[str]:
        """VM security profile, NSG inbound rules, public IP, gallery image features, key + release policy."""
        i = inputs
        if typ == VM:
            sp = i.get("securityProfile") or {}
            uefi = sp.get("uefiSettings") or {}
            disk = (((i.get("storageProfile") or {}).get("osDisk") or {}).get("managedDisk") or {}).get("securityProfile") or {}
            return [f"vmSize={(i.get('hardwareProfile') or {}).get('vmSize')}", f"securityType={sp.get('securityType')}",
                    f"vTpmEnabled={uefi.get('vTpmEnabled')} secureBootEnabled={uefi.get('secureBootEnabled')}",
                    f"securityEncryptionType={disk.get('securityEncryptionType')}"]
        if typ == NSG:
            rules = [r for r in i.get("securityRules") or [] if isinstance(r, Mapping)]
            inbound = [r for r in rules if str(r.get("direction")).lower() == "inbound"]
            if not inbound:
                return ["inbound: none of teeform's (Azure defaults: VNet and load balancer only, DenyAllInBound)"]
            return [f"inbound {r.get('access')} {r.get('protocol')} {r.get('sourceAddressPrefix')} -> "
                    f"port {r.get('destinationPortRange')}" for r in inbound]
        if typ == PUBLIC_IP:
            return [f"PUBLIC IP {i.get('publicIpAddressName')} (network.publicIp: true)"]
        if typ == GALLERY_IMAGE:
            feats = ", ".join(f"{f.get('name')}={f.get('value')}" for f in i.get("features") or [] if isinstance(f, Mapping))
            return [f"hyperVGeneration={i.get('hyperVGeneration')} osState={i.get('osState')} features: {feats}"]
        if typ == VAULT:
            p = i.get("properties") or {}
            return [f"sku={(p.get('sku') or {}).get('name')} enableRbacAuthorization={p.get('enableRbacAuthorization')} "
                    f"enablePurgeProtection={p.get('enablePurgeProtection')}"]
        if typ == KEY:
            return _key_lines(i)
        if typ == ROLE_ASSIGNMENT:
            return [f"role {str(i.get('roleDefinitionId')).rsplit('/', 1)[-1]} -> principal {i.get('principalId')}"]
        return []


#: Deepest release-policy node :func:`_condition_text` descends to: the nesting bound of the JSON readers
#: (:data:`teeform.safeload.MAX_DEPTH`, which :func:`teeform.azure_release.decode_policy` applies), kept here
#: too so the walk is bounded whatever document it is given.
MAX_POLICY_DEPTH = MAX_DEPTH


def _condition_text(node: Any, depth: int = 1) -> tuple[str, bool]:
    """One node of a Secure Key Release policy as text, and whether it is compound (an operand that needs
    parentheses). Grammar (Key Vault "policy-grammar"; as :func:`teeform.keyrelease_readers._skr_branches`
    reads it): a leaf ``{claim, equals}`` is ``claim == 'value'``; ``allOf`` ANDs its operands and ``anyOf``
    ORs them, at any depth; an ``authority`` below the top-level group applies to its branch
    (``tokens of <authority> with ...``). A node deeper than :data:`MAX_POLICY_DEPTH` is not walked (the
    text says so)."""
    if depth > MAX_POLICY_DEPTH:
        return f"(nested deeper than {MAX_POLICY_DEPTH} levels, not shown)", False
    if not isinstance(node, Mapping):
        return f"(not a JSON object: {type(node).__name__})", False
    text, compound = _node_text(node, depth)
    if "authority" in node and depth > 1:
        return f"tokens of {node.get('authority')} with {f'({text})' if compound else text}", True
    return text, compound


def _node_text(node: Mapping[str, Any], depth: int) -> tuple[str, bool]:
    """:func:`_condition_text` of ``node`` without its ``authority``."""
    if "claim" in node:
        if "equals" in node:
            return f"{node.get('claim')} == {node['equals']!r}", False
        ops = sorted(str(k) for k in node if k not in ("claim", "authority"))
        return f"{node.get('claim')} {ops} (no 'equals', the only operator Key Vault implements)", False
    parts: list[tuple[str, bool]] = []
    for op, joiner in (("allOf", " and "), ("anyOf", " or ")):
        if op not in node:
            continue
        kids = node[op]
        if not isinstance(kids, list):
            parts.append((f"({op} is not a list)", False))
        elif not kids:
            parts.append((f"(empty {op})", False))
        elif len(kids) == 1:
            parts.append(_condition_text(kids[0], depth + 1))
        else:
            texts = [_condition_text(c, depth + 1) for c in kids]
            parts.append((joiner.join(f"({t})" if c else t for t, c in texts), True))
    if not parts:
        return "(no claim, allOf or anyOf)", False
    if len(parts) == 1:
        return parts[0]
    return " and ".join(f"({t})" if c else t for t, c in parts), True


def _key_lines(i: Mapping[str, Any]) -> list[str]:
    """``kty``/size/exportability, then one line per authority group of the release policy (the whole tree
    under it, :func:`_condition_text`) and :data:`~teeform.azure_release.GATE_PINS`."""
    p = i.get("properties") or {}
    attrs = p.get("attributes") or {}
    lines = [f"kty={p.get('kty')} keySize={p.get('keySize')} exportable={attrs.get('exportable')}"]
    rp = p.get("releasePolicy") or {}
    if not rp.get("data"):
        return [*lines, "release policy: none"]
    try:
        doc = decode_policy(str(rp["data"]))
    except TeeformError as exc:
        return [*lines, f"release policy: not decodable ({exc.message})"]
    top = "anyOf" if doc.get("anyOf") else "allOf"
    groups = doc.get(top) or []
    if not isinstance(groups, list):
        return [*lines, f"release policy: top-level {top} is not a list", f"gate: {GATE_PINS}"]
    if top == "allOf" and len(groups) > 1:
        lines.append("release needs every group below (top-level allOf):")
    for group in groups:
        text, _ = _condition_text(group)
        authority = group.get("authority") if isinstance(group, Mapping) else None
        lines.append(f"release to tokens of {authority} with {text}")
    lines.append(f"gate: {GATE_PINS}")
    return lines


PLUGIN = register(AzurePlugin())
