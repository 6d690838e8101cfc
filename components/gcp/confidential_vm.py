"""Builder for ``gcp``/``sev-snp`` and ``gcp``/``tdx`` targets: teeform's UKI + dm-verity disk as a confidential VM.

Wiring (pulumi-gcp 10.2, pulumi.md §4.3; image import facts clouds.md §3.3)::

    storage.Bucket (uniform access, public access prevention enforced)
      └─ storage.BucketObject <sha256>.tar.gz  (the manifest's gce-tar artifact: one member disk.raw, oldgnu)
           └─ compute.Image raw_disk{source=https://storage.googleapis.com/<bucket>/<object>, container_type TAR}
                guest_os_features UEFI_COMPATIBLE, GVNIC, SEV_SNP_CAPABLE | TDX_CAPABLE
                └─ compute.Instance confidential_instance_config (SEV_SNP + min_cpu_platform "AMD Milan" | TDX),
                     shielded VM (vTPM, integrity monitoring; secure boot off: the UKI is not signed with a
                     key in Google's db), scheduling TERMINATE, gVNIC, NVMe boot disk for TDX (C3 offers only
                     NVMe; the initrd carries ``nvme``), a service account with no roles, no external IP
    WorkloadNetwork: VPC + subnet (Private Google Access) + firewall only for configured ingress

No key is created (see :mod:`teeform.targets.gcp_confidential_vm`: Google's token pins the platform only).

Refused while the program is built: a manifest without a ``gce-tar`` artifact, or whose tarball is missing
next to the manifest (naming the manifest and what to run).
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_gcp as gcp

from components.gcp.common import gcp_name, labels, provider
from components.gcp.network import WorkloadNetwork, WorkloadNetworkArgs
from components.registry import TargetContext
from components.trustee.attach import attach_target_key_broker
from teeform.errors import TeeformError
from teeform.manifest import check_artifact_file
from teeform.targets.gcp_confidential_vm import TEE_SETUP, ConfidentialVmSettings

#: Guest OS features every teeform image gets besides the TEE's (clouds.md §3.3).
BASE_FEATURES = ("UEFI_COMPATIBLE", "GVNIC")


def image_features(tee_feature: str) -> list[str]:
    """``guest_os_features`` of the imported image."""
    return [*BASE_FEATURES, tee_feature]


def build_confidential_vm_target(ctx: TargetContext) -> dict[str, Any]:
    """Create the resources of one GCP confidential-VM target; return ``instance_id``, ``image_self_link``,
    ``image_uri``.

    Raises:
        TeeformError: the deployed manifest has no ``gce-tar`` artifact (module docstring).
    """
    t, stack = ctx.target, ctx.stack
    s = t.settings
    assert isinstance(s, ConfidentialVmSettings)
    ctype, feature, default_machine, min_cpu = TEE_SETUP[t.tee]
    deployed = ctx.deployed
    tar = (deployed.manifest.details.get("formats") or {}).get("gce-tar")
    if not isinstance(tar, dict) or not isinstance(tar.get("file_name"), str) or not isinstance(tar.get("sha256"), str):
        raise TeeformError(f"manifest {deployed.path} has no gce-tar artifact (details.formats['gce-tar'])",
                           path=stack.source, field=f"teeform:targets[{t.name}].manifests[0]",
                           hint="build it with `teeform build vm-image ... --format gce-tar`")
    tar_path = deployed.path.parent / tar["file_name"]
    if not tar_path.is_file():
        raise TeeformError(f"the gce-tar artifact {tar_path} of manifest {deployed.path} is missing",
                           path=stack.source, field=f"teeform:targets[{t.name}].manifests[0]",
                           hint="keep the .tar.gz next to its manifest (teeform build vm-image --format gce-tar)")
    # The uploaded image must be the file the manifest records (details.formats, build_vm.py).
    check_artifact_file(tar_path, what="gce-tar artifact", size=tar.get("size") if isinstance(tar.get("size"), int) else None,
                        algorithm="sha256", digest=tar["sha256"], manifest_path=deployed.path,
                        build_hint="`teeform build vm-image ... --format gce-tar`")
    broker = attach_target_key_broker(ctx)  # keyBroker (gcp/tdx): a Trustee secret pinning the UKI/RTMRs ({} without)
    zone = s.zone or f"{t.region}-a"
    parts = [stack.stack, t.name]
    lab = labels(stack.stack, t.name, stack.environment)
    prov = provider(t.name, s.project, t.region, zone)
    opts = pulumi.ResourceOptions(providers=[prov])

    bucket = gcp.storage.Bucket(
        f"{t.name}-images", name=gcp_name([s.project, *parts, "images"], 63), project=s.project, location=t.region,
        uniform_bucket_level_access=True, public_access_prevention="enforced", force_destroy=not stack.is_production,
        labels=lab, opts=opts)
    obj = gcp.storage.BucketObject(
        f"{t.name}-disk-tar", bucket=bucket.name, name=f"{tar['sha256']}.tar.gz", source=pulumi.FileAsset(str(tar_path)),
        content_type="application/gzip", opts=opts)
    image = gcp.compute.Image(
        f"{t.name}-image", name=gcp_name([*parts, deployed.manifest.name, tar["sha256"][:12]], 63), project=s.project,
        raw_disk=gcp.compute.ImageRawDiskArgs(
            source=pulumi.Output.concat("https://storage.googleapis.com/", bucket.name, "/", obj.name),
            container_type="TAR"),
        guest_os_features=[gcp.compute.ImageGuestOsFeatureArgs(type=f) for f in image_features(feature)],
        labels=lab, opts=opts)
    sa = gcp.serviceaccount.Account(f"{t.name}-vm-sa", account_id=gcp_name([*parts, "vm"], 30, min_len=6),
                                    display_name=f"teeform VM {t.name} (no roles)", project=s.project, opts=opts)
    net = WorkloadNetwork(f"{t.name}-net", WorkloadNetworkArgs(parts, s.project, t.region, s.network.cidr,
                                                               s.network.ingress, sa.email), opts)
    instance = gcp.compute.Instance(
        f"{t.name}-vm", name=gcp_name([*parts, "cvm"], 63), project=s.project, zone=zone,
        machine_type=s.machine_type or default_machine,
        boot_disk=gcp.compute.InstanceBootDiskArgs(
            initialize_params=gcp.compute.InstanceBootDiskInitializeParamsArgs(image=image.self_link),
            interface="NVME" if t.tee.value == "tdx" else None),
        network_interfaces=[gcp.compute.InstanceNetworkInterfaceArgs(subnetwork=net.subnetwork_id, nic_type="GVNIC")],
        confidential_instance_config=gcp.compute.InstanceConfidentialInstanceConfigArgs(confidential_instance_type=ctype),
        min_cpu_platform=min_cpu,
        shielded_instance_config=gcp.compute.InstanceShieldedInstanceConfigArgs(
            enable_secure_boot=False, enable_vtpm=True, enable_integrity_monitoring=True),
        scheduling=gcp.compute.InstanceSchedulingArgs(on_host_maintenance="TERMINATE", automatic_restart=False),
        service_account=gcp.compute.InstanceServiceAccountArgs(email=sa.email, scopes=["cloud-platform"]),
        labels=lab, allow_stopping_for_update=True, opts=opts)
    pulumi.log.info(f"target {t.name!r}: key gate: {t.plugin.gate}")
    return {
        "instance_id": instance.instance_id,
        "image_self_link": image.self_link,
        "image_uri": pulumi.Output.concat("gs://", bucket.name, "/", obj.name),
        **broker,
    }


__all__ = ["build_confidential_vm_target", "image_features", "BASE_FEATURES"]
