"""``VmImagePipeline``: a teeform raw disk -> S3 -> EBS snapshot -> UEFI + NitroTPM AMI.

Children, in dependency order:

1. a private S3 bucket for the disk: versioned, SSE-S3 encrypted, all four public-access blocks on,
   and the TLS-only bucket policy of the Nitro artifact store
   (:func:`components.aws.artifact_store.tls_only_policy`, a Deny of ``s3:*`` when
   ``aws:SecureTransport`` is false);
2. the raw disk as an object under a content-addressed key (:func:`disk_object_key`), checked against
   the manifest (size and SHA-384, streamed) **before** anything is registered;
3. the VM Import **service role** (``vmimport``): trusted by ``vmie.amazonaws.com`` only with
   ``sts:Externalid = "vmimport"``, allowed ``s3:GetBucketLocation``/``s3:ListBucket`` on the bucket,
   ``s3:GetObject`` on the disk object, and the snapshot actions of :data:`VMIMPORT_EC2_ACTIONS`
   (VM Import/Export user guide, "Required service role", https://docs.aws.amazon.com/vm-import/latest/userguide/vmie_prereqs.html#vmimport-role, the URL the pulumi-aws ``ebs.SnapshotImport`` docstring gives;
   ``shared/reference/clouds.md`` §1.3). ``ec2:RegisterImage`` from AWS's example role is left out:
   ImportSnapshot registers nothing, the AMI is registered by the deployer (step 5);
4. ``aws.ebs.SnapshotImport`` with ``disk_container = {format: "RAW", user_bucket: {s3_bucket, s3_key}}``
   and ``role_name`` = that role, encrypted with the account's default EBS key. ``RAW`` is accepted
   by the EC2 API (``SnapshotDiskContainer.Format``: VHD | VMDK | RAW) and by the provider, whose
   docstring listing only VHD/VMDK is stale (clouds.md §1.3, §6 item 1);
5. ``aws.ec2.Ami`` registered from the snapshot: ``virtualization_type="hvm"``,
   ``root_device_name="/dev/xvda"``, ``boot_mode="uefi"``, ``tpm_support="v2.0"`` (NitroTPM),
   ``imds_support="v2.0"`` (instances launched from it require IMDSv2), ``ena_support=True``,
   ``architecture="x86_64"`` (AWS's own attestable-AMI sample registers the same way: clouds.md
   §1.3; argument names: pulumi.md §4.1, pulumi-aws ``ec2.Ami``).

Whether ImportSnapshot keeps the disk's bytes (and so the dm-verity root hash) unchanged is an open
question only a live import settles (clouds.md §8 question 3); docs/aws-vm.md says how to check it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws.artifact_store import tls_only_policy
from teeform.errors import TeeformError
from teeform.manifest import check_artifact_file

#: The VM Import service principal and the external id its trust policy requires (VM Import/Export
#: user guide, "Required service role": ``"Condition": {"StringEquals": {"sts:Externalid": "vmimport"}}``).
VMIE_SERVICE = "vmie.amazonaws.com"
VMIE_EXTERNAL_ID = "vmimport"
#: S3 read actions the service role needs on the bucket and the disk object (same page).
VMIMPORT_S3_BUCKET_ACTIONS = ("s3:GetBucketLocation", "s3:ListBucket")
VMIMPORT_S3_OBJECT_ACTIONS = ("s3:GetObject",)
#: EC2 actions of the same page that a snapshot import uses (``Resource: "*"``: these actions take
#: no resource-level permission for a snapshot that does not exist yet).
VMIMPORT_EC2_ACTIONS = ("ec2:ModifySnapshotAttribute", "ec2:CopySnapshot", "ec2:Describe*")

#: The AMI's root device (AWS sample ``create-ami.nix``: ``--root-device-name /dev/xvda``).
ROOT_DEVICE = "/dev/xvda"


def disk_object_key(sha384: str) -> str:
    """``vm-image/sha384/<hex>.raw``: the raw disk's object key, named by its SHA-384 (manifest ``artifact.sha384``)."""
    return f"vm-image/sha384/{sha384}.raw"


def check_disk_file(path: Path, size: int, sha384: str, manifest_path: Path) -> None:
    """Check that the raw disk at ``path`` is the one ``manifest_path`` describes.

    Raises:
        TeeformError: (naming ``path``) not a ``.raw`` file, missing, or its size or SHA-384 differ.
    """
    if path.suffix != ".raw":
        raise TeeformError(f"the manifest's artifact {path.name} is not a raw disk (.raw); ImportSnapshot needs "
                           "format RAW", path=manifest_path, field="artifact.file_name",
                           hint="build with `teeform build vm-image --format raw` and list the .raw manifest")
    check_artifact_file(path, what="raw disk", size=size, algorithm="sha384", digest=sha384, manifest_path=manifest_path,
                        build_hint="`teeform build vm-image ...` or scripts/vm-demo.sh")


def vmimport_trust_policy() -> dict[str, Any]:
    """The service role's trust policy: ``sts:AssumeRole`` by :data:`VMIE_SERVICE` with the ``vmimport`` external id."""
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": VMIE_SERVICE},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:Externalid": VMIE_EXTERNAL_ID}},
        }],
    }


