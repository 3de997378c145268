"""Questions to a running lab that several steps ask: who holds the VIP, the IPVS table, heartbeat's view,
what a split brain looks like, libvirt actions on a node."""

from __future__ import annotations

import concurrent.futures
import subprocess
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lvslab.lab.vip import ADDRESSES_COMMAND, DROP_VIP, holds_vip
from lvslab.model import NodeFacts, VerifySpec
from lvslab.verify.bounds import all_in_table_wait
from lvslab.verify.failure import CheckFailed
from lvslab.verify.ipvsadm import parse_ipvsadm_list
from lvslab.verify.probe import (
    arp_responders,
)

# --- helpers on a live lab -------------------------------------------------------------------------

def parallel(fn: Callable[[Any], Any], items: list[Any] | tuple[Any, ...]) -> list[Any]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(items))) as pool:
        return list(pool.map(fn, items))

if TYPE_CHECKING:  # (the context's methods call these functions)
    from lvslab.verify.context import StepContext


def eth0_addresses(ctx: StepContext, only: list[str] | None = None) -> dict[str, str]:
    """`ip -4 -o addr show dev eth0` of each director (asked over SSH; `only` skips a frozen one)."""
    spec = ctx.spec
    directors = [d for d in spec.directors if only is None or d.name in only]

    def addresses(d: NodeFacts) -> str:
        out = ctx.ssh(d.address, ADDRESSES_COMMAND, timeout=60)
        if out.returncode != 0:
            raise CheckFailed("vip-state.ssh", f"SSH to {d.name}", out.stderr.strip())
        return out.stdout
    return dict(zip([d.name for d in directors], parallel(addresses, directors), strict=True))


def vip_holders(ctx: StepContext, only: list[str] | None = None) -> dict[str, bool]:
    """Which directors have the VIP configured (`only` skips a frozen one)."""
    spec = ctx.spec
    return {name: holds_vip(text, spec.vip) for name, text in eth0_addresses(ctx, only).items()}


def gateway_with_vip(ctx: StepContext, holder: str, only: list[str] | None = None) -> None:
    """LVS-NAT: the real servers' gateway VIP is on the VIP's holder only (one vrrp_sync_group), or their
    replies reach a director that does not translate them back. Nothing to check with DR."""
    spec = ctx.spec
    if spec.lb_kind != "NAT":
        return
    gateways = {name: holds_vip(text, spec.gateway_vip) for name, text in eth0_addresses(ctx, only).items()}
    if [n for n, h in gateways.items() if h] != [holder]:
        raise CheckFailed("gateway.with-vip", f"gateway VIP {spec.gateway_vip} moved with the VIP: on {holder} only",
                          f"gateway VIP held by {sorted(n for n, h in gateways.items() if h) or 'nobody'}")


def ipvs_list(ctx: StepContext, director: NodeFacts, stats: bool = False) -> str:
    out = ctx.ssh(director.address, "ipvsadm -Ln" + (" --stats" if stats else ""))
    if out.returncode != 0:
        raise CheckFailed("ipvs.list", f"ipvsadm on {director.name}", out.stderr.strip())
    return out.stdout


def virsh(spec: VerifySpec, *args: str) -> None:
    subprocess.run(["virsh", "-q", "-c", spec.uri, *args], check=True, capture_output=True)


def weights(spec: VerifySpec) -> dict[str, int]:
    return {rs.name: rs.weight for rs in spec.real_servers}


# heartbeat's view of a node's resources (cl_status rscstatus): "local" = the ones haresources gives it (the
# MASTER: VIP + ldirectord; the BACKUP: none), "foreign" = only its peer's, "all" = both, "none" = none at all,
# "transition" = being moved.
HEARTBEAT_SETTLED = ("cl_status rscstatus 2>/dev/null || "
                     "echo \"not running (unit $(systemctl is-active heartbeat))\"")
