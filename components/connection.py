"""SSH connections of the lab's command resources: to a node (through the hypervisor when it is remote:
the lab's bridge is only reachable there) and to the hypervisor itself."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_command as command

from lvslab.hypervisor import Hypervisor

PER_DIAL_TIMEOUT_S = 5


@dataclass(frozen=True)
class HypervisorAccess:
    """A remote hypervisor and how to log in: its key (a secret) and its pinned host key, if known."""

    hv: Hypervisor
    key: pulumi.Output[str]
    host_key: str | None


def hypervisor_connection(access: HypervisorAccess) -> command.remote.ConnectionArgs:
    hv = access.hv
    return command.remote.ConnectionArgs(host=hv.host, port=hv.port, user=hv.user, private_key=access.key,
                                         host_key=access.host_key, per_dial_timeout=PER_DIAL_TIMEOUT_S)


def node_connection(address: str, private_key: pulumi.Output[str], access: HypervisorAccess | None,
                    patience_s: int) -> command.remote.ConnectionArgs:
    """root@address with the lab's key, dialling again for up to patience_s (slow emulated boots)."""
    proxy = None
    if access is not None:
        hv = access.hv
        proxy = command.remote.ProxyConnectionArgs(host=hv.host, port=hv.port, user=hv.user, private_key=access.key,
                                                   host_key=access.host_key, per_dial_timeout=PER_DIAL_TIMEOUT_S)
    return command.remote.ConnectionArgs(
        host=address, user="root", private_key=private_key, per_dial_timeout=PER_DIAL_TIMEOUT_S,
        dial_error_limit=max(60, patience_s // PER_DIAL_TIMEOUT_S), proxy=proxy)