def vmimport_permissions(bucket_arn: str, object_key: str) -> dict[str, Any]:
    """The service role's permissions: read the one disk object and its bucket, handle the snapshot."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ReadDiskBucket", "Effect": "Allow", "Action": list(VMIMPORT_S3_BUCKET_ACTIONS), "Resource": bucket_arn},
            {"Sid": "ReadDisk", "Effect": "Allow", "Action": list(VMIMPORT_S3_OBJECT_ACTIONS),
             "Resource": f"{bucket_arn}/{object_key}"},
            {"Sid": "ImportSnapshot", "Effect": "Allow", "Action": list(VMIMPORT_EC2_ACTIONS), "Resource": "*"},
        ],
    }


@dataclass
class VmImagePipelineArgs:
    """Inputs of :class:`VmImagePipeline`.

    Attributes:
        bucket_name: explicit bucket name (known at preview).
        role_name: explicit name of the VM Import service role (known at preview).
        ami_name: the AMI name (unique per account and region).
        disk_path: local raw disk; disk_size (bytes) and disk_sha384 (hex) from the manifest.
        manifest_path: the manifest the disk belongs to (for messages).
        force_destroy: let ``pulumi destroy`` delete a non-empty bucket (dev stacks).
        tags: tags of every taggable child.
    """

    bucket_name: pulumi.Input[str]
    role_name: str
    ami_name: str
    disk_path: Path
    disk_size: int
    disk_sha384: str
    manifest_path: Path
    force_destroy: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)


class VmImagePipeline(pulumi.ComponentResource):
    """Bucket + disk object + ``vmimport`` role + SnapshotImport (RAW) + UEFI/NitroTPM AMI.

    Outputs: ``bucket_name``, ``disk_uri`` (``s3://bucket/key``), ``snapshot_id``, ``ami_id``.

    Raises:
        TeeformError: (before anything is registered) the disk does not match the manifest.
    """

    ami_id: pulumi.Output[str]
    disk_uri: pulumi.Output[str]

    def __init__(self, name: str, args: VmImagePipelineArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        check_disk_file(args.disk_path, args.disk_size, args.disk_sha384, args.manifest_path)
        super().__init__("teeform:aws:VmImagePipeline", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        bucket = aws.s3.Bucket(f"{name}-bucket", bucket=args.bucket_name, force_destroy=args.force_destroy, tags=tags,
                               opts=child)
        aws.s3.BucketVersioning(
            f"{name}-versioning", bucket=bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"), opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-sse", bucket=bucket.id,
            rules=[aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                    sse_algorithm="AES256"),
            )],
            opts=child,
        )
        block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access-block", bucket=bucket.id, block_public_acls=True, block_public_policy=True,
            ignore_public_acls=True, restrict_public_buckets=True, opts=child,
        )
        after_block = pulumi.ResourceOptions(parent=self, depends_on=[block])
        aws.s3.BucketPolicy(
            f"{name}-tls-only", bucket=bucket.bucket,
            policy=bucket.arn.apply(lambda arn: json.dumps(tls_only_policy(arn), indent=2)), opts=after_block,
        )
        key = disk_object_key(args.disk_sha384)
        disk = aws.s3.BucketObjectv2(
            f"{name}-disk", bucket=bucket.id, key=key, source=pulumi.FileAsset(str(args.disk_path)),
            source_hash=args.disk_sha384, content_type="application/octet-stream", opts=after_block,
        )
        role = aws.iam.Role(
            f"{name}-vmimport", name=args.role_name, description="teeform: VM Import service role (ImportSnapshot)",
            assume_role_policy=json.dumps(vmimport_trust_policy(), indent=2), tags=tags, opts=child,
        )
        role_policy = aws.iam.RolePolicy(
            f"{name}-vmimport-policy", role=role.name,
            policy=bucket.arn.apply(lambda arn: json.dumps(vmimport_permissions(arn, key), indent=2)), opts=child,
        )
        snapshot = aws.ebs.SnapshotImport(
            f"{name}-snapshot",
            disk_container=aws.ebs.SnapshotImportDiskContainerArgs(
                format="RAW",
                user_bucket=aws.ebs.SnapshotImportDiskContainerUserBucketArgs(s3_bucket=bucket.bucket, s3_key=key),
                description=f"teeform raw disk sha384:{args.disk_sha384[:16]}",
            ),
            role_name=role.name,
            encrypted=True,
            description=f"teeform {args.ami_name}",
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[disk, role_policy]),
        )
        ami = aws.ec2.Ami(
            f"{name}-ami",
            name=args.ami_name,
            description="teeform UKI + dm-verity image (UEFI, NitroTPM 2.0, IMDSv2)",
            virtualization_type="hvm",
            architecture="x86_64",
            boot_mode="uefi",
            tpm_support="v2.0",
            imds_support="v2.0",
            ena_support=True,
            root_device_name=ROOT_DEVICE,
            ebs_block_devices=[aws.ec2.AmiEbsBlockDeviceArgs(
                device_name=ROOT_DEVICE, snapshot_id=snapshot.id, volume_type="gp3", delete_on_termination=True,
            )],
            tags=tags,
            opts=child,
        )
        self.bucket_name = bucket.bucket
        self.disk_uri = bucket.bucket.apply(lambda b: f"s3://{b}/{key}")
        self.snapshot_id = snapshot.id
        self.ami_id = ami.id
        self.register_outputs({"bucket_name": self.bucket_name, "disk_uri": self.disk_uri,
                               "snapshot_id": self.snapshot_id, "ami_id": self.ami_id})


__all__ = ["VmImagePipeline", "VmImagePipelineArgs", "check_disk_file", "disk_object_key", "vmimport_trust_policy",
           "vmimport_permissions", "VMIMPORT_EC2_ACTIONS", "ROOT_DEVICE"]
