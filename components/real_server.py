"""A real server: nginx, the VIP on lo as /32 and the ARP sysctls of LVS-DR, configured by cloud-init."""

from __future__ import annotations

import pulumi

from components.base_image import BaseImage
from components.network import LabNetwork
from components.node import Node
from lvslab.config import LabConfig
from lvslab.config import RealServer as RealServerConfig
from lvslab.render import real_server_user_data


class RealServer(pulumi.ComponentResource):
    def __init__(self, name: str, cfg: LabConfig, server: RealServerConfig, ssh_public_key: pulumi.Output[str],
                 base: BaseImage, network: LabNetwork, domain_type: str, log_dir: str,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("lvslab:index:RealServer", name, None, opts)
        user_data = ssh_public_key.apply(lambda key: real_server_user_data(cfg, server, key))
        self.node = Node(f"{name}-node", cfg, server, "real-server", user_data, base, network, domain_type,
                         log_dir, opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({"weight": server.weight})
