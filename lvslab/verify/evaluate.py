"""Pure evaluation: what the client and the directors observed, compared with what the config implies
(scheduler split, reply path, real-server setup, outages). Unit-tested without a lab."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from lvslab.lab.scheduler import EQUAL, SCHEDULERS, WEIGHTED
from lvslab.verify.ipvsadm import parse_ipvsadm_connections

# --- pure evaluation -------------------------------------------------------------------------------

def expected_counts(weights: dict[str, int], lb_algo: str, total: int) -> dict[str, float] | None:
    """Requests each real server should get for `total` fresh connections from one client, or None if the
    scheduler's split is not predictable that way (lc, sh, mh, ...: Scheduler.split). Servers of weight 0 get
    none. EQUAL: total / active servers; WEIGHTED: total x weight / sum of active weights."""
    active = {n: w for n, w in weights.items() if w > 0}
    split = SCHEDULERS[lb_algo].split if lb_algo in SCHEDULERS else None
    if not active:
        return None
    if split == EQUAL:
        return {n: (total / len(active) if n in active else 0) for n in weights}
    if split == WEIGHTED:
        weight_sum = sum(active.values())
        return {n: total * weights[n] / weight_sum if n in active else 0 for n in weights}
    return None


def evaluate_distribution(counts: dict[str, int], weights: dict[str, int], lb_algo: str,
                          persistence: int, total: int) -> str | None:
    """None if the client-side counts match the scheduler, else what is wrong."""
    answered = sum(counts.values())
    if answered != total:
        return f"{total - answered} of {total} requests failed"
    unknown = set(counts) - set(weights)
    if unknown:
        return f"answers from unknown servers {sorted(unknown)}"
    if persistence:
        return None if len(counts) == 1 else f"persistence is on but {len(counts)} servers answered"
    expected = expected_counts(weights, lb_algo, total)
    if expected is None:
        # lc, wlc, sh, ...: the split depends on the connections already listed (a lab that ran faults keeps
        # TIME_WAIT entries for minutes), so no server can be required here; their own sub-checks follow.
        return None
    off = {n: (counts.get(n, 0), e) for n, e in expected.items() if abs(counts.get(n, 0) - e) > 1}
    if off:
        return "counts off by more than 1: " + ", ".join(f"{n} got {c}, expected {e:g}" for n, (c, e) in off.items())
    return None


RS_CONFIG_SCRIPT = (
    "ip -4 -o addr show; ip -4 route show default; "
    "for i in all lo eth0; do echo arp $i $(sysctl -n net.ipv4.conf.$i.arp_ignore) "
    "$(sysctl -n net.ipv4.conf.$i.arp_announce); done; "
    "for i in all tunl0; do echo rp $i $(sysctl -n net.ipv4.conf.$i.rp_filter 2>/dev/null || echo -); done")


def real_server_problems(text: str, lb_kind: str, vip: str, gateway_vip: str) -> list[str]:
    """What is wrong with one real server, from the output of RS_CONFIG_SCRIPT. DR: the VIP on lo as /32 and
    arp_ignore=1/arp_announce=2 (only the director may answer ARP for the VIP). TUN: the same with the VIP
    on tunl0, and reverse-path filtering not strict (the unwrapped packets arrive on tunl0 from a client
    routed via eth0). NAT: replies go back through the director, so the default route is via the gateway
    VIP, and the VIP is not local (the director rewrites it)."""
    rows = [line.split() for line in text.splitlines()]
    vip_on = sorted({r[1] for r in rows if len(r) > 3 and r[2] == "inet" and r[3] == f"{vip}/32"})
    problems = []
    if lb_kind in ("DR", "TUN"):
        device = "lo" if lb_kind == "DR" else "tunl0"
        if device not in vip_on:
            problems.append(f"VIP {vip}/32 not on {device}")
        for r in rows:
            if len(r) == 4 and r[0] == "arp" and (r[2], r[3]) != ("1", "2"):
                problems.append(f"{r[1]} arp_ignore={r[2]} arp_announce={r[3]}")
    if lb_kind == "TUN":
        rp = {r[1]: r[2] for r in rows if len(r) == 3 and r[0] == "rp"}
        values = [int(v) for v in (rp.get("all", "-"), rp.get("tunl0", "-")) if v.isdigit()]
        if len(values) < 2:
            problems.append("no tunl0 (module ipip not loaded)")
        elif max(values) == 1:
            problems.append(f"rp_filter strict (all={rp['all']}, tunl0={rp['tunl0']}): packets unwrapped on tunl0 "
                            "are dropped")
    if lb_kind == "NAT":
        gateways = [r[r.index("via") + 1] for r in rows if r and r[0] == "default" and "via" in r]
        if gateways != [gateway_vip]:
            problems.append(f"default route via {gateways or 'nothing'}, expected via {gateway_vip}")
        if vip_on:
            problems.append(f"VIP {vip} on {', '.join(vip_on)} (NAT: the director rewrites it; the real server "
                            "must not own it)")
    return problems


def evaluate_least_connection(counts: dict[str, int], loaded: str, servers: list[str], total: int) -> str | None:
    """lc/wlc with long connections held open on `loaded`: every fresh connection goes to the others."""
    if sum(counts.values()) != total:
        return f"{total - sum(counts.values())} of {total} requests failed"
    if counts.get(loaded):
        return f"{loaded} holds the long connections but got {counts[loaded]} of {total} new ones"
    idle = [s for s in servers if s != loaded and not counts.get(s)]
    return f"servers never answered: {idle}" if idle else None


def evaluate_source_hashing(per_client: dict[str, list[str]]) -> str | None:
    """sh: each client address always reaches one server; several addresses reach more than one."""
    split = {c: sorted(set(a)) for c, a in per_client.items() if len(set(a)) != 1 or a[0].startswith("ERROR")}
    if split:
        return f"clients answered by several servers (or failing): {split}"
    if len({a[0] for a in per_client.values()}) < 2:
        return f"all {len(per_client)} client addresses hashed to one server"
    return None


def poll_timeline(events: list[Any], since: float, holder_of_mac: dict[str, str]) -> list[list[Any]]:
    """The poller's events as [seconds from `since`, answered, server, VIP holder (by the MAC the client
    resolved the VIP to)]: the failover picture's data."""
    return [[round(ev.t - since, 2), ev.ok, ev.server, holder_of_mac.get(ev.mac or "", ev.mac)] for ev in events]


