"""The verification steps of a lab (readiness, VRRP/ARP state, round-robin, health check, failover,
failback), as the tutorials test by hand, measured. Pure evaluation functions first (unit-tested), then
the steps that drive a real lab. Every failure raises CheckFailed naming the check, what was expected
and what was observed. No pulumi import: `python -m lvslab.verify STEP` runs a step for a command resource.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import random
import re
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lvslab.bootprofile import PROFILE_SCRIPT, parse_profile
from lvslab.config import HEALTH_PAGE_SUFFIX
from lvslab.model import SORRY_PREFIX, STREAM_PATH, NodeFacts, VerifySpec
from lvslab.probe import (
    VRRP_GROUP,
    Download,
    Poller,
    SshKey,
    arp_responders,
    http_get,
    multicast_vrrp_dropped,
    neighbour_mac,
    ssh,
    ssh_watch,
)


class CheckFailed(RuntimeError):
    def __init__(self, check: str, expected: str, observed: str) -> None:
        super().__init__(f"check {check} failed: expected {expected}; observed {observed}")
        self.check = check


# --- pure evaluation -------------------------------------------------------------------------------

def expected_counts(weights: dict[str, int], lb_algo: str, total: int) -> dict[str, float] | None:
    """Requests each real server should get for `total` fresh connections from one client, or None if the
    scheduler's split is not predictable that way (lc, sh, mh, ...). Servers of weight 0 get none."""
    active = {n: w for n, w in weights.items() if w > 0}
    if not active:
        return None
    if lb_algo == "rr":
        return {n: (total / len(active) if n in active else 0) for n in weights}
    if lb_algo == "wrr":
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


def evaluate_reply_path(stats: dict[str, dict[str, int]], lb_kind: str) -> str | None:
    """Which way the replies went, from `ipvsadm -Ln --stats` per real server: DR replies bypass the
    director (OutPkts 0 everywhere); NAT replies cross it (OutPkts > 0 for every server that got
    connections). None when that holds, else what was expected."""
    if lb_kind == "DR" and any(v["outpkts"] for v in stats.values()):
        return "OutPkts 0 (DR: replies bypass the director)"
    if lb_kind == "TUN" and any(v["outpkts"] for v in stats.values()):
        return "OutPkts 0 (TUN: replies bypass the director)"
    if lb_kind == "NAT" and any(v["conns"] and not v["outpkts"] for v in stats.values()):
        return "OutPkts > 0 for every real server with connections (NAT: replies cross the director)"
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


def poll_timeline(events: list[Any], since: float, holder_of_mac: dict[str, str]) -> list[list[Any]]:
    """The poller's events as [seconds from `since`, answered, server, VIP holder (by the MAC the client
    resolved the VIP to)]: the failover picture's data."""
    return [[round(ev.t - since, 2), ev.ok, ev.server, holder_of_mac.get(ev.mac or "", ev.mac)] for ev in events]


def outage(events: list[Any], since: float) -> tuple[float, int]:
    """(seconds from the first failed poll to the next success, failed polls) after `since`."""
    first_fail = None
    failed = 0
    for ev in events:
        if ev.t < since:
            continue
        if not ev.ok:
            failed += 1
            if first_fail is None:
                first_fail = ev.t
        elif first_fail is not None:
            return ev.t - first_fail, failed
    return (0.0, failed) if first_fail is None else (float("inf"), failed)


def fresh_source_ports(ipvsadm_lnc: str, client: str, count: int, low: int = 20000, high: int = 30000) -> list[int]:
    """`count` distinct client ports with no entry in `ipvsadm -Lnc` for this client. The range lies below
    the kernel's ephemeral range, so no other socket of this host takes them meanwhile."""
    taken = {e.client_port for e in parse_ipvsadm_connections(ipvsadm_lnc) if e.client == client}
    free = [p for p in range(low, high) if p not in taken]
    return random.sample(free, count)


def table_watch_script(address: str, port: int, present: bool, timeout: float) -> str:
    """Shell run on a director: prints 'watching', then 'done' as soon as ADDRESS:PORT is in (present) or
    out of (not present) the IPVS table with a weight above 0, or 'timeout'."""
    want = "0" if present else "1"
    return (f"echo watching; end=$(( $(date +%s) + {int(timeout) + 1} )); "
            f"while [ $(date +%s) -le $end ]; do "
            f"ipvsadm -Ln | awk '$1==\"->\" && $2==\"{address}:{port}\" && $4>0 {{f=1}} END {{exit f?0:1}}'; "
            f"[ $? = {want} ] && {{ echo done; exit 0; }}; sleep 0.2; done; echo timeout; ipvsadm -Ln")


# --- helpers on a live lab -------------------------------------------------------------------------

def _parallel(fn: Callable[[Any], Any], items: list[Any] | tuple[Any, ...]) -> list[Any]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(items))) as pool:
        return list(pool.map(fn, items))


def _eth0_addresses(spec: VerifySpec, key: SshKey, only: list[str] | None = None) -> dict[str, str]:
    """`ip -4 -o addr show dev eth0` of each director (asked over SSH; `only` skips a frozen one)."""
    directors = [d for d in spec.directors if only is None or d.name in only]

    def addresses(d: NodeFacts) -> str:
        out = ssh(key, d.address, "ip -4 -o addr show dev eth0", timeout=60)
        if out.returncode != 0:
            raise CheckFailed("vip-state", f"SSH to {d.name}", out.stderr.strip())
        return out.stdout
    return dict(zip([d.name for d in directors], _parallel(addresses, directors), strict=True))


def _vip_holders(spec: VerifySpec, key: SshKey, only: list[str] | None = None) -> dict[str, bool]:
    """Which directors have the VIP configured (`only` skips a frozen one)."""
    return {name: f" {spec.vip}/" in text for name, text in _eth0_addresses(spec, key, only).items()}


def _gateway_with_vip(spec: VerifySpec, key: SshKey, holder: str, check: str,
                      only: list[str] | None = None) -> None:
    """LVS-NAT: the real servers' gateway VIP is on the VIP's holder only (one vrrp_sync_group), or their
    replies reach a director that does not translate them back. Nothing to check with DR."""
    if spec.lb_kind != "NAT":
        return
    gateways = {name: f" {spec.gateway_vip}/" in text for name, text in _eth0_addresses(spec, key, only).items()}
    if [n for n, h in gateways.items() if h] != [holder]:
        raise CheckFailed(check, f"gateway VIP {spec.gateway_vip} moved with the VIP: on {holder} only",
                          f"gateway VIP held by {sorted(n for n, h in gateways.items() if h) or 'nobody'}")


def _ipvs_list(key: SshKey, director: NodeFacts, stats: bool = False) -> str:
    out = ssh(key, director.address, "ipvsadm -Ln" + (" --stats" if stats else ""))
    if out.returncode != 0:
        raise CheckFailed("ipvs", f"ipvsadm on {director.name}", out.stderr.strip())
    return out.stdout


def _virsh(spec: VerifySpec, *args: str) -> None:
    subprocess.run(["virsh", "-q", "-c", spec.uri, *args], check=True, capture_output=True)


def _weights(spec: VerifySpec) -> dict[str, int]:
    return {rs.name: rs.weight for rs in spec.real_servers}


