"""A real server: nginx, the VIP on lo as /32 and the ARP sysctls of LVS-DR, configured by cloud-init."""

from __future__ import annotations

import pulumi

from components.node import Node, NodeArgs
from lvslab.model import NodeFacts
from lvslab.render import real_server_user_data


class RealServer(pulumi.ComponentResource):
    node: Node

    def __init__(self, name: str, shared: NodeArgs, server: NodeFacts, ssh_public_key: pulumi.Output[str],
                 boot_after: pulumi.Resource | None = None, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("lvslab:index:RealServer", name, None, opts)
        cfg = shared.facts.cfg
        user_data = ssh_public_key.apply(lambda key: real_server_user_data(cfg, server, key))
        self.node = Node(f"{name}-node", shared, server, user_data, boot_after=boot_after,
                         opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({"weight": server.weight})
