"""Shared settings of the Azure confidential-VM target plug-ins (``azure``/``sev-snp``, ``azure``/``tdx``).

Settings (camelCase in YAML; everything but ``attestation.authority`` has a default)::

    vmSize: Standard_DC4as_v5          # sev-snp: DCasv5/ECasv5 (DCadsv5/ECadsv5); tdx: DCesv5/ECesv5 (DCedsv5/ECedsv5)
    secureBoot: false                  # the UKI is unsigned: Secure Boot must be off (clouds.md §2.5)
    diskSecurity: VMGuestStateOnly     # or NonPersistedTPM (ephemeral vTPM, no VM guest state)
    osState: Specialized               # gallery image state; Generalized needs adminSshPublicKey
    adminSshPublicKey: "ssh-ed25519 AAAA..."   # only with osState: Generalized (osProfile credentials)
    resourceGroup: teeform-azure-snp   # default: <project>-<stack>-<target>
    attestation: {authority: https://sharedeus.eus.attest.azure.net}   # the MAA token issuer SKR trusts
    network:
      cidr: 10.43.0.0/16               # the VNet; the subnet is subnetCidr (default: the first /24)
      subnetCidr: 10.43.0.0/24
      ingress: [{cidr: 203.0.113.0/24, port: 443, description: "..."}]   # default: no inbound rule at all
      publicIp: false                  # default: no public IP address
    key:
      store: vault                     # Key Vault Premium (HSM-backed keys); managedHsm is refused, see below
      keySize: 3072                    # RSA-HSM 2048/3072/4096
      softDeleteRetentionDays: 90      # 7..90 (Key Vault limits)
      protect: false                   # Pulumi protect on the key and vault

Facts and sources: sizes, boot model, disk security types and Secure Boot in
``shared/reference/clouds.md`` §2.1 and §2.5 (MS Learn "how-to-create-custom-image-confidential-vm");
the SKR policy in :mod:`teeform.azure_release` (clouds.md §2.4).

**Managed HSM** (``key.store: managedHsm``) is refused naming the field: pulumi-azure-native 3.29's
``keyvault`` module has ``ManagedHsm`` but no resource for a key inside one (checked against the
installed SDK), and an HSM needs an out-of-band activation (security domain) before it holds keys.

**Why ``osState`` defaults to Specialized** (the brief asked for Generalized): a Generalized image
makes Azure require an ``osProfile`` with credentials and wait for the guest to report
"provisioned" to the platform (waagent or cloud-init do it); teeform's image runs neither, has no
sshd and no users, so credentials would be meaningless. A Specialized image needs neither
[UNVERIFIED: no Azure account was used; docs/azure.md].
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from teeform.azure_release import GATE_PINS, check_authority
from teeform.errors import TeeformError
from teeform.keyrelease import KeyReleasePolicy, measurement_sets
from teeform.targets.base import (
    IngressRule,
    OutputSpec,
    TargetPlugin,
    TargetSettings,
    TeeType,
    fail,
    read_bool,
    read_cidr,
    read_ingress,
    read_int,
    read_map,
    read_opt_str,
    read_str,
    reanchor,
)

if TYPE_CHECKING:
    from teeform.manifest import Manifest

#: VM size families per TEE type: Azure size names are ``Standard_<family letters><vCPUs><features>_v5``;
#: DCasv5/ECasv5 (and the ``ads`` variants with a temp disk) are AMD SEV-SNP, DCesv5/ECesv5 (and
#: ``eds``) Intel TDX (clouds.md §2.1; pulumi.md §4.2 "Sizes").
SIZE_PATTERNS: Mapping[TeeType, re.Pattern[str]] = {
    TeeType.SEV_SNP: re.compile(r"^Standard_(DC|EC)\d+a(d)?s_v5$"),
    TeeType.TDX: re.compile(r"^Standard_(DC|EC)\d+e(d)?s_v5$"),
}
SIZE_FAMILIES: Mapping[TeeType, str] = {
    TeeType.SEV_SNP: "DCasv5/ECasv5 (e.g. Standard_DC4as_v5, Standard_EC8ads_v5)",
    TeeType.TDX: "DCesv5/ECesv5 (e.g. Standard_DC4es_v5, Standard_EC8eds_v5)",
}
DEFAULT_SIZE: Mapping[TeeType, str] = {TeeType.SEV_SNP: "Standard_DC4as_v5", TeeType.TDX: "Standard_DC4es_v5"}

#: ``security_encryption_type`` values teeform accepts for a read-only dm-verity image (clouds.md §2.5
#: "Disk encryption options"; ``DiskWithVMGuestState`` needs OS cooperation and is refused).
DISK_SECURITY = ("VMGuestStateOnly", "NonPersistedTPM")
#: Gallery image ``os_state`` values (Azure compute API ``OperatingSystemStateTypes``).
OS_STATES = ("Specialized", "Generalized")
#: ``key.store`` values.
KEY_STORES = ("vault",)
#: RSA key sizes Key Vault accepts for RSA-HSM keys (Key Vault "About keys": 2048, 3072, 4096).
RSA_SIZES = (2048, 3072, 4096)
#: Azure resource group names: 1-90 of letters, digits, ``_-.()``, not ending in ``.``.
_RG_NAME = re.compile(r"^[\w.()-]{0,89}[\w()-]$")
_SSH_KEY = re.compile(r"^(ssh-rsa|ssh-ed25519|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( \S.*)?$")


#: Allow TCP ``port`` from ``cidr`` (IPv4 or IPv6) into the subnet (the rule type every cloud shares).
AzureIngress = IngressRule


@dataclass(frozen=True)
class AzureNetwork:
    """The VNet (``cidr``) and subnet (``subnet_cidr``); inbound rules only as listed; public IP only if asked."""

    cidr: str = "10.43.0.0/16"
    subnet_cidr: str = "10.43.0.0/24"
    ingress: tuple[AzureIngress, ...] = ()
    public_ip: bool = False


@dataclass(frozen=True)
class AzureKey:
    """Where the released key lives and how it is created (see the module docstring)."""

    store: str = "vault"
    key_size: int = 3072
    soft_delete_retention_days: int = 90
    protect: bool = False


@dataclass(frozen=True)
class AzureCvmSettings(TargetSettings):
    """Typed settings of an Azure confidential-VM target (see the module docstring)."""

    vm_size: str
    authority: str
    secure_boot: bool = False
    disk_security: str = "VMGuestStateOnly"
    os_state: str = "Specialized"
    admin_ssh_public_key: str | None = None
    resource_group: str | None = None
    network: AzureNetwork = field(default_factory=AzureNetwork)
    key: AzureKey = field(default_factory=AzureKey)


def _choice(v: Any, source: str, fld: str, choices: Sequence[str]) -> str:
    s = read_str(v, source, fld)
    if s not in choices:
        raise fail(f"must be one of {list(choices)}, got {s!r}", source, fld)
    return s


class AzureCvmPlugin(TargetPlugin):
    """An Azure confidential VM booting teeform's UKI from a Compute Gallery image, with an SKR-gated key."""

    manifest_kinds = frozenset({"vm-image"})
    settings_keys = frozenset({"vmSize", "secureBoot", "diskSecurity", "osState", "adminSshPublicKey", "resourceGroup",
                               "attestation", "network", "key"})
    builder = "components.azure.cvm:build_azure_cvm_target"
    outputs = (
        OutputSpec("image_version_id", "Compute Gallery image version id of the deployed VHD"),
        OutputSpec("vm_id", "Azure resource id of the confidential VM"),
        OutputSpec("key_id", "Key Vault / Managed HSM key id (versionless URL) released by SKR; " + GATE_PINS),
        OutputSpec("key_gate", "what the key gate pins (the platform, not the image)"),
        OutputSpec("release_policy", "the SKR policy document teeform wrote (JSON)"),
        OutputSpec("attestation_authority", "MAA endpoint whose tokens the key's release policy accepts"),
        OutputSpec("secure_boot", "whether UEFI Secure Boot is on (off for the unsigned UKI)"),
        OutputSpec("vm_measurements", "per manifest: pcr4_sha256, pcr11_sha256, roothash (what the vTPM reports)"),
        OutputSpec("public_ip", "the VM's public IP address (only with network.publicIp: true)"),
    )
    gate = "Azure Key Vault secure key release on a MAA token: " + GATE_PINS

    def parse_settings(self, raw: Mapping[str, Any], source: str, fld: str) -> AzureCvmSettings:
        """Parse and check the Azure keys of one target (see the module docstring).

        Raises:
            TeeformError: naming ``source`` and the offending field (a size of the wrong family, an
                authority that is not an MAA endpoint, a missing SSH key for a Generalized image, ...).
        """
        tee = self.tee
        size = read_str(raw.get("vmSize", DEFAULT_SIZE[tee]), source, f"{fld}.vmSize")
        if not SIZE_PATTERNS[tee].match(size):
            raise fail(f"{size!r} is not an Azure {tee.value} confidential VM size; use {SIZE_FAMILIES[tee]}",
                       source, f"{fld}.vmSize")
        a = read_map(raw.get("attestation"), source, f"{fld}.attestation", {"authority"})
        if "authority" not in a:
            raise fail("is required: the Microsoft Azure Attestation endpoint whose tokens Key Vault accepts",
                       source, f"{fld}.attestation.authority", hint="e.g. https://sharedeus.eus.attest.azure.net")
        try:
            authority = check_authority(read_str(a["authority"], source, f"{fld}.attestation.authority"))
        except TeeformError as exc:
            raise reanchor(exc, source, f"{fld}.attestation.authority") from None
        os_state = _choice(raw.get("osState", "Specialized"), source, f"{fld}.osState", OS_STATES)
        ssh = read_opt_str(raw.get("adminSshPublicKey"), source, f"{fld}.adminSshPublicKey")
        if os_state == "Generalized" and ssh is None:
            raise fail("osState: Generalized needs adminSshPublicKey (Azure requires osProfile credentials)",
                       source, f"{fld}.adminSshPublicKey", hint="or use osState: Specialized (no osProfile)")
        if ssh is not None and os_state != "Generalized":
            raise fail("is used only with osState: Generalized", source, f"{fld}.adminSshPublicKey")
        if ssh is not None and not _SSH_KEY.match(ssh):
            raise fail("must be an OpenSSH public key line (ssh-ed25519 AAAA...)", source, f"{fld}.adminSshPublicKey")
        rg = read_opt_str(raw.get("resourceGroup"), source, f"{fld}.resourceGroup")
        if rg is not None and not _RG_NAME.match(rg):
            raise fail(f"{rg!r} is not a valid resource group name (1-90 of letters, digits, _-.(); not ending in .)",
                       source, f"{fld}.resourceGroup")
        return AzureCvmSettings(
            vm_size=size,
            authority=authority,
            secure_boot=read_bool(raw.get("secureBoot", False), source, f"{fld}.secureBoot"),
            disk_security=_choice(raw.get("diskSecurity", "VMGuestStateOnly"), source, f"{fld}.diskSecurity",
                                  DISK_SECURITY),
            os_state=os_state,
            admin_ssh_public_key=ssh,
            resource_group=rg,
            network=self._parse_network(raw, source, fld),
            key=self._parse_key(raw, source, fld),
        )

    @staticmethod
    def _parse_network(raw: Mapping[str, Any], source: str, fld: str) -> AzureNetwork:
        nf = f"{fld}.network"
        n = read_map(raw.get("network"), source, nf, {"cidr", "subnetCidr", "ingress", "publicIp"})
        rules = read_ingress(n.get("ingress"), source, f"{nf}.ingress")
        if len(rules) > 100:
            raise fail("at most 100 ingress rules (NSG priorities 100..199 are teeform's)", source, f"{nf}.ingress")
        cidr = read_cidr(n["cidr"], source, f"{nf}.cidr") if "cidr" in n else AzureNetwork.cidr
        if "subnetCidr" in n:
            subnet = read_cidr(n["subnetCidr"], source, f"{nf}.subnetCidr")
        elif "cidr" in n:
            net = ipaddress.ip_network(cidr, strict=False)
            subnet = str(next(net.subnets(new_prefix=24))) if net.prefixlen <= 24 else str(net)
        else:
            subnet = AzureNetwork.subnet_cidr
        if not ipaddress.ip_network(subnet, strict=False).subnet_of(ipaddress.ip_network(cidr, strict=False)):  # type: ignore[arg-type]
            raise fail(f"{subnet} is not inside the VNet {cidr}", source, f"{nf}.subnetCidr")
        return AzureNetwork(cidr, subnet, rules, read_bool(n.get("publicIp", False), source, f"{nf}.publicIp"))

    @staticmethod
    def _parse_key(raw: Mapping[str, Any], source: str, fld: str) -> AzureKey:
        kf = f"{fld}.key"
        k = read_map(raw.get("key"), source, kf, {"store", "keySize", "softDeleteRetentionDays", "protect"})
        store = read_str(k.get("store", "vault"), source, f"{kf}.store")
        if store == "managedHsm":
            raise fail("Managed HSM keys cannot be created by pulumi-azure-native 3.29 (its keyvault module has the "
                       "ManagedHsm resource but no key resource for it); use store: vault (Key Vault Premium, "
                       "HSM-backed RSA-HSM keys)", source, f"{kf}.store")
        if store not in KEY_STORES:
            raise fail(f"must be one of {list(KEY_STORES)}, got {store!r}", source, f"{kf}.store")
        size = read_int(k.get("keySize", 3072), source, f"{kf}.keySize", 2048, 4096)
        if size not in RSA_SIZES:
            raise fail(f"must be one of {list(RSA_SIZES)}, got {size}", source, f"{kf}.keySize")
        return AzureKey(
            store, size,
            read_int(k.get("softDeleteRetentionDays", 90), source, f"{kf}.softDeleteRetentionDays", 7, 90),
            read_bool(k.get("protect", False), source, f"{kf}.protect"),
        )

    def key_release(self, target_name: str, settings: TargetSettings,
                    manifests: Sequence[tuple[str, Manifest]]) -> KeyReleasePolicy:
        """No measurement is pinned by Key Vault SKR: one empty set per manifest (the gate pins the platform).

        The sets carry no values because the MAA default token has no PCR claim (clouds.md §2.4 "What
        SKR can pin"); :attr:`gate` and the outputs say so next to the key.
        """
        return measurement_sets(target_name, [(k, m.measurements) for k, m in manifests], ())


__all__ = ["AzureCvmPlugin", "AzureCvmSettings", "AzureNetwork", "AzureIngress", "AzureKey", "SIZE_PATTERNS",
           "DISK_SECURITY", "OS_STATES", "KEY_STORES"]