# --- the steps -------------------------------------------------------------------------------------

_FINISHED = re.compile(r"Cloud-init v\. \S+ finished at .* Up ([0-9.]+) seconds")


def console_finished(path: str | None) -> float | None:
    """Guest uptime at which cloud-init finished, read from the serial console log on this host."""
    if not path or not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        text = f.read().decode(errors="replace")
    match = _FINISHED.search(text)
    return float(match.group(1)) if match else None


def cloud_init_done_script(name: str, run_dir: str = "/run/cloud-init",
                           marker: str = "/var/lib/lvslab/ready") -> str:
    """Shell that waits until cloud-init finished (result.json written at the end of its last stage) or
    reported an error, then exits 0 if it finished without errors. Plain shell on purpose: `cloud-init
    status --wait` is a Python process polling every 0.25 s, started while the emulated guest still boots
    (measured: 3-5 s of guest CPU to start). cloud-init writes its JSON with indent=1, so an empty error
    list is `"errors": []` and a non-empty one opens with `"errors": [` at the end of a line."""
    status, result = f"{run_dir}/status.json", f"{run_dir}/result.json"
    return (f"while [ ! -e {result} ] && ! grep -qs '\"errors\": \\[$' {status}; do sleep 1; done; "
            f"if [ -e {result} ] && grep -q '\"errors\": \\[\\]' {result}; then "
            f"echo \"cloud-init done on {name}, ready marker $(cat {marker} 2>&1)\"; else "
            f"echo \"check readiness failed: expected cloud-init done on {name}; observed "
            f"$(cat {status} {result} 2>&1 | tr -s '\\n ' ' ')\" >&2; exit 1; fi")


# Where each node's ready command leaves its boot profile (taken as soon as that node finished booting, while
# the others still boot: the readiness step after the last node then only reads it, not 4-8 s per node).
BOOT_PROFILE_FILE = "/var/lib/lvslab/boot-profile.txt"
PROFILE_WAIT_S = 60


def ready_script(name: str, run_dir: str = "/run/cloud-init", profile_file: str = BOOT_PROFILE_FILE) -> str:
    """The ready command of each node (components/node.py): wait for cloud-init, then return at once (the next
    VM's boot waits for this command: vm.bootsAtOnce) and leave the boot profile to a background job that
    takes it once systemd says the boot is over (its kernel/userspace split exists only then). The profile
    is diagnostics: its failure never fails readiness."""
    return (f"{{ {cloud_init_done_script(name, run_dir)}; }} && {{ ( timeout {PROFILE_WAIT_S} systemctl "
            f"is-system-running --wait >/dev/null; {{ {PROFILE_SCRIPT}; }} > {profile_file}.tmp 2>&1; "
            f"mv {profile_file}.tmp {profile_file} ) </dev/null >/dev/null 2>&1 & }}")


def readiness_script(name: str, run_dir: str = "/run/cloud-init", profile_file: str = BOOT_PROFILE_FILE) -> str:
    """The readiness step's one SSH call per node: cloud-init done, then the boot profile the ready command's
    background job keeps (waited for; taken now if there is none)."""
    return (f"{{ {cloud_init_done_script(name, run_dir)}; }} && {{ i=0; while [ ! -e {profile_file} ] && "
            f"[ $i -lt {PROFILE_WAIT_S + 10} ]; do sleep 1; i=$((i+1)); done; "
            f"cat {profile_file} 2>/dev/null || {{ {PROFILE_SCRIPT}; }}; }}")


def check_readiness(spec: VerifySpec, key: SshKey) -> dict[str, Any]:
    """Every node finished cloud-init (marker written) without errors. Where the serial console log is on
    this host, wait on it (costs the busy, emulated guests nothing); then confirm over SSH, retried."""
    deadline = time.monotonic() + spec.ready_timeout
    t0 = time.monotonic()

    def wait(node: NodeFacts) -> dict[str, Any]:
        last = "no answer"
        uptime = None
        while time.monotonic() < deadline:
            uptime = console_finished(node.console_log)
            if uptime is not None or not os.path.exists(node.console_log):
                break
            time.sleep(2)
        while time.monotonic() < deadline:
            try:
                out = ssh(key, node.address, readiness_script(node.name), timeout=60)
            except subprocess.TimeoutExpired:  # a guest starved of CPU (many VMs booting at once): ask again
                last = "SSH did not answer within 60 s"
                continue
            if out.returncode == 0 and "cloud-init done" in out.stdout:
                return {"seconds": round(time.monotonic() - t0, 1), "boot_to_ready_s": uptime,
                        "boot_profile": parse_profile(out.stdout)}
            if "check readiness failed" in out.stderr:
                raise CheckFailed("readiness", f"cloud-init done on {node.name}",
                                  "cloud-init error: " + out.stderr.split("observed", 1)[1].strip()[:400])
            last = (out.stderr or out.stdout).strip()[-200:] or f"exit {out.returncode}"
            time.sleep(10)
        raise CheckFailed("readiness", f"{node.name} ready within {spec.ready_timeout} s", last)

    results = _parallel(wait, spec.nodes)
    return {"passed": True, "nodes": {n.name: r for n, r in zip(spec.nodes, results, strict=True)},
            "seconds": round(time.monotonic() - t0, 1)}


def check_lvs_state(spec: VerifySpec, key: SshKey) -> dict[str, Any]:
    """The VIP is on the MASTER only (nopreempt: handed to it first if the other director came up first);
    only the MASTER answers ARP for it; every real server holds the VIP on lo as /32 with arp_ignore=1/
    arp_announce=2."""
    master = spec.master
    result: dict[str, Any] = {}
    if spec.topology == "lvs-heartbeat":
        result["vip_settled_after_s"] = _heartbeat_settled(spec, key, ON_MASTER)
    handed_over = _vip_on_master_only(spec, key)
    _gateway_with_vip(spec, key, master.name, "vip-state")

    def rs_config(rs: NodeFacts) -> str | None:
        out = ssh(key, rs.address, RS_CONFIG_SCRIPT)
        if out.returncode != 0:
            return f"{rs.name}: SSH failed: {out.stderr.strip()}"
        problems = real_server_problems(out.stdout, spec.lb_kind, spec.vip, spec.gateway_vip)
        return f"{rs.name}: " + ", ".join(problems) if problems else None

    rs_problems = [p for p in _parallel(rs_config, spec.real_servers) if p]
    if rs_problems:
        wanted = {"DR": "VIP/32 on lo and arp_ignore=1, arp_announce=2",
                  "TUN": "VIP/32 on tunl0, arp_ignore=1, arp_announce=2 and rp_filter not strict",
                  "NAT": f"the default route via the gateway VIP {spec.gateway_vip} and no VIP"}[spec.lb_kind]
        raise CheckFailed("real-server-config", f"{wanted} on every real server", "; ".join(rs_problems))

    _check_ipvs_settings(spec, key, master)
    result |= {"passed": True, "vip_holder": master.name, "arp_responders": _arp_from_master_only(spec)}
    if handed_over is not None:
        result["nopreempt_vip_handed_over_after_s"] = handed_over
    return result


