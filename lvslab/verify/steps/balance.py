"""Steps on how IPVS balances: round-robin (the scheduler's split, least connection, source hashing,
the TUN path MTU) and persistence."""

from __future__ import annotations

import re
import socket
import subprocess
from collections import Counter
from typing import Any

from lvslab.model import STREAM_PATH, VerifySpec
from lvslab.verify.bounds import IPVS_DISPLAY_GRANULARITY_S, persistence_expiry_bound, template_timer_ok
from lvslab.verify.context import StepContext
from lvslab.verify.evaluate import (
    evaluate_distribution,
    evaluate_least_connection,
    evaluate_source_hashing,
    fresh_source_ports,
)
from lvslab.verify.failure import CheckFailed
from lvslab.verify.ipvsadm import IpvsConnection, parse_ipvsadm_connections, parse_ipvsadm_stats
from lvslab.verify.live import ipvs_list, wait_all_in_ipvs, weights
from lvslab.verify.probe import (
    http_get,
)


def check_round_robin(ctx: StepContext) -> dict[str, Any]:
    """Fresh connections to the VIP; counts per real server follow the scheduler; ipvsadm agrees."""
    spec = ctx.spec
    master = ctx.active_director()
    wait_all_in_ipvs(ctx)
    # Zero the counters and list the connection entries still held (FIN_WAIT/TIME_WAIT for minutes):
    # requests must come from client ports without an entry, or IPVS reuses it instead of scheduling.
    listing = ctx.ssh(master.address, "ipvsadm -Z && ipvsadm -Lnc").stdout
    total = spec.requests_per_server * len(spec.real_servers)
    ports = fresh_source_ports(listing, spec.client_address, total)
    sequence = []
    for source_port in ports:
        res = http_get(spec.vip, spec.port, timeout=3, source_port=source_port)
        sequence.append(res.server if res.ok else f"ERROR({res.error})")
    counts = Counter(s for s in sequence if not s.startswith("ERROR"))
    # The kernel folds per-CPU counters into what ipvsadm shows every 2 s (estimator): wait for them.
    deadline = ctx.monotonic() + 10
    while True:
        stats_text = ipvs_list(ctx, master, stats=True)
        stats = parse_ipvsadm_stats(stats_text)
        if sum(v["conns"] for v in stats.values()) >= total or ctx.monotonic() > deadline:
            break
        ctx.sleep(1)
    problem = evaluate_distribution(dict(counts), weights(spec), spec.lb_algo, spec.persistence, total)
    if problem:
        raise CheckFailed("round-robin.split", f"{total} requests split by {spec.lb_algo} over "
                          f"{[s.name for s in spec.real_servers]}", f"{problem}; sequence {sequence}")
    by_addr = {rs.address: rs.name for rs in spec.real_servers}
    ipvs_counts = {by_addr.get(a, a): v["conns"] for a, v in stats.items()}
    if any(ipvs_counts.get(name, 0) != c for name, c in counts.items()) or sum(ipvs_counts.values()) != total:
        raise CheckFailed("round-robin.ipvs-counts",
                          f"ipvsadm --stats connection counts on {ctx.named(master)} equal to the client's "
                          f"{dict(counts)}",
                          f"{ipvs_counts}\n{stats_text}")
    result = {"passed": True, "requests": total, "counts": dict(counts), "sequence": sequence, "ipvs_on": master.name,
              "ipvs_conns": ipvs_counts, "ipvsadm_stats": stats_text}
    active = [rs.name for rs in spec.real_servers if rs.weight > 0]
    if spec.scheduler.least_connection and not spec.persistence and len(active) > 1:
        result["least_connection"] = _least_connection(ctx, total, active)
    if spec.scheduler.source_hash and not spec.persistence and len(active) > 1:
        result["source_hashing"] = _source_hashing(ctx)
    if spec.lb_kind == "TUN":
        result["tunnel_mtu"] = _tunnel_mtu(spec)
    return result


def _tunnel_mtu(spec: VerifySpec) -> dict[str, Any]:
    """TUN: the director adds 20 bytes to every client packet. A request with a 6000-byte header (the
    client sends full-size segments) must be answered, a 1 MiB response must arrive whole, and this host
    must not have had to learn a smaller path MTU for the VIP (the real servers' advertised MSS leaves room
    for the IPIP header; without it the director drops full-size segments and asks for PMTU discovery)."""
    subprocess.run(["ip", "-4", "route", "flush", "cache"], capture_output=True)
    big_request = http_get(spec.vip, spec.port, timeout=10, headers={"X-Lvslab-Pad": "a" * 6000})
    mib = 1 << 20
    big_response = http_get(spec.vip, spec.port, timeout=30, path=STREAM_PATH,
                            headers={"Range": f"bytes=0-{mib - 1}"})
    route = subprocess.run(["ip", "-4", "route", "get", spec.vip], capture_output=True, text=True).stdout
    learned = re.search(r"\bmtu (\d+)", route)
    result = {"large_request_ok": big_request.ok, "large_request_s": round(big_request.seconds, 2),
              "response_bytes": big_response.length, "pmtu_learned": int(learned.group(1)) if learned else None}
    if not big_request.ok or big_response.length != mib or learned:
        raise CheckFailed("round-robin.tunnel-mtu",
                          "TUN: a 6000-byte request header answered, a 1 MiB response whole, no "
                          "path MTU learned for the VIP (MSS leaves room for the IPIP header)", str(result))
    return result


