"""The ``ingress`` rule family: every allowed inbound source of every firewall-like resource, per cloud.

Each extractor returns :class:`IngressSource` views (the field, the source as written, the source as
a CIDR, the ports). Argument names are those of the installed SDKs (pulumi.md §4.1-§4.4):

* AWS: ``aws.vpc.SecurityGroupIngressRule`` (``cidrIpv4``/``cidrIpv6``), ``aws.ec2.SecurityGroupRule``
  with ``type: ingress`` (``cidrBlocks``/``ipv6CidrBlocks``), inline ``ingress`` of
  ``aws.ec2.SecurityGroup``; egress rules are claimed and yield nothing.
* Azure: ``azure-native.network.NetworkSecurityGroup`` inline ``securityRules`` and
  ``azure-native.network.SecurityRule`` with ``direction: Inbound`` and ``access: Allow``;
  ``sourceAddressPrefix(es)`` ``*``, ``Internet`` and ``Any`` mean every address (Azure docs,
  "Network security groups: service tags"), shown as ``0.0.0.0/0``.
* GCP: ``gcp.compute.Firewall`` with ``direction`` INGRESS (the default) and ``allows``, not
  ``disabled``; an ingress rule without ``sourceRanges``, ``sourceTags`` or
  ``sourceServiceAccounts`` applies to ``0.0.0.0/0`` (GCP VPC firewall docs, "Sources for ingress
  rules").
* Alibaba Cloud: ``alicloud.ecs.SecurityGroupRule`` with ``type: ingress`` and ``policy`` accept (the
  default), ``cidrIp``/``ipv6CidrIp``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from teeform_policies import tokens
from teeform_policies.common import num
from teeform_policies.families import Family
from teeform_policies.iam import as_list

#: Azure source tags that mean "any address".
AZURE_ANY = {"*": "0.0.0.0/0", "internet": "0.0.0.0/0", "any": "0.0.0.0/0"}


@dataclass(frozen=True)
class IngressSource:
    """One allowed inbound source: ``field`` (for messages), ``written`` (as in the props), ``cidr``
    (the CIDR it stands for) and ``ports`` (``"22"``, ``"80-443"``, ``"all"``)."""

    field: str
    written: str
    cidr: str
    ports: str


def _ports(lo: Any, hi: Any, protocol: Any = "") -> str:
    if str(protocol) in ("-1", "all", "*"):
        return "all"
    lo, hi = num(lo), num(hi)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _aws(resource_type: str, p: Mapping[str, Any]) -> list[IngressSource]:
    out: list[IngressSource] = []
    if resource_type == tokens.AWS_VPC_SECURITY_GROUP_INGRESS_RULE:
        ports = _ports(p.get("fromPort"), p.get("toPort"), p.get("ipProtocol"))
        for f in ("cidrIpv4", "cidrIpv6"):
            if p.get(f):
                out.append(IngressSource(f, str(p[f]), str(p[f]), ports))
    elif resource_type == tokens.AWS_EC2_SECURITY_GROUP_RULE:
        if str(p.get("type", "")).lower() == "ingress":
            ports = _ports(p.get("fromPort"), p.get("toPort"), p.get("protocol"))
            for f in ("cidrBlocks", "ipv6CidrBlocks"):
                out += [IngressSource(f, str(c), str(c), ports) for c in as_list(p.get(f)) if c]
    elif resource_type in (tokens.AWS_EC2_SECURITY_GROUP, tokens.AWS_EC2_DEFAULT_SECURITY_GROUP):  # same inline shape
        for i, rule in enumerate(as_list(p.get("ingress"))):
            if isinstance(rule, Mapping):
                ports = _ports(rule.get("fromPort"), rule.get("toPort"), rule.get("protocol"))
                for f in ("cidrBlocks", "ipv6CidrBlocks"):
                    out += [IngressSource(f"ingress[{i}].{f}", str(c), str(c), ports) for c in as_list(rule.get(f)) if c]
    return out  # egress rule types are claimed and open nothing inbound


def _azure_rule(rule: Mapping[str, Any], prefix: str) -> list[IngressSource]:
    if str(rule.get("direction", "")).lower() != "inbound" or str(rule.get("access", "")).lower() != "allow":
        return []
    ports = ",".join(str(x) for x in [rule.get("destinationPortRange"), *as_list(rule.get("destinationPortRanges"))] if x) or "all"
    ports = "all" if ports == "*" else ports
    out = []
    for f in ("sourceAddressPrefix", "sourceAddressPrefixes"):
        for src in as_list(rule.get(f)):
            if src:
                s = str(src)
                out.append(IngressSource(f"{prefix}{f}", s, AZURE_ANY.get(s.lower(), s), ports))
    return out


def _azure(resource_type: str, p: Mapping[str, Any]) -> list[IngressSource]:
    if resource_type == tokens.AZURE_NETWORK_SECURITY_RULE:
        return _azure_rule(p, "")
    out = []
    for i, rule in enumerate(as_list(p.get("securityRules"))):
        if isinstance(rule, Mapping):
            out += _azure_rule(rule, f"securityRules[{i}].")
    return out


def _gcp(resource_type: str, p: Mapping[str, Any]) -> list[IngressSource]:
    if str(p.get("direction") or "INGRESS").upper() != "INGRESS" or p.get("disabled") is True or not as_list(p.get("allows")):
        return []
    ports = ",".join(
        f"{a.get('protocol')}:{'/'.join(str(x) for x in as_list(a.get('ports'))) or 'all'}"
        for a in as_list(p.get("allows")) if isinstance(a, Mapping)
    )
    ranges = [str(r) for r in as_list(p.get("sourceRanges")) if r]
    if not ranges and not as_list(p.get("sourceTags")) and not as_list(p.get("sourceServiceAccounts")):
        return [IngressSource("sourceRanges", "(not set: GCP applies 0.0.0.0/0)", "0.0.0.0/0", ports)]
    return [IngressSource("sourceRanges", r, r, ports) for r in ranges]


def _alicloud(resource_type: str, p: Mapping[str, Any]) -> list[IngressSource]:
    if str(p.get("type", "")).lower() != "ingress" or str(p.get("policy") or "accept").lower() != "accept":
        return []
    ports = "all" if str(p.get("ipProtocol", "")).lower() == "all" else str(p.get("portRange") or "all")
    return [IngressSource(f, str(p[f]), str(p[f]), ports) for f in ("cidrIp", "ipv6CidrIp") if p.get(f)]


INGRESS = Family[IngressSource](
    id="ingress",
    policies=("no-public-ingress",),
    scope=re.compile(r"(?i)(securitygroup|firewall|securityrule)"),
    extractors={
        tokens.AWS_VPC_SECURITY_GROUP_INGRESS_RULE: _aws,
        tokens.AWS_VPC_SECURITY_GROUP_EGRESS_RULE: _aws,
        tokens.AWS_EC2_SECURITY_GROUP_RULE: _aws,
        tokens.AWS_EC2_SECURITY_GROUP: _aws,
        tokens.AWS_EC2_DEFAULT_SECURITY_GROUP: _aws,
        tokens.AZURE_NETWORK_SECURITY_GROUP: _azure,
        tokens.AZURE_NETWORK_SECURITY_RULE: _azure,
        tokens.GCP_COMPUTE_FIREWALL: _gcp,
        tokens.ALICLOUD_ECS_SECURITY_GROUP_RULE: _alicloud,
        tokens.ALICLOUD_ECS_SECURITY_GROUP: _alicloud,  # no inline rules in pulumi-alicloud 4.0.0: opens nothing
    },
)



def normalise_cidr(cidr: Any) -> str:
    """``cidr`` in Python's canonical form (``::0/0`` -> ``::/0``, ``10.1.2.3/8`` -> ``10.0.0.0/8``);
    anything that is not a CIDR is returned as written (it then matches only itself)."""
    try:
        return str(ipaddress.ip_network(str(cidr), strict=False))
    except ValueError:
        return str(cidr)


def forbidden_sources(resource_type: str, props: Mapping[str, Any], forbidden: Any) -> list[IngressSource]:
    """The inbound sources of a resource (:data:`INGRESS`) whose CIDR, normalised, is one of ``forbidden``
    (normalised too): the one comparison every cloud's no-public-ingress policy makes."""
    bad = {normalise_cidr(c) for c in as_list(forbidden)}
    return [s for s in INGRESS.extract(resource_type, props) if normalise_cidr(s.cidr) in bad]


__all__ = ["INGRESS", "IngressSource", "normalise_cidr", "forbidden_sources"]