# heartbeat's view of a node's resources (cl_status rscstatus): "local" = the ones haresources gives it (the
# MASTER: VIP + ldirectord; the BACKUP: none), "foreign" = only its peer's, "all" = both, "none" = none at all,
# "transition" = being moved.
HEARTBEAT_SETTLED = "cl_status rscstatus"


# What cl_status rscstatus says on each director once heartbeat has settled.
ON_MASTER = {"master": ("local", "all"), "backup": ("local", "none")}  # the initial state
ON_BACKUP = {"backup": ("all",)}  # after a takeover (the MASTER stopped or frozen: not asked)


def _heartbeat_settled(spec: VerifySpec, key: SshKey, wanted: dict[str, tuple[str, ...]],
                       check: str = "vip-state") -> float:
    """lvs-heartbeat: wait until heartbeat on each director named in `wanted` reports one of its states
    (ON_MASTER, ON_BACKUP): after boot it waits up to initdead for its peer; a takeover is done only when
    ldirectord runs too. Checks act only on a settled cluster: heartbeat 3 mishandles a stop or start
    that arrives during a takeover (seen: both nodes then claim the resources). Returns the seconds."""
    t0 = time.monotonic()
    deadline = t0 + spec.heartbeat_initdead + spec.failover_bound_s + 20
    nodes = {"master": spec.master, "backup": spec.backup}
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        states = {role: ssh(key, nodes[role].address, HEARTBEAT_SETTLED).stdout.strip() or "not running"
                  for role in wanted}
        if all(states[role] in ok for role, ok in wanted.items()):
            return round(time.monotonic() - t0, 1)
        time.sleep(1)
    raise CheckFailed(check, "heartbeat settled (cl_status rscstatus): " + ", ".join(
        f"{nodes[role].name} {'/'.join(ok)}" for role, ok in wanted.items()),
        ", ".join(f"{nodes[role].name} {state}" for role, state in states.items()))


def _vip_on_master_only(spec: VerifySpec, key: SshKey) -> float | None:
    """The VIP is on the MASTER only (split-brain names both holders otherwise). nopreempt: if the other
    node came up first and kept it, hand it over first; returns the seconds that took, else None."""
    holders = _vip_holders(spec, key)
    master = spec.master
    holding = sorted(n for n, h in holders.items() if h)
    if spec.preempt and holding != [master.name]:
        # The election may still run: the director pushed last (often the MASTER, its boot the longer) started
        # keepalived a moment ago and preempts within a few adverts. Wait up to the failover bound.
        deadline = time.monotonic() + spec.failover_bound_s + 2
        while holding != [master.name] and time.monotonic() < deadline:
            time.sleep(0.5)
            holding = sorted(n for n, h in _vip_holders(spec, key).items() if h)
    handed_over = None
    if not spec.preempt and holding == [spec.backup.name]:
        # nopreempt (both BACKUP): whichever director's keepalived started first took the VIP and keeps it.
        # Hand it to the higher priority, as an operator would: restart keepalived on the holder.
        handed_over = _hand_vip_to_master(spec, key)
        holding = [master.name]
    if len(holding) > 1:
        raise CheckFailed("split-brain", f"VIP {spec.vip} on one director only", _split_brain(spec, key, holding))
    if holding != [master.name]:
        raise CheckFailed("vip-state", f"VIP {spec.vip} on {master.name} only", f"held by {holding or 'nobody'}")
    return handed_over


def _arp_from_master_only(spec: VerifySpec) -> list[str]:
    """Only the MASTER's MAC answers ARP for the VIP on the bridge."""
    master = spec.master
    responders = arp_responders(spec.bridge, spec.vip, spec.client_address)
    if responders != {master.mac}:
        names = {n.mac: n.name for n in spec.nodes}
        raise CheckFailed("vip-arp", f"only {master.name} ({master.mac}) answers ARP for {spec.vip}",
                          f"answered by {sorted(names.get(m, m) for m in responders) or 'nobody'}")
    return sorted(responders)


def check_vip_state(spec: VerifySpec, key: SshKey) -> dict[str, Any]:
    """topology nginx-ha (seed 004's `curl VIP`): the VIP is on the MASTER only, only it answers ARP for it,
    and every fresh request to the VIP is served by the MASTER's nginx."""
    master = spec.master
    handed_over = _vip_on_master_only(spec, key)
    responders = _arp_from_master_only(spec)
    requests = 2 * spec.requests_per_server
    answers = Counter(http_get(spec.vip, spec.port).server or "failed" for _ in range(requests))
    if answers != Counter({master.name: requests}):
        raise CheckFailed("vip-state", f"all {requests} requests to the VIP served by {master.name}",
                          f"answered by {dict(answers)}")
    result: dict[str, Any] = {"passed": True, "vip_holder": master.name, "arp_responders": responders,
                              "requests": requests, "answered_by": dict(answers)}
    if handed_over is not None:
        result["nopreempt_vip_handed_over_after_s"] = handed_over
    return result


def _hand_vip_to_master(spec: VerifySpec, key: SshKey) -> float:
    """nopreempt: move the VIP from the lower-priority director (it came up first) to the MASTER by
    restarting the HA daemon on the holder; seconds until the VIP is on the MASTER only."""
    t0 = time.monotonic()
    daemon = ha_daemon(spec)
    out = ssh(key, spec.backup.address, f"systemctl restart {daemon}")
    if out.returncode != 0:
        raise CheckFailed("vip-state", f"{daemon} restarted on {spec.backup.name} (nopreempt hand-over)",
                          out.stderr.strip())
    deadline = t0 + spec.failover_bound_s + 20
    holders: dict[str, bool] = {}
    while time.monotonic() < deadline:
        holders = _vip_holders(spec, key)
        if [n for n, h in holders.items() if h] == [spec.master.name]:
            return round(time.monotonic() - t0, 1)
        time.sleep(0.5)
    raise CheckFailed("vip-state", f"VIP on {spec.master.name} after {daemon} restarted on {spec.backup.name} "
                      "(nopreempt: the first director up keeps the VIP)", f"holders {holders}")


def _check_ipvs_settings(spec: VerifySpec, key: SshKey, master: NodeFacts) -> None:
    """Both directors run IPVS with the configured connection timeouts (lvs.timeouts, the kernel's when
    unset) and, with lvs.syncDaemon, the sync daemon of their VRRP role (master sends, backup receives)."""
    def settings(d: NodeFacts) -> str:
        return ssh(key, d.address, "ipvsadm -L --timeout; ipvsadm -L --daemon").stdout

    problems = []
    sync_ids = set()
    for d, text in zip(spec.directors, _parallel(settings, spec.directors), strict=True):
        timeouts = parse_ipvsadm_timeouts(text)
        if timeouts != spec.lvs_timeouts:
            problems.append(f"{d.name}: timeouts (tcp tcpfin udp) {timeouts}, expected {spec.lvs_timeouts}")
        daemons = parse_sync_daemons(text)
        role = "master" if d == master else "backup"
        if set(daemons) != ({role} if spec.sync_daemon else set()) or any(
                not v.startswith("eth0 ") for v in daemons.values()):
            problems.append(f"{d.name}: sync daemons {daemons or 'none'}, expected "
                            f"{role + ' on eth0' if spec.sync_daemon else 'none'}")
        sync_ids |= {v.split()[1] for v in daemons.values()}
    if len(sync_ids) > 1:
        problems.append(f"sync ids differ: {sorted(sync_ids)} (the backup drops the master's messages)")
    if problems:
        raise CheckFailed("ipvs-settings", "the configured IPVS timeouts and sync daemons on both directors",
                          "; ".join(problems))


