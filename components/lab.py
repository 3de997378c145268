"""The whole LVS-DR lab: network, base image, two directors, N real servers, verification."""

from __future__ import annotations

from typing import Any

import pulumi

from components.base_image import BaseImage, ImageFiles
from components.director import Director
from components.network import LabNetwork
from components.real_server import RealServer
from components.verification import Verification
from lvslab.config import LabConfig
from providers.command import Password, SshKeyPair


class Lab(pulumi.ComponentResource):
    outputs: dict[str, Any]

    def __init__(self, name: str, cfg: LabConfig, files: ImageFiles, domain_type: str, pool_dir: str,
                 log_dir: str, auth_pass: pulumi.Output[str] | None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("lvslab:index:Lab", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        key = SshKeyPair(f"{name}-ssh-key", comment=f"{cfg.prefix}-verification", opts=child)
        if auth_pass is None:
            auth_pass = Password(f"{name}-vrrp-auth-pass", length=8, opts=child).value
        network = LabNetwork(f"{name}-network", cfg, opts=child)
        base = BaseImage(f"{name}-image", cfg, files, pool_dir, opts=child)
        common = dict(base=base, network=network, domain_type=domain_type, log_dir=log_dir, opts=child)
        directors = [Director(d.name, cfg, d, key.public_key, auth_pass, **common) for d in cfg.directors]
        servers = [RealServer(s.name, cfg, s, key.public_key, **common) for s in cfg.real_servers]
        nodes = [d.node for d in directors] + [s.node for s in servers]

        self.outputs = {
            "vipUrl": f"http://{cfg.vip}:{cfg.port}/",
            "master": cfg.master.name,
            "domainType": domain_type,
            "network": {"bridge": cfg.bridge, "subnet": str(cfg.subnet), "hostAddress": cfg.host_address},
            "nodes": [{"name": n.name, "role": n.role, "address": n.address, "domain": n.domain_name,
                       "consoleLog": n.console_log} for n in nodes],
            "consoleLogDir": log_dir,
            "sshPrivateKey": key.private_key,  # secret: shown only with --show-secrets
        }
        if cfg.verify.enabled:
            verification = Verification(f"{name}-verification", cfg, nodes, key.private_key, opts=child)
            self.outputs["verification"] = verification.results
        self.register_outputs(self.outputs)
