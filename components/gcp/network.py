"""``teeform:gcp:WorkloadNetwork``: a VPC of its own for a TEE VM, with no inbound path by default.

A custom-mode ``compute.Network`` (``auto_create_subnetworks=False``: no default subnets and none of the
``default`` network's pre-populated ``default-allow-*`` firewall rules), one ``compute.Subnetwork`` with
Private Google Access (the VM has no external IP; Artifact Registry, STS, Cloud KMS and the attestation
service are reached through Google's private access), and one ``compute.Firewall`` per configured
ingress rule (TCP port from a CIDR, to the workload's service account only). Without rules there is
no firewall at all and the VPC's implied deny-ingress rule applies (GCP VPC firewall docs, "Implied
rules"). Argument names: pulumi-gcp 10.2 (pulumi.md §4.3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from components.gcp.common import gcp_name
from teeform.targets.gcp_confidential_space import GcpIngressRule

TYPE = "teeform:gcp:WorkloadNetwork"


@dataclass
class WorkloadNetworkArgs:
    """``name_parts`` for physical names, ``project``, ``region``, subnet ``cidr``, ``ingress`` rules and
    the service account ``target_sa`` the rules apply to."""

    name_parts: list[str]
    project: str
    region: str
    cidr: str
    ingress: Sequence[GcpIngressRule]
    target_sa: pulumi.Input[str]


class WorkloadNetwork(pulumi.ComponentResource):
    """See the module docstring. Outputs: :attr:`network_id`, :attr:`subnetwork_id`."""

    def __init__(self, name: str, args: WorkloadNetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.network = gcp.compute.Network(
            f"{name}-vpc", name=gcp_name([*args.name_parts, "vpc"], 63), project=args.project,
            auto_create_subnetworks=False, opts=child)
        self.subnetwork = gcp.compute.Subnetwork(
            f"{name}-subnet", name=gcp_name([*args.name_parts, "subnet"], 63), project=args.project,
            region=args.region, network=self.network.id, ip_cidr_range=args.cidr, private_ip_google_access=True,
            opts=child)
        self.firewalls = [
            gcp.compute.Firewall(
                f"{name}-ingress-{i}", name=gcp_name([*args.name_parts, f"in{i}-{r.port}"], 63), project=args.project,
                network=self.network.id, direction="INGRESS", source_ranges=[r.cidr],
                allows=[gcp.compute.FirewallAllowArgs(protocol="tcp", ports=[str(r.port)])],
                target_service_accounts=[args.target_sa], opts=child)
            for i, r in enumerate(args.ingress)
        ]
        self.network_id = self.network.id
        self.subnetwork_id = self.subnetwork.id
        self.register_outputs({"network_id": self.network_id, "subnetwork_id": self.subnetwork_id})


__all__ = ["WorkloadNetwork", "WorkloadNetworkArgs", "TYPE"]