def _split_brain(spec: VerifySpec, key: SshKey, holding: list[str]) -> str:
    """Both directors hold the VIP (seed 001: keepalived killed with -9 leaves its VIP behind while the
    BACKUP takes over): name both, the MACs that answer ARP for the VIP, and how to repair it."""
    names = {n.mac: n.name for n in spec.nodes}
    responders = sorted(f"{names.get(m, '?')} ({m})"
                        for m in arp_responders(spec.bridge, spec.vip, spec.client_address))
    by_name = {d.name: d for d in spec.directors}
    daemon = ha_daemon(spec)
    stale = [n for n in holding if ssh(key, by_name[n].address, f"pidof {daemon}").returncode != 0]
    repair = (f"on {', '.join(stale)} ({daemon} not running, stale VIP): ip addr del {spec.vip}/32 dev eth0 && "
              f"systemctl restart {daemon}" if stale else
              f"restart {daemon} on both directors")
    return f"held by {holding}; ARP replies for {spec.vip} from {responders}; repair: {repair}"


def _wait_all_in_ipvs(spec: VerifySpec, key: SshKey, timeout: float, check: str = "round-robin") -> str:
    master = spec.master
    wanted = {rs.address for rs in spec.real_servers if rs.weight > 0}
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = _ipvs_list(key, master)
        present = {a for a, v in parse_ipvsadm_list(text).items() if v["weight"] > 0}
        if wanted <= present:
            return text
        time.sleep(1)
    raise CheckFailed(check, f"every real server in the IPVS table of {master.name} within {timeout:g} s",
                      text.strip() or "empty table")


def check_round_robin(spec: VerifySpec, key: SshKey) -> dict[str, Any]:
    """Fresh connections to the VIP; counts per real server follow the scheduler; ipvsadm agrees."""
    master = spec.master
    _wait_all_in_ipvs(spec, key, timeout=spec.health_check.delay_loop * 3 + 60)
    # Zero the counters and list the connection entries still held (FIN_WAIT/TIME_WAIT for minutes):
    # requests must come from client ports without an entry, or IPVS reuses it instead of scheduling.
    listing = ssh(key, master.address, "ipvsadm -Z && ipvsadm -Lnc").stdout
    total = spec.requests_per_server * len(spec.real_servers)
    ports = fresh_source_ports(listing, spec.client_address, total)
    sequence = []
    for source_port in ports:
        res = http_get(spec.vip, spec.port, timeout=3, source_port=source_port)
        sequence.append(res.server if res.ok else f"ERROR({res.error})")
    counts = Counter(s for s in sequence if not s.startswith("ERROR"))
    # The kernel folds per-CPU counters into what ipvsadm shows every 2 s (estimator): wait for them.
    deadline = time.monotonic() + 10
    while True:
        stats_text = _ipvs_list(key, master, stats=True)
        stats = parse_ipvsadm_stats(stats_text)
        if sum(v["conns"] for v in stats.values()) >= total or time.monotonic() > deadline:
            break
        time.sleep(1)
    problem = evaluate_distribution(dict(counts), _weights(spec), spec.lb_algo, spec.persistence, total)
    if problem:
        raise CheckFailed("round-robin", f"{total} requests split by {spec.lb_algo} over "
                          f"{[s.name for s in spec.real_servers]}", f"{problem}; sequence {sequence}")
    by_addr = {rs.address: rs.name for rs in spec.real_servers}
    ipvs_counts = {by_addr.get(a, a): v["conns"] for a, v in stats.items()}
    if any(ipvs_counts.get(name, 0) != c for name, c in counts.items()) or sum(ipvs_counts.values()) != total:
        raise CheckFailed("round-robin", f"ipvsadm --stats connection counts equal to the client's {dict(counts)}",
                          f"{ipvs_counts}\n{stats_text}")
    problem = evaluate_reply_path(stats, spec.lb_kind)
    if problem:
        raise CheckFailed("round-robin", problem, stats_text)
    result = {"passed": True, "requests": total, "counts": dict(counts), "sequence": sequence,
              "ipvs_conns": ipvs_counts, "ipvsadm_stats": stats_text}
    active = [rs.name for rs in spec.real_servers if rs.weight > 0]
    if spec.lb_algo in ("lc", "wlc") and not spec.persistence and len(active) > 1:
        result["least_connection"] = _least_connection(spec, key, total, active)
    if spec.lb_algo == "sh" and not spec.persistence and len(active) > 1:
        result["source_hashing"] = _source_hashing(spec, key)
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
        raise CheckFailed("round-robin", "TUN: a 6000-byte request header answered, a 1 MiB response whole, no "
                          "path MTU learned for the VIP (MSS leaves room for the IPIP header)", str(result))
    return result


def _least_connection(spec: VerifySpec, key: SshKey, total: int, active: list[str]) -> dict[str, Any]:
    """lc/wlc: open 3 idle connections per server (spread by the scheduler), close all but those that landed
    on one server, then `total` fresh connections must all go to the others."""
    master, client = spec.master, spec.client_address
    by_addr = {rs.address: rs.name for rs in spec.real_servers}
    ports = fresh_source_ports(ssh(key, master.address, "ipvsadm -Lnc").stdout, client, 3 * len(active))
    held: list[tuple[int, socket.socket]] = []
    try:
        for p in ports:
            held.append((p, socket.create_connection((spec.vip, spec.port), timeout=3, source_address=("", p))))
        time.sleep(1)
        entries = parse_ipvsadm_connections(ssh(key, master.address, "ipvsadm -Lnc").stdout)
        landed = {e.client_port: by_addr.get(e.destination.rsplit(":", 1)[0], e.destination)
                  for e in entries if e.client == client and e.client_port in dict(held)}
        loaded = landed.get(ports[0])
        if loaded is None:
            raise CheckFailed("round-robin", "the held connections in ipvsadm -Lnc", f"entries for ports {landed}")
        for p, sock in held:
            if landed.get(p) != loaded:
                sock.close()
        kept = sum(1 for p, _ in held if landed.get(p) == loaded)
        counts = Counter(a.server for a in (http_get(spec.vip, spec.port, timeout=3) for _ in range(total)) if a.ok)
        problem = evaluate_least_connection(dict(counts), loaded, active, total)
        if problem:
            raise CheckFailed("round-robin", f"{spec.lb_algo}: with {kept} connections held on {loaded}, {total} new "
                              "ones go to the other servers", problem)
        return {"loaded": loaded, "held": kept, "counts": dict(counts)}
    finally:
        for _, sock in held:
            sock.close()


def _source_hashing(spec: VerifySpec, key: SshKey) -> dict[str, Any]:
    """sh: several client addresses (added to the bridge for this check) each ask 4 times; each address must
    always reach one server, and together they must reach more than one."""
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
        raise CheckFailed("round-robin", f"sh: each of {len(added)} client addresses sticks to one server and "
                          "they spread", problem)
    return {"clients": {c: a[0] for c, a in per_client.items()}}


