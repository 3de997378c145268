"""A director: keepalived (VRRP + IPVS virtual_server in DR mode) and ipvsadm, configured by cloud-init."""

from __future__ import annotations

import pulumi

from components.base_image import BaseImage
from components.network import LabNetwork
from components.node import Node
from lvslab.config import Director as DirectorConfig
from lvslab.config import LabConfig
from lvslab.render import director_user_data


class Director(pulumi.ComponentResource):
    def __init__(self, name: str, cfg: LabConfig, director: DirectorConfig, ssh_public_key: pulumi.Output[str],
                 auth_pass: pulumi.Output[str], base: BaseImage, network: LabNetwork, domain_type: str,
                 log_dir: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("lvslab:index:Director", name, None, opts)
        # auth_pass is a secret, so the rendered user-data is one too.
        user_data = pulumi.Output.all(ssh_public_key, auth_pass).apply(
            lambda v: director_user_data(cfg, director, v[0], v[1]))
        self.node = Node(f"{name}-node", cfg, director, "director", pulumi.Output.secret(user_data), base, network,
                         domain_type, log_dir, opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({"state": director.state, "priority": director.priority})
