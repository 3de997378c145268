"""Readable progress while a lab boots: one line per node when its stage changes (domain started, console
output, each cloud-init stage, ready), read from the nodes' serial console logs on this host, instead of
pulumi-command's SSH dial retries ("Dial 11/180 failed: retrying", a line per node every 3 s), which say
nothing a user can act on. pulumi's own resource lines and summary stay."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from typing import Any

from lvslab.verify.probe import Background

DIAL_RETRY = re.compile(r"\bDial \d+/\d+ failed: retrying\s*$")

# The console's cloud-init lines (22.4: "Cloud-init v. 22.4.2 running 'init' at ... Up 40.45 seconds."), in the
# order they come; the stage a node is in is the last one found.
STAGES: tuple[tuple[str, re.Pattern[bytes]], ...] = (
    ("booting (console output)", re.compile(rb".")),
    ("cloud-init: network (init)", re.compile(rb"Cloud-init v\. \S+ running 'init' ")),
    ("cloud-init: config modules", re.compile(rb"Cloud-init v\. \S+ running 'modules:config'")),
    ("cloud-init: final modules (packages, services)", re.compile(rb"Cloud-init v\. \S+ running 'modules:final'")),
    ("ready: cloud-init finished", re.compile(rb"Cloud-init v\. \S+ finished at ")),
)
_UPTIME = re.compile(rb"Up ([0-9.]+) seconds")


def is_dial_retry(line: str) -> bool:
    """A pulumi-command SSH dial retry line (kept in the run's event log, not shown)."""
    return bool(DIAL_RETRY.search(line))


def console_stage(text: bytes) -> str | None:
    """The boot stage a console log shows (None: no output yet), with the guest's uptime when cloud-init said it."""
    found = None
    for name, pattern in STAGES:
        matches = list(pattern.finditer(text)) if name != STAGES[0][0] else [pattern.search(text)]
        match = matches[-1] if matches else None
        if match is None:
            continue
        found = name
        uptime = _UPTIME.search(text, match.end(), match.end() + 400) if name != STAGES[0][0] else None
        if uptime:
            found = f"{name} (uptime {float(uptime.group(1)):.0f} s)"
    return found


class BootProgress(Background):
    """Polls each node's console log every `interval` s in a thread and says each stage change once."""

    def __init__(self, consoles: dict[str, str], say: Callable[[str], None], interval: float = 2.0) -> None:
        self.consoles = consoles
        self.say = say
        self.interval = interval
        self.seen: dict[str, str] = {}
        self.t0 = time.monotonic()
        # What the logs show already (a running node's, on a day-2 up) is not news: only changes are said.
        self.poll(say=False)
        self._init_thread()

    def domain_started(self, node: str) -> None:
        if node in self.consoles and node not in self.seen:
            self.seen[node] = "domain started"
            self.say(f"{node}: domain started ({time.monotonic() - self.t0:.0f} s)")

    def poll(self, say: bool = True) -> None:
        for node, path in self.consoles.items():
            try:
                with open(path, "rb") as f:
                    stage = console_stage(f.read())
            except OSError:
                continue
            if stage and self.seen.get(node, "").split(" (uptime")[0] != stage.split(" (uptime")[0]:
                self.seen[node] = stage
                if say:
                    self.say(f"{node}: {stage} ({time.monotonic() - self.t0:.0f} s)")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()


def local_consoles(nodes: list[Any], remote: bool) -> dict[str, str]:
    """{node: console log path} where the logs are on this host (a remote lab's are on its hypervisor)."""
    if remote:
        return {}
    return {n.name: n.console_log for n in nodes if os.path.isabs(n.console_log)}