def outage(events: list[Any], since: float,
           served: Callable[[Any], bool] = lambda ev: ev.ok) -> tuple[float, int, list[Any]]:
    """(seconds from the first poll not served to the served one that ended the outage, the polls not served in
    it, the polls not served after it ended) after `since`. Any of the last means the service flapped: it came
    back and went again. `served`: what counts as service (the failover steps: a real server's answer, not a
    sorry page)."""
    first_fail: float | None = None
    back: float | None = None  # the first served poll after the first failure
    gap: float | None = None
    failed = 0
    after: list[Any] = []
    for ev in events:
        if ev.t < since:
            continue
        if served(ev):
            if first_fail is not None and gap is None:
                back = ev.t if back is None else back
                gap = ev.t - first_fail
            continue
        if first_fail is None:
            first_fail = ev.t
        elif back is not None:
            after.append(ev)
            continue
        failed += 1
    if first_fail is None:
        return 0.0, 0, []
    return (float("inf") if gap is None else gap), failed, after


def fresh_source_ports(ipvsadm_lnc: str, client: str, count: int, low: int = 20000, high: int = 30000) -> list[int]:
    """`count` distinct client ports with no entry in `ipvsadm -Lnc` for this client. The range lies below
    the kernel's ephemeral range, so no other socket of this host takes them meanwhile."""
    taken = {e.client_port for e in parse_ipvsadm_connections(ipvsadm_lnc) if e.client == client}
    free = [p for p in range(low, high) if p not in taken]
    return random.sample(free, count)
