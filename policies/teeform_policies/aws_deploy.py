"""AWS deploy-time policies: who can rewrite a key policy, TLS-only buckets, closed default security groups.

* ``aws-kms-key-policy-rewriters`` (advisory): any principal allowed ``kms:PutKeyPolicy`` on a key
  can replace its policy with one that allows Decrypt without attestation, so the attestation gate
  is only as strong as that list. The policy lists, per key, who can rewrite it: the principals of
  the ``Allow`` statements whose actions cover ``kms:PutKeyPolicy`` (wildcards and ``NotAction``
  included), with the account root spelled out as "every IAM principal of the account whose IAM
  policy allows it" (KMS developer guide, "Default key policy": the root principal "enables IAM
  policies"). An explicit ``Deny`` of ``kms:PutKeyPolicy`` to ``*`` with
  ``ArnNotEquals``/``ArnNotLike``/``StringNotEquals``/``StringNotLike`` on ``aws:PrincipalArn``
  narrows the list to those ARNs (an explicit Deny overrides any Allow, IAM "policy evaluation
  logic"). A key **locked** that way to break-glass roles (no account root, no wildcard among them;
  teeform's ``key.policyUpdates: locked``) passes; otherwise the list is reported unless every
  entry is in the config's ``acceptedRewriters``.
* ``aws-s3-bucket-tls-only`` (advisory; prod config: mandatory): every ``aws.s3.Bucket`` of the
  stack has an ``aws.s3.BucketPolicy`` with a ``Deny`` to every principal of ``s3:*`` (or ``*``)
  on its objects when ``aws:SecureTransport`` is ``false`` (Amazon S3 user guide, "Security best
  practices": enforce encryption in transit; AWS Config rule ``s3-bucket-ssl-requests-only``).
* ``aws-ec2-default-sg-closed`` (advisory; prod config: mandatory): every VPC the stack creates
  has its default security group adopted by an ``aws.ec2.DefaultSecurityGroup`` with no ingress
  and no egress rules (CIS AWS Foundations 5.4, Security Hub control EC2.2). VPCs and default
  groups are matched by count, because a VPC's id is an output the policy cannot see at preview.

Advisory defaults: the stack may hold buckets and VPCs the program does not own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)

from teeform_policies import tokens
from teeform_policies.common import DOCS, ReportViolation, cfg, label
from teeform_policies.iam import (
    as_list,
    condition_entries,
    granted_actions,
    parse_policy,
    statements,
    wildcard_principal,
)

PUT_KEY_POLICY = "kms:PutKeyPolicy"
#: Negated operators that, on ``aws:PrincipalArn`` in a wildcard Deny, mean "everyone except".
_EXCEPT_OPERATORS = {"arnnotequals", "arnnotlike", "stringnotequals", "stringnotlike", "stringnotequalsignorecase"}


def _principals(stmt: Mapping[str, Any]) -> list[str]:
    if wildcard_principal(stmt):
        return ["*"]
    p = stmt.get("Principal")
    if isinstance(p, Mapping):
        return [str(v) for vals in p.values() for v in as_list(vals)]
    return [str(v) for v in as_list(p)]


def _is_root(arn: str) -> bool:
    return arn.endswith(":root") or (arn.isdigit() and len(arn) == 12)


def _account(arn: str) -> str:
    return arn if arn.isdigit() else (arn.split(":")[4] if arn.count(":") >= 5 else "")


def key_policy_rewriters(doc: Mapping[str, Any]) -> tuple[list[str], list[str] | None]:
    """Who may call ``kms:PutKeyPolicy`` under key policy ``doc`` (see the module docstring).

    Returns:
        (rewriters in document order -- ARNs, ``"*"``, or account roots --, the break-glass ARNs of
        a wildcard Deny lock or None when the policy has no such lock).
    """
    allowed: list[str] = []
    lock: list[str] | None = None
    for _sid, st in statements(doc):
        effect = str(st.get("Effect", "")).lower()
        if effect == "allow" and granted_actions(st, [PUT_KEY_POLICY]):
            allowed += [p for p in _principals(st) if p not in allowed]
        elif effect == "deny" and wildcard_principal(st) and "NotPrincipal" not in st:
            acts = [str(a) for a in as_list(st.get("Action"))]
            if not granted_actions({"Effect": "Allow", "Action": acts}, [PUT_KEY_POLICY]):
                continue
            entries = list(condition_entries(st))
            if not entries:
                lock = []
            elif len(entries) == 1 and entries[0][0].lower() in _EXCEPT_OPERATORS and entries[0][1].lower() == "aws:principalarn":
                lock = [str(v) for v in entries[0][2]]
    if lock is None:
        return allowed, None
    effective = [e for e in lock if "*" in allowed or e in allowed
                 or any(_is_root(a) and _account(a) == _account(e) for a in allowed)]
    return effective, lock


def _describe(p: str) -> str:
    if p == "*":
        return "* (every principal)"
    if _is_root(p):
        return f"{p} (every IAM principal of account {_account(p)} whose IAM policy allows kms:PutKeyPolicy)"
    return p


def validate_key_policy_rewriters(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """See :data:`KEY_POLICY_REWRITERS`."""
    if args.resource_type not in tokens.KMS_KEY_POLICY_TYPES:
        return
    doc, _ = parse_policy(args.props.get("policy"))
    if doc is None:  # no or unreadable policy: aws-kms-decrypt-requires-attestation reports it
        return
    rewriters, lock = key_policy_rewriters(doc)
    if lock and all(p != "*" and not _is_root(p) for p in lock):
        return
    accepted = {str(a) for a in cfg(args, "acceptedRewriters", [])}
    if rewriters and all(p in accepted for p in rewriters):
        return
    who = "; ".join(_describe(p) for p in rewriters) or "nobody (the key can no longer be managed)"
    report(
        f"{label(args.resource_type, args.name)}: field 'policy' can be rewritten (kms:PutKeyPolicy), and the key then "
        f"decrypted without attestation, by: {who}. Lock it (teeform: key.policyUpdates: locked with "
        "key.breakGlassRole), or list these principals in this policy's acceptedRewriters."
    )


KEY_POLICY_REWRITERS = ResourceValidationPolicy(
    name="aws-kms-key-policy-rewriters",
    description=(
        "Lists, for every KMS key policy, the principals that can rewrite it (kms:PutKeyPolicy via Allow statements, "
        "wildcards and NotAction included, the account root meaning every IAM principal granted it by IAM), narrowed by "
        "a wildcard Deny with an aws:PrincipalArn exception; passes for keys locked that way to break-glass roles or "
        "whose rewriters are all in acceptedRewriters."
    ),
    validate=validate_key_policy_rewriters,
    enforcement_level=EnforcementLevel.ADVISORY,
    severity=Severity.HIGH,
    config_schema=PolicyConfigSchema(
        properties={"acceptedRewriters": {"type": "array", "items": {"type": "string"}, "default": []}}
    ),
    remediation_steps=(
        "Set key.policyUpdates: locked and key.breakGlassRole on the target (only that role may then call "
        "kms:PutKeyPolicy; rollover means a new key and `teeform seal`), or accept the listed principals in config."
    ),
    url=f"{DOCS}/kms/latest/developerguide/key-policy-default.html",
)


def tls_only(doc: Mapping[str, Any]) -> bool:
    """Whether ``doc`` has a ``Deny`` to every principal of all S3 object reads and writes on some
    objects (``.../*`` or ``*``) when ``aws:SecureTransport`` is false."""
    for _sid, st in statements(doc):
        if str(st.get("Effect", "")).lower() != "deny" or not wildcard_principal(st) or "NotPrincipal" in st:
            continue
        acts = [str(a) for a in as_list(st.get("Action"))]
        if len(granted_actions({"Effect": "Allow", "Action": acts}, ["s3:GetObject", "s3:PutObject"])) != 2:
            continue
        if not any(str(r) == "*" or str(r).endswith("/*") for r in as_list(st.get("Resource"))):
            continue
        if any(op.lower() in ("bool", "boolifexists") and key.lower() == "aws:securetransport"
               and [str(v).lower() for v in vals] == ["false"] for op, key, vals in condition_entries(st)):
            return True
    return False


def validate_s3_tls_only(args: StackValidationArgs, report: ReportViolation) -> None:
    """See :data:`S3_TLS_ONLY`."""
    policies: dict[str, bool] = {}
    unknown = False
    for r in args.resources:
        if r.resource_type != tokens.AWS_S3_BUCKET_POLICY:
            continue
        bucket = r.props.get("bucket")
        doc, _ = parse_policy(r.props.get("policy"))
        ok = doc is not None and tls_only(doc)
        if not isinstance(bucket, str):
            unknown = True
            continue
        policies[bucket] = policies.get(bucket, False) or ok
        if not ok:
            report(
                f"{label(r.resource_type, r.name)}: field 'policy' has no Deny of s3:* to '*' with Condition "
                "{\"Bool\": {\"aws:SecureTransport\": \"false\"}}, so the bucket accepts plain-HTTP requests. Add one "
                "(components/aws/artifact_store.py tls_only_policy).",
                r.urn,
            )
    for r in args.resources:
        if r.resource_type != tokens.AWS_S3_BUCKET:
            continue
        name = r.props.get("bucket")
        if not isinstance(name, str):
            continue  # a generated name: the policy cannot be matched at preview
        if name not in policies and not unknown:
            report(
                f"{label(r.resource_type, r.name)}: bucket {name!r} has no aws.s3.BucketPolicy denying requests without "
                "TLS (aws:SecureTransport false). Add one.",
                r.urn,
            )


S3_TLS_ONLY = StackValidationPolicy(
    name="aws-s3-bucket-tls-only",
    description=(
        "Checks that every aws.s3.Bucket (by its bucket name) has an aws.s3.BucketPolicy denying s3:* to every "
        "principal on its objects when aws:SecureTransport is false, and that every bucket policy does."
    ),
    validate=validate_s3_tls_only,
    enforcement_level=EnforcementLevel.ADVISORY,
    severity=Severity.MEDIUM,
    remediation_steps=(
        "Attach a bucket policy with {\"Effect\": \"Deny\", \"Principal\": \"*\", \"Action\": \"s3:*\", \"Resource\": "
        "[bucket ARN, bucket ARN + \"/*\"], \"Condition\": {\"Bool\": {\"aws:SecureTransport\": \"false\"}}}."
    ),
    url=f"{DOCS}/config/latest/developerguide/s3-bucket-ssl-requests-only.html",
)


def validate_default_sg_closed(args: StackValidationArgs, report: ReportViolation) -> None:
    """See :data:`DEFAULT_SG_CLOSED`."""
    vpcs = [r for r in args.resources if r.resource_type == tokens.AWS_EC2_VPC]
    groups = [r for r in args.resources if r.resource_type == tokens.AWS_EC2_DEFAULT_SECURITY_GROUP]
    for g in groups:
        open_fields = [f for f in ("ingress", "egress") if as_list(g.props.get(f))]
        if open_fields:
            report(
                f"{label(g.resource_type, g.name)}: field(s) {', '.join(repr(f) for f in open_fields)} keep rules on the "
                "VPC's default security group. Give aws.ec2.DefaultSecurityGroup no ingress and no egress.",
                g.urn,
            )
    if len(groups) < len(vpcs):
        for v in vpcs[len(groups):]:
            report(
                f"{label(v.resource_type, v.name)}: the stack creates {len(vpcs)} VPC(s) but closes {len(groups)} default "
                "security group(s); AWS's default group allows all traffic between its members and all egress. Add an "
                "aws.ec2.DefaultSecurityGroup(vpc_id=...) with no rules.",
                v.urn,
            )


DEFAULT_SG_CLOSED = StackValidationPolicy(
    name="aws-ec2-default-sg-closed",
    description=(
        "Checks that the stack adopts the default security group of every VPC it creates with an "
        "aws.ec2.DefaultSecurityGroup that has no ingress and no egress rules (matched by count)."
    ),
    validate=validate_default_sg_closed,
    enforcement_level=EnforcementLevel.ADVISORY,
    severity=Severity.MEDIUM,
    remediation_steps="Add aws.ec2.DefaultSecurityGroup(vpc_id=vpc.id) without ingress/egress for each aws.ec2.Vpc.",
    url=f"{DOCS}/securityhub/latest/userguide/ec2-controls.html#ec2-2",
)

POLICIES = (KEY_POLICY_REWRITERS, S3_TLS_ONLY, DEFAULT_SG_CLOSED)

__all__ = ["POLICIES", "key_policy_rewriters", "tls_only"]
