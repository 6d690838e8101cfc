"""``EnclaveNetwork``: where the enclave host lives, and what may reach it.

Either an existing VPC and subnet (``network.vpcId``/``subnetId`` in the stack), or a new VPC with
one subnet routed to an internet gateway (the host needs outbound HTTPS to S3, KMS and the Amazon
Linux repositories). The security group has **no inline rules** (the provider docs warn against
mixing inline and standalone rules, pulumi.md §4.1): ingress is one standalone
``aws.vpc.SecurityGroupIngressRule`` per configured ``{cidr, port}`` (none by default), and egress is
TCP 443 only. Traffic to the VPC's DNS resolver and to the instance metadata service is not subject
to security groups, so nothing else is needed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from teeform.errors import TeeformError
from teeform.targets.aws_nitro_enclave import IngressRule

#: The only egress: HTTPS (S3, KMS, dnf repositories).
EGRESS_PORT = 443


@dataclass
class EnclaveNetworkArgs:
    """Inputs of :class:`EnclaveNetwork`.

    Attributes:
        vpc_id, subnet_id: existing network (both or neither); when None a VPC of ``cidr`` is created.
        cidr: IPv4 CIDR of the new VPC; the subnet is its first /24 (or the whole VPC if smaller).
        ingress: allowed inbound TCP ``{cidr, port}`` rules (IPv4 or IPv6 CIDRs).
        tags: tags for every child.
    """

    vpc_id: str | None = None
    subnet_id: str | None = None
    cidr: str = "10.42.0.0/16"
    ingress: Sequence[IngressRule] = ()
    tags: Mapping[str, str] = field(default_factory=dict)


def subnet_cidr(vpc_cidr: str) -> str:
    """First /24 of ``vpc_cidr`` (or ``vpc_cidr`` itself when its prefix is /24 or longer).

    Raises:
        TeeformError: ``vpc_cidr`` is not an IPv4 network between /16 and /28 (the VPC limits).
    """
    try:
        net = ipaddress.IPv4Network(vpc_cidr, strict=True)
    except ValueError as exc:
        raise TeeformError(f"not an IPv4 CIDR: {vpc_cidr!r} ({exc})", field="network.cidr") from None
    if not 16 <= net.prefixlen <= 28:
        raise TeeformError(f"a VPC CIDR must be /16 to /28, got {vpc_cidr}", field="network.cidr")
    return str(net if net.prefixlen >= 24 else next(net.subnets(new_prefix=24)))


class EnclaveNetwork(pulumi.ComponentResource):
    """VPC + subnet (or existing ids) and the host's security group. Outputs: ``vpc_id``,
    ``subnet_id``, ``security_group_id``."""

    vpc_id: pulumi.Output[str]
    subnet_id: pulumi.Output[str]
    security_group_id: pulumi.Output[str]

    def __init__(self, name: str, args: EnclaveNetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("teeform:aws:EnclaveNetwork", name, None, opts)
        if bool(args.vpc_id) != bool(args.subnet_id):
            raise TeeformError("give both vpcId and subnetId, or neither", field="network")
        if args.vpc_id and args.subnet_id:
            self.vpc_id = pulumi.Output.from_input(args.vpc_id)
            self.subnet_id = pulumi.Output.from_input(args.subnet_id)
        else:
            self._create_vpc(name, args)
        self._create_security_group(name, args)
        self.register_outputs(
            {"vpc_id": self.vpc_id, "subnet_id": self.subnet_id, "security_group_id": self.security_group_id}
        )

    def _create_vpc(self, name: str, args: EnclaveNetworkArgs) -> None:
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        sub = subnet_cidr(args.cidr)
        vpc = aws.ec2.Vpc(
            f"{name}-vpc", cidr_block=args.cidr, enable_dns_support=True, enable_dns_hostnames=True,
            tags={**tags, "Name": f"{name}-vpc"}, opts=child,
        )
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=tags, opts=child)
        routes = aws.ec2.RouteTable(
            f"{name}-rt", vpc_id=vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=igw.id)],
            tags=tags, opts=child,
        )
        # A public IP only for outbound HTTPS; nothing is reachable inbound unless `ingress` says so.
        subnet = aws.ec2.Subnet(
            f"{name}-subnet", vpc_id=vpc.id, cidr_block=sub, map_public_ip_on_launch=True,
            tags={**tags, "Name": f"{name}-subnet"}, opts=child,
        )
        aws.ec2.RouteTableAssociation(f"{name}-rta", subnet_id=subnet.id, route_table_id=routes.id, opts=child)
        self.vpc_id = vpc.id
        self.subnet_id = subnet.id

    def _create_security_group(self, name: str, args: EnclaveNetworkArgs) -> None:
        child = pulumi.ResourceOptions(parent=self)
        sg = aws.ec2.SecurityGroup(
            f"{name}-sg",
            description="teeform enclave host: listed ingress only, egress HTTPS only",
            vpc_id=self.vpc_id,
            revoke_rules_on_delete=True,
            tags=dict(args.tags),
            opts=child,
        )
        for i, rule in enumerate(args.ingress):
            try:
                net = ipaddress.ip_network(rule.cidr, strict=False)
            except ValueError as exc:
                raise TeeformError(f"not a CIDR: {rule.cidr!r} ({exc})", field=f"network.ingress[{i}].cidr") from None
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-ingress-{i}",
                security_group_id=sg.id,
                ip_protocol="tcp",
                from_port=rule.port,
                to_port=rule.port,
                cidr_ipv4=str(net) if net.version == 4 else None,
                cidr_ipv6=str(net) if net.version == 6 else None,
                description=rule.description or f"teeform ingress {i}",
                opts=child,
            )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-egress-https",
            security_group_id=sg.id,
            ip_protocol="tcp",
            from_port=EGRESS_PORT,
            to_port=EGRESS_PORT,
            cidr_ipv4="0.0.0.0/0",
            description="HTTPS to S3, KMS and the Amazon Linux repositories",
            opts=child,
        )
        self.security_group_id = sg.id
