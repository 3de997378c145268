"""One VM: a copy-on-write overlay of the base image, a cloud-init seed disk, and the domain."""

from __future__ import annotations

import pulumi

from components.base_image import BaseImage
from components.network import LabNetwork
from lvslab.config import Director, LabConfig, RealServer
from lvslab.render import DomainDisks, domain_xml, mac_for, meta_data, network_config
from providers import libvirt

OVERLAY_SIZE_MIB = 4096


class Node(pulumi.ComponentResource):
    """A lab VM with a fixed MAC and static address; its serial console goes to `console_log`."""

    domain_name: pulumi.Output[str]

    def __init__(self, name: str, cfg: LabConfig, node: Director | RealServer, role: str,
                 user_data: pulumi.Output[str], base: BaseImage, network: LabNetwork, domain_type: str,
                 log_dir: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("lvslab:index:Node", name, None, opts)
        uri, prefix = cfg.libvirt_uri, f"{cfg.prefix}-{node.name}"
        in_pool = pulumi.ResourceOptions(parent=self, depends_on=[base.pool])
        self.disk = libvirt.Volume(f"{name}-disk", uri=uri, pool=base.pool_name, name=f"{prefix}.qcow2",
                                   backing_path=base.base_path, size_mib=OVERLAY_SIZE_MIB, opts=in_pool)
        self.seed = libvirt.SeedDisk(f"{name}-seed", uri=uri, pool=base.pool_name, name=f"{prefix}-seed.iso",
                                     user_data=user_data, meta_data=meta_data(cfg, node),
                                     network_config=network_config(cfg, node), opts=in_pool)
        self.console_log = f"{log_dir}/{node.name}.log"
        optional = [p if p is not None else pulumi.Output.from_input("")
                    for p in (base.repo_path, base.kernel_path, base.initrd_path)]
        xml = pulumi.Output.all(self.disk.path, self.seed.path, *optional).apply(
            lambda paths: domain_xml(
                cfg, node, role, domain_type,
                DomainDisks(disk_path=paths[0], seed_path=paths[1], repo_path=paths[2] or None,
                            kernel=paths[3] or None, initrd=paths[4] or None),
                self.console_log,
            )
        )
        self.domain = libvirt.Domain(f"{name}-domain", uri=uri, name=prefix, xml=xml, console_log=self.console_log,
                                     opts=pulumi.ResourceOptions(parent=self, depends_on=[network.network]))
        self.domain_name = self.domain.name
        self.address = node.address
        self.name = node.name
        self.role = role
        self.register_outputs({"domain": self.domain_name, "address": node.address, "role": role,
                               "mac": mac_for(cfg.stack, node.name), "consoleLog": self.console_log})
