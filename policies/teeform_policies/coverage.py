"""``policy-coverage`` (advisory): resources in a rule family's scope that no extractor reads.

A cloud-neutral rule checks only what its per-cloud extractors understand. Rather than passing the
rest silently, this policy reports each such resource once per family with the ``NOT CHECKED``
marker (:data:`teeform_policies.families.NOT_CHECKED`), e.g. an ``azure-native:keyvault:Key`` (its
release policy is not read yet) or a ``gcp:kms/cryptoKey:CryptoKey``. It is advisory: it asks for a
review, it does not block.
"""

from __future__ import annotations

from pulumi_policy import EnforcementLevel, ResourceValidationArgs, ResourceValidationPolicy, Severity

from teeform_policies.common import ReportViolation
from teeform_policies.families import NOT_CHECKED, Family
from teeform_policies.ingress import INGRESS
from teeform_policies.release import KEY_RELEASE

FAMILIES: tuple[Family, ...] = (KEY_RELEASE, INGRESS)


def validate_coverage(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """See :data:`POLICY_COVERAGE`."""
    for fam in FAMILIES:
        if fam.unchecked(args.resource_type):
            report(fam.not_checked_message(args.resource_type, args.name))


POLICY_COVERAGE = ResourceValidationPolicy(
    name="policy-coverage",
    description=(
        f"Reports, as '{NOT_CHECKED}', every resource in the scope of a cloud-neutral rule family (key services: "
        "measurements-match-manifest; firewalls and security groups: no-public-ingress) whose type no per-cloud "
        "extractor reads, so those rules did not check it."
    ),
    validate=validate_coverage,
    enforcement_level=EnforcementLevel.ADVISORY,
    severity=Severity.MEDIUM,
    remediation_steps="Review the resource by hand, or add an extractor for its type in policies/teeform_policies/.",
    url="https://www.pulumi.com/docs/iac/using-pulumi/crossguard/",
)

POLICIES = (POLICY_COVERAGE,)
