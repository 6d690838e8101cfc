"""Network policy (cloud-neutral): nothing open to the whole internet, on any of the four clouds.

The ``ingress`` rule family (:mod:`teeform_policies.ingress`) extracts every allowed inbound source
of AWS security groups and rules, Azure network security groups and rules, GCP firewalls and
Alibaba Cloud security-group rules; this policy refuses the forbidden CIDRs among them. Firewall-like
types no extractor reads are reported by ``policy-coverage`` as "not checked", never passed.
"""

from __future__ import annotations

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
)

from teeform_policies.common import DOCS, ReportViolation, cfg, label
from teeform_policies.ingress import INGRESS, forbidden_sources

FORBIDDEN_CIDRS = ["0.0.0.0/0", "::/0"]


def validate_no_public_ingress(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """See :data:`NO_PUBLIC_INGRESS`."""
    if not INGRESS.claims(args.resource_type):
        return  # unclaimed firewall-like types are reported by policy-coverage
    where = label(args.resource_type, args.name)
    fix = "Allow only the CIDRs that need access (teeform:targets[].network.ingress), or none."
    for src in forbidden_sources(args.resource_type, args.props, cfg(args, "forbiddenCidrs", FORBIDDEN_CIDRS)):
        verb = "contains" if src.field.endswith(("Blocks", "Prefixes", "Ranges")) else "is"
        shown = src.written if src.written == src.cidr else f"{src.written} (= {src.cidr})"
        report(f"{where}: field '{src.field}' {verb} {shown}, which opens port(s) {src.ports} to the whole internet. {fix}")


NO_PUBLIC_INGRESS = ResourceValidationPolicy(
    name="no-public-ingress",
    description=(
        "Checks that no ingress allows 0.0.0.0/0 or ::/0: AWS security groups and rules, Azure network security "
        "groups and rules (*, Internet, Any), GCP firewalls (no source = 0.0.0.0/0) and Alibaba Cloud security-group "
        "rules. Advisory by default; mandatory in production through policies/config/prod.json."
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
