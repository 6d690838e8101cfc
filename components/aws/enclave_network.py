"""``EnclaveNetwork``: where the enclave host lives, and what may reach it.

Either an existing VPC and subnet (``network.vpcId``/``subnetId`` in the stack), or a new VPC with
one subnet, which is either

* **public** (default): routed to an internet gateway (the host needs outbound HTTPS to S3, KMS and
  the Amazon Linux repositories), or
* **private** (``network.private: true``): no internet gateway, no public IP, an empty route table;
  S3 is reached through a *gateway* VPC endpoint (``com.amazonaws.<region>.s3``, a route in the
  subnet's route table) and KMS through an *interface* endpoint (``com.amazonaws.<region>.kms``,
  private DNS on, so ``kms.<region>.amazonaws.com`` -- the host's vsock-proxy allowlist entry --
  resolves to the endpoint's addresses), whose own security group admits TCP 443 from the host's
  group only. The endpoint id is exported as :attr:`EnclaveNetwork.kms_endpoint_id` for the key's
  ``aws:SourceVpce`` condition. Sources: Amazon VPC PrivateLink guide, "Gateway endpoints for
  Amazon S3" and "Access AWS KMS through a VPC endpoint" (private DNS names); pulumi-aws
  ``ec2.VpcEndpoint`` (``vpc_endpoint_type``, ``route_table_ids``, ``subnet_ids``,
  ``security_group_ids``, ``private_dns_enabled``).

A VPC teeform creates also gets its **default security group closed**: an
``aws.ec2.DefaultSecurityGroup`` with no ingress and no egress, which the provider adopts and strips
of AWS's default rules (pulumi-aws ``ec2.DefaultSecurityGroup`` docs; CIS AWS Foundations 5.4 /
Security Hub EC2.2 "VPC default security groups should not allow inbound or outbound traffic").
The default group of an existing VPC is left alone (other workloads may use it).

The host's security group has **no inline rules** (the provider docs warn against
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
        private: create a private subnet with S3 gateway and KMS interface endpoints (new VPC only).
        region: AWS region of the endpoints' service names (required when ``private``).
    """

    vpc_id: str | None = None
    subnet_id: str | None = None
    cidr: str = "10.42.0.0/16"
    ingress: Sequence[IngressRule] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    private: bool = False
    region: str | None = None


def endpoint_service(region: str, service: str) -> str:
    """``com.amazonaws.<region>.<service>``: the VPC endpoint service name of an AWS service
    (PrivateLink guide, "AWS services that integrate with AWS PrivateLink")."""
    return f"com.amazonaws.{region}.{service}"


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
    """VPC + subnet (or existing ids), the closed default security group of a created VPC, the
    host's security group and, when private, the S3 and KMS VPC endpoints. Outputs: ``vpc_id``,
    ``subnet_id``, ``security_group_id``, ``kms_endpoint_id`` (None unless private).

    Raises:
        TeeformError: (before anything is registered) only one of vpcId/subnetId, or ``private``
            with an existing VPC or without a region.
    """

    vpc_id: pulumi.Output[str]
    subnet_id: pulumi.Output[str]
    security_group_id: pulumi.Output[str]
    kms_endpoint_id: pulumi.Output[str] | None

    def __init__(self, name: str, args: EnclaveNetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        if bool(args.vpc_id) != bool(args.subnet_id):
            raise TeeformError("give both vpcId and subnetId, or neither", field="network")
        if args.private and (args.vpc_id or not args.region):
            raise TeeformError("a private network needs a teeform-created VPC and a region", field="network.private")
        super().__init__("teeform:aws:EnclaveNetwork", name, None, opts)
        self.kms_endpoint_id = None
        routes: aws.ec2.RouteTable | None = None
        if args.vpc_id and args.subnet_id:
            self.vpc_id = pulumi.Output.from_input(args.vpc_id)
            self.subnet_id = pulumi.Output.from_input(args.subnet_id)
        else:
            routes = self._create_vpc(name, args)
        self._create_security_group(name, args)
        if args.private:
            assert routes is not None and args.region is not None
            self._create_endpoints(name, args, routes, args.region)
        self.register_outputs(
            {"vpc_id": self.vpc_id, "subnet_id": self.subnet_id, "security_group_id": self.security_group_id,
             "kms_endpoint_id": self.kms_endpoint_id}
        )

    def _create_vpc(self, name: str, args: EnclaveNetworkArgs) -> aws.ec2.RouteTable:
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        sub = subnet_cidr(args.cidr)
        vpc = aws.ec2.Vpc(
            f"{name}-vpc", cidr_block=args.cidr, enable_dns_support=True, enable_dns_hostnames=True,
            tags={**tags, "Name": f"{name}-vpc"}, opts=child,
        )
        # No ingress/egress arguments: the provider removes every rule of the VPC's default group.
        aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg", vpc_id=vpc.id, tags={**tags, "Name": f"{name}-default-closed"}, opts=child,
        )
        if args.private:
            routes = aws.ec2.RouteTable(f"{name}-rt", vpc_id=vpc.id, tags=tags, opts=child)
        else:
            igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=tags, opts=child)
            routes = aws.ec2.RouteTable(
                f"{name}-rt", vpc_id=vpc.id,
                routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=igw.id)],
                tags=tags, opts=child,
            )
        # Public: an IP only for outbound HTTPS; nothing is reachable inbound unless `ingress` says so.
        subnet = aws.ec2.Subnet(
            f"{name}-subnet", vpc_id=vpc.id, cidr_block=sub, map_public_ip_on_launch=not args.private,
            tags={**tags, "Name": f"{name}-subnet"}, opts=child,
        )
        aws.ec2.RouteTableAssociation(f"{name}-rta", subnet_id=subnet.id, route_table_id=routes.id, opts=child)
        self.vpc_id = vpc.id
        self.subnet_id = subnet.id
        return routes

    def _create_endpoints(self, name: str, args: EnclaveNetworkArgs, routes: aws.ec2.RouteTable, region: str) -> None:
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        aws.ec2.VpcEndpoint(
            f"{name}-s3-endpoint", vpc_id=self.vpc_id, service_name=endpoint_service(region, "s3"),
            vpc_endpoint_type="Gateway", route_table_ids=[routes.id], tags=tags, opts=child,
        )
        sg = aws.ec2.SecurityGroup(
            f"{name}-kms-endpoint-sg",
            description="teeform KMS interface endpoint: HTTPS from the enclave host only",
            vpc_id=self.vpc_id, revoke_rules_on_delete=True, tags=tags, opts=child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-kms-endpoint-ingress", security_group_id=sg.id, ip_protocol="tcp",
            from_port=EGRESS_PORT, to_port=EGRESS_PORT, referenced_security_group_id=self.security_group_id,
            description="HTTPS from the enclave host", opts=child,
        )
        kms = aws.ec2.VpcEndpoint(
            f"{name}-kms-endpoint", vpc_id=self.vpc_id, service_name=endpoint_service(region, "kms"),
            vpc_endpoint_type="Interface", private_dns_enabled=True, subnet_ids=[self.subnet_id],
            security_group_ids=[sg.id], tags=tags, opts=child,
        )
        self.kms_endpoint_id = kms.id

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
