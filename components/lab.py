"""The whole LVS lab: credentials, network, storage, two directors, N real servers, verification."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_command as command
import pulumi_libvirt as libvirt

from components.connection import HypervisorAccess, hypervisor_connection
from components.credentials import Credentials
from components.director import Director
from components.network import LabNetwork
from components.node import NodeArgs
from components.real_server import RealServer
from components.storage import Storage
from components.verification import Verification
from lvslab.commands import host_dirs_commands
from lvslab.host import ImageFiles
from lvslab.model import LabFacts, boot_after


@dataclass(frozen=True)
class LabArgs:
    """What the composition root read and derived: the lab's facts, the image files and domain type of this
    host, the stack's authPass (None: generated), the way to a remote hypervisor (None: this machine's libvirt)
    and vm.bootsAtOnce resolved for that hypervisor (None: all at once)."""

    facts: LabFacts
    files: ImageFiles
    domain_type: str
    auth_pass: pulumi.Output[str] | None
    access: HypervisorAccess | None = None
    boots_at_once: int | None = None


class Lab(pulumi.ComponentResource):
    outputs: dict[str, Any]

    def __init__(self, name: str, args: LabArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        facts, files, domain_type, access, boots_at_once = (args.facts, args.files, args.domain_type, args.access,
                                                            args.boots_at_once)
        cfg = facts.cfg
        super().__init__("lvslab:index:Lab", name, None, opts)
        hypervisor = libvirt.Provider(f"{name}-libvirt", uri=cfg.libvirt_uri, opts=pulumi.ResourceOptions(parent=self))
        child = pulumi.ResourceOptions(parent=self, providers={"libvirt": hypervisor})
        creds = Credentials(f"{name}-credentials", f"{facts.prefix}-verification",
                            generate_auth_pass=args.auth_pass is None, opts=child)
        auth_pass = args.auth_pass if args.auth_pass is not None else creds.auth_pass
        assert auth_pass is not None
        # Host directories of the lab: made before the first node and removed after the last one is gone (one
        # deleter, so parallel node deletes cannot race on them). The seed ISOs are built here; the console
        # logs are written by the hypervisor's virtlogd, so their directory is made there.
        local_dirs = [facts.seed_dir] if access else [facts.console_dir, facts.seed_dir]
        create_dirs, delete_dirs = host_dirs_commands(*local_dirs)
        host_dirs: pulumi.Resource = command.local.Command(f"{name}-host-dirs", create=create_dirs,
                                                           delete=delete_dirs, opts=child)
        if access:
            create_dirs, delete_dirs = host_dirs_commands(facts.console_dir)
            host_dirs = command.remote.Command(
                f"{name}-hypervisor-dirs", connection=hypervisor_connection(access), create=create_dirs,
                delete=delete_dirs, opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(
                    depends_on=[host_dirs])))
        network = LabNetwork(f"{name}-network", facts, opts=child)
        storage = Storage(f"{name}-storage", facts, files, opts=child)
        shared = NodeArgs(facts=facts, storage=storage, network=network, domain_type=domain_type,
                          host_dirs=host_dirs, private_key=creds.private_key, access=access)
        # Directors first (they take longest); node i's domain waits for node i - boots_at_once to be ready.
        waits_for = boot_after(tuple(n.name for n in facts.nodes), boots_at_once or len(facts.nodes))
        ready: dict[str, pulumi.Resource] = {}

        def after(node: str) -> pulumi.Resource | None:
            previous = waits_for[node]
            return ready[previous] if previous else None

        directors: list[Director] = []
        for d in facts.directors:
            directors.append(Director(d.name, shared, d, creds.public_key, auth_pass, boot_after=after(d.name),
                                      opts=child))
            ready[d.name] = directors[-1].node.ready
        servers: list[RealServer] = []
        for s in facts.real_servers:
            servers.append(RealServer(s.name, shared, s, creds.public_key, boot_after=after(s.name), opts=child))
            ready[s.name] = servers[-1].node.ready
        nodes = [d.node for d in directors] + [s.node for s in servers]

        self.outputs = {
            "vipUrl": f"http://{cfg.vip}:{cfg.port}/",
            "vip": cfg.vip,
            "port": cfg.port,
            "master": facts.master.name,
            "domainType": domain_type,
            "lbKind": cfg.lb_kind,
            "topology": cfg.topology,
            "network": {"name": facts.network, "bridge": cfg.bridge, "subnet": str(cfg.subnet),
                        "hostAddress": cfg.host_address,
                        **({"clientSubnet": str(cfg.client_subnet), "clientAddress": cfg.client,
                            "gatewayVip": cfg.gateway_vip} if cfg.client_subnet else {})},
            "nodes": [{"name": n.name, "role": n.role, "address": n.address, "domain": n.domain,
                       "consoleLog": n.console_log} for n in facts.nodes],
            "consoleLogDir": facts.console_dir,
            "hypervisor": access.hv.name if access else "local",
            "sshPrivateKey": creds.private_key,  # secret: shown only with --show-secrets
        }
        if cfg.verify.enabled:
            configs = [d.config for d in directors if d.config is not None]
            verification = Verification(f"{name}-verification", facts, nodes, creds.private_key, configs,
                                        opts=child)
            self.outputs["verification"] = verification.results
        self.register_outputs(self.outputs)
