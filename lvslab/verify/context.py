"""What a step works with: the lab's spec, the SSH key, and the ways it reaches the world (SSH to a node, the
clock) plus the questions several steps ask of the live lab. One object passed to every step, so a test
passes a fake (a subclass, or other callables) instead of patching a module's globals."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from lvslab.model import VerifySpec
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

    def ssh(self, address: str, script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a shell script as root on a node."""
        return self.run_ssh(self.key, address, script, timeout=timeout)

    def vip_holders(self, only: list[str] | None = None) -> dict[str, bool]:
        """Which directors hold the VIP (`only`: ask just these, a frozen one cannot answer)."""
        return live.vip_holders(self, only)

    def split_brain(self, holding: list[str]) -> str:
        """Both directors hold the VIP: who, the ARP answers, and the repair."""
        return live.split_brain(self, holding)
