"""A third-party HTTP client through the VIP: `hey` (Debian's package), rate-limited to one connection at a
time, run while a step takes a director away. Its own counters (requests, errors, slowest request, status
codes) are compared with the step's bound and kept in the report: the lab is judged by a client the
project did not write. Standard library only (relayed to remote hypervisors, which need `hey` too)."""

from __future__ import annotations

import math
import re
import shutil
import signal
import subprocess
from dataclasses import asdict, dataclass, field
from typing import Any

CLIENT = "hey"
RATE_PER_S = 10  # -q: requests per second (one worker, a fresh connection each: -disable-keepalive)
TIMEOUT_S = 1  # -t: a request without an answer after 1 s is an error (a SYN the old holder swallowed)


@dataclass
class ClientFigures:
    requests: int = 0
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    error_kinds: dict[str, int] = field(default_factory=dict)
    slowest_s: float | None = None
    seconds: float | None = None

    def as_report(self) -> dict[str, Any]:
        return {"client": CLIENT} | asdict(self)


_SUMMARY = re.compile(r"^\s+(Total|Slowest):\s+([0-9.]+|NaN) secs", re.M)
_STATUS = re.compile(r"^\s+\[(\d{3})\]\s+(\d+) responses", re.M)
_ERROR = re.compile(r"^\s+\[(\d+)\]\s+(.+)$", re.M)


def parse_hey(text: str) -> ClientFigures:
    """hey's summary: Total/Slowest, the status code distribution and the error distribution (each error
    line `[count] message`, its message shortened to what follows its last ': ')."""
    figures = ClientFigures()
    for name, value in _SUMMARY.findall(text):
        number = None if value == "NaN" else float(value)
        if name == "Total":
            figures.seconds = number
        else:
            figures.slowest_s = number
    statuses, _, errors = text.partition("Error distribution:")
    statuses = statuses.split("Status code distribution:", 1)[-1] if "Status code distribution:" in statuses else ""
    figures.statuses = {code: int(n) for code, n in _STATUS.findall(statuses)}
    for count, message in _ERROR.findall(errors):
        kind = message.rsplit(": ", 1)[-1].strip()
        figures.error_kinds[kind] = figures.error_kinds.get(kind, 0) + int(count)
    figures.errors = sum(figures.error_kinds.values())
    figures.requests = sum(figures.statuses.values()) + figures.errors
    return figures


def client_error_bound(gap_bound_s: float) -> int:
    """Requests that may fail in one outage of at most `gap_bound_s`: ceil(gap x RATE_PER_S) + 1."""
    return math.ceil(gap_bound_s * RATE_PER_S) + 1


class ThirdPartyClient:
    """`hey` through the VIP for `seconds`, started now, read with result()."""

    def __init__(self, address: str, port: int, seconds: float) -> None:
        path = shutil.which(CLIENT)
        if path is None:
            raise FileNotFoundError(f"{CLIENT} is not installed on this host (Debian: apt install {CLIENT})")
        self.command = [path, "-z", f"{max(1, math.ceil(seconds))}s", "-c", "1", "-q", str(RATE_PER_S),
                        "-t", str(TIMEOUT_S), "-disable-keepalive", f"http://{address}:{port}/"]
        self._proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def result(self, timeout: float = 60) -> ClientFigures:
        out, _ = self._proc.communicate(timeout=timeout)
        return parse_hey(out)

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.communicate()

    def interrupt(self) -> None:
        """SIGINT: hey stops sending and prints its summary."""
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