def health_fault(spec: VerifySpec, victim: NodeFacts) -> tuple[str, str, str]:
    """What the health-check step does to one real server, and how it undoes it: nginx stopped (keepalived's
    checks, ldirectord's connect check), or, for ldirectord's negotiate check (seed 003), the health page
    still served with 200 but no longer matching `receive`. Returns (what, break command, repair command)."""
    page = spec.health_check.page_file
    if page:
        return (f"{page} no longer matching receive {spec.health_check.receive!r}",
                f"echo maintenance > {page}", f"echo '{victim.name}{HEALTH_PAGE_SUFFIX}' > {page}")
    return "nginx stopped", "systemctl stop nginx", "systemctl start nginx"


def check_health(spec: VerifySpec, key: SshKey) -> dict[str, Any]:
    """Stop nginx on one real server (lvs-heartbeat: make its health page stop matching ldirectord's
    receive): the health checker takes it out of the IPVS table (quiescent: weight 0); start it (restore the
    page): it comes back. Both decided from the MASTER's table (right for every scheduler and weight), timed
    on this host by a watcher that already runs on the director, from the moment the command on the real
    server returned (that command's own SSH round trip, seconds on starved guests, is reported beside it,
    not counted)."""
    victim = next((rs for rs in reversed(spec.real_servers) if rs.weight > 0), spec.real_servers[-1])
    master = spec.master
    remove_window, add_window = spec.health_check.window()
    slack = 10.0
    what, break_cmd, repair_cmd = health_fault(spec, victim)
    result: dict[str, Any] = {"server": victim.name, "fault": what, "remove_window_s": remove_window,
                              "add_window_s": add_window}
    _wait_all_in_ipvs(spec, key, timeout=add_window + 60, check="health-check")
    stopped = False
    try:
        def act_stop() -> None:
            nonlocal stopped
            out = ssh(key, victim.address, break_cmd)
            stopped = out.returncode == 0
            if not stopped:
                raise CheckFailed("health-check", f"{what} on {victim.name}", out.stderr.strip())

        removed, stop_s, table = ssh_watch(key, master.address,
                                   table_watch_script(victim.address, spec.port, False, remove_window + slack),
                                   act_stop, remove_window + slack + 30)
        if removed is None:
            raise CheckFailed("health-check", f"{victim.name} ({what}) out of the IPVS table within "
                              f"{remove_window + slack:g} s", f"still in table: {' '.join(table.split())[-300:]}")
        result["removed_after_s"] = round(removed, 1)
        result["stop_command_s"] = round(stop_s, 1)

        def act_start() -> None:
            nonlocal stopped
            ssh(key, victim.address, repair_cmd)
            stopped = False

        back, start_s, table = ssh_watch(key, master.address,
                                table_watch_script(victim.address, spec.port, True, add_window + slack),
                                act_start, add_window + slack + 30)
        if back is None:
            raise CheckFailed("health-check", f"{victim.name} back in the IPVS table within {add_window + slack:g} s",
                              f"table: {' '.join(table.split())[-300:]}")
        result["readded_after_s"] = round(back, 1)
        result["start_command_s"] = round(start_s, 1)
        answered = any(http_get(spec.vip, spec.port, timeout=2).server == victim.name
                       for _ in range(4 * len(spec.real_servers)))
        if spec.lb_algo in ("rr", "wrr") and not spec.persistence and not answered:
            raise CheckFailed("health-check", f"{victim.name} answering through the VIP after it was re-added",
                              "no answer from it")
    finally:
        if stopped:
            ssh(key, victim.address, repair_cmd)
    result["passed"] = True
    return result


def check_sorry_server(spec: VerifySpec, key: SshKey) -> dict[str, Any]:
    """nginx stopped on every real server: the VIP answers from the MASTER's sorry server (keepalived's
    sorry_server, IPVS local node); nginx started on one real server: it answers again. Both transitions
    timed from the moment the last stop (the start) command returned, polling the VIP every 0.2 s."""
    servers = [rs for rs in spec.real_servers if rs.weight > 0]
    remove_window, add_window = spec.health_check.window()
    slack = 10.0
    result: dict[str, Any] = {"remove_window_s": remove_window, "add_window_s": add_window}
    _wait_all_in_ipvs(spec, key, timeout=add_window + 60, check="sorry-server")

    def first_answer(accept: Callable[[str], bool], limit: float) -> tuple[float | None, str | None, int]:
        t0 = time.monotonic()
        others = 0
        while time.monotonic() - t0 < limit:
            res = http_get(spec.vip, spec.port, timeout=1)
            if res.ok and res.server and accept(res.server):
                return round(time.monotonic() - t0, 2), res.server, others
            others += 1
            time.sleep(0.2)
        return None, None, others

    try:
        _parallel(lambda rs: ssh(key, rs.address, "systemctl stop nginx"), servers)
        after, answer, polls = first_answer(lambda s: s.startswith(SORRY_PREFIX), remove_window + slack)
        if after is None:
            table = _ipvs_list(key, spec.master)
            raise CheckFailed("sorry-server", f"the sorry page ({SORRY_PREFIX}{spec.master.name}) through the VIP "
                              f"within {remove_window + slack:g} s of nginx stopping on every real server",
                              f"no sorry answer in {polls} polls; table: {' '.join(table.split())[-300:]}")
        result.update(sorry_after_s=after, sorry_answered_by=answer)
        if answer != SORRY_PREFIX + spec.master.name:
            raise CheckFailed("sorry-server", f"the sorry page of the MASTER {spec.master.name}", str(answer))
        back = servers[0]
        ssh(key, back.address, "systemctl start nginx")
        after, answer, polls = first_answer(lambda s: not s.startswith(SORRY_PREFIX), add_window + slack)
        if after is None:
            raise CheckFailed("sorry-server", f"{back.name} answering through the VIP within {add_window + slack:g} s "
                              "of its nginx starting", f"still the sorry page after {polls} polls")
        result.update(normal_after_s=after, normal_answered_by=answer)
    finally:
        _parallel(lambda rs: ssh(key, rs.address, "systemctl start nginx"), servers)
    _wait_all_in_ipvs(spec, key, timeout=add_window + 60, check="sorry-server")
    result["passed"] = True
    return result


IPVS_TEMPLATE_DEFER_S = 60