# A heartbeat whose unit is stopped (inactive, failed) does not come back by itself: waiting for it ends after
# this long (a starting one answers `cl_status` a few seconds after its unit became active).
HEARTBEAT_STOPPED_GRACE_S = 5
# heartbeat's and its resource scripts' latest log lines (syslog tags), for a failure message.
HEARTBEAT_LINES = 6
# (The resource scripts log under tags such as "IPaddr2(IPaddr2_10.86.0.100)" and "ResourceManager(default)":
# journalctl -t would miss them.)
HEARTBEAT_DOING = ("journalctl --no-pager -o short-monotonic -n 400 | grep -E "
                   "'heartbeat|ResourceManager|IPaddr2|ldirectord|harc|ip-request' | grep -v ': debug: ' | "
                   f"tail -n {HEARTBEAT_LINES} | cut -c1-200")


# What cl_status rscstatus says on each director once heartbeat has settled.
ON_MASTER = {"master": ("local", "all"), "backup": ("local", "none")}  # the initial state
ON_BACKUP = {"backup": ("all",)}  # after a takeover (the MASTER stopped or frozen: not asked)


def heartbeat_settled(ctx: StepContext, wanted: dict[str, tuple[str, ...]]) -> float:
    """lvs-heartbeat: wait until heartbeat on each director named in `wanted` reports one of its states
    (ON_MASTER, ON_BACKUP): after boot it waits up to initdead for its peer; a takeover is done only when
    ldirectord runs too. Checks act only on a settled cluster: heartbeat 3 mishandles a stop or start
    that arrives during a takeover (seen: both nodes then claim the resources). Returns the seconds."""
    spec = ctx.spec
    t0 = ctx.monotonic()
    deadline = t0 + spec.heartbeat_initdead + spec.failover_bound_s + 20
    nodes = {"master": spec.master, "backup": spec.backup}
    states: dict[str, str] = {}
    stopped_since: float | None = None
    while ctx.monotonic() < deadline:
        states = {role: ctx.ssh(nodes[role].address, HEARTBEAT_SETTLED).stdout.strip() or "not running"
                  for role in wanted}
        if all(states[role] in ok for role, ok in wanted.items()):
            return round(ctx.monotonic() - t0, 1)
        if any(s.endswith(("(unit inactive)", "(unit failed)")) for s in states.values()):
            stopped_since = ctx.monotonic() if stopped_since is None else stopped_since
            if ctx.monotonic() - stopped_since >= HEARTBEAT_STOPPED_GRACE_S:
                break
        else:
            stopped_since = None
        ctx.sleep(1)
    raise CheckFailed("heartbeat.settled", "heartbeat settled (cl_status rscstatus): " + ", ".join(
        f"{nodes[role].name} {'/'.join(ok)}" for role, ok in wanted.items()) +
        f" within {deadline - t0:g} s (initdead + failoverBound + 20 s)",
        heartbeat_doing(ctx, [nodes[role] for role in wanted], {nodes[r].name: st for r, st in states.items()}))


def heartbeat_doing(ctx: StepContext, directors: list[NodeFacts], states: dict[str, str] | None = None) -> str:
    """What heartbeat was doing on each director, for a failure message: its state (cl_status rscstatus) and the
    last lines of its log and its resource scripts'."""
    def view(d: NodeFacts) -> str:
        state = (states or {}).get(d.name) or ctx.ssh(d.address, HEARTBEAT_SETTLED).stdout.strip() or "not running"
        lines = ctx.ssh(d.address, HEARTBEAT_DOING).stdout.strip().split("\n")[-HEARTBEAT_LINES:]
        return f"{d.name} {state}; its log: " + " | ".join(lines)
    return "; ".join(parallel(view, directors))


