"""The lab's single L2 segment: a libvirt network in 'open' mode (no NAT, no firewall, no uplink)."""

from __future__ import annotations

import pulumi

from lvslab.config import LabConfig
from lvslab.render import mac_for, network_xml
from providers import libvirt


class LabNetwork(pulumi.ComponentResource):
    """Bridge with a fixed MAC and the host's address, so the host is the lab's client."""

    name: pulumi.Output[str]

    def __init__(self, name: str, cfg: LabConfig, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("lvslab:index:Network", name, None, opts)
        net_name = f"{cfg.prefix}-net"
        self.network = libvirt.Network(f"{name}-net", uri=cfg.libvirt_uri, name=net_name, xml=network_xml(cfg),
                                       opts=pulumi.ResourceOptions(parent=self))
        self.name = self.network.name
        self.register_outputs({"name": self.name, "bridge": cfg.bridge, "bridgeMac": mac_for(cfg.stack, "bridge"),
                               "hostAddress": cfg.host_address})