def check_persistence(spec: VerifySpec, key: SshKey) -> dict[str, Any]:
    """persistence_timeout (seeds 000/002): fresh connections from one client all reach one real server and
    `ipvsadm -Lnc` shows the client's template (client port 0) pointing at it; the template expires within
    persistence_timeout + tcpfin (closed connections keep it alive) and the client is scheduled anew: with rr
    it moves to the next server."""
    master = spec.master
    client = spec.client_address
    by_addr = {rs.address: rs.name for rs in spec.real_servers}
    requests = 2 * len(spec.real_servers) + 2
    _wait_all_in_ipvs(spec, key, timeout=spec.health_check.delay_loop * 3 + 60, check="persistence")

    def burst() -> list[str]:
        ports = fresh_source_ports(ssh(key, master.address, "ipvsadm -Lnc").stdout, client, requests)
        answers = [http_get(spec.vip, spec.port, timeout=3, source_port=p) for p in ports]
        return [a.server if a.ok and a.server else f"ERROR({a.error})" for a in answers]

    def templates() -> list[IpvsConnection]:
        entries = parse_ipvsadm_connections(ssh(key, master.address, "ipvsadm -Lnc").stdout)
        return [e for e in entries if e.is_template and e.client == client and e.virtual == f"{spec.vip}:{spec.port}"]

    first = burst()
    if len(set(first)) != 1 or first[0].startswith("ERROR"):
        raise CheckFailed("persistence", f"{requests} fresh connections from {client} all answered by one real "
                          f"server (persistence_timeout {spec.persistence} s)", f"answers {first}")
    held = templates()
    t_last = time.monotonic()
    target = [by_addr.get(t.destination.rsplit(":", 1)[0], t.destination) for t in held]
    if target != [first[0]]:
        raise CheckFailed("persistence", f"one persistence template {client}:0 -> {first[0]} in ipvsadm -Lnc",
                          f"templates to {target or 'none'}")
    # The kernel re-arms a template whose timer fires while a connection it controls is still listed for
    # another 60 s (ip_vs_conn_expire), so a connection that lingers past persistence_timeout costs 60 s.
    limit = spec.persistence + spec.lvs_timeouts[1] + IPVS_TEMPLATE_DEFER_S + 10
    active = [rs for rs in spec.real_servers if rs.weight > 0]
    must_move = spec.lb_algo == "rr" and len(active) > 1

    def wait_expired(t_last: float) -> float:
        """Seconds from t_last (the last request) until the client's template is gone."""
        while templates():
            if time.monotonic() - t_last > limit:
                raise CheckFailed("persistence", f"the template of {client} expired within {limit} s (persistence "
                                  f"{spec.persistence} s + tcpfin {spec.lvs_timeouts[1]} s + the kernel's "
                                  f"{IPVS_TEMPLATE_DEFER_S} s deferral + 10 s)", "still listed")
            time.sleep(1)
        return round(time.monotonic() - t_last, 1)

    # After expiry the client is scheduled anew; rr gives it the next server. A change of the server list
    # in between (a health check flapping under load re-adds a server at the end of the list) can hand it
    # the same one once, so up to three new schedulings are allowed for the move (counted in the report).
    expired_after = wait_expired(t_last)
    servers = [first[0]]
    for _ in range(3):
        again = burst()
        if len(set(again)) != 1 or again[0].startswith("ERROR"):
            raise CheckFailed("persistence", f"after expiry, {requests} fresh connections answered by one server",
                              f"answers {again}")
        servers.append(again[0])
        if again[0] != first[0] or not must_move:
            break
        wait_expired(time.monotonic())
    moved = servers[-1] != first[0]
    if must_move and not moved:
        raise CheckFailed("persistence", f"after the template expired, rr schedules {client} to another server "
                          f"within {len(servers) - 1} new schedulings", f"servers in turn {servers}")
    return {"passed": True, "requests": requests, "first_server": first[0], "template_expire_s": held[0].expire_s,
            "template_gone_after_s": expired_after, "bound_s": limit, "second_server": servers[-1], "moved": moved,
            "schedulings": len(servers) - 1}


def check_connection_sync(spec: VerifySpec, key: SshKey) -> dict[str, Any]:
    """lvs_sync_daemon (seed 002's --start-daemon master/backup): a throttled download through the VIP goes on
    while the MASTER is frozen (its connection entry reached the BACKUP) and after it resumes. Without sync the
    new director has no entry for the connection and resets it."""
    master, backup = spec.master, spec.backup
    bound = spec.failover_bound_s
    hold_s = 6.0  # bytes must keep arriving this long through the BACKUP
    result: dict[str, Any] = {"path": STREAM_PATH}
    listing = ssh(key, master.address, "ipvsadm -Lnc").stdout
    port = fresh_source_ports(listing, spec.client_address, 1)[0]
    download = Download(spec.vip, spec.port, STREAM_PATH, source_port=port).start()
    poller: Poller | None = None
    frozen = False
    try:
        t0 = time.monotonic()
        while download.received < 256 * 1024 and download.alive and time.monotonic() - t0 < 30:
            time.sleep(0.2)
        time.sleep(2)  # a few sync periods: the entry is on the BACKUP now (if sync runs)
        synced = [e for e in parse_ipvsadm_connections(ssh(key, backup.address, "ipvsadm -Lnc").stdout)
                  if e.client == spec.client_address and e.client_port == port]
        result.update(server=download.server, synced_to_backup=bool(synced),
                      synced_state=synced[0].state if synced else None)
        poller = Poller(spec.vip, spec.port, interval=0.2).start()
        t_freeze = time.monotonic()
        before = download.received
        _virsh(spec, "suspend", master.domain)
        frozen = True
        moved = poller.wait_for(lambda ev: ev.ok and ev.mac == backup.mac, t_freeze, bound + 15)
        if moved is None:
            raise CheckFailed("connection-sync", f"VIP answering through {backup.name} within {bound + 15:.1f} s",
                              f"client sees MAC {neighbour_mac(spec.vip)}")
        t_moved = moved.t
        deadline = t_moved + hold_s
        while time.monotonic() < deadline and download.alive:
            time.sleep(0.2)
        on_backup = download.bytes_at(time.monotonic()) - download.bytes_at(t_moved)
        _virsh(spec, "resume", master.domain)
        frozen = False
        t_resume = time.monotonic()
        # The MASTER resumes still MASTER (a frozen VM never saw the election) and takes the VIP back.
        poller.wait_for(lambda ev: ev.ok and ev.mac == master.mac, t_resume, bound + 20)
        t_back = time.monotonic()
        while time.monotonic() < t_back + hold_s and download.alive:
            time.sleep(0.2)
        after = download.bytes_at(time.monotonic()) - download.bytes_at(t_resume)
        result.update(bytes_before_freeze=before, vip_moved_after_s=round(t_moved - t_freeze, 2),
                      bytes_while_backup_held_vip=on_backup, bytes_after_master_resumed=after,
                      bytes_total=download.received, length=download.length, error=download.error)
        if download.error or (not download.alive and not download.done) or on_backup == 0 or after == 0:
            raise CheckFailed("connection-sync", f"the download from {download.server} through the VIP going on while "
                              f"{backup.name} held the VIP ({hold_s:g} s) and after {master.name} resumed",
                              f"{download.error or 'stalled'}: {before} bytes before the freeze, {on_backup} while "
                              f"{backup.name} held the VIP, {after} after; entry synced to {backup.name}: "
                              f"{bool(synced)}")
    finally:
        if frozen:
            _virsh(spec, "resume", master.domain)
        if poller:
            poller.stop()
        download.stop()
    result["passed"] = True
    return result


def ha_daemon(spec: VerifySpec) -> str:
    """The unit that moves the VIP: heartbeat with topology lvs-heartbeat (seed 003), keepalived otherwise."""
    return "heartbeat" if spec.topology == "lvs-heartbeat" else "keepalived"


def _taken_away(spec: VerifySpec) -> str:
    """What failover stops on the MASTER (clean mode): the HA daemon itself, or with topology nginx-ha nginx,
    which keepalived's vrrp_script must notice (seed 004's test)."""
    return "nginx" if spec.topology == "nginx-ha" else ha_daemon(spec)


