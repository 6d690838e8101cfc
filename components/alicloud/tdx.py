"""Builder of an ``alicloud``/``tdx`` target: network, image import, the TDX instance, the Trustee key broker.

Wiring (one explicit ``alicloud.Provider`` per target, in the target's region)::

    vpc.Network ─► vpc.Switch (the target's zone) ─► ecs.SecurityGroup (no ingress unless listed)
    oss.Bucket (private, AES256) ─► oss.BucketObject (the qcow2, else the raw disk; key = its SHA-256)
        ─► ecs.ImageImport(boot_mode="UEFI", features.nvme_support="supported", architecture x86_64)
    instance:  ecs.gn8v-tee.*  -> alicloud.ecs.Instance (TDX by default)
               ecs.g8i.*       -> TdxInstance (dynamic provider, RunInstances SecurityOptions.ConfidentialComputingMode=TDX),
                                  then adopted read-only with alicloud.ecs.Instance.get
    key:       attach_key_broker(target, manifests, tdx, tdx) on an existing KBS (url + secret admin key)
               or on a TrusteeHost deployed in the same VPC (admin key + TLS generated, secret)

``ImageImport`` reads the object with the RAM role **AliyunECSImageImportDefaultRole**, which the
account must have authorised once (Alibaba ECS docs "Import custom images", "Authorize ECS to access
OSS"; pulumi.md §4.4); docs/alicloud.md gives the one-time console/CLI steps. Sources for every
argument: ``shared/reference/pulumi.md`` §4.4 and ``clouds.md`` §4.1.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pulumi
import pulumi_alicloud as alicloud

from components.alicloud.tdx_instance import TdxInstance
from components.alicloud.trustee_host import TrusteeHost
from components.measurement_manifest import TARGET_TAG
from components.registry import TargetContext
from components.trustee.broker import attach_key_broker, deployed_kbs, existing_kbs
from components.trustee.provider import GeneratedKeyPair
from teeform.errors import TeeformError
from teeform.manifest import check_artifact_file
from teeform.targets.alicloud_tdx import AlicloudTdxSettings, zone_region
from teeform.trustee.reference_values import Verifier

#: Tag naming what an instance is (``tdx-guest`` / ``kbs``); policy ``alicloud-tdx-instance-type`` reads it.
ROLE_TAG = "teeform:role"
#: ImageImport ``disk_device_mappings.format`` per teeform disk format (pulumi.md §4.4).
IMPORT_FORMAT = {"qcow2": "qcow2", "raw": "RAW", "vhd": "VHD"}


def bucket_name(project: str, stack: str, target: str) -> str:
    """An OSS bucket name (3-63 of ``[a-z0-9-]``, globally unique): ``teeform-<8 hex of project/stack/target>-<target>``."""
    h = hashlib.sha256(f"{project}/{stack}/{target}".encode()).hexdigest()[:8]
    return f"teeform-{h}-{target}"[:63].rstrip("-")


def disk_artifact(ctx: TargetContext) -> tuple[str, str, str]:
    """``(path, import format, sha256)`` of the deployed manifest's disk: the qcow2 when the build wrote
    one (``details.formats``), else the raw disk (the manifest's ``artifact``).

    The file is checked against the manifest before it is uploaded (present, its recorded size and
    SHA-256; :func:`teeform.manifest.check_artifact_file`, hashed once per run), as the AWS and GCP
    image pipelines do: an image imported from another build would boot measurements the key broker
    does not release to.

    Raises:
        TeeformError: the qcow2 entry has no SHA-256 (naming ``details.formats.qcow2.sha256``), or the
            disk file is missing or differs from the manifest (naming the file).
    """
    lm = ctx.deployed
    formats = lm.manifest.details.get("formats") if isinstance(lm.manifest.details, dict) else None
    if isinstance(formats, dict) and isinstance(formats.get("qcow2"), dict):
        q = formats["qcow2"]
        name = q.get("file_name") if isinstance(q.get("file_name"), str) else lm.artifact_path.with_suffix(".qcow2").name
        sha = q.get("sha256")
        if not isinstance(sha, str) or len(sha) != 64:
            raise TeeformError("the qcow2 disk has no SHA-256 in the manifest", path=lm.path,
                               field="details.formats.qcow2.sha256",
                               hint="rebuild with `teeform build vm-image ... --format qcow2`")
        path, fmt, size = lm.path.parent / Path(name).name, "qcow2", q.get("size")
    else:
        art = lm.manifest.artifact
        path, fmt, sha, size = lm.artifact_path, "RAW", art.sha256, art.size
    check_artifact_file(path, what=f"{fmt.lower()} disk", size=size if isinstance(size, int) else None,
                        algorithm="sha256", digest=sha, manifest_path=lm.path,
                        build_hint="`teeform build vm-image ... --format qcow2` or scripts/vm-demo.sh")
    return str(path), fmt, sha.lower()


def build(ctx: TargetContext) -> dict[str, Any]:
    """Create the target's resources; return ``instance_id``, ``image_id``, ``kbs_url``,
    ``reference_value_ids``, ``key_resource``.

    Raises:
        TeeformError: the zone is outside the target's region (named field), or a manifest lacks a
            value the key broker pins.
    """
    t = ctx.target
    s = t.settings
    assert isinstance(s, AlicloudTdxSettings)
    if zone_region(s.zone) != t.region:
        raise TeeformError(f"zone {s.zone!r} is not in region {t.region!r}", path=ctx.stack.source,
                           field=f"teeform:targets[{t.name}].zone")
    provider = alicloud.Provider(f"{t.name}-alicloud", region=t.region)
    o = pulumi.ResourceOptions(provider=provider)
    tags = {TARGET_TAG: t.name, "teeform:stack": ctx.stack.stack or ""}

    vpc = alicloud.vpc.Network(f"{t.name}-vpc", vpc_name=f"teeform-{t.name}", cidr_block=s.cidr, tags=tags, opts=o)
    vswitch = alicloud.vpc.Switch(f"{t.name}-vsw", vswitch_name=f"teeform-{t.name}", vpc_id=vpc.id, cidr_block=s.cidr,
                                  zone_id=s.zone, tags=tags, opts=o)
    sg = alicloud.ecs.SecurityGroup(f"{t.name}-sg", security_group_name=f"teeform-{t.name}", vpc_id=vpc.id,
                                    description="teeform TDX target: no ingress unless configured", tags=tags, opts=o)
    for i, r in enumerate(s.ingress):
        alicloud.ecs.SecurityGroupRule(f"{t.name}-in-{i}", security_group_id=sg.id, type="ingress", ip_protocol="tcp",
                                       port_range=f"{r.port}/{r.port}", cidr_ip=r.cidr, policy="accept",
                                       nic_type="intranet", description=r.description or None, opts=o)

    path, fmt, sha = disk_artifact(ctx)
    bucket = alicloud.oss.Bucket(f"{t.name}-images", bucket=bucket_name(ctx.project, ctx.stack.stack or "", t.name),
                                 acl="private",
                                 server_side_encryption_rule=alicloud.oss.BucketServerSideEncryptionRuleArgs(sse_algorithm="AES256"),
                                 tags=tags, opts=o)
    key = f"{ctx.deployed.manifest.name}/{sha}.{fmt.lower()}"
    obj = alicloud.oss.BucketObject(f"{t.name}-disk", bucket=bucket.bucket, key=key, source=path,
                                    server_side_encryption="AES256", opts=o)
    image = alicloud.ecs.ImageImport(
        f"{t.name}-image", image_name=f"teeform-{ctx.deployed.manifest.name}-{sha[:12]}", architecture="x86_64",
        os_type="linux", platform="Others Linux", boot_mode="UEFI", license_type="Auto",
        features=alicloud.ecs.ImageImportFeaturesArgs(nvme_support="supported"),
        disk_device_mappings=[alicloud.ecs.ImageImportDiskDeviceMappingArgs(oss_bucket=bucket.bucket, oss_object=obj.key,
                                                                            format=fmt)],
        description=f"teeform {ctx.deployed.key} (manifest sha256 {ctx.deployed.sha256})",
        opts=pulumi.ResourceOptions(provider=provider, depends_on=[obj]))

    if s.needs_tdx_flag:
        inst = TdxInstance(f"{t.name}-tdx", {
            "region_id": t.region, "zone_id": s.zone, "instance_type": s.instance_type, "image_id": image.id,
            "v_switch_id": vswitch.id, "security_group_id": sg.id, "instance_name": f"teeform-{t.name}",
            "user_data": None, "system_disk_category": "cloud_essd", "system_disk_size": 40,
            "tags": {**tags, ROLE_TAG: "tdx-guest"}})
        instance_id: pulumi.Output[str] = inst.instance_id
        # Adopted read-only (a "read" step, never created, updated or deleted by pulumi-alicloud), so the
        # stack state and policies see the real instance as the provider reports it.
        alicloud.ecs.Instance.get(f"{t.name}-tdx-view", inst.instance_id,
                                  opts=pulumi.ResourceOptions(provider=provider, depends_on=[inst]))
    else:
        ecs_inst = alicloud.ecs.Instance(
            f"{t.name}-tdx", instance_type=s.instance_type, image_id=image.id, vswitch_id=vswitch.id,
            security_groups=[sg.id], availability_zone=s.zone, http_tokens="required", http_endpoint="enabled",
            internet_max_bandwidth_out=0, system_disk_category="cloud_essd", instance_name=f"teeform-{t.name}",
            tags={**tags, ROLE_TAG: "tdx-guest"}, opts=o)
        instance_id = ecs_inst.id

    kb = s.key_broker
    if kb.deploy is not None:
        keys = GeneratedKeyPair(f"{t.name}-kbs-keys", f"kbs.{t.name}.teeform.internal")
        host = TrusteeHost(f"{t.name}-trustee", vswitch_id=vswitch.id, security_group_id=sg.id, vpc_cidr=s.cidr,
                           instance_type=kb.deploy.instance_type, admin_cidr=kb.deploy.admin_cidr, keys=keys,
                           tags={**tags, ROLE_TAG: "kbs"}, opts=o)
        endpoint = deployed_kbs(host.url, keys.admin_private_key_pem, keys.tls_cert_pem,
                                key=f"deployed:{t.name}")
    else:
        assert kb.url is not None
        endpoint = existing_kbs(kb.url, admin_key_secret=kb.admin_key_secret, ca_cert_config=kb.ca_cert_config)
    broker = attach_key_broker(t.name, ctx.manifests, t.tee, Verifier.TDX, endpoint=endpoint, options=kb.options)
    return {"instance_id": instance_id, "image_id": image.id, **broker}


__all__ = ["build", "bucket_name", "disk_artifact", "IMPORT_FORMAT"]
