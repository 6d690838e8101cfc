"""``ArtifactStore``: a private, versioned, KMS-encrypted S3 bucket holding the EIF and its manifest.

Objects live under content-addressed keys (:func:`eif_object_key`, :func:`manifest_object_key`), so a
new build is a new object and the host's ``s3:GetObject`` grant names exactly one image. The bucket
uses SSE-KMS with the AWS-managed ``aws/s3`` key, not the attested key: S3 decrypts on the host's
behalf without an attestation document, which the attested key would (rightly) refuse. All four
public-access blocks are on, and the bucket policy (:func:`tls_only_policy`) denies every request
made without TLS.

The EIF is identified by its SHA-256 (the manifest's ``artifact.sha256``; manifest schema 2 no longer
records the file's SHA-384 for EIFs -- the SHA-384 values attestation uses are the PCRs). Before
anything is registered the local EIF is checked against the manifest (size and SHA-256, streamed), so
a stale or missing file fails the preview instead of uploading the wrong bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws

from teeform.manifest import check_artifact_file


def eif_object_key(sha256: str) -> str:
    """``eif/sha256/<hex>.eif``: the EIF's object key, named by its SHA-256 (manifest ``artifact.sha256``,
    64 lowercase hex)."""
    return f"eif/sha256/{sha256}.eif"


def manifest_object_key(sha256: str) -> str:
    """``manifests/sha256/<hex>.json``: the manifest's object key, named by the SHA-256 of its bytes."""
    return f"manifests/sha256/{sha256}.json"


def tls_only_policy(bucket_arn: str) -> dict[str, object]:
    """The artifact bucket's policy: one ``Deny`` of ``s3:*`` to every principal on the bucket and
    its objects when ``aws:SecureTransport`` is ``"false"`` (the request did not use TLS).

    Source: Amazon S3 user guide, "Security best practices for Amazon S3" (enforce encryption of
    data in transit with ``aws:SecureTransport``) and the AWS Config rule
    ``s3-bucket-ssl-requests-only``; the ``Bool`` operator and the key are from the IAM global
    condition context keys reference. A Deny-only policy is not "public" for S3 Block Public
    Access, so it coexists with ``block_public_policy``.
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn, f"{bucket_arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


def check_eif_file(path: Path, size: int, sha256: str, manifest_path: Path) -> None:
    """Check that the EIF at ``path`` is the one ``manifest_path`` describes: ``size`` bytes and SHA-256
    ``sha256`` (the manifest's ``artifact.size`` / ``artifact.sha256``).

    Raises:
        TeeformError: the file is missing (a manifest without its EIF), or its size or SHA-256 differ.
    """
    check_artifact_file(path, what="EIF", size=size, algorithm="sha256", digest=sha256, manifest_path=manifest_path,
                        build_hint="`teeform build eif ...` or `make demo`")


@dataclass
class ArtifactStoreArgs:
    """Inputs of :class:`ArtifactStore`.

    Attributes:
        bucket_name: explicit bucket name (known at preview, so user data and policies are too).
        eif_path: local EIF file; eif_size (bytes) and eif_sha256 (64 lowercase hex) from the manifest's
            ``artifact``.
        manifest_path: local manifest file; manifest_sha256: SHA-256 (hex) of its bytes.
        force_destroy: let ``pulumi destroy`` delete a non-empty bucket (dev stacks).
    """

    bucket_name: pulumi.Input[str]
    eif_path: Path
    eif_size: int
    eif_sha256: str
    manifest_path: Path
    manifest_sha256: str
    force_destroy: bool = False


class ArtifactStore(pulumi.ComponentResource):
    """Bucket + versioning + SSE-KMS + public access block + TLS-only bucket policy + the EIF and
    manifest objects.

    Outputs: ``bucket_name``, ``bucket_arn``, ``eif_key``, ``eif_uri`` (``s3://bucket/key``), ``manifest_key``.
    """

    bucket_name: pulumi.Output[str]
    eif_uri: pulumi.Output[str]

    def __init__(self, name: str, args: ArtifactStoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("teeform:aws:ArtifactStore", name, None, opts)
        check_eif_file(args.eif_path, args.eif_size, args.eif_sha256, args.manifest_path)
        child = pulumi.ResourceOptions(parent=self)
        bucket = aws.s3.Bucket(f"{name}-bucket", bucket=args.bucket_name, force_destroy=args.force_destroy, opts=child)
        aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-sse",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="aws:kms"
                    ),
                    bucket_key_enabled=True,
                )
            ],
            opts=child,
        )
        block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access-block",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=bucket.bucket,
            policy=bucket.arn.apply(lambda arn: json.dumps(tls_only_policy(arn), indent=2)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[block]),
        )
        self.eif_key = eif_object_key(args.eif_sha256)
        self.manifest_key = manifest_object_key(args.manifest_sha256)
        objects = pulumi.ResourceOptions(parent=self, depends_on=[block])
        aws.s3.BucketObjectv2(
            f"{name}-eif",
            bucket=bucket.id,
            key=self.eif_key,
            source=pulumi.FileAsset(str(args.eif_path)),
            source_hash=args.eif_sha256,
            content_type="application/octet-stream",
            server_side_encryption="aws:kms",
            opts=objects,
        )
        aws.s3.BucketObjectv2(
            f"{name}-manifest",
            bucket=bucket.id,
            key=self.manifest_key,
            source=pulumi.FileAsset(str(args.manifest_path)),
            source_hash=args.manifest_sha256,
            content_type="application/json",
            server_side_encryption="aws:kms",
            opts=objects,
        )
        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.eif_uri = bucket.bucket.apply(lambda b: f"s3://{b}/{self.eif_key}")
        self.register_outputs(
            {
                "bucket_name": self.bucket_name,
                "bucket_arn": self.bucket_arn,
                "eif_key": self.eif_key,
                "eif_uri": self.eif_uri,
                "manifest_key": self.manifest_key,
            }
        )