def _stop_master(spec: VerifySpec, key: SshKey, master: NodeFacts, mode: str) -> None:
    if mode == "hard":
        _virsh(spec, "suspend", master.domain)  # frozen: no adverts, VIP still configured
    else:
        out = ssh(key, master.address, f"systemctl stop {_taken_away(spec)}")
        if out.returncode != 0:
            raise CheckFailed("failover", f"{_taken_away(spec)} stopped on {master.name}", out.stderr.strip())


def _start_master(spec: VerifySpec, key: SshKey, master: NodeFacts, mode: str) -> None:
    if mode == "hard":
        _virsh(spec, "resume", master.domain)
    else:
        ssh(key, master.address, f"systemctl start {_taken_away(spec)}")


# Three packets of IP protocol 112 (VRRP) to VRRP's group, sent from a director: they must be counted as
# dropped on the bridge. Not valid adverts: a keepalived that got one would log and ignore it.
VRRP_PROBE = ("python3 -c \"import socket; s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112); "
              "s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton('{source}')); "
              "[s.sendto(b'lvslab-probe', ('{group}', 0)) for _ in range(3)]\"")


@contextlib.contextmanager
def _vrrp_transport(spec: VerifySpec, result: dict[str, Any]) -> Any:
    """vrrp.unicastPeers: the body runs with the directors' multicast VRRP dropped on the bridge (the
    network unicast peers are for); the counters go into `result`. Other labs: nothing changes."""
    if not spec.unicast_peers:
        yield
        return
    with multicast_vrrp_dropped(spec.bridge, [d.mac for d in spec.directors]) as counters:
        try:
            yield
        finally:
            seen = counters()
            result["multicast_vrrp_dropped"] = seen.get("multicast-vrrp", 0)
            result["unicast_vrrp_seen"] = seen.get("unicast-vrrp", 0)


def check_vrrp_unicast(spec: VerifySpec, key: SshKey) -> dict[str, Any]:
    """vrrp.unicastPeers: with the directors' multicast VRRP dropped on the bridge (proved: 3 probe packets
    to 224.0.0.18 counted as dropped), the BACKUP still hears the MASTER, by unicast: after 3 x advert_int
    + 2 s the VIP is on the MASTER only and unicast adverts crossed the bridge."""
    master, backup = spec.master, spec.backup
    window = 3 * spec.advert_int + 2
    result: dict[str, Any] = {"window_s": window}
    with _vrrp_transport(spec, result):
        out = ssh(key, master.address, VRRP_PROBE.format(source=master.address, group=VRRP_GROUP))
        if out.returncode != 0:
            raise CheckFailed("vrrp-unicast", f"3 probe packets to {VRRP_GROUP} sent from {master.name}",
                              out.stderr.strip()[-300:])
        time.sleep(window)
        holders = _vip_holders(spec, key)
    if result["multicast_vrrp_dropped"] < 3:
        raise CheckFailed("vrrp-unicast", f"multicast VRRP dropped on the bridge (3 probe packets to {VRRP_GROUP})",
                          f"{result['multicast_vrrp_dropped']} counted")
    if holders != {master.name: True, backup.name: False}:
        raise CheckFailed("vrrp-unicast", f"VIP on {master.name} only while multicast VRRP was dropped for "
                          f"{window:g} s ({backup.name} hears {master.name} by unicast)",
                          f"holders {holders} ({result['multicast_vrrp_dropped']} multicast VRRP packets dropped: "
                          "the directors advertise by multicast)")
    if result["unicast_vrrp_seen"] < 3:
        raise CheckFailed("vrrp-unicast", "unicast VRRP adverts crossing the bridge",
                          f"{result['unicast_vrrp_seen']} counted in {window:g} s")
    result["passed"] = True
    return result


def check_failover(spec: VerifySpec, key: SshKey) -> dict[str, Any]:
    """Take the MASTER away; the BACKUP must take the VIP within the VRRP bound; never both hold it.
    Unicast labs: with multicast VRRP dropped on the bridge."""
    result: dict[str, Any] = {}
    with _vrrp_transport(spec, result):
        result |= _failover(spec, key, spec.failover_mode)
    return result


def _failover(spec: VerifySpec, key: SshKey, mode: str) -> dict[str, Any]:
    master, backup = spec.master, spec.backup
    bound = spec.failover_bound_s
    heartbeat = spec.topology == "lvs-heartbeat"
    if heartbeat:
        _heartbeat_settled(spec, key, ON_MASTER, "failover")
    poller = Poller(spec.vip, spec.port).start()
    try:
        time.sleep(1)
        t_stop = time.monotonic()
        _stop_master(spec, key, master, mode)
        moved = poller.wait_for(lambda ev: ev.ok and ev.mac == backup.mac, t_stop, bound + 15)
        time.sleep(1)
        gap, failed = outage(poller.events, t_stop)
        if moved is None:
            # NAT: the VIP may have moved while the replies still go to a gateway nobody holds: say so.
            _gateway_with_vip(spec, key, backup.name, "failover",
                              None if mode == "clean" else [backup.name])
            raise CheckFailed("failover", f"VIP answering through {backup.name} within {bound + 15:.1f} s",
                              f"client sees MAC {neighbour_mac(spec.vip)}, {failed} failed requests")
        # A frozen MASTER (hard mode) cannot be asked; its VIP is still configured but it is silent.
        holders = _vip_holders(spec, key, None if mode == "clean" else [backup.name])
        if mode == "clean" and holders != {master.name: False, backup.name: True}:
            raise CheckFailed("failover", f"VIP on {backup.name} only", f"holders {holders}")
        if not holders.get(backup.name):
            raise CheckFailed("failover", f"VIP on {backup.name}", f"holders {holders}")
        _gateway_with_vip(spec, key, backup.name, "failover", None if mode == "clean" else [backup.name])
        if gap > bound + 1.0:
            raise CheckFailed("failover", f"service gap <= failover bound {bound:.2f} s (+1 s)", f"{gap:.2f} s")
        takeover = _heartbeat_settled(spec, key, ON_BACKUP, "failover") if heartbeat else None
        # Timed from the moment the MASTER was told to stop: never negative.
        return {"passed": True, "mode": mode, **({"takeover_done_after_s": takeover} if heartbeat else {}),
                "service_gap_s": round(gap, 2),
                "failed_requests": failed, "vip_moved_after_s": round(moved.t - t_stop, 2),
                "vrrp_bound_s": round(bound, 2), "holders": holders,
                "timeline": poll_timeline(poller.events, t_stop, {d.mac: d.name for d in spec.directors})}
    except Exception:
        _start_master(spec, key, master, mode)  # leave the lab whole for the next run
        if not spec.preempt:  # nopreempt: the BACKUP keeps the VIP unless its HA daemon restarts
            ssh(key, backup.address, f"systemctl restart {ha_daemon(spec)}")
        raise
    finally:
        poller.stop()


def check_failback(spec: VerifySpec, key: SshKey) -> dict[str, Any]:
    """Bring the MASTER back: with preemption the VIP returns to it; with nopreempt it stays. Unicast
    labs: with multicast VRRP dropped on the bridge."""
    result: dict[str, Any] = {}
    with _vrrp_transport(spec, result):
        result |= _failback(spec, key, spec.failover_mode)
    return result