def split_brain(ctx: StepContext, holding: list[str]) -> str:
    """Both directors hold the VIP (seed 001: keepalived killed with -9 leaves its VIP behind while the
    BACKUP takes over): name both, the MACs that answer ARP for the VIP, and how to repair it."""
    spec = ctx.spec
    names = {n.mac: n.name for n in spec.nodes}
    responders = sorted(f"{names.get(m, '?')} ({m})"
                        for m in arp_responders(spec.bridge, spec.vip, spec.client_address))
    by_name = {d.name: d for d in spec.directors}
    daemon = ha_daemon(spec)
    stale = [n for n in holding if ctx.ssh(by_name[n].address, f"pidof {daemon}").returncode != 0]
    repair = (f"on {', '.join(stale)} ({daemon} not running, stale VIP): {DROP_VIP.format(vip=spec.vip)} && "
              f"systemctl restart {daemon}" if stale else
              f"restart {daemon} on both directors")
    return f"held by {holding}; ARP replies for {spec.vip} from {responders}; repair: {repair}"


def wait_all_in_ipvs(ctx: StepContext) -> str:
    """The gate before a step measures the IPVS table or the split (and after a fault's repair): every real server
    of weight > 0 in the VIP holder's table within all_in_table_wait (a previous step or repair may just have
    started nginx or reloaded the checker). Returns the table."""
    spec = ctx.spec
    timeout = all_in_table_wait(spec.health_check)
    master = ctx.active_director()
    wanted = {rs.address for rs in spec.real_servers if rs.weight > 0}
    deadline = ctx.monotonic() + timeout
    text = ""
    while ctx.monotonic() < deadline:
        text = ipvs_list(ctx, master)
        present = {a for a, v in parse_ipvsadm_list(text).items() if v["weight"] > 0}
        if wanted <= present:
            return text
        ctx.sleep(1)
    raise CheckFailed("ipvs.all-in-table", f"every real server in the IPVS table of {ctx.named(master)} within "
                      f"{timeout:g} s (3 x delay_loop + 30 s)",
                      text.strip() or "empty table")


def ha_daemon(spec: VerifySpec) -> str:
    """The unit that moves the VIP: heartbeat with topology lvs-heartbeat (seed 003), keepalived otherwise."""
    return spec.topo.ha_daemon


def _wait_holding(ctx: StepContext, wanted: list[list[str]]) -> list[str]:
    """The directors holding the VIP once they are one of `wanted`, within failoverBound + 20 s of the call."""
    t0 = ctx.monotonic()
    deadline = t0 + ctx.spec.failover_bound_s + 20
    holding = sorted(n for n, h in ctx.vip_holders().items() if h)
    while holding not in wanted and ctx.monotonic() < deadline:
        ctx.sleep(0.5)
        holding = sorted(n for n, h in ctx.vip_holders().items() if h)
    if holding not in wanted:
        raise CheckFailed("restore.master-only", f"the VIP on {' or '.join(w[0] for w in wanted)} only within "
                          f"{deadline - t0:g} s of the repair", f"held by {holding or 'nobody'}")
    return holding


def lab_settled(ctx: StepContext) -> float:
    """After a fault's repair, instead of a fixed wait: heartbeat settled (lvs-heartbeat), the VIP on the MASTER
    only (nopreempt: handed back from the BACKUP by restarting its HA daemon, as the failback step does), every
    real server back in its table; CheckFailed when the lab does not get there. Seconds it took."""
    spec = ctx.spec
    t0 = ctx.monotonic()
    if spec.topo.heartbeat:
        heartbeat_settled(ctx, ON_MASTER)
    holding = _wait_holding(ctx, [[spec.master.name]] if spec.preempt else [[d.name] for d in spec.directors])
    if holding == [spec.backup.name]:  # nopreempt kept it there
        ctx.ssh(spec.backup.address, f"systemctl restart {ha_daemon(spec)}")
        _wait_holding(ctx, [[spec.master.name]])
    if spec.real_servers:
        wait_all_in_ipvs(ctx)
    return round(ctx.monotonic() - t0, 1)
