"""``CvmNetwork``: VNet, subnet, network security group, optional public IP, and the VM's NIC.

* The NSG has **no inbound rule of teeform's unless configured**: one ``Allow`` ``Inbound`` TCP rule
  per ``network.ingress`` entry (priority 100, 101, ... in config order), from that CIDR to that port.
  Azure's default rules still apply below them (``AllowVnetInBound``, ``AllowAzureLoadBalancerInBound``,
  ``DenyAllInBound`` at 65000-65500; Azure docs "Network security groups: default security rules"), so
  nothing from the internet reaches the VM unless a rule says so.
* Rules are inline ``security_rules`` only (pulumi.md §4.2: never mix inline rules with standalone
  ``network.SecurityRule`` resources).
* The NSG is attached to the subnet and to the NIC.
* A public IP (``Standard`` SKU, static) exists only with ``network.publicIp: true``; the output says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_azure_native as azn

from teeform.targets.azure_cvm import AzureIngress

#: Priority of the first configured inbound rule (NSG priorities are 100..4096, lower first).
FIRST_PRIORITY = 100


def security_rules(ingress: tuple[AzureIngress, ...]) -> list[azn.network.SecurityRuleArgs]:
    """One ``Allow``/``Inbound``/``Tcp`` rule per configured ingress entry, priorities from 100. Pure."""
    return [
        azn.network.SecurityRuleArgs(
            name=f"teeform-in-{i}", priority=FIRST_PRIORITY + i, direction="Inbound", access="Allow", protocol="Tcp",
            source_address_prefix=r.cidr, source_port_range="*", destination_address_prefix="*",
            destination_port_range=str(r.port), description=r.description or None,
        )
        for i, r in enumerate(ingress)
    ]


@dataclass
class CvmNetworkArgs:
    """Inputs of :class:`CvmNetwork` (see the module docstring)."""

    resource_group_name: pulumi.Input[str]
    location: str
    name_prefix: str
    cidr: str
    subnet_cidr: str
    ingress: tuple[AzureIngress, ...]
    public_ip: bool
    tags: dict[str, str]


class CvmNetwork(pulumi.ComponentResource):
    """See the module docstring. Outputs: ``nic_id``, ``subnet_id``, ``nsg_id``, ``public_ip`` (None without one)."""

    nic_id: pulumi.Output[str]

    def __init__(self, name: str, args: CvmNetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("teeform:azure:CvmNetwork", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        a = args
        nsg = azn.network.NetworkSecurityGroup(
            f"{name}-nsg", resource_group_name=a.resource_group_name, location=a.location,
            network_security_group_name=f"{a.name_prefix}-nsg", security_rules=security_rules(a.ingress),
            tags=a.tags, opts=child,
        )
        vnet = azn.network.VirtualNetwork(
            f"{name}-vnet", resource_group_name=a.resource_group_name, location=a.location,
            virtual_network_name=f"{a.name_prefix}-vnet",
            address_space=azn.network.AddressSpaceArgs(address_prefixes=[a.cidr]), tags=a.tags, opts=child,
        )
        subnet = azn.network.Subnet(
            f"{name}-subnet", resource_group_name=a.resource_group_name, virtual_network_name=vnet.name,
            subnet_name=f"{a.name_prefix}-subnet", address_prefix=a.subnet_cidr,
            network_security_group=azn.network.NetworkSecurityGroupArgs(id=nsg.id), opts=child,
        )
        pip = None
        if a.public_ip:
            pip = azn.network.PublicIPAddress(
                f"{name}-pip", resource_group_name=a.resource_group_name, location=a.location,
                public_ip_address_name=f"{a.name_prefix}-pip", public_ip_allocation_method="Static",
                sku=azn.network.PublicIPAddressSkuArgs(name="Standard"), tags=a.tags, opts=child,
            )
        nic = azn.network.NetworkInterface(
            f"{name}-nic", resource_group_name=a.resource_group_name, location=a.location,
            network_interface_name=f"{a.name_prefix}-nic",
            network_security_group=azn.network.NetworkSecurityGroupArgs(id=nsg.id),
            ip_configurations=[azn.network.NetworkInterfaceIPConfigurationArgs(
                name="primary", primary=True, private_ip_allocation_method="Dynamic",
                subnet=azn.network.SubnetArgs(id=subnet.id),
                public_ip_address=azn.network.PublicIPAddressArgs(id=pip.id) if pip is not None else None,
            )],
            tags=a.tags, opts=child,
        )
        self.nic_id = nic.id
        self.subnet_id = subnet.id
        self.nsg_id = nsg.id
        self.public_ip: pulumi.Output[str] | None = pip.ip_address if pip is not None else None
        self.register_outputs({"nic_id": nic.id, "subnet_id": subnet.id, "nsg_id": nsg.id})


__all__ = ["CvmNetwork", "CvmNetworkArgs", "security_rules", "FIRST_PRIORITY"]
