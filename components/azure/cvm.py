"""Builder for ``azure``/``sev-snp`` and ``azure``/``tdx`` targets: a confidential VM from teeform's image.

Wiring (one explicit azure-native provider per target, ``location`` = the target's region)::

    ResourceGroup ─► GalleryImagePipeline (storage account, page blob, Gallery, GalleryImage, GalleryImageVersion)
                 ─► CvmNetwork (VNet, subnet, NSG: no inbound rule unless configured, public IP only if asked, NIC)
                 ─► UserAssignedIdentity ─► ConfidentialVm (compute.VirtualMachine, security_type ConfidentialVM)
                 ─► ReleaseKey (Key Vault Premium, RSA-HSM exportable key + SKR policy, release role for the identity only)

VM arguments (clouds.md §2.5 step 4, pulumi.md §4.2, checked against pulumi-azure-native 3.29):
``security_profile=SecurityProfileArgs(security_type="ConfidentialVM", uefi_settings=UefiSettingsArgs(
v_tpm_enabled=True, secure_boot_enabled=<secureBoot>))``; the OS disk ``FromImage`` with
``managed_disk.security_profile.security_encryption_type`` = ``VMGuestStateOnly`` (default) or
``NonPersistedTPM``; ``identity`` = the user-assigned identity. Secure Boot is off by default because
the UKI is unsigned (clouds.md §2.5 "Secure Boot"); the ``secure_boot`` output says which.

What the key gate pins is said in the ``key_gate`` output and by ``teeform preview`` next to the key:
:data:`teeform.azure_release.GATE_PINS` (the platform, not the image).

Configuration errors (an initrd without the Hyper-V drivers, no VHD in the manifest, a VHD that differs from it, a manifest version that is
not ``MAJOR.MINOR.PATCH``) raise :class:`~teeform.errors.TeeformError` before any resource is
registered, i.e. in ``pulumi preview`` / ``teeform preview``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_azure_native as azn

from components.azure.image import (
    GalleryImagePipeline,
    GalleryImagePipelineArgs,
    check_hyperv_drivers,
    check_vhd,
    image_version_name,
)
from components.azure.names import gallery_name, resource_name, storage_account_name, vault_name
from components.azure.network import CvmNetwork, CvmNetworkArgs
from components.azure.release_key import ReleaseKey, ReleaseKeyArgs
from components.measurement_manifest import TARGET_TAG
from components.registry import TargetContext
from components.trustee.attach import attach_target_key_broker
from teeform.azure_release import GATE_PINS, release_policy
from teeform.errors import TeeformError
from teeform.targets.azure_cvm import AzureCvmSettings
from teeform.targets.vm_key_broker import AZURE_KEY_PINS

#: Manifest measurements the vTPM of an Azure CVM reports for teeform's image (clouds.md §2.1): PCR 4
#: (the UKI as loaded by the firmware; present once the manifest carries ``pcr4_sha256``), PCR 11
#: (systemd-stub) and the dm-verity root hash that PCR 11's ``.cmdline`` pins.
VM_MEASUREMENTS = ("pcr4_sha256", "pcr11_sha256", "roothash")


def vm_measurements(measurements: dict[str, str]) -> dict[str, str]:
    """The :data:`VM_MEASUREMENTS` a manifest carries (absent ones are left out). Pure."""
    return {k: measurements[k] for k in VM_MEASUREMENTS if k in measurements}


def secure_boot_note(enabled: bool) -> str:
    """The ``secure_boot`` output: on/off and what it means for teeform's unsigned UKI."""
    if enabled:
        return ("on: the VM boots only images signed with Microsoft's or the image version's UEFI keys; teeform's UKI "
                "is unsigned, so it will not boot unless you sign it and provision the keys [UNVERIFIED]")
    return "off: teeform's UKI is unsigned; the vTPM still measures it (PCR 4, PCR 11), and the key gate does not check it"


