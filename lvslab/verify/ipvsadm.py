"""Parsers of ipvsadm's output (-Ln, --stats, -Lnc, --timeout, --daemon), and the shell a director runs to
watch its IPVS table."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_STATS_RS = re.compile(r"^\s+->\s+(\d+\.\d+\.\d+\.\d+):(\d+)\s+(\d+)\s+(\d+)\s+(\d+)")
_LIST_RS = re.compile(r"^\s+->\s+(\d+\.\d+\.\d+\.\d+):(\d+)\s+(\w+)\s+(\d+)\s+(\d+)\s+(\d+)")


def parse_ipvsadm_stats(text: str) -> dict[str, dict[str, int]]:
    """`ipvsadm -Ln --stats` -> {rs_address: {conns, inpkts, outpkts}} for real servers."""
    out = {}
    for line in text.splitlines():
        m = _STATS_RS.match(line)
        if m:
            out[m.group(1)] = {"conns": int(m.group(3)), "inpkts": int(m.group(4)), "outpkts": int(m.group(5))}
    return out


def parse_ipvsadm_list(text: str) -> dict[str, dict[str, Any]]:
    """`ipvsadm -Ln` -> {rs_address: {forward, weight}}."""
    out = {}
    for line in text.splitlines():
        m = _LIST_RS.match(line)
        if m:
            out[m.group(1)] = {"forward": m.group(3), "weight": int(m.group(4))}
    return out


@dataclass(frozen=True)
class IpvsConnection:
    """One line of `ipvsadm -Lnc`; a persistence template has client port 0 (state NONE, ASSURED once a
    connection used it)."""

    protocol: str
    expire_s: int
    state: str
    client: str
    client_port: int
    virtual: str
    destination: str

    @property
    def is_template(self) -> bool:
        return self.client_port == 0


_LNC_RE = re.compile(r"^(\w+)\s+(\d+):(\d+)\s+(\S+)\s+(\d+\.\d+\.\d+\.\d+):(\d+)\s+(\S+)\s+(\S+)\s*$")


def parse_ipvsadm_connections(text: str) -> list[IpvsConnection]:
    """`ipvsadm -Lnc` -> its entries (headers skipped)."""
    out = []
    for line in text.splitlines():
        m = _LNC_RE.match(line.strip())
        if m:
            out.append(IpvsConnection(m.group(1), int(m.group(2)) * 60 + int(m.group(3)), m.group(4), m.group(5),
                                      int(m.group(6)), m.group(7), m.group(8)))
    return out


_TIMEOUT_RE = re.compile(r"Timeout \(tcp tcpfin udp\):\s+(\d+)\s+(\d+)\s+(\d+)")
_DAEMON_RE = re.compile(r"(master|backup) sync daemon \(mcast=([^,]+), syncid=(\d+)")


def parse_ipvsadm_timeouts(text: str) -> tuple[int, int, int] | None:
    """`ipvsadm -L --timeout` -> (tcp, tcpfin, udp)."""
    m = _TIMEOUT_RE.search(text)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def parse_sync_daemons(text: str) -> dict[str, str]:
    """`ipvsadm -L --daemon` -> {"master"|"backup": "interface syncid"} of the running sync daemons."""
    return {m.group(1): f"{m.group(2)} {m.group(3)}" for m in _DAEMON_RE.finditer(text)}


def table_watch_script(address: str, port: int, present: bool, timeout: float) -> str:
    """Shell run on a director: prints 'watching', then 'done' as soon as ADDRESS:PORT is in (present) or
    out of (not present) the IPVS table with a weight above 0, or 'timeout'."""
    want = "0" if present else "1"
    return (f"echo watching; end=$(( $(date +%s) + {int(timeout) + 1} )); "
            f"while [ $(date +%s) -le $end ]; do "
            f"ipvsadm -Ln | awk '$1==\"->\" && $2==\"{address}:{port}\" && $4>0 {{f=1}} END {{exit f?0:1}}'; "
            f"[ $? = {want} ] && {{ echo done; exit 0; }}; sleep 0.2; done; echo timeout; ipvsadm -Ln")
