"""``AttestedKey``: an AWS KMS key that releases plaintext only to an attested Nitro Enclave.

What the gate pins: **our image's PCRs**. The key policy (built by the pure :func:`build_key_policy`
from the target's cloud-neutral :class:`~teeform.keyrelease.KeyReleasePolicy`) has these statements:

1. ``KeyAdministration`` -- the admin principals (default: the account root, which delegates to IAM)
   may manage the key (:data:`ADMIN_ACTIONS`) but get **no** cryptographic operation that returns
   plaintext: no Decrypt, GenerateDataKey*, ReEncrypt*, GenerateRandom, DeriveSharedSecret and no
   ``kms:*`` wildcard. ``kms:CreateGrant`` is withheld too: a grant can carry Decrypt to any grantee
   and cannot carry attestation conditions, so ``kms:Create*`` would be a way around the release
   statements (only ``kms:CreateAlias`` is granted).
2. ``EnclaveRelease1`` .. ``EnclaveRelease<n>`` -- **one statement per allowed manifest**: the
   enclave host role may call :data:`ENCLAVE_ACTIONS` only with a Nitro attestation document whose
   measurements equal that manifest's: ``StringEqualsIgnoreCase`` with one value per key on
   ``kms:RecipientAttestation:PCR0`` (and PCR1/PCR2/PCR8, ``ImageSha384`` as the target's
   ``attestation`` config says). IAM ANDs the keys inside a statement and ORs the statements, so
   during a rollout with manifests A and B the key is released to (A.PCR0, A.PCR1, ...) or
   (B.PCR0, B.PCR1, ...), never to a mix such as (A.PCR0, B.PCR1) (a single statement listing every
   PCR0 and every PCR1 would allow that cross-product). With a private network the statements also
   require ``aws:SourceVpce`` (``StringEquals``) = the KMS interface endpoint (IAM global condition
   keys reference, ``aws:SourceVpce``: "the VPC endpoint identifier of the request").
3. ``DeployerSeal`` -- the deployer principal (who runs ``pulumi up``) may ``kms:Encrypt`` and
   ``kms:DescribeKey``, so secrets can be sealed to the key (``teeform seal``), never unsealed.
4. Only with ``policyUpdates: locked``: ``BreakGlassPolicyUpdate`` (the break-glass role may
   ``kms:PutKeyPolicy``) and ``DenyPolicyUpdateExceptBreakGlass`` (an explicit Deny of
   ``kms:PutKeyPolicy`` to every principal whose ``aws:PrincipalArn`` is not the break-glass role;
   an explicit Deny overrides every Allow, IAM "policy evaluation logic"). The admins then get
   :data:`ADMIN_ACTIONS` without ``kms:Put*``, and the key is created with
   ``bypass_policy_lockout_safety_check=True``, because the deployer is -- deliberately -- no longer
   allowed a subsequent PutKeyPolicy (KMS API reference, CreateKey ``BypassPolicyLockoutSafetyCheck``).

**Why the lock matters.** Whoever may call ``kms:PutKeyPolicy`` on the key (an admin; with the
account root as admin, any IAM principal of the account whose IAM policy grants it) can replace the
policy with one that allows Decrypt without attestation, and then decrypt every sealed secret. In
``locked`` mode only the break-glass role can; a change of allowed manifests then needs a new key
and re-sealing (``teeform seal``), because ``pulumi up`` can no longer update the policy.

``kms:GenerateRandom`` is **not** in the key policy: it does not operate on a key, so a key policy
cannot authorise it; AWS documents it in IAM policies with ``"Resource": "*"`` (KMS developer guide,
"Specifying KMS keys in IAM policy statements": use ``*`` "for operations that don't use any
particular KMS key, namely CreateKey, GenerateRandom, ..."). :func:`generate_random_policy` renders
it for the host role, one statement per manifest with the same attestation conditions.

Sources: condition keys and operator, AWS KMS developer guide "conditions-nitro-enclave"
(eif-nitro.md §5.1, §5.3); key policy grammar and evaluation (keys ANDed, values ORed, statements
ORed), IAM JSON policy element reference "Condition" (Version 2012-10-17).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from teeform.errors import TeeformError
from teeform.keyrelease import KeyReleasePolicy

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

#: What the attested enclave may do under the key policy (eif-nitro.md §5.3, without GenerateRandom:
#: see the module docstring).
ENCLAVE_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey")

#: Granted in the host role's IAM policy (``Resource: "*"``), with the attestation conditions.
IAM_ONLY_ACTIONS = ("kms:GenerateRandom",)

#: What the break-glass role of a locked key may do.
BREAK_GLASS_ACTIONS = ("kms:PutKeyPolicy", "kms:GetKeyPolicy", "kms:DescribeKey")

#: What the deployer may do: seal, never unseal.
SEAL_ACTIONS = ("kms:Encrypt", "kms:DescribeKey")

CONDITION_PREFIX = "kms:RecipientAttestation:"
CONDITION_OPERATOR = "StringEqualsIgnoreCase"
#: Sid prefix of the per-manifest release statements (Sids are alphanumeric: IAM grammar).
RELEASE_SID = "EnclaveRelease"
#: Sid prefix of the per-manifest GenerateRandom statements of the host role's IAM policy.
RANDOM_SID = "GenerateRandomAttested"
#: IAM global condition key: the id of the VPC endpoint a request came through.
SOURCE_VPCE_KEY = "aws:SourceVpce"


def _conditions(values: Mapping[str, str], source_vpce: str | None) -> dict[str, Any]:
    cond: dict[str, Any] = {CONDITION_OPERATOR: {CONDITION_PREFIX + k: v for k, v in values.items()}}
    if source_vpce is not None:
        cond["StringEquals"] = {SOURCE_VPCE_KEY: source_vpce}
    return cond


def _checked_sets(policy: KeyReleasePolicy) -> None:
    if not policy.sets:
        raise TeeformError(f"target {policy.target!r}: a key needs at least one allowed manifest")
    for ms in policy.sets:
        if not {"PCR0", "ImageSha384", "PCR8"} & set(ms.values):
            raise TeeformError(f"manifest {ms.manifest_key!r}: the key policy must pin PCR0, got {list(ms.values)}",
                               field="attestation.pcrs")


def release_statements(policy: KeyReleasePolicy, enclave_role_arn: str, *,
                       source_vpce: str | None = None) -> list[dict[str, Any]]:
    """Render ``policy`` as KMS key-policy statements: one per measurement set, each requiring all
    of that set's values together (see the module docstring).

    Args:
        policy: the target's measurement sets.
        enclave_role_arn: the principal of every statement.
        source_vpce: a VPC endpoint id (``vpce-...``) the requests must come through, or None.

    Raises:
        TeeformError: the policy has no set, or a set does not pin PCR0 / ImageSha384 / PCR8.
    """
    _checked_sets(policy)
    return [
        {
            "Sid": f"{RELEASE_SID}{i}",
            "Effect": "Allow",
            "Principal": {"AWS": enclave_role_arn},
            "Action": list(ENCLAVE_ACTIONS),
            "Resource": "*",
            "Condition": _conditions(ms.values, source_vpce),
        }
        for i, ms in enumerate(policy.sets, 1)
    ]


def generate_random_policy(policy: KeyReleasePolicy, *, source_vpce: str | None = None) -> dict[str, Any]:
    """The host role's IAM policy document granting ``kms:GenerateRandom`` only with a Nitro
    attestation document of an allowed manifest: one statement per set (``Resource: "*"``, the same
    conditions as :func:`release_statements`). See the module docstring for why this is IAM-only.

    Raises:
        TeeformError: as :func:`release_statements`.
    """
    _checked_sets(policy)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": f"{RANDOM_SID}{i}",
                "Effect": "Allow",
                "Action": list(IAM_ONLY_ACTIONS),
                "Resource": "*",
                "Condition": _conditions(ms.values, source_vpce),
            }
            for i, ms in enumerate(policy.sets, 1)
        ],
    }


def build_key_policy(
    *,
    admin_arns: Sequence[str],
    enclave_role_arn: str,
    deployer_arn: str,
    release: KeyReleasePolicy,
    break_glass_arn: str | None = None,
    source_vpce: str | None = None,
) -> dict[str, Any]:
    """The key policy document (a dict; ``json.dumps`` it for ``aws.kms.Key(policy=...)``).

    Args:
        admin_arns: key administrators (IAM ARNs; the account root ``arn:aws:iam::<id>:root`` delegates to IAM).
        enclave_role_arn: the enclave host's instance role (``arn:aws:iam::<id>:role/<name>``).
        deployer_arn: the principal that seals secrets (Encrypt + DescribeKey only).
        release: the target's measurement sets (one release statement each, :func:`release_statements`).
        break_glass_arn: set for ``policyUpdates: locked``: the only role that may ``kms:PutKeyPolicy``.
        source_vpce: KMS interface endpoint id the release statements require (private network), or None.

    Returns:
        ``{"Version": "2012-10-17", "Statement": [admin, release 1..n, deployer(, break-glass, deny)]}``
        (see the module docstring; the statements other than the release ones are
        :func:`assemble_key_policy`'s).

    Raises:
        TeeformError: no administrator, or a release policy :func:`release_statements` refuses.
    """
    return assemble_key_policy(
        admin_arns=admin_arns,
        deployer_arn=deployer_arn,
        release=lambda: release_statements(release, enclave_role_arn, source_vpce=source_vpce),
        break_glass_arn=break_glass_arn,
    )


def assemble_key_policy(
    *,
    admin_arns: Sequence[str],
    deployer_arn: str,
    release: Callable[[], Sequence[dict[str, Any]]],
    break_glass_arn: str | None = None,
) -> dict[str, Any]:
    """The key policy document around a TEE's release statements: the statements every teeform KMS key
    has (``KeyAdministration``, ``DeployerSeal`` and, locked, ``BreakGlassPolicyUpdate`` +
    ``DenyPolicyUpdateExceptBreakGlass``; module docstring), shared by :func:`build_key_policy` (Nitro
    Enclaves) and ``components.aws.tpm_key.build_tpm_key_policy`` (NitroTPM), which differ only in ``release``.

    Args:
        admin_arns: key administrators (IAM ARNs).
        deployer_arn: the principal that seals secrets (Encrypt + DescribeKey only).
        release: renders the release statements (called after the administrators are checked, so a
            policy without administrators is refused first); placed between admin and deployer.
        break_glass_arn: set for ``policyUpdates: locked``: the only role that may ``kms:PutKeyPolicy``.

    Returns:
        ``{"Version": "2012-10-17", "Statement": [admin, release 1..n, deployer(, break-glass, deny)]}``.

    Raises:
        TeeformError: no administrator, or what ``release`` raises.
    """
    if not admin_arns:
        raise TeeformError("a key needs at least one administrator principal")
    admin_actions = [a for a in ADMIN_ACTIONS if break_glass_arn is None or a != "kms:Put*"]
    statements: list[dict[str, Any]] = [
        {
            "Sid": "KeyAdministration",
            "Effect": "Allow",
            "Principal": {"AWS": list(admin_arns)},
            "Action": admin_actions,
            "Resource": "*",
        },
        *release(),
        {
            "Sid": "DeployerSeal",
            "Effect": "Allow",
            "Principal": {"AWS": deployer_arn},
            "Action": list(SEAL_ACTIONS),
            "Resource": "*",
        },
    ]
    if break_glass_arn is not None:
        statements += [
            {
                "Sid": "BreakGlassPolicyUpdate",
                "Effect": "Allow",
                "Principal": {"AWS": break_glass_arn},
                "Action": list(BREAK_GLASS_ACTIONS),
                "Resource": "*",
            },
            {
                "Sid": "DenyPolicyUpdateExceptBreakGlass",
                "Effect": "Deny",
                "Principal": {"AWS": "*"},
                "Action": "kms:PutKeyPolicy",
                "Resource": "*",
                "Condition": {"ArnNotEquals": {"aws:PrincipalArn": break_glass_arn}},
            },
        ]
    return {"Version": "2012-10-17", "Statement": statements}


@dataclass
class AttestedKeyArgs:
    """Inputs of :class:`AttestedKey`.

    Attributes:
        enclave_role_arn: ARN of the enclave host's IAM role (statement 2 principal).
        deployer_arn: ARN allowed to Encrypt (statement 3 principal).
        admin_arns: administrator ARNs (statement 1).
        release: the target's cloud-neutral key-release policy (one statement per measurement set).
        enclave_role_name: name of that role; when set, the role gets the GenerateRandom IAM policy
            (:func:`generate_random_policy`) as a child ``aws.iam.RolePolicy``.
        break_glass_arn: ``policyUpdates: locked``: the only role that may change the key policy.
        source_vpce: KMS interface endpoint id the release statements require, or None.
        deletion_window_days: 7..30 (KMS limits).
        protect: Pulumi ``protect`` on the key (refuse ``pulumi destroy``).
        alias_name: ``alias/...``.
        description: key description.
        tags: key tags (the stack policy reads ``teeform:target``).
    """

    enclave_role_arn: pulumi.Input[str]
    deployer_arn: pulumi.Input[str]
    admin_arns: pulumi.Input[Sequence[str]]
    release: KeyReleasePolicy
    deletion_window_days: int
    protect: bool
    alias_name: str
    enclave_role_name: pulumi.Input[str] | None = None
    break_glass_arn: str | None = None
    source_vpce: pulumi.Input[str] | None = None
    description: str = "teeform attested key (released only to Nitro Enclaves with our image's PCRs)"
    #: Resource tags; ``teeform:target`` names the target whose manifests the key pins.
    tags: Mapping[str, str] = field(default_factory=dict)



def check_deletion_window(days: int) -> None:
    """Refuse a KMS deletion window outside 7..30 days (AWS KMS ScheduleKeyDeletion ``PendingWindowInDays``).

    Raises:
        TeeformError: naming ``key.deletionWindowDays``.
    """
    if not 7 <= days <= 30:
        raise TeeformError(f"deletion window must be 7..30 days, got {days}", field="key.deletionWindowDays")


def register_kms_key(parent: pulumi.ComponentResource, name: str, *, policy: pulumi.Input[str], description: str,
                     deletion_window_days: int, locked: bool, tags: Mapping[str, str], protect: bool) -> aws.kms.Key:
    """The symmetric, rotating ``aws.kms.Key`` ``<name>-kms`` under ``parent`` with the given key policy.

    Shared by :class:`AttestedKey` (Nitro Enclaves) and ``components.aws.tpm_key.TpmAttestedKey`` (NitroTPM):
    both differ only in the policy's release statements. ``locked`` (a break-glass role is the only policy
    writer) sets ``bypass_policy_lockout_safety_check``: the deployer is deliberately not allowed a later
    ``PutKeyPolicy`` (module docstring).
    """
    return aws.kms.Key(
        f"{name}-kms",
        description=description,
        key_usage="ENCRYPT_DECRYPT",
        customer_master_key_spec="SYMMETRIC_DEFAULT",
        enable_key_rotation=True,
        deletion_window_in_days=deletion_window_days,
        policy=policy,
        bypass_policy_lockout_safety_check=locked,
        tags=dict(tags),
        opts=pulumi.ResourceOptions(parent=parent, protect=protect),
    )


def finish_kms_key(component: Any, name: str, alias_name: str) -> aws.kms.Alias:
    """Add the alias ``<name>-alias`` for ``component.key`` and register the component's outputs
    (``key_arn``, ``key_id``, ``alias_name``); sets ``component.key_arn`` / ``component.key_id``."""
    alias = aws.kms.Alias(f"{name}-alias", name=alias_name, target_key_id=component.key.key_id,
                          opts=pulumi.ResourceOptions(parent=component))
    component.key_arn = component.key.arn
    component.key_id = component.key.key_id
    component.register_outputs({"key_arn": component.key_arn, "key_id": component.key_id, "alias_name": alias_name})
    return alias


class AttestedKey(pulumi.ComponentResource):
    """A symmetric KMS key (rotation on) whose plaintext operations need a Nitro attestation document,
    plus its alias and (with ``enclave_role_name``) the host role's GenerateRandom IAM policy.
    Outputs: ``key_arn``, ``key_id``, ``alias_name``.

    Raises:
        TeeformError: (before anything is registered) a deletion window outside 7..30 days, or
            a release policy that :func:`release_statements` refuses.
    """

    key_arn: pulumi.Output[str]
    key_id: pulumi.Output[str]

    def __init__(self, name: str, args: AttestedKeyArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # Checked before anything is registered (not inside apply), so configuration errors stop the
        # program before any resource, this component included.
        check_deletion_window(args.deletion_window_days)
        release_statements(args.release, "arn:aws:iam::000000000000:role/check")  # validate before registering
        release, glass = args.release, args.break_glass_arn
        super().__init__("teeform:aws:AttestedKey", name, None, opts)
        policy = pulumi.Output.all(args.admin_arns, args.enclave_role_arn, args.deployer_arn, args.source_vpce).apply(
            lambda v: json.dumps(
                build_key_policy(admin_arns=v[0], enclave_role_arn=v[1], deployer_arn=v[2], release=release,
                                 break_glass_arn=glass, source_vpce=v[3]),
                indent=2,
            )
        )
        self.key = register_kms_key(self, name, policy=policy, description=args.description,
                                    deletion_window_days=args.deletion_window_days, locked=glass is not None,
                                    tags=args.tags, protect=args.protect)
        if args.enclave_role_name is not None:
            aws.iam.RolePolicy(
                f"{name}-generate-random",
                role=args.enclave_role_name,
                policy=pulumi.Output.from_input(args.source_vpce).apply(
                    lambda vpce: json.dumps(generate_random_policy(release, source_vpce=vpce), indent=2)
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.alias = finish_kms_key(self, name, args.alias_name)
