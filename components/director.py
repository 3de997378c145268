"""A director: keepalived (VRRP + IPVS virtual_server) and ipvsadm, installed by cloud-init. With topology
lvs-keepalived its keepalived.conf is pushed by a command resource and reloaded (lvs-heartbeat: ldirectord.cf),
so day-2 changes (real servers, weights, scheduler, health check) update it in place instead of replacing
the VM."""

from __future__ import annotations

from collections.abc import Callable

import pulumi
import pulumi_command as command

from components.connection import node_connection
from components.node import Node, NodeArgs
from lvslab.commands import keepalived_push_script, ldirectord_push_script
from lvslab.config import LabConfig
from lvslab.faults import render_flags
from lvslab.guest import cloud_init_done_script
from lvslab.model import NodeFacts
from lvslab.render import director_user_data, pushed_file


class Director(pulumi.ComponentResource):
    node: Node
    config: command.remote.Command | None

    def __init__(self, name: str, shared: NodeArgs, director: NodeFacts, ssh_public_key: pulumi.Output[str],
                 auth_pass: pulumi.Output[str], boot_after: pulumi.Resource | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("lvslab:index:Director", name, None, opts)
        cfg = shared.facts.cfg
        # auth_pass is a secret, so the rendered user-data is one too.
        user_data = pulumi.Output.all(ssh_public_key, auth_pass).apply(
            lambda v: director_user_data(cfg, director, v[0], v[1]))
        self.node = Node(f"{name}-node", shared, director, pulumi.Output.secret(user_data), boot_after=boot_after,
                         opts=pulumi.ResourceOptions(parent=self))
        self.config = None
        timeout = f"{cfg.verify.ready_timeout}s"
        push = _config_push(cfg, director, auth_pass)
        if push is not None:
            suffix, script, content = push
            # A new domain (replaced VM) gets the file again; a changed file is an in-place update (stdin).
            self.config = command.remote.Command(
                f"{name}-{suffix}",
                connection=node_connection(director.address, shared.private_key, shared.access,
                                           cfg.verify.ready_timeout),
                create=script, stdin=pulumi.Output.secret(content),
                triggers=[self.node.domain.id], logging=command.remote.Logging.STDOUT_AND_STDERR,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.node.domain],
                                            custom_timeouts=pulumi.CustomTimeouts(create=timeout, update=timeout)))
        self.register_outputs({"state": director.state, "priority": director.priority})


def _config_push(cfg: LabConfig, director: NodeFacts,
                 auth_pass: pulumi.Output[str]) -> tuple[str, str, pulumi.Output[str]] | None:
    """(resource suffix, script, file content) of the director's pushed configuration (Topology.pushed), if its
    topology has one."""
    pushed = cfg.topo.pushed
    if pushed is None:
        return None
    done = cloud_init_done_script(director.name)
    stopped = not render_flags(cfg.faults).keepalived_running
    scripts: dict[str, Callable[[], str]] = {
        "keepalived.conf": lambda: keepalived_push_script(done, stop_after=stopped),
        "ldirectord.cf": lambda: ldirectord_push_script(done)}
    return (pushed.resource_suffix, scripts[pushed.name](),
            auth_pass.apply(lambda p: pushed_file(cfg, director, p)))
