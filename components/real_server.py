"""A real server: nginx, the VIP on lo as /32 and the ARP sysctls of LVS-DR, configured by cloud-init."""

from __future__ import annotations

from typing import Any

import pulumi

from components.node import Node
from lvslab.model import LabFacts, NodeFacts
from lvslab.render import real_server_user_data


class RealServer(pulumi.ComponentResource):
    node: Node

    def __init__(self, name: str, facts: LabFacts, server: NodeFacts, ssh_public_key: pulumi.Output[str],
                 opts: pulumi.ResourceOptions | None = None, **node_args: Any) -> None:
        super().__init__("lvslab:index:RealServer", name, None, opts)
        user_data = ssh_public_key.apply(lambda key: real_server_user_data(facts.cfg, server, key))
        self.node = Node(f"{name}-node", facts, server, user_data, opts=pulumi.ResourceOptions(parent=self),
                         **node_args)
        self.register_outputs({"weight": server.weight})
