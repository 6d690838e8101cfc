"""`no-public-ingress`: every way pulumi-aws expresses ingress, compliant and violating."""

from __future__ import annotations

import pytest
from pulumi_support import policy_violations, resource

POLICY = "no-public-ingress"


def messages(res, config=None):
    return [(v.enforcement, v.message) for v in policy_violations(POLICY, [res], config)]


def rule(**inputs):
    return resource("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
                    {"securityGroupId": "sg-1", "ipProtocol": "tcp", "fromPort": 22, "toPort": 22, **inputs}, "ssh")


def test_private_cidrs_pass():
    assert messages(rule(cidrIpv4="10.0.0.0/8")) == []
    assert messages(rule(cidrIpv6="fd00::/8")) == []
    egress = resource("aws:ec2/securityGroupRule:SecurityGroupRule", {"type": "egress", "cidrBlocks": ["0.0.0.0/0"]}, "e")
    assert messages(egress) == []


def test_standalone_rule_open_to_world_is_advisory_by_default():
    assert messages(rule(cidrIpv4="0.0.0.0/0")) == [(
        "advisory",
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule 'ssh': field 'cidrIpv4' is 0.0.0.0/0, which opens "
        "port(s) 22 to the whole internet. Allow only the CIDRs that need access (teeform:targets[].network.ingress), or none.",
    )]
    assert [m for _, m in messages(rule(cidrIpv6="::/0"))][0].startswith(
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule 'ssh': field 'cidrIpv6' is ::/0"
    )


def test_mandatory_through_pack_config():
    assert messages(rule(cidrIpv4="0.0.0.0/0"), {"enforcementLevel": "mandatory"})[0][0] == "mandatory"


@pytest.mark.parametrize("field", ["cidrBlocks", "ipv6CidrBlocks"])
def test_legacy_rule_and_inline_ingress(field):
    cidr = "0.0.0.0/0" if field == "cidrBlocks" else "::/0"
    legacy = resource("aws:ec2/securityGroupRule:SecurityGroupRule",
                      {"type": "ingress", "fromPort": 443, "toPort": 443, "protocol": "tcp", field: ["10.0.0.0/8", cidr]}, "r")
    assert [m for _, m in messages(legacy)] == [
        f"aws:ec2/securityGroupRule:SecurityGroupRule 'r': field '{field}' contains {cidr}, which opens port(s) 443 to the "
        "whole internet. Allow only the CIDRs that need access (teeform:targets[].network.ingress), or none."
    ]
    sg = resource("aws:ec2/securityGroup:SecurityGroup",
                  {"ingress": [{"fromPort": 0, "toPort": 0, "protocol": "-1", field: [cidr]}]}, "sg")
    (m,) = [m for _, m in messages(sg)]
    assert m.startswith(f"aws:ec2/securityGroup:SecurityGroup 'sg': field 'ingress[0].{field}' contains {cidr}, which opens port(s) all")


def test_forbidden_cidrs_configurable():
    assert messages(rule(cidrIpv4="192.0.2.0/24"), {"forbiddenCidrs": ["192.0.2.0/24"]}) != []


# ----------------------------------------------------------------------------- other clouds (ingress family)

FIX = "Allow only the CIDRs that need access (teeform:targets[].network.ingress), or none."


def test_azure_nsg_inline_and_standalone_rules():
    nsg = resource("azure-native:network:NetworkSecurityGroup", {"securityRules": [
        {"name": "ok", "direction": "Inbound", "access": "Allow", "sourceAddressPrefix": "10.0.0.0/8", "destinationPortRange": "443"},
        {"name": "deny", "direction": "Inbound", "access": "Deny", "sourceAddressPrefix": "*", "destinationPortRange": "22"},
        {"name": "out", "direction": "Outbound", "access": "Allow", "sourceAddressPrefix": "*"},
        {"name": "ssh", "direction": "Inbound", "access": "Allow", "sourceAddressPrefix": "Internet", "destinationPortRange": "22"},
    ]}, "nsg")
    assert [m for _, m in messages(nsg)] == [
        "azure-native:network:NetworkSecurityGroup 'nsg': field 'securityRules[3].sourceAddressPrefix' is Internet "
        f"(= 0.0.0.0/0), which opens port(s) 22 to the whole internet. {FIX}"
    ]
    rule_ = resource("azure-native:network:SecurityRule", {"direction": "Inbound", "access": "Allow",
                                                           "sourceAddressPrefixes": ["10.0.0.0/8", "::/0"], "destinationPortRanges": ["80", "443"]}, "r")
    (m,) = [m for _, m in messages(rule_)]
    assert "field 'sourceAddressPrefixes' contains ::/0, which opens port(s) 80,443" in m


def test_gcp_firewall_including_the_implicit_any_source():
    fw = lambda **p: resource("gcp:compute/firewall:Firewall", {"network": "n", "allows": [{"protocol": "tcp", "ports": ["22"]}], **p}, "fw")  # noqa: E731
    assert messages(fw(sourceRanges=["10.0.0.0/8"])) == []
    assert messages(fw(sourceRanges=["0.0.0.0/0"], direction="EGRESS")) == []
    assert messages(fw(sourceRanges=["0.0.0.0/0"], disabled=True)) == []
    assert messages(fw(sourceTags=["web"])) == []
    (m,) = [m for _, m in messages(fw(sourceRanges=["10.0.0.0/8", "0.0.0.0/0"]))]
    assert m == f"gcp:compute/firewall:Firewall 'fw': field 'sourceRanges' contains 0.0.0.0/0, which opens port(s) tcp:22 to the whole internet. {FIX}"
    (m,) = [m for _, m in messages(fw())]  # GCP: an ingress rule without a source applies to 0.0.0.0/0
    assert "(not set: GCP applies 0.0.0.0/0) (= 0.0.0.0/0)" in m


def test_alicloud_security_group_rule():
    r = lambda **p: resource("alicloud:ecs/securityGroupRule:SecurityGroupRule", {"securityGroupId": "sg", "ipProtocol": "tcp", "portRange": "22/22", **p}, "a")  # noqa: E731
    assert messages(r(type="ingress", cidrIp="10.0.0.0/8")) == []
    assert messages(r(type="egress", cidrIp="0.0.0.0/0")) == []
    assert messages(r(type="ingress", cidrIp="0.0.0.0/0", policy="drop")) == []
    (m,) = [m for _, m in messages(r(type="ingress", cidrIp="0.0.0.0/0"))]
    assert m.startswith("alicloud:ecs/securityGroupRule:SecurityGroupRule 'a': field 'cidrIp' is 0.0.0.0/0, which opens port(s) 22/22")