def _least_connection(ctx: StepContext, total: int, active: list[str]) -> dict[str, Any]:
    """lc/wlc: open 3 idle connections per server (spread by the scheduler), close all but those that landed
    on one server, then `total` fresh connections must all go to the others."""
    spec = ctx.spec
    master, client = ctx.active_director(), spec.client_address
    by_addr = {rs.address: rs.name for rs in spec.real_servers}
    ports = fresh_source_ports(ctx.ssh(master.address, "ipvsadm -Lnc").stdout, client, 3 * len(active))
    held: list[tuple[int, socket.socket]] = []
    try:
        for p in ports:
            held.append((p, socket.create_connection((spec.vip, spec.port), timeout=3, source_address=("", p))))
        ctx.sleep(1)
        entries = parse_ipvsadm_connections(ctx.ssh(master.address, "ipvsadm -Lnc").stdout)
        landed = {e.client_port: by_addr.get(e.destination.rsplit(":", 1)[0], e.destination)
                  for e in entries if e.client == client and e.client_port in dict(held)}
        loaded = landed.get(ports[0])
        if loaded is None:
            raise CheckFailed("round-robin.least-connection", f"the held connections in ipvsadm -Lnc on {master.name}",
                              f"entries for ports {landed}")
        for p, sock in held:
            if landed.get(p) != loaded:
                sock.close()
        kept = sum(1 for p, _ in held if landed.get(p) == loaded)
        counts = Counter(a.server for a in (http_get(spec.vip, spec.port, timeout=3) for _ in range(total)) if a.ok)
        problem = evaluate_least_connection(dict(counts), loaded, active, total)
        if problem:
            raise CheckFailed("round-robin.least-connection",
                              f"{spec.lb_algo}: with {kept} connections held on {loaded}, {total} new "
                              "ones go to the other servers", problem)
        return {"loaded": loaded, "held": kept, "counts": dict(counts)}
    finally:
        for _, sock in held:
            sock.close()


def _source_hashing(ctx: StepContext) -> dict[str, Any]:
    """sh: several client addresses (added to the bridge for this check) each ask 4 times; each address must
    always reach one server, and together they must reach more than one."""
    spec = ctx.spec
    added = []
    try:
        for address in spec.extra_clients:
            subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", spec.bridge], check=True, capture_output=True)
            added.append(address)
        per_client = {}
        for address in added:
            answers = [http_get(spec.vip, spec.port, timeout=3, source_address=address) for _ in range(4)]
            per_client[address] = [a.server if a.ok and a.server else f"ERROR({a.error})" for a in answers]
    finally:
        for address in added:
            subprocess.run(["ip", "addr", "del", f"{address}/32", "dev", spec.bridge], capture_output=True)
    problem = evaluate_source_hashing(per_client)
    if problem:
        raise CheckFailed("round-robin.source-hash",
                          f"sh: each of {len(added)} client addresses sticks to one server and "
                          "they spread", problem)
    return {"clients": {c: a[0] for c, a in per_client.items()}}


