"""One VM: a copy-on-write overlay of the base image, a cloud-init seed disk, and the domain."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_command as command
import pulumi_libvirt as libvirt

from components.connection import HypervisorAccess, node_connection
from components.network import LabNetwork
from components.storage import Storage
from lvslab.commands import SEED_ISO_COMMAND, SEED_ISO_DELETE
from lvslab.guest import ready_script
from lvslab.model import OVERLAY_SIZE_MIB, LabFacts, NodeFacts
from lvslab.render import domain_xslt, meta_data, network_config

# Inputs pulumi-libvirt 0.5.4 would update in place although the running guest never sees the change
# (a stale seed, kernel or NIC): replace the domain instead.
REPLACE_DOMAIN_ON = ["kernel", "initrd", "cmdlines", "disks", "networkInterfaces", "type", "cpu",
                     "memory", "vcpu", "xml"]


@dataclass(frozen=True)
class NodeArgs:
    """What every node of a lab shares: the lab's facts, its storage and network, the domain type, the host
    directories made before the first node, the SSH key its commands log in with, and the way to a remote
    hypervisor (None: this machine's libvirt)."""

    facts: LabFacts
    storage: Storage
    network: LabNetwork
    domain_type: str
    host_dirs: pulumi.Resource
    private_key: pulumi.Output[str]
    access: HypervisorAccess | None


class Node(pulumi.ComponentResource):
    """A lab VM with a fixed MAC and static address; its serial console also goes to `facts.console_log`.
    `ready` finishes when its first boot did (cloud-init done, over SSH)."""

    domain: libvirt.Domain
    ready: command.remote.Command

    def __init__(self, name: str, shared: NodeArgs, node: NodeFacts, user_data: pulumi.Input[str],
                 boot_after: pulumi.Resource | None = None, opts: pulumi.ResourceOptions | None = None) -> None:
        """boot_after: the readiness of the node whose boot this one waits for (vm.bootsAtOnce)."""
        super().__init__("lvslab:index:Node", name, None, opts)
        facts, storage, network, host_dirs = shared.facts, shared.storage, shared.network, shared.host_dirs
        domain_type = shared.domain_type
        self.facts = node
        # The NoCloud seed: an ISO built on this machine and uploaded as a plain volume. (pulumi-libvirt
        # 0.5.4's CloudInitDisk reads its ISO back over a libvirt stream at every refresh; here that hung
        # or returned a truncated image in about one refresh out of four.)
        self.seed_iso = command.local.Command(
            f"{name}-seed-iso", create=SEED_ISO_COMMAND, delete=SEED_ISO_DELETE,
            environment={"SEED_ISO": node.seed_file, "USER_DATA": user_data, "META_DATA": meta_data(node),
                         "NETWORK_CONFIG": network_config(facts, node)},
            logging=command.local.Logging.NONE,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[host_dirs]))
        self.seed = libvirt.Volume(
            f"{name}-seed", name=node.seed_volume, pool=storage.pool.name, source=node.seed_file, format="iso",
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True, depends_on=[self.seed_iso],
                                        replacement_trigger=self.seed_iso.stdout))
        # A new seed means a new first boot: the overlay is replaced with it (a domain re-created on an old
        # overlay would skip cloud-init and keep stale host keys).
        self.disk = libvirt.Volume(
            f"{name}-disk", name=node.disk_volume, pool=storage.pool.name, base_volume_id=storage.base.id,
            size=OVERLAY_SIZE_MIB * 1024 * 1024, format="qcow2",
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True, replace_with=[self.seed]))
        disks = [libvirt.DomainDiskArgs(volume_id=self.disk.id), libvirt.DomainDiskArgs(volume_id=self.seed.id)]
        if storage.repo is not None:
            disks.append(libvirt.DomainDiskArgs(volume_id=storage.repo.id))
        direct_boot = storage.kernel is not None
        self.domain = libvirt.Domain(
            f"{name}-domain", name=node.domain, description=f"lvs-lab {facts.cfg.stack}: {node.role} {node.name}",
            type=domain_type, machine="pc", memory=facts.cfg.vm.memory_mib, vcpu=facts.cfg.vm.vcpus,
            cpu=libvirt.DomainCpuArgs(mode="maximum" if domain_type == "qemu" else "host-passthrough"),
            kernel=storage.kernel.id if direct_boot else None,
            initrd=storage.initrd.id if direct_boot and storage.initrd is not None else None,
            cmdlines=facts.cmdlines if direct_boot else None,
            disks=disks,
            network_interfaces=[libvirt.DomainNetworkInterfaceArgs(network_id=network.network.id, mac=node.mac,
                                                                   wait_for_lease=False)],
            consoles=[libvirt.DomainConsoleArgs(type="pty", target_port="0", target_type="serial")],
            autostart=False, running=True, qemu_agent=False,
            xml=libvirt.DomainXmlArgs(xslt=domain_xslt(facts, node, domain_type,
                                                        facts.volume("repo.iso") if storage.repo else None)),
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True, replace_on_changes=REPLACE_DOMAIN_ON,
                                        replace_with=[self.disk, self.seed],
                                        depends_on=[host_dirs, *([boot_after] if boot_after else [])]))
        # Waits over SSH, patient with slow emulated boots; a new domain is a new first boot to wait for.
        timeout = f"{facts.cfg.verify.ready_timeout}s"
        self.ready = command.remote.Command(
            f"{name}-ready",
            connection=node_connection(node.address, shared.private_key, shared.access,
                                       facts.cfg.verify.ready_timeout),
            create=ready_script(node.name), triggers=[self.domain.id], logging=command.remote.Logging.STDERR,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.domain],
                                        custom_timeouts=pulumi.CustomTimeouts(create=timeout, update=timeout)))
        self.register_outputs({"domain": node.domain, "address": node.address, "role": node.role, "mac": node.mac,
                               "consoleLog": node.console_log})
