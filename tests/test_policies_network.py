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