def check_persistence(ctx: StepContext) -> dict[str, Any]:
    """persistence_timeout (seeds 000/002): fresh connections from one client all reach one real server and
    `ipvsadm -Lnc` shows the client's template (client port 0) pointing at it, its timer re-armed to the
    configured timeout by the last connection (bounds.template_timer_ok); the template is gone by
    bounds.persistence_expiry_bound of that listing, and the client is scheduled anew: with rr it moves to
    the next server."""
    spec = ctx.spec
    master = ctx.active_director()
    client = spec.client_address
    by_addr = {rs.address: rs.name for rs in spec.real_servers}
    requests = 2 * len(spec.real_servers) + 2
    wait_all_in_ipvs(ctx)

    def burst() -> list[str]:
        ports = fresh_source_ports(ctx.ssh(master.address, "ipvsadm -Lnc").stdout, client, requests)
        answers = [http_get(spec.vip, spec.port, timeout=3, source_port=p) for p in ports]
        return [a.server if a.ok and a.server else f"ERROR({a.error})" for a in answers]

    # A template the client still has (from round-robin's requests, or made before the virtual server's timeout
    # changed) keeps its own timeout and is re-armed to it: wait it out, so the one measured is made now.
    old, old_controlled = _client_entries(ctx)
    waited = _last_seen(ctx, ctx.monotonic(), persistence_expiry_bound(
        old[0].expire_s, [c.expire_s for c in old_controlled])) if old else 0.0
    first = burst()
    t_last = ctx.monotonic()
    if len(set(first)) != 1 or first[0].startswith("ERROR"):
        raise CheckFailed("persistence.one-server", f"{requests} fresh connections from {client} all answered by one "
                          f"real server (persistence_timeout {spec.persistence} s)", f"answers {first}")
    held, controlled = _client_entries(ctx)
    t_listed = ctx.monotonic()
    target = [by_addr.get(t.destination.rsplit(":", 1)[0], t.destination) for t in held]
    if target != [first[0]]:
        raise CheckFailed("persistence.template", f"one persistence template {client}:0 -> {first[0]} in ipvsadm "
                          f"-Lnc on {master.name}", f"templates to {target or 'none'}")
    timer, age = held[0].expire_s, round(t_listed - t_last, 1)
    if not template_timer_ok(timer, spec.persistence, age):
        raise CheckFailed("persistence.template-timer", f"the template's timer between {spec.persistence} - {age} - "
                          f"{IPVS_DISPLAY_GRANULARITY_S} and {spec.persistence} s (persistenceTimeout "
                          f"{spec.persistence} s, last request {age} s earlier)",
                          f"{timer} s on {master.name}: the virtual server persists {timer} s or more")
    bound = persistence_expiry_bound(timer, [c.expire_s for c in controlled])
    active = [rs for rs in spec.real_servers if rs.weight > 0]
    must_move = spec.scheduler.rotates and len(active) > 1

    seen = _last_seen(ctx, t_listed, bound)
    if seen > bound:
        raise CheckFailed("persistence.expiry", f"the template of {client} gone within {bound} s of the listing "
                          f"that showed its timer {timer} s and its connections' "
                          f"{sorted(c.expire_s for c in controlled)} s (T0 + 60 k + 1)",
                          f"still listed on {master.name} {seen} s after it")
    # After expiry the client is scheduled anew; rr gives it the next server. A change of the server list
    # in between (a health check flapping under load re-adds a server at the end of the list) can hand it
    # the same one once, so up to three new schedulings are allowed for the move (counted in the report).
    servers = [first[0]]
    for _ in range(3):
        again = burst()
        if len(set(again)) != 1 or again[0].startswith("ERROR"):
            raise CheckFailed("persistence.one-server", f"after expiry, {requests} fresh connections answered by one "
                              "server", f"answers {again}")
        servers.append(again[0])
        if again[0] != first[0] or not must_move:
            break
        again_held, again_controlled = _client_entries(ctx)
        if again_held:
            _last_seen(ctx, ctx.monotonic(), persistence_expiry_bound(again_held[0].expire_s,
                                                                      [c.expire_s for c in again_controlled]))
    moved = servers[-1] != first[0]
    if must_move and not moved:
        raise CheckFailed("persistence.expiry", f"after the template expired, rr schedules {client} to another server "
                          f"within {len(servers) - 1} new schedulings", f"servers in turn {servers}")
    return {"passed": True, "requests": requests, "first_server": first[0], "template_expire_s": timer,
            "template_age_s": age, "connections_expire_s": sorted(c.expire_s for c in controlled),
            "template_last_seen_s": seen, "bound_s": bound, "second_server": servers[-1], "moved": moved,
            "old_template_waited_s": waited,
            "schedulings": len(servers) - 1}


def _client_entries(ctx: StepContext) -> tuple[list[IpvsConnection], list[IpvsConnection]]:
    """(the client's persistence templates, its connections) for the VIP in the MASTER's `ipvsadm -Lnc`."""
    spec = ctx.spec
    entries = [e for e in parse_ipvsadm_connections(ctx.ssh(ctx.active_director().address, "ipvsadm -Lnc").stdout)
               if e.client == spec.client_address and e.virtual == f"{spec.vip}:{spec.port}"]
    return [e for e in entries if e.is_template], [e for e in entries if not e.is_template]


def _last_seen(ctx: StepContext, t_list: float, limit: float) -> float:
    """Seconds after t_list at which a listing (its start) last showed the client's template, polled every
    second until it is gone or limit + 10 s passed (a listing that shows it was asked for before it went)."""
    seen = 0.0
    while ctx.monotonic() - t_list <= limit + 10:
        t = ctx.monotonic()
        if not _client_entries(ctx)[0]:
            return seen
        seen = round(t - t_list, 1)
        ctx.sleep(1)
    return seen
