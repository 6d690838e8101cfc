"""``AttestedKey``: an AWS KMS key that releases plaintext only to an attested Nitro Enclave.

The key policy (built by the pure :func:`build_key_policy`) has three statements:

1. ``KeyAdministration`` -- the admin principals (default: the account root, which delegates to IAM)
   may manage the key (:data:`ADMIN_ACTIONS`) but get **no** cryptographic operation that returns
   plaintext: no Decrypt, GenerateDataKey*, ReEncrypt*, GenerateRandom, DeriveSharedSecret and no
   ``kms:*`` wildcard. ``kms:CreateGrant`` is withheld too: a grant can carry Decrypt to any grantee
   and cannot carry attestation conditions, so ``kms:Create*`` would be a way around statement 2
   (only ``kms:CreateAlias`` is granted).
2. ``EnclaveUseWithAttestation`` -- the enclave host role may call :data:`ENCLAVE_ACTIONS` only
   with a Nitro attestation document whose measurements match: ``StringEqualsIgnoreCase`` on
   ``kms:RecipientAttestation:PCR0`` (and PCR1/PCR2/PCR8, ``ImageSha384`` as the target's
   ``attestation`` config says). Each value is a **list** of the allowed manifests' values (lowercase,
   96 hex digits); IAM ORs the values of one key and ANDs the keys, so with two manifests both images
   are accepted during a rollout. PCR0 digests the whole image (eif-nitro.md §2.2), so mixing one
   manifest's PCR0 with another's PCR1 cannot admit an image that neither manifest describes.
3. ``DeployerSeal`` -- the deployer principal (who runs ``pulumi up``) may ``kms:Encrypt`` and
   ``kms:DescribeKey``, so secrets can be sealed to the key (``teeform seal``), never unsealed.

Source of the condition keys and operator: eif-nitro.md §5.1 and §5.3 (KMS developer guide,
"conditions-nitro-enclave"); key policy grammar: IAM JSON policy reference (Version 2012-10-17).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from teeform.errors import TeeformError

#: Key-management actions for administrators (AWS's default key-administrator list, without
#: ``kms:Create*``: see the module docstring on grants).
ADMIN_ACTIONS = (
    "kms:CreateAlias",
    "kms:Describe*",
    "kms:Enable*",
    "kms:List*",
    "kms:Put*",
    "kms:Update*",
    "kms:Revoke*",
    "kms:Disable*",
    "kms:Get*",
    "kms:Delete*",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
    "kms:RotateKeyOnDemand",
)

#: What the attested enclave may do (eif-nitro.md §5.3).
ENCLAVE_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateRandom")

#: What the deployer may do: seal, never unseal.
SEAL_ACTIONS = ("kms:Encrypt", "kms:DescribeKey")

CONDITION_PREFIX = "kms:RecipientAttestation:"
_HEX96 = re.compile(r"^[0-9a-f]{96}$")


@dataclass(frozen=True)
class AllowedImage:
    """One image the key may be released to: its export name and its measurements
    (``PCR0``, ``PCR1``, ``PCR2``, optional ``PCR8``, ``ImageSha384``; 96 lowercase hex digits)."""

    name: str
    measurements: Mapping[str, str]


def attestation_conditions(
    images: Sequence[AllowedImage], pcrs: Sequence[str], image_sha384: bool
) -> dict[str, list[str]]:
    """The ``StringEqualsIgnoreCase`` block: condition key -> allowed values, in image order.

    Args:
        images: the allowed images (first = deployed); at least one.
        pcrs: PCR names to pin (``PCR0`` required; ``PCR1``, ``PCR2``, ``PCR8`` optional).
        image_sha384: also pin ``kms:RecipientAttestation:ImageSha384`` (= PCR0, eif-nitro.md §2.5).

    Returns:
        e.g. ``{"kms:RecipientAttestation:PCR0": ["ab..", "cd.."], ...}`` with duplicates removed.

    Raises:
        TeeformError: no images, PCR0 not pinned, or an image lacks a pinned measurement (e.g. PCR8
            of an unsigned EIF) or has one that is not 96 lowercase hex digits.
    """
    if not images:
        raise TeeformError("a key needs at least one allowed image")
    if "PCR0" not in pcrs:
        raise TeeformError(f"the key policy must pin PCR0, got {list(pcrs)}", field="attestation.pcrs")
    names = list(pcrs) + (["ImageSha384"] if image_sha384 else [])
    out: dict[str, list[str]] = {}
    for m in names:
        values: list[str] = []
        for img in images:
            v = img.measurements.get(m)
            if v is None:
                hint = "sign the EIF (PCR8 is the signing certificate) or drop PCR8 from attestation.pcrs" if m == "PCR8" else None
                raise TeeformError(f"manifest {img.name!r} has no {m} measurement to pin", field="attestation.pcrs", hint=hint)
            v = v.lower()
            if not _HEX96.match(v):
                raise TeeformError(f"manifest {img.name!r}: {m} must be 96 hex digits, got {v!r}")
            if v not in values:
                values.append(v)
        out[CONDITION_PREFIX + m] = values
    return out


def build_key_policy(
    *,
    admin_arns: Sequence[str],
    enclave_role_arn: str,
    deployer_arn: str,
    conditions: Mapping[str, Sequence[str]],
) -> dict[str, Any]:
    """The key policy document (a dict; ``json.dumps`` it for ``aws.kms.Key(policy=...)``).

    Args:
        admin_arns: key administrators (IAM ARNs; the account root ``arn:aws:iam::<id>:root`` delegates to IAM).
        enclave_role_arn: the enclave host's instance role (``arn:aws:iam::<id>:role/<name>``).
        deployer_arn: the principal that seals secrets (Encrypt + DescribeKey only).
        conditions: from :func:`attestation_conditions`.

    Returns:
        ``{"Version": "2012-10-17", "Statement": [admin, enclave, deployer]}`` (see the module docstring).
    """
    if not admin_arns:
        raise TeeformError("a key needs at least one administrator principal")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "KeyAdministration",
                "Effect": "Allow",
                "Principal": {"AWS": list(admin_arns)},
                "Action": list(ADMIN_ACTIONS),
                "Resource": "*",
            },
            {
                "Sid": "EnclaveUseWithAttestation",
                "Effect": "Allow",
                "Principal": {"AWS": enclave_role_arn},
                "Action": list(ENCLAVE_ACTIONS),
                "Resource": "*",
                "Condition": {"StringEqualsIgnoreCase": {k: list(v) for k, v in conditions.items()}},
            },
            {
                "Sid": "DeployerSeal",
                "Effect": "Allow",
                "Principal": {"AWS": deployer_arn},
                "Action": list(SEAL_ACTIONS),
                "Resource": "*",
            },
        ],
    }


@dataclass
class AttestedKeyArgs:
    """Inputs of :class:`AttestedKey`.

    Attributes:
        enclave_role_arn: ARN of the enclave host's IAM role (statement 2 principal).
        deployer_arn: ARN allowed to Encrypt (statement 3 principal).
        admin_arns: administrator ARNs (statement 1).
        images: allowed images (first = deployed).
        pcrs: PCRs to pin; image_sha384: also pin ImageSha384.
        deletion_window_days: 7..30 (KMS limits).
        protect: Pulumi ``protect`` on the key (refuse ``pulumi destroy``).
        alias_name: ``alias/...``.
        description: key description.
    """

    enclave_role_arn: pulumi.Input[str]
    deployer_arn: pulumi.Input[str]
    admin_arns: pulumi.Input[Sequence[str]]
    images: Sequence[AllowedImage]
    pcrs: Sequence[str]
    image_sha384: bool
    deletion_window_days: int
    protect: bool
    alias_name: str
    description: str = "teeform attested key (released only to measured Nitro Enclaves)"


class AttestedKey(pulumi.ComponentResource):
    """A symmetric KMS key (rotation on) whose plaintext operations need a Nitro attestation document,
    plus its alias. Outputs: ``key_arn``, ``key_id``, ``alias_name``.

    Raises:
        TeeformError: (before anything is registered) a deletion window outside 7..30 days, or
            measurements that :func:`attestation_conditions` refuses.
    """

    key_arn: pulumi.Output[str]
    key_id: pulumi.Output[str]

    def __init__(self, name: str, args: AttestedKeyArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # Checked before anything is registered (not inside apply), so configuration errors stop the
        # program before any resource, this component included.
        if not 7 <= args.deletion_window_days <= 30:
            raise TeeformError(f"deletion window must be 7..30 days, got {args.deletion_window_days}",
                               field="key.deletionWindowDays")
        conditions = attestation_conditions(args.images, args.pcrs, args.image_sha384)
        super().__init__("teeform:aws:AttestedKey", name, None, opts)
        policy = pulumi.Output.all(args.admin_arns, args.enclave_role_arn, args.deployer_arn).apply(
            lambda v: json.dumps(
                build_key_policy(admin_arns=v[0], enclave_role_arn=v[1], deployer_arn=v[2], conditions=conditions),
                indent=2,
            )
        )
        self.key = aws.kms.Key(
            f"{name}-kms",
            description=args.description,
            key_usage="ENCRYPT_DECRYPT",
            customer_master_key_spec="SYMMETRIC_DEFAULT",
            enable_key_rotation=True,
            deletion_window_in_days=args.deletion_window_days,
            policy=policy,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        self.alias = aws.kms.Alias(
            f"{name}-alias",
            name=args.alias_name,
            target_key_id=self.key.key_id,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.key_arn = self.key.arn
        self.key_id = self.key.key_id
        self.register_outputs({"key_arn": self.key_arn, "key_id": self.key_id, "alias_name": args.alias_name})
