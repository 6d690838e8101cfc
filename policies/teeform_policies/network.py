"""Network policy: nothing open to the whole internet.

Covers the three ways pulumi-aws expresses ingress (pulumi.md §4.1): standalone
``aws.vpc.SecurityGroupIngressRule`` (``cidrIpv4``/``cidrIpv6``), legacy
``aws.ec2.SecurityGroupRule`` with ``type: ingress`` (``cidrBlocks``/``ipv6CidrBlocks``), and the
inline ``ingress`` blocks of ``aws.ec2.SecurityGroup``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
)

from teeform_policies import tokens
from teeform_policies.common import DOCS, cfg, label, num
from teeform_policies.iam import as_list

FORBIDDEN_CIDRS = ["0.0.0.0/0", "::/0"]


def _normalise(cidr: Any) -> str:
    try:
        return str(ipaddress.ip_network(str(cidr), strict=False))
    except ValueError:
        return str(cidr)


def _open(cidrs: Iterable[Any], forbidden: set[str]) -> list[str]:
    return [str(c) for c in cidrs if c and _normalise(c) in forbidden]


def validate_no_public_ingress(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """See :data:`NO_PUBLIC_INGRESS`."""
    forbidden = {_normalise(c) for c in cfg(args, "forbiddenCidrs", FORBIDDEN_CIDRS)}
    p, where = args.props, label(args.resource_type, args.name)
    fix = "Allow only the CIDRs that need access (teeform:targets[].network.ingress), or none."
    if args.resource_type == tokens.AWS_VPC_SECURITY_GROUP_INGRESS_RULE:
        for fld in ("cidrIpv4", "cidrIpv6"):
            for c in _open([p.get(fld)], forbidden):
                report(f"{where}: field '{fld}' is {c}, which opens port(s) {_ports(p)} to the whole internet. {fix}")
    elif args.resource_type == tokens.AWS_EC2_SECURITY_GROUP_RULE:
        if str(p.get("type", "")).lower() != "ingress":
            return
        for fld in ("cidrBlocks", "ipv6CidrBlocks"):
            for c in _open(as_list(p.get(fld)), forbidden):
                report(f"{where}: field '{fld}' contains {c}, which opens port(s) {_ports(p)} to the whole internet. {fix}")
    elif args.resource_type == tokens.AWS_EC2_SECURITY_GROUP:
        for i, rule in enumerate(as_list(p.get("ingress"))):
            if not isinstance(rule, Mapping):
                continue
            for fld in ("cidrBlocks", "ipv6CidrBlocks"):
                for c in _open(as_list(rule.get(fld)), forbidden):
                    report(
                        f"{where}: field 'ingress[{i}].{fld}' contains {c}, which opens port(s) {_ports(rule)} to the "
                        f"whole internet. {fix}"
                    )


def _ports(p: Any) -> str:
    lo, hi = num(p.get("fromPort")), num(p.get("toPort"))
    if str(p.get("ipProtocol", p.get("protocol", ""))) == "-1":
        return "all"
    return str(lo) if lo == hi else f"{lo}-{hi}"


NO_PUBLIC_INGRESS = ResourceValidationPolicy(
    name="no-public-ingress",
    description=(
        "Checks that no security-group ingress (aws.vpc.SecurityGroupIngressRule, aws.ec2.SecurityGroupRule of type "
        "ingress, inline ingress of aws.ec2.SecurityGroup) allows 0.0.0.0/0 or ::/0. Advisory by default; mandatory "
        "in production through policies/config/prod.json."
    ),
    validate=validate_no_public_ingress,
    enforcement_level=EnforcementLevel.ADVISORY,
    severity=Severity.HIGH,
    config_schema=PolicyConfigSchema(
        properties={"forbiddenCidrs": {"type": "array", "items": {"type": "string"}, "default": FORBIDDEN_CIDRS}}
    ),
    remediation_steps="Replace 0.0.0.0/0 / ::/0 with the specific client CIDRs, or remove the ingress rule.",
    url=f"{DOCS}/vpc/latest/userguide/vpc-security-group-rules.html",
)

POLICIES = (NO_PUBLIC_INGRESS,)
