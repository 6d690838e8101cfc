"""Alibaba Cloud policies: no public ingress (mandatory), and TDX guests on TDX instance types.

* ``alicloud-no-public-ingress`` (mandatory): the ``ingress`` family (:mod:`teeform_policies.ingress`)
  read for the ``alicloud:`` types only; no ``0.0.0.0/0`` / ``::/0`` source. Stricter than the
  cloud-neutral advisory ``no-public-ingress`` because confidential-agent's Terraform opens its
  security group to 0.0.0.0/0 by default, which is exactly what teeform refuses (issue 11).
* ``alicloud-tdx-instance-type`` (mandatory): a TDX guest (an ``alicloud:ecs/instance:Instance`` tagged
  ``teeform:role=tdx-guest``, or teeform's ``TdxInstance`` dynamic resource) must be a TDX guest in
  fact: ``ecs.gn8v-tee.*`` is TDX by default and may be a plain instance; ``ecs.g8i.*`` (xlarge or
  larger) is TDX only through ``RunInstances SecurityOptions.ConfidentialComputingMode=TDX``, so as a
  plain ``ecs.Instance`` it would boot an ordinary VM and is refused; and the zone must offer the
  family (:data:`TDX_ZONES`, a copy of ``teeform.targets.alicloud_tdx.TDX_ZONES`` checked by
  ``tests/test_trustee_policies.py``; source: Alibaba ECS docs as read in clouds.md §4.1).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pulumi_policy import EnforcementLevel, ResourceValidationArgs, ResourceValidationPolicy, Severity

from teeform_policies import tokens
from teeform_policies.common import ReportViolation, label
from teeform_policies.ingress import INGRESS, forbidden_sources

FORBIDDEN_CIDRS = ("0.0.0.0/0", "::/0")
#: Copy of teeform.targets.alicloud_tdx.TDX_ZONES.
TDX_ZONES: dict[str, frozenset[str]] = {
    "g8i": frozenset({"cn-beijing-i"}),
    "gn8v-tee": frozenset({"cn-beijing-f", "cn-beijing-l"}),
}
ROLE_TAG = "teeform:role"
TDX_GUEST_ROLE = "tdx-guest"
_TYPE = re.compile(r"^ecs\.(g8i|gn8v-tee)\.([0-9]*x?large)$")


def validate_no_public_ingress(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """See :data:`NO_PUBLIC_INGRESS`."""
    if not args.resource_type.startswith("alicloud:") or not INGRESS.claims(args.resource_type):
        return
    where = label(args.resource_type, args.name)
    for src in forbidden_sources(args.resource_type, args.props, FORBIDDEN_CIDRS):
        report(f"{where}: field '{src.field}' is {src.written}, which opens port(s) {src.ports} to the whole internet. "
               "Allow only the CIDRs that need access (teeform:targets[].network.ingress, keyBroker.deploy.adminCidr).")


NO_PUBLIC_INGRESS = ResourceValidationPolicy(
    name="alicloud-no-public-ingress",
    description="Checks that no Alibaba Cloud security-group rule allows ingress from 0.0.0.0/0 or ::/0 (mandatory).",
    validate=validate_no_public_ingress,
    enforcement_level=EnforcementLevel.MANDATORY,
    severity=Severity.HIGH,
    remediation_steps="Replace 0.0.0.0/0 / ::/0 with the specific client CIDRs, or remove the rule.",
    url="https://www.alibabacloud.com/help/en/ecs/user-guide/security-group-rules",
)


def _instance_check(where: str, itype: Any, zone: Any, *, plain: bool) -> list[str]:
    m = _TYPE.match(str(itype or ""))
    if not m:
        return [f"{where}: instance type {itype!r} is not an Alibaba TDX type (ecs.g8i.<xlarge+>, ecs.gn8v-tee.<size>)"]
    family, size = m.groups()
    out = []
    if family == "g8i" and size == "large":
        out.append(f"{where}: ecs.g8i.large is not TDX-capable (xlarge or larger)")
    if family == "g8i" and plain:
        out.append(f"{where}: {itype} as a plain ecs.Instance is not a TDX guest (pulumi-alicloud cannot set "
                   "SecurityOptions.ConfidentialComputingMode); use teeform's TdxInstance (RunInstances)")
    if zone is not None and str(zone) not in TDX_ZONES[family]:
        out.append(f"{where}: zone {zone!r} does not offer {family} TDX instances (documented: {sorted(TDX_ZONES[family])})")
    return out


def validate_tdx_instance_type(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """See :data:`TDX_INSTANCE_TYPE`."""
    where = label(args.resource_type, args.name)
    p = args.props
    if args.resource_type == tokens.ALICLOUD_ECS_INSTANCE:
        tags = p.get("tags")
        if not (isinstance(tags, Mapping) and tags.get(ROLE_TAG) == TDX_GUEST_ROLE):
            return
        msgs = _instance_check(where, p.get("instanceType"), p.get("availabilityZone"), plain=True)
    elif args.resource_type == tokens.ALICLOUD_TDX_INSTANCE:
        msgs = _instance_check(where, p.get("instance_type"), p.get("zone_id"), plain=False)
    else:
        return
    for m in msgs:
        report(m)


TDX_INSTANCE_TYPE = ResourceValidationPolicy(
    name="alicloud-tdx-instance-type",
    description=(
        "Checks that Alibaba TDX guests are TDX in fact: gn8v-tee as a plain instance, g8i (xlarge+) only through "
        "RunInstances SecurityOptions.ConfidentialComputingMode=TDX, in a zone that offers the family."
    ),
    validate=validate_tdx_instance_type,
    enforcement_level=EnforcementLevel.MANDATORY,
    severity=Severity.CRITICAL,
    remediation_steps="Use an ecs.gn8v-tee.* type, or let teeform create g8i guests through TdxInstance; pick a listed zone.",
    url="https://www.alibabacloud.com/help/en/ecs/user-guide/build-a-tdx-confidential-computing-environment",
)

POLICIES = (NO_PUBLIC_INGRESS, TDX_INSTANCE_TYPE)
