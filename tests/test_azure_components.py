"""Azure confidential-VM targets (issue 10, items 1-3, 6): the Pulumi program under the SDK's mocks.

The resources are the real pulumi-azure-native 3.29 classes (a misspelled argument is a TypeError
in the SDK itself), registered by the repository's ``__main__.py``; the assertions read the wire
inputs the engine would send. The release policy in the key is decoded here with the standard
library (base64url + json), independently of teeform's decoder. The VHD is written by teeform's
own writer (``diskformats.vhd_footer``), whose format is tested against ``qemu-img`` in
tests/test_diskformats.py; here it only has to be a valid fixed VHD next to the manifest.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from pulumi_support import by_type, fake_hex, one, run

from image_builder.formats.diskformats import vhd_footer
from teeform.errors import TeeformError
from teeform.manifest import Artifact, ArtifactKind, Builder, Manifest, write_manifest

AUTHORITY = "https://sharedweu.weu.attest.azure.net"
RELEASE_ROLE = "08bbd89e-9f13-488c-ac41-acfcb10c90ab"


def write_vhd_manifest(directory: Path, *, name: str = "agent-vm", version: str = "1.0.0", vhd: bool = True,
                       extra: dict[str, str] | None = None, hyperv: bool = True) -> Path:
    """A vm-image manifest with a real fixed VHD (1 MiB of data + footer) listed under details.formats.vhd."""
    directory.mkdir(parents=True, exist_ok=True)
    data = bytes(1 << 20)
    path = directory / f"{name}.vhd"
    path.write_bytes(data + vhd_footer(len(data), timestamp=0, unique_id=bytes(16)))
    meas = {"roothash": fake_hex("r", 64), "uki_authenticode_sha256": fake_hex("a", 64),
            "uki_authenticode_sha384": fake_hex("b"), "pcr11_sha256": fake_hex("p", 64), "pcr11_sha384": fake_hex("q"),
            **(extra or {})}
    details: dict[str, Any] = {"formats": {}, "initrd": {"modules": [] if not hyperv else [
        "kernel/drivers/hv/hv_vmbus.ko", "kernel/drivers/scsi/hv_storvsc.ko"]}}
    if vhd:
        details["formats"]["vhd"] = {"file_name": path.name, "size": path.stat().st_size,
                                     "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    m = Manifest(kind=ArtifactKind.VM_IMAGE, name=name, version=version,
                 artifact=Artifact(f"{name}.raw", len(data), fake_hex("x", 64), fake_hex("x")), measurements=meas,
                 inputs=(), builder=Builder("teeform", "test"), source_date_epoch=0, details=details)
    out = directory / f"{name}.manifest.json"
    write_manifest(m, out)
    return out


def azure_target(manifest: Path, name: str = "snp", tee: str = "sev-snp", **extra: Any) -> dict[str, Any]:
    return {"name": name, "cloud": "azure", "region": "westeurope", "tee": tee, "manifests": [str(manifest)],
            "attestation": {"authority": AUTHORITY}, **extra}


def decode(data: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))


@pytest.fixture(scope="module")
def snp_and_tdx(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Any], dict[str, Any]]:
    m = write_vhd_manifest(tmp_path_factory.mktemp("azure"))
    resources, outputs, _ = run([azure_target(m), azure_target(m, "td", "tdx", vmSize="Standard_DC4es_v5")])
    return resources, outputs


def _of(resources: list[Any], typ: str, target: str) -> list[Any]:
    return [r for r in by_type(resources, typ) if r.name.startswith(f"{target}-")]


@pytest.mark.parametrize(("target", "size", "claim"), [("snp", "Standard_DC4as_v5", "sevsnpvm"), ("td", "Standard_DC4es_v5", "tdxvm")])
def test_confidential_vm_and_its_key(snp_and_tdx: tuple[list[Any], dict[str, Any]], target: str, size: str, claim: str) -> None:
    resources, outputs = snp_and_tdx
    (vm,) = _of(resources, "azure-native:compute:VirtualMachine", target)
    i = vm.inputs
    assert i["hardwareProfile"] == {"vmSize": size}
    assert i["securityProfile"] == {"securityType": "ConfidentialVM",
                                    "uefiSettings": {"secureBootEnabled": False, "vTpmEnabled": True}}
    disk = i["storageProfile"]["osDisk"]
    assert disk["createOption"] == "FromImage"
    assert disk["managedDisk"]["securityProfile"] == {"securityEncryptionType": "VMGuestStateOnly"}
    (version,) = _of(resources, "azure-native:compute:GalleryImageVersion", target)
    assert i["storageProfile"]["imageReference"]["id"] == outputs["image_version_id"][target]
    (identity,) = _of(resources, "azure-native:managedidentity:UserAssignedIdentity", target)
    assert i["identity"]["type"] == "UserAssigned" and len(i["identity"]["userAssignedIdentities"]) == 1
    assert "osProfile" not in i  # Specialized image: no credentials

    (key,) = _of(resources, "azure-native:keyvault:Key", target)
    p = key.inputs["properties"]
    assert p["kty"] == "RSA-HSM" and p["keySize"] == 3072 and p["attributes"]["exportable"] is True
    assert p["releasePolicy"]["contentType"] == "application/json; charset=utf-8"
    policy = decode(p["releasePolicy"]["data"])
    assert policy == {"version": "1.0.0", "anyOf": [{"authority": AUTHORITY, "allOf": [
        {"claim": "x-ms-isolation-tee.x-ms-attestation-type", "equals": claim},
        {"claim": "x-ms-isolation-tee.x-ms-compliance-status", "equals": "azure-compliant-cvm"}]}]}
    assert json.loads(outputs["release_policy"][target]) == policy
    (vault,) = _of(resources, "azure-native:keyvault:Vault", target)
    vp = vault.inputs["properties"]
    assert vp["sku"] == {"family": "A", "name": "premium"}
    assert vp["enablePurgeProtection"] is True and vp["enableRbacAuthorization"] is True
    assert "accessPolicies" not in vp

    (ra,) = _of(resources, "azure-native:authorization:RoleAssignment", target)  # the only grant: the VM identity
    assert ra.inputs["roleDefinitionId"].endswith(f"/providers/Microsoft.Authorization/roleDefinitions/{RELEASE_ROLE}")
    assert ra.inputs["principalType"] == "ServicePrincipal"
    assert ra.inputs["scope"].endswith(f"/vaults/{vault.inputs['vaultName']}/keys/{key.inputs['keyName']}")
    assert outputs["key_id"][target].startswith(f"https://{vault.inputs['vaultName']}.vault.azure.net/keys/")
    assert "pins the platform" in outputs["key_gate"][target] and "not the image" in outputs["key_gate"][target]
    assert outputs["attestation_authority"][target] == AUTHORITY
    assert outputs["secure_boot"][target].startswith("off")
    assert outputs["vm_id"][target].endswith("/providers/Microsoft.Compute/virtualMachines/" + vm.inputs["vmName"])
    assert set(outputs["vm_measurements"][target]["agent-vm"]) == {"pcr11_sha256", "roothash"}


def test_identity_principal_is_the_release_grantee(snp_and_tdx: tuple[list[Any], dict[str, Any]]) -> None:
    from teeform.preview.clouds.azure import _guid

    resources, _ = snp_and_tdx
    (ra,) = _of(resources, "azure-native:authorization:RoleAssignment", "snp")
    (identity,) = _of(resources, "azure-native:managedidentity:UserAssignedIdentity", "snp")
    assert ra.inputs["principalId"] == _guid("principal" + identity.name)  # the mock's principalId of that identity
    assert len(by_type(resources, "azure-native:authorization:RoleAssignment")) == 2  # one per target, nothing else


def test_image_pipeline(snp_and_tdx: tuple[list[Any], dict[str, Any]]) -> None:
    resources, _ = snp_and_tdx
    (img,) = _of(resources, "azure-native:compute:GalleryImage", "snp")
    assert img.inputs["hyperVGeneration"] == "V2" and img.inputs["osType"] == "Linux"
    assert img.inputs["features"] == [{"name": "SecurityType", "value": "ConfidentialVMSupported"}]
    (ver,) = _of(resources, "azure-native:compute:GalleryImageVersion", "snp")
    src = ver.inputs["storageProfile"]["osDiskImage"]["source"]
    (sa,) = _of(resources, "azure-native:storage:StorageAccount", "snp")
    assert src["storageAccountId"].endswith(f"/storageAccounts/{sa.inputs['accountName']}")
    (blob,) = _of(resources, "pulumi-python:dynamic:Resource", "snp")
    assert src["uri"] == f"https://{sa.inputs['accountName']}.blob.core.windows.net/vhds/{blob.inputs['blobName']}"
    assert blob.inputs["blobName"] == f"vhd/sha256/{blob.inputs['sha256']}.vhd"
    assert blob.inputs["size"] == (1 << 20) + 512
    assert ver.inputs["galleryImageVersionName"] == "1.0.0"
    assert sa.inputs["allowBlobPublicAccess"] is False and sa.inputs["minimumTlsVersion"] == "TLS1_2"


def test_no_inbound_rule_and_no_public_ip_by_default(snp_and_tdx: tuple[list[Any], dict[str, Any]]) -> None:
    resources, _ = snp_and_tdx
    (nsg,) = _of(resources, "azure-native:network:NetworkSecurityGroup", "snp")
    assert nsg.inputs.get("securityRules", []) == []
    assert by_type(resources, "azure-native:network:PublicIPAddress") == []
    (nic,) = _of(resources, "azure-native:network:NetworkInterface", "snp")
    assert "publicIPAddress" not in nic.inputs["ipConfigurations"][0]


def test_configured_ingress_and_public_ip(tmp_path: Path) -> None:
    m = write_vhd_manifest(tmp_path)
    net = {"ingress": [{"cidr": "203.0.113.0/24", "port": 443, "description": "webhook"}], "publicIp": True}
    resources, outputs, _ = run([azure_target(m, network=net, secureBoot=True, diskSecurity="NonPersistedTPM")])
    nsg = one(resources, "azure-native:network:NetworkSecurityGroup")
    assert nsg.inputs["securityRules"] == [{
        "name": "teeform-in-0", "priority": 100, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
        "sourceAddressPrefix": "203.0.113.0/24", "sourcePortRange": "*", "destinationAddressPrefix": "*",
        "destinationPortRange": "443", "description": "webhook"}]
    pip = one(resources, "azure-native:network:PublicIPAddress")
    nic = one(resources, "azure-native:network:NetworkInterface")
    assert nic.inputs["ipConfigurations"][0]["publicIPAddress"]["id"].endswith("/publicIPAddresses/" + pip.inputs["publicIpAddressName"])
    vm = one(resources, "azure-native:compute:VirtualMachine")
    assert vm.inputs["securityProfile"]["uefiSettings"]["secureBootEnabled"] is True
    assert vm.inputs["storageProfile"]["osDisk"]["managedDisk"]["securityProfile"]["securityEncryptionType"] == "NonPersistedTPM"
    ver = one(resources, "azure-native:compute:GalleryImageVersion")
    enc = ver.inputs["publishingProfile"]["targetRegions"][0]["encryption"]["osDiskImage"]["securityProfile"]
    assert enc == {"confidentialVMEncryptionType": "NonPersistedTPM"}
    assert outputs["secure_boot"].startswith("on")
    assert outputs["public_ip"] == "203.0.113.10"


def test_pcr4_is_exported_when_the_manifest_carries_it(tmp_path: Path) -> None:
    m = write_vhd_manifest(tmp_path, extra={"pcr4_sha256": fake_hex("pcr4", 64), "pcr4_sha384": fake_hex("pcr4")})
    _, outputs, _ = run([azure_target(m)])
    assert outputs["vm_measurements"]["agent-vm"] == {
        "pcr4_sha256": fake_hex("pcr4", 64), "pcr11_sha256": fake_hex("p", 64), "roothash": fake_hex("r", 64)}


@pytest.mark.parametrize(("tee", "size"), [("sev-snp", "Standard_DC4es_v5"), ("tdx", "Standard_DC4as_v5"),
                                           ("sev-snp", "Standard_D4s_v5"), ("tdx", "Standard_DC4s_v3")])
def test_wrong_size_is_refused_naming_the_field(tmp_path: Path, tee: str, size: str) -> None:
    m = write_vhd_manifest(tmp_path)
    with pytest.raises(TeeformError) as e:
        run([azure_target(m, tee=tee, vmSize=size)])
    assert "teeform:targets[0].vmSize" in str(e.value) and "confidential VM size" in str(e.value)


def test_missing_vhd_is_refused_naming_the_manifest(tmp_path: Path) -> None:
    m = write_vhd_manifest(tmp_path, vhd=False)
    with pytest.raises(TeeformError) as e:
        run([azure_target(m)])
    assert e.value.path == str(m) and e.value.field == "details.formats.vhd" and "--format raw,vhd" in (e.value.hint or "")


def test_image_without_hyperv_drivers_is_refused(tmp_path: Path) -> None:
    m = write_vhd_manifest(tmp_path, hyperv=False)
    with pytest.raises(TeeformError) as e:
        run([azure_target(m)])
    assert e.value.path == str(m) and e.value.field == "details.initrd.modules"
    assert "hv_storvsc.ko" in e.value.message and "--platform-modules hyperv" in (e.value.hint or "")


def test_changed_vhd_is_refused(tmp_path: Path) -> None:
    m = write_vhd_manifest(tmp_path)
    vhd = tmp_path / "agent-vm.vhd"
    raw = bytearray(vhd.read_bytes())
    raw[0] = 1
    vhd.write_bytes(bytes(raw))
    with pytest.raises(TeeformError, match="SHA-256 differs"):
        run([azure_target(m)])


@pytest.mark.parametrize(("extra", "field", "text"), [
    ({"attestation": {}}, "attestation.authority", "is required"),
    ({"attestation": {"authority": "https://evil.example.com"}}, "attestation.authority", "attest.azure.net"),
    ({"key": {"store": "managedHsm"}}, "key.store", "no key resource"),
    ({"key": {"keySize": 1024}}, "key.keySize", "between 2048 and 4096"),
    ({"osState": "Generalized"}, "adminSshPublicKey", "needs adminSshPublicKey"),
    ({"diskSecurity": "DiskWithVMGuestState"}, "diskSecurity", "must be one of"),
    ({"network": {"cidr": "10.1.0.0/16", "subnetCidr": "10.2.0.0/24"}}, "network.subnetCidr", "not inside"),
    ({"enclave": {"cpuCount": 2}}, "enclave", "not a setting of azure/sev-snp"),
])
def test_bad_settings_name_the_field(tmp_path: Path, extra: dict[str, Any], field: str, text: str) -> None:
    m = write_vhd_manifest(tmp_path)
    t = {**azure_target(m), **extra}
    with pytest.raises(TeeformError) as e:
        run([t])
    assert f"teeform:targets[0].{field}" in str(e.value) and text in str(e.value)
