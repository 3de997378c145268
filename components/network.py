"""The lab's single L2 segment: a libvirt network in 'open' mode (no NAT, no firewall, no DHCP/DNS, no uplink)."""

from __future__ import annotations

import pulumi
import pulumi_libvirt as libvirt

from lvslab.model import LabFacts
from lvslab.render import network_xslt


class LabNetwork(pulumi.ComponentResource):
    """A bridge with a fixed MAC and the host's address on it, so the host is the lab's client. 'open' is
    the one mode that starts without dnsmasq and firewall rules; the XSLT adds what the schema lacks."""

    network: libvirt.Network

    def __init__(self, name: str, facts: LabFacts, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("lvslab:index:Network", name, None, opts)
        cfg = facts.cfg
        self.network = libvirt.Network(
            f"{name}-net", name=facts.network, mode="open", bridge=cfg.bridge,
            addresses=[str(cfg.subnet), *([str(cfg.client_subnet)] if cfg.client_subnet else [])],
            autostart=False, dhcp=libvirt.NetworkDhcpArgs(enabled=False), dns=libvirt.NetworkDnsArgs(enabled=False),
            xml=libvirt.NetworkXmlArgs(xslt=network_xslt(facts)),
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True))
        outputs = {"name": facts.network, "bridge": cfg.bridge, "bridgeMac": facts.bridge_mac,
                   "hostAddress": cfg.host_address}
        if cfg.client_subnet:  # LVS-NAT: the VIP's and the client's subnet
            outputs |= {"clientSubnet": str(cfg.client_subnet), "clientAddress": cfg.client}
        self.register_outputs(outputs)
