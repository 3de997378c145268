"""A director: keepalived (VRRP + IPVS virtual_server) and ipvsadm, configured by cloud-init."""

from __future__ import annotations

from typing import Any

import pulumi

from components.node import Node
from lvslab.model import LabFacts, NodeFacts
from lvslab.render import director_user_data


class Director(pulumi.ComponentResource):
    node: Node

    def __init__(self, name: str, facts: LabFacts, director: NodeFacts, ssh_public_key: pulumi.Output[str],
                 auth_pass: pulumi.Output[str], opts: pulumi.ResourceOptions | None = None, **node_args: Any) -> None:
        super().__init__("lvslab:index:Director", name, None, opts)
        # auth_pass is a secret, so the rendered user-data is one too.
        user_data = pulumi.Output.all(ssh_public_key, auth_pass).apply(
            lambda v: director_user_data(facts.cfg, director, v[0], v[1]))
        self.node = Node(f"{name}-node", facts, director, pulumi.Output.secret(user_data),
                         opts=pulumi.ResourceOptions(parent=self), **node_args)
        self.register_outputs({"state": director.state, "priority": director.priority})
