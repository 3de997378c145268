"""What a step works with: the lab's spec, the SSH key, and the ways it reaches the world (SSH to a node, the
clock) plus the questions several steps ask of the live lab. One object passed to every step, so a test
passes a fake (a subclass, or other callables) instead of patching a module's globals."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from lvslab.model import NodeFacts, VerifySpec
from lvslab.verify import live
from lvslab.verify.probe import SshKey
from lvslab.verify.probe import ssh as probe_ssh


@dataclass
class StepContext:
    spec: VerifySpec
    key: SshKey
    run_ssh: Callable[..., subprocess.CompletedProcess[str]] = probe_ssh  # (key, address, script, timeout=)
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    _active: NodeFacts | None = field(default=None, init=False, repr=False)

    def ssh(self, address: str, script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a shell script as root on a node."""
        return self.run_ssh(self.key, address, script, timeout=timeout)

    def vip_holders(self, only: list[str] | None = None) -> dict[str, bool]:
        """Which directors hold the VIP (`only`: ask just these, a frozen one cannot answer)."""
        return live.vip_holders(self, only)

    def active_director(self) -> NodeFacts:
        """The director holding the VIP, asked once per step (the configured MASTER if none or both do: then the
        VIP checks say so): with nopreempt the BACKUP may legitimately hold it, and its IPVS table is the one
        that schedules the client."""
        if self._active is None:
            holders = self.vip_holders()
            held = [d for d in self.spec.directors if holders.get(d.name)]
            self._active = held[0] if len(held) == 1 else self.spec.master
        return self._active

    def named(self, director: NodeFacts) -> str:
        """A director's name for a message, saying when it holds the VIP instead of the configured MASTER."""
        if director == self.spec.master:
            return director.name
        return f"{director.name} (holds the VIP; the configured MASTER is {self.spec.master.name})"

    def split_brain(self, holding: list[str]) -> str:
        """Both directors hold the VIP: who, the ARP answers, and the repair."""
        return live.split_brain(self, holding)