# How long this host may keep a stale ARP entry for the VIP once nobody confirms it: Linux's reachable time
# (base_reachable_time 30 s, randomised up to 45 s), delay_first_probe 5 s, 3 unicast + 3 broadcast probes.
NEIGHBOUR_EXPIRY_S = 60


def check_freeze(spec: VerifySpec, key: SshKey) -> dict[str, Any]:
    """topology lvs-heartbeat: the active director's VM frozen (no goodbye, VIP still configured): the other
    takes over once heartbeat's deadtime has passed; resumed, both own the resources ("Both machines own
    foreign resources!"), heartbeat settles it (one node restarts its heartbeat) and the VIP ends on the
    MASTER (auto_failback) or stays (off). Then both heartbeats must run and agree again, so the clean
    failover that follows is a real one."""
    result = {"failover": _failover(spec, key, "hard"), "failback": _failback(spec, key, "hard")}
    return {"passed": True} | result


def _holders_settle(spec: VerifySpec, key: SshKey, wanted: dict[str, bool]) -> dict[str, bool]:
    """Who holds the VIP, asked until it is `wanted` or the failover bound has passed: heartbeat's failback
    lets the returning MASTER answer while the BACKUP is still giving its copy up (keepalived: at once)."""
    deadline = time.monotonic() + spec.failover_bound_s
    while True:
        holders = _vip_holders(spec, key)
        if holders == wanted or time.monotonic() > deadline:
            return holders
        time.sleep(0.5)


def _failback(spec: VerifySpec, key: SshKey, mode: str) -> dict[str, Any]:
    master, backup = spec.master, spec.backup
    poller = Poller(spec.vip, spec.port).start()
    try:
        time.sleep(1)
        t0 = time.monotonic()
        _start_master(spec, key, master, mode)
        if spec.preempt:
            # heartbeat after a freeze: the resumed MASTER keeps the VIP it never released; the BACKUP gives
            # its copy up only when it restarts its heartbeat (its split-brain recovery), and nobody announces
            # the VIP again: this host may keep the BACKUP's MAC until its ARP entry for the VIP expires
            # (measured: back on the MASTER 36-50 s after the resume, the BACKUP serving meanwhile).
            stale_arp = mode == "hard" and spec.topology == "lvs-heartbeat"
            limit = spec.failover_bound_s + 20 + (NEIGHBOUR_EXPIRY_S if stale_arp else 0)
            back = poller.wait_for(lambda ev: ev.ok and ev.mac == master.mac, t0, limit)
            time.sleep(1)
            gap, failed = outage(poller.events, t0)
            holders = _holders_settle(spec, key, {master.name: True, backup.name: False}) if back else {}
            if back is None or holders != {master.name: True, backup.name: False}:
                raise CheckFailed("failback", f"VIP back on {master.name} only (preempt), answering within "
                                  f"{limit:g} s", f"holders {holders}, client MAC {neighbour_mac(spec.vip)}")
            _gateway_with_vip(spec, key, master.name, "failback")
            result = {"passed": True, "preempt": True, "vip_returned_after_s": round(back.t - t0, 2),
                      "service_gap_s": round(gap, 2), "failed_requests": failed}
            if stale_arp:
                result["arp_expiry_allowance_s"] = NEIGHBOUR_EXPIRY_S
            if spec.topology == "lvs-heartbeat":
                result["settled_after_s"] = _heartbeat_settled(spec, key, ON_MASTER, "failback")
            return result
        # nopreempt / auto_failback off: long enough for the returning MASTER to have taken the VIP if it would
        time.sleep(spec.failover_bound_s if spec.topology == "lvs-heartbeat" else 3 * spec.advert_int + 2)
        gap, failed = outage(poller.events, t0)
        holders = _vip_holders(spec, key)
        if holders != {master.name: False, backup.name: True}:
            raise CheckFailed("failback", f"VIP stays on {backup.name} (nopreempt)", f"holders {holders}")
        # Put the lab back: restarting the BACKUP's HA daemon hands the VIP to the MASTER.
        ssh(key, backup.address, f"systemctl restart {ha_daemon(spec)}")
        return {"passed": True, "preempt": False, "vip_stayed_on": backup.name, "failed_requests": failed}
    finally:
        poller.stop()


def check_restored(spec: VerifySpec, key: SshKey) -> dict[str, Any]:
    """The lab is back in its initial state: VIP on the MASTER only, every real server in the table."""
    deadline = time.monotonic() + spec.failover_bound_s + 20
    holders: dict[str, bool] = {}
    master = spec.master
    while time.monotonic() < deadline:
        holders = _vip_holders(spec, key)
        if [n for n, h in holders.items() if h] == [master.name]:
            _gateway_with_vip(spec, key, master.name, "restore")
            if spec.real_servers:
                _wait_all_in_ipvs(spec, key, timeout=spec.health_check.delay_loop * 3 + 30, check="restore")
            return {"passed": True, "vip_holder": master.name}
        time.sleep(1)
    raise CheckFailed("restore", f"VIP on {master.name} only after the checks", f"holders {holders}")


STEPS: dict[str, Callable[[VerifySpec, SshKey], dict[str, Any]]] = {
    "readiness": check_readiness,
    "lvs-state": check_lvs_state,
    "vip-state": check_vip_state,
    "round-robin": check_round_robin,
    "health-check": check_health,
    "persistence": check_persistence,
    "sorry-server": check_sorry_server,
    "connection-sync": check_connection_sync,
    "vrrp-unicast": check_vrrp_unicast,
    "failover": check_failover,
    "failback": check_failback,
    "freeze": check_freeze,
    "restore": check_restored,
}


# Steps that only apply when the lab has the feature.
OPTIONAL_STEPS: dict[str, Callable[[VerifySpec], bool]] = {
    "persistence": lambda spec: spec.persistence > 0,
    "sorry-server": lambda spec: spec.sorry_server,
    "connection-sync": lambda spec: spec.sync_daemon,
    "vrrp-unicast": lambda spec: spec.unicast_peers,
}


# The steps of each topology, in order (config.TOPOLOGIES).
TOPOLOGY_STEPS: dict[str, tuple[str, ...]] = {
    "lvs-keepalived": tuple(s for s in STEPS if s not in ("vip-state", "freeze")),
    "lvs-heartbeat": ("readiness", "lvs-state", "round-robin", "health-check", "persistence", "sorry-server",
                      "freeze", "failover", "failback", "restore"),
    "nginx-ha": ("readiness", "vip-state", "vrrp-unicast", "failover", "failback", "restore"),
}


def steps_for(spec: VerifySpec) -> list[str]:
    """The steps this lab runs, in order."""
    return [s for s in TOPOLOGY_STEPS[spec.topology] if s not in OPTIONAL_STEPS or OPTIONAL_STEPS[s](spec)]


def run_step(name: str, spec: VerifySpec, private_key: str) -> dict[str, Any]:
    t0 = time.monotonic()
    with SshKey(private_key) as key:
        result = STEPS[name](spec, key)
    result["duration_s"] = round(time.monotonic() - t0, 1)
    return result
