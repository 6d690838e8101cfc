"""``TpmAttestedKey``: an AWS KMS key that releases plaintext only to a VM whose NitroTPM measured our image.

What the gate pins: **our image**, through the NitroTPM PCRs that AWS's UEFI firmware (PCR4: the boot
applications, i.e. the UKI's Authenticode digest) and systemd-stub (PCR12: command-line overrides,
all zero without add-ons; PCR11: the UKI sections) extend, as reported in a NitroTPM attestation
document signed by the Nitro hypervisor. The key policy (built by the pure :func:`build_tpm_key_policy`
from the target's cloud-neutral :class:`~teeform.keyrelease.KeyReleasePolicy`) has the statements of
:mod:`components.aws.attested_key` with the release statements rendered for NitroTPM:

1. ``KeyAdministration`` -- key management without any plaintext operation, ``kms:CreateGrant`` or
   ``kms:*`` (:data:`~components.aws.attested_key.ADMIN_ACTIONS`; without ``kms:Put*`` when locked).
2. ``NitroTpmRelease1`` .. ``NitroTpmRelease<n>`` -- **one statement per allowed manifest**: the VM's
   instance role may call ``kms:Decrypt`` / ``kms:GenerateDataKey`` only with a NitroTPM attestation
   document (the request's ``Recipient``) whose PCRs equal that manifest's:
   ``StringEqualsIgnoreCase`` on ``kms:RecipientAttestation:NitroTPMPCR4`` = ``pcr4_sha384`` and
   ``kms:RecipientAttestation:NitroTPMPCR12`` = ``pcr12_sha384`` (and ``NitroTPMPCR11`` when
   configured), lower-case SHA-384 hex. IAM ANDs the keys of one statement and ORs statements, so
   values of different builds are never combined. With a private network the statements also
   require ``aws:SourceVpce`` = the KMS interface endpoint.
3. ``DeployerSeal`` -- the deployer may ``kms:Encrypt`` and ``kms:DescribeKey`` (``teeform seal``).
4. With ``policyUpdates: locked``: ``BreakGlassPolicyUpdate`` and ``DenyPolicyUpdateExceptBreakGlass``.

``kms:GenerateRandom`` is not granted: it uses no key (so a key policy cannot grant it), and its
``Recipient`` accepts only Nitro Enclaves documents (KMS API reference, GenerateRandom; eif-nitro.md §5.2).

Sources: condition keys ``kms:RecipientAttestation:NitroTPMPCR<PCR_ID>``, String, "a lower-case
hexadecimal string of up to 96 bytes", example operator ``StringEqualsIgnoreCase`` (AWS KMS developer
guide "conditions-nitro-tpm", https://docs.aws.amazon.com/kms/latest/developerguide/conditions-nitro-tpm.html);
which PCRs ("Use PCR4 and PCR12 measurements for standard boot or PCR7 measurements for Secure Boot",
EC2 user guide "prepare-attestation-service"); why PCR12 is mandatory with PCR4 (advisory
GHSA-xrv8-2pf5-f3q7). All in ``shared/reference/clouds.md`` §1.1.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi

from components.aws.attested_key import (
    CONDITION_OPERATOR,
    SOURCE_VPCE_KEY,
    assemble_key_policy,
    check_deletion_window,
    finish_kms_key,
    register_kms_key,
)
from teeform.errors import TeeformError
from teeform.keyrelease import KeyReleasePolicy
from teeform.targets.aws_nitro_tpm import NITROTPM_PCR_MEASUREMENTS, condition_key

#: What the attested VM may do under the key policy.
VM_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey")
#: Sid prefix of the per-manifest release statements (alphanumeric: IAM grammar).
RELEASE_SID = "NitroTpmRelease"

#: Manifest measurement name -> condition key (``pcr4_sha384`` -> ``kms:RecipientAttestation:NitroTPMPCR4``).
CONDITION_KEYS: dict[str, str] = {m: condition_key(p) for p, m in NITROTPM_PCR_MEASUREMENTS.items()}


def _checked(policy: KeyReleasePolicy) -> None:
    if not policy.sets:
        raise TeeformError(f"target {policy.target!r}: a key needs at least one allowed manifest")
    for ms in policy.sets:
        names = set(ms.values)
        unknown = sorted(names - set(CONDITION_KEYS))
        if unknown:
            raise TeeformError(f"manifest {ms.manifest_key!r}: {unknown} are not NitroTPM PCR measurements",
                               field="attestation.pcrs")
        if "pcr4_sha384" not in names or not {"pcr12_sha384", "pcr7_sha384"} & names:
            raise TeeformError(f"manifest {ms.manifest_key!r}: a NitroTPM key must pin PCR4 with PCR12 (or PCR7), got "
                               f"{sorted(names)}", field="attestation.pcrs")


def tpm_release_statements(policy: KeyReleasePolicy, vm_role_arn: str, *,
                           source_vpce: str | None = None) -> list[dict[str, Any]]:
    """Render ``policy`` as KMS key-policy statements, one per measurement set (see the module docstring).

    Args:
        policy: the target's measurement sets (names from :data:`CONDITION_KEYS`, lowercase hex values).
        vm_role_arn: the principal of every statement (the VM's instance role).
        source_vpce: a VPC endpoint id (``vpce-...``) the requests must come through, or None.

    Raises:
        TeeformError: no set, a name that is no NitroTPM PCR, or a set without PCR4 + PCR12/PCR7.
    """
    _checked(policy)
    out = []
    for i, ms in enumerate(policy.sets, 1):
        cond: dict[str, Any] = {CONDITION_OPERATOR: {CONDITION_KEYS[k]: v for k, v in ms.values.items()}}
        if source_vpce is not None:
            cond["StringEquals"] = {SOURCE_VPCE_KEY: source_vpce}
        out.append({
            "Sid": f"{RELEASE_SID}{i}",
            "Effect": "Allow",
            "Principal": {"AWS": vm_role_arn},
            "Action": list(VM_ACTIONS),
            "Resource": "*",
            "Condition": cond,
        })
    return out


def build_tpm_key_policy(*, admin_arns: Sequence[str], vm_role_arn: str, deployer_arn: str,
                         release: KeyReleasePolicy, break_glass_arn: str | None = None,
                         source_vpce: str | None = None) -> dict[str, Any]:
    """The key policy document (a dict; ``json.dumps`` it for ``aws.kms.Key(policy=...)``).

    The administration, seal and break-glass statements are those of
    :func:`components.aws.attested_key.build_key_policy` (one implementation,
    :func:`components.aws.attested_key.assemble_key_policy`); only the release statements differ
    (:func:`tpm_release_statements`).

    Returns:
        ``{"Version": "2012-10-17", "Statement": [admin, release 1..n, deployer(, break-glass, deny)]}``.

    Raises:
        TeeformError: no administrator, or a release policy :func:`tpm_release_statements` refuses.
    """
    return assemble_key_policy(
        admin_arns=admin_arns,
        deployer_arn=deployer_arn,
        release=lambda: tpm_release_statements(release, vm_role_arn, source_vpce=source_vpce),
        break_glass_arn=break_glass_arn,
    )


@dataclass
class TpmKeyArgs:
    """Inputs of :class:`TpmAttestedKey`.

    Attributes:
        vm_role_arn: ARN of the VM's instance role (release-statement principal).
        deployer_arn: ARN allowed to Encrypt (``DeployerSeal``).
        admin_arns: administrator ARNs.
        release: the target's measurement sets (one release statement each).
        deletion_window_days: 7..30 (KMS limits).
        protect: Pulumi ``protect`` on the key.
        alias_name: ``alias/...``.
        break_glass_arn: ``policyUpdates: locked``: the only role that may change the key policy.
        source_vpce: KMS interface endpoint id the release statements require, or None.
        tags: key tags (``teeform:target`` names the target whose manifests the key pins).
    """

    vm_role_arn: pulumi.Input[str]
    deployer_arn: pulumi.Input[str]
    admin_arns: pulumi.Input[Sequence[str]]
    release: KeyReleasePolicy
    deletion_window_days: int
    protect: bool
    alias_name: str
    break_glass_arn: str | None = None
    source_vpce: pulumi.Input[str] | None = None
    description: str = "teeform NitroTPM-attested key (released only to VMs whose NitroTPM PCRs are our image's)"
    tags: Mapping[str, str] = field(default_factory=dict)


class TpmAttestedKey(pulumi.ComponentResource):
    """A symmetric KMS key (rotation on) whose plaintext operations need a NitroTPM attestation document
    of an allowed manifest, and its alias. Outputs: ``key_arn``, ``key_id``, ``alias_name``.

    Raises:
        TeeformError: (before anything is registered) a deletion window outside 7..30 days, or a
            release policy :func:`tpm_release_statements` refuses.
    """

    key_arn: pulumi.Output[str]
    key_id: pulumi.Output[str]

    def __init__(self, name: str, args: TpmKeyArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        check_deletion_window(args.deletion_window_days)
        tpm_release_statements(args.release, "arn:aws:iam::000000000000:role/check")  # validate before registering
        release, glass = args.release, args.break_glass_arn
        super().__init__("teeform:aws:TpmAttestedKey", name, None, opts)
        policy = pulumi.Output.all(args.admin_arns, args.vm_role_arn, args.deployer_arn, args.source_vpce).apply(
            lambda v: json.dumps(
                build_tpm_key_policy(admin_arns=v[0], vm_role_arn=v[1], deployer_arn=v[2], release=release,
                                     break_glass_arn=glass, source_vpce=v[3]),
                indent=2,
            )
        )
        self.key = register_kms_key(self, name, policy=policy, description=args.description,
                                    deletion_window_days=args.deletion_window_days, locked=glass is not None,
                                    tags=args.tags, protect=args.protect)
        self.alias = finish_kms_key(self, name, args.alias_name)


__all__ = ["VM_ACTIONS", "RELEASE_SID", "CONDITION_KEYS", "tpm_release_statements", "build_tpm_key_policy",
           "TpmKeyArgs", "TpmAttestedKey"]