@dataclass
class ConfidentialVmArgs:
    """Inputs of :class:`ConfidentialVm`."""

    resource_group_name: pulumi.Input[str]
    location: str
    vm_name: str
    settings: AzureCvmSettings
    image_version_id: pulumi.Input[str]
    nic_id: pulumi.Input[str]
    identity_id: pulumi.Input[str]
    tags: dict[str, str]


class ConfidentialVm(pulumi.ComponentResource):
    """An Azure confidential VM (see the module docstring). Output ``vm_id`` (ARM id)."""

    vm_id: pulumi.Output[str]

    def __init__(self, name: str, args: ConfidentialVmArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("teeform:azure:ConfidentialVm", name, None, opts)
        a, s = args, args.settings
        os_profile = None
        if s.os_state == "Generalized":
            os_profile = azn.compute.OSProfileArgs(
                computer_name=a.vm_name[:64], admin_username="teeform",
                linux_configuration=azn.compute.LinuxConfigurationArgs(
                    disable_password_authentication=True, provision_vm_agent=False,
                    ssh=azn.compute.SshConfigurationArgs(public_keys=[azn.compute.SshPublicKeyArgs(
                        path="/home/teeform/.ssh/authorized_keys", key_data=s.admin_ssh_public_key)]),
                ),
            )
        vm = azn.compute.VirtualMachine(
            f"{name}-vm", resource_group_name=a.resource_group_name, location=a.location, vm_name=a.vm_name,
            hardware_profile=azn.compute.HardwareProfileArgs(vm_size=s.vm_size),
            security_profile=azn.compute.SecurityProfileArgs(
                security_type="ConfidentialVM",
                uefi_settings=azn.compute.UefiSettingsArgs(v_tpm_enabled=True, secure_boot_enabled=s.secure_boot),
            ),
            storage_profile=azn.compute.StorageProfileArgs(
                image_reference=azn.compute.ImageReferenceArgs(id=a.image_version_id),
                os_disk=azn.compute.OSDiskArgs(
                    create_option="FromImage", delete_option="Delete",
                    managed_disk=azn.compute.ManagedDiskParametersArgs(
                        storage_account_type="Premium_LRS",
                        security_profile=azn.compute.VMDiskSecurityProfileArgs(security_encryption_type=s.disk_security),
                    ),
                ),
            ),
            network_profile=azn.compute.NetworkProfileArgs(
                network_interfaces=[azn.compute.NetworkInterfaceReferenceArgs(id=a.nic_id, primary=True)],
            ),
            identity=azn.compute.VirtualMachineIdentityArgs(type="UserAssigned", user_assigned_identities=[a.identity_id]),
            os_profile=os_profile,
            tags=a.tags, opts=pulumi.ResourceOptions(parent=self),
        )
        self.vm_id = vm.id
        self.register_outputs({"vm_id": vm.id})


def _in_stack(exc: TeeformError, source: str, fld: str) -> TeeformError:
    field = exc.field if (exc.field or "").startswith("teeform:") else f"{fld}.{exc.field}" if exc.field else fld
    return TeeformError(exc.message, hint=exc.hint, path=exc.path or source, field=field)


def build_azure_cvm_target(ctx: TargetContext) -> dict[str, Any]:
    """Create one Azure confidential-VM target and return its outputs, in export order:
    ``image_version_id``, ``vm_id``, ``key_id``, ``key_gate``, ``release_policy``, ``attestation_authority``,
    ``secure_boot``, ``vm_measurements``.

    Raises:
        TeeformError: see the module docstring (the manifest's own errors name the manifest file).
    """
    t, stack = ctx.target, ctx.stack
    s = t.settings
    assert isinstance(s, AzureCvmSettings)
    fld = f"teeform:targets[{t.name}]"
    deployed = ctx.deployed
    try:
        for lm in ctx.manifests:
            check_hyperv_drivers(lm.path, dict(lm.manifest.details))
        vhd = check_vhd(deployed.path, dict(deployed.manifest.details))
        version = image_version_name(deployed.manifest.version)
        policy = release_policy(s.authority, t.tee.value)
    except TeeformError as exc:
        if exc.path:
            raise
        raise _in_stack(exc, stack.source, fld) from exc
    ctx.key_release()  # every allowed manifest is checked like any other target's (no values are pinned)
    broker = attach_target_key_broker(ctx)  # keyBroker: a Trustee secret pinning PCR 11 ({} without one)

    parts = [ctx.project, stack.stack, t.name]
    tags = {"teeform:stack": stack.stack, TARGET_TAG: t.name, "teeform:environment": stack.environment}
    provider = azn.Provider(f"{t.name}-azure", location=t.region)
    opts = pulumi.ResourceOptions(providers=[provider])
    rg = azn.resources.ResourceGroup(
        f"{t.name}-rg", resource_group_name=s.resource_group or resource_name(parts, 90), location=t.region,
        tags=tags, opts=opts,
    )
    image = GalleryImagePipeline(
        f"{t.name}-image",
        GalleryImagePipelineArgs(
            resource_group_name=rg.name, location=t.region, storage_account_name=storage_account_name(parts),
            gallery_name=gallery_name(parts), image_name=resource_name([deployed.manifest.name, t.tee.value], 80),
            version=version, vhd=vhd, os_state=s.os_state, disk_security=s.disk_security,
            identifier=("teeform", resource_name([ctx.project, deployed.manifest.name], 64), t.tee.value), tags=tags,
        ),
        opts,
    )
    network = CvmNetwork(
        f"{t.name}-net",
        CvmNetworkArgs(resource_group_name=rg.name, location=t.region, name_prefix=resource_name(parts, 40),
                       cidr=s.network.cidr, subnet_cidr=s.network.subnet_cidr, ingress=s.network.ingress,
                       public_ip=s.network.public_ip, tags=tags),
        opts,
    )
    identity = azn.managedidentity.UserAssignedIdentity(
        f"{t.name}-identity", resource_group_name=rg.name, location=t.region,
        resource_name_=resource_name([*parts, "vm"], 128), tags=tags, opts=opts,
    )
    vm = ConfidentialVm(
        f"{t.name}-cvm",
        ConfidentialVmArgs(resource_group_name=rg.name, location=t.region, vm_name=resource_name(parts, 64),
                           settings=s, image_version_id=image.image_version_id, nic_id=network.nic_id,
                           identity_id=identity.id, tags=tags),
        opts,
    )
    key = ReleaseKey(
        f"{t.name}-key",
        ReleaseKeyArgs(resource_group_name=rg.name, location=t.region, vault_name=vault_name(parts),
                       key_name=resource_name([t.name, "release"], 127), policy=policy,
                       principal_id=identity.principal_id, key_size=s.key.key_size,
                       soft_delete_retention_days=s.key.soft_delete_retention_days, protect=s.key.protect, tags=tags),
        opts,
    )
    pulumi.log.info(f"target {t.name!r}: Azure key {vault_name(parts)}/{t.name}-release -- {GATE_PINS}")
    return {
        "image_version_id": image.image_version_id,
        "vm_id": vm.vm_id,
        "key_id": key.key_id,
        "key_gate": f"{AZURE_KEY_PINS}; {broker['key_broker_gate']}" if broker else GATE_PINS,
        "release_policy": json.dumps(policy, separators=(",", ":")),
        "attestation_authority": s.authority,
        "secure_boot": secure_boot_note(s.secure_boot),
        "vm_measurements": {lm.key: vm_measurements(dict(lm.manifest.measurements)) for lm in ctx.manifests},
        **({"public_ip": network.public_ip} if network.public_ip is not None else {}),
        **broker,
    }


__all__ = ["build_azure_cvm_target", "ConfidentialVm", "ConfidentialVmArgs", "vm_measurements", "secure_boot_note",
           "VM_MEASUREMENTS"]
