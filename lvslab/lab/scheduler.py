"""Every IPVS scheduler keepalived's lb_algo accepts (keepalived 2.2), with what the checks may predict of it
(ipvsadm(8), the kernel's ip_vs_*.c). The checks read these traits; a scheduler is a row here, not a string
compared in the steps."""

from __future__ import annotations

from dataclasses import dataclass

EQUAL, WEIGHTED = "equal", "weighted"


@dataclass(frozen=True)
class Scheduler:
    name: str
    module: str  # the kernel module (the directors load it)
    # How `n` fresh connections from one client divide over the active servers: EQUAL (n / servers), WEIGHTED
    # (n x weight / sum of weights), or None when it depends on state the client cannot see (connections
    # already listed, hashes).
    split: str | None = None
    rotates: bool = False  # one client scheduled again goes to the next server (rr), the persistence check's move
    least_connection: bool = False  # new connections go to the servers with the fewest active ones
    source_hash: bool = False  # one client address always reaches one server


SCHEDULERS: dict[str, Scheduler] = {s.name: s for s in (
    Scheduler("rr", "ip_vs_rr", split=EQUAL, rotates=True),
    Scheduler("wrr", "ip_vs_wrr", split=WEIGHTED),
    Scheduler("lc", "ip_vs_lc", least_connection=True),
    Scheduler("wlc", "ip_vs_wlc", least_connection=True),
    Scheduler("lblc", "ip_vs_lblc"),
    Scheduler("lblcr", "ip_vs_lblcr"),
    Scheduler("dh", "ip_vs_dh"),
    Scheduler("sh", "ip_vs_sh", source_hash=True),
    Scheduler("sed", "ip_vs_sed"),
    Scheduler("nq", "ip_vs_nq"),
    Scheduler("fo", "ip_vs_fo"),
    Scheduler("ovf", "ip_vs_ovf"),
    Scheduler("mh", "ip_vs_mh"),
)}
DEFAULT_SCHEDULER = "rr"
