"""Steps on high availability: failover, failback, a frozen director, unicast VRRP, and the lab put back in
its initial state."""

from __future__ import annotations

import contextlib
from typing import Any

from lvslab.model import SORRY_PREFIX, NodeFacts, VerifySpec
from lvslab.verify.bounds import failed_polls_bound, failover_gap_bound
from lvslab.verify.client import CLIENT, RATE_PER_S, ClientFigures, ThirdPartyClient, client_error_bound
from lvslab.verify.context import StepContext
from lvslab.verify.evaluate import outage, poll_timeline
from lvslab.verify.failure import CheckFailed
from lvslab.verify.live import (
    ON_BACKUP,
    ON_MASTER,
    gateway_with_vip,
    ha_daemon,
    heartbeat_settled,
    virsh,
    wait_all_in_ipvs,
)
from lvslab.verify.probe import (
    POLL_INTERVAL_S,
    VRRP_GROUP,
    Poller,
    PollEvent,
    multicast_vrrp_dropped,
    neighbour_mac,
)


def is_sorry(server: str | None) -> bool:
    """A sorry page (a director's own nginx), not a real server's answer."""
    return bool(server and server.startswith(SORRY_PREFIX))


def served(ev: PollEvent) -> bool:
    """A poll the service answered: a real server, not a director's sorry page (heartbeat's fallback answers
    the VIP while ldirectord is still starting after a takeover: the users get no service yet)."""
    return ev.ok and not is_sorry(ev.server)


def _taken_away(spec: VerifySpec) -> str:
    """What failover stops on the MASTER (clean mode): the HA daemon itself, or with topology nginx-ha nginx,
    which keepalived's vrrp_script must notice (seed 004's test)."""
    return spec.topo.failover_stops


def _stop_master(ctx: StepContext, master: NodeFacts, mode: str) -> None:
    spec = ctx.spec
    if mode == "hard":
        virsh(spec, "suspend", master.domain)  # frozen: no adverts, VIP still configured
    else:
        out = ctx.ssh(master.address, f"systemctl stop {_taken_away(spec)}")
        if out.returncode != 0:
            raise CheckFailed("failover.stop", f"{_taken_away(spec)} stopped on {master.name}", out.stderr.strip())


def _start_master(ctx: StepContext, master: NodeFacts, mode: str) -> None:
    spec = ctx.spec
    if mode == "hard":
        virsh(spec, "resume", master.domain)
    else:
        ctx.ssh(master.address, f"systemctl start {_taken_away(spec)}")


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


def check_vrrp_unicast(ctx: StepContext) -> dict[str, Any]:
    """vrrp.unicastPeers: with the directors' multicast VRRP dropped on the bridge (proved: 3 probe packets
    to 224.0.0.18 counted as dropped), the BACKUP still hears the MASTER, by unicast: after 3 x advert_int
    + 2 s the VIP is on the MASTER only, the BACKUP's keepalived still runs (a stopped one would prove
    nothing) and unicast adverts crossed the bridge. One assertion: with the BACKUP listening and multicast
    gone, the VIP stays on the MASTER only if unicast adverts reach it."""
    spec = ctx.spec
    master, backup = spec.master, spec.backup
    window = 3 * spec.advert_int + 2
    result: dict[str, Any] = {"window_s": window}
    with _vrrp_transport(spec, result):
        out = ctx.ssh(master.address, VRRP_PROBE.format(source=master.address, group=VRRP_GROUP))
        if out.returncode != 0:
            raise CheckFailed("vrrp-unicast.probe-sent", f"3 probe packets to {VRRP_GROUP} sent from {master.name}",
                              out.stderr.strip()[-300:])
        ctx.sleep(window)
        holders = ctx.vip_holders()
        # A stopped BACKUP leaves the VIP alone whatever the MASTER sends: it must be listening throughout.
        backup_daemon = ctx.ssh(backup.address, f"systemctl is-active {ha_daemon(spec)}").stdout.strip()
    if result["multicast_vrrp_dropped"] < 3:
        raise CheckFailed("vrrp-unicast.multicast-dropped",
                          f"multicast VRRP dropped on the bridge (3 probe packets to {VRRP_GROUP})",
                          f"{result['multicast_vrrp_dropped']} counted")
    if holders != {master.name: True, backup.name: False}:
        raise CheckFailed("vrrp-unicast.master-only", f"VIP on {master.name} only while multicast VRRP was dropped for "
                          f"{window:g} s ({backup.name} hears {master.name} by unicast)",
                          f"holders {holders} ({result['multicast_vrrp_dropped']} multicast VRRP packets dropped: "
                          "the directors advertise by multicast)")
    if backup_daemon != "active" or result["unicast_vrrp_seen"] < 3:
        raise CheckFailed("vrrp-unicast.master-only", f"{backup.name} hearing {master.name} by unicast: its "
                          f"{ha_daemon(spec)} active, at least 3 unicast adverts on the bridge in {window:g} s",
                          f"{ha_daemon(spec)} on {backup.name} {backup_daemon or 'unknown'}, "
                          f"{result['unicast_vrrp_seen']} unicast adverts counted")
    result["passed"] = True
    return result


def check_failover(ctx: StepContext) -> dict[str, Any]:
    """Take the MASTER away; the BACKUP must take the VIP within the VRRP bound; never both hold it.
    Unicast labs: with multicast VRRP dropped on the bridge."""
    spec = ctx.spec
    result: dict[str, Any] = {}
    with _vrrp_transport(spec, result):
        result |= failover(ctx, spec.failover_mode)
    return result


def failover(ctx: StepContext, mode: str) -> dict[str, Any]:
    """The MASTER (holding the VIP: asserted first) taken away; the BACKUP answers (a real server, not its
    sorry page) within bounds.failover_gap_bound; one outage only; hey, run through the VIP meanwhile, fails
    at most client_error_bound requests and gets no status but 200."""
    spec = ctx.spec
    master, backup = spec.master, spec.backup
    gap_bound = failover_gap_bound(spec, mode)
    heartbeat = spec.topo.heartbeat
    if heartbeat:
        heartbeat_settled(ctx, ON_MASTER)
    holders = ctx.vip_holders()
    if holders != {master.name: True, backup.name: False}:
        raise CheckFailed("failover.master-held", f"VIP on {master.name} only before the failover",
                          f"held by {sorted(n for n, h in holders.items() if h) or 'nobody'} (on the directors' eth0)")
    poller = Poller(spec.vip, spec.port).start()
    client = ThirdPartyClient(spec.vip, spec.port, gap_bound + CLIENT_RUN_S)
    try:
        ctx.sleep(1)
        t_stop = ctx.monotonic()
        _stop_master(ctx, master, mode)
        t_stopped = ctx.monotonic()
        moved = poller.wait_for(lambda ev: ev.ok and ev.mac == backup.mac and not is_sorry(ev.server), t_stop,
                                gap_bound + 15)
        ctx.sleep(1)
        gap, failed, flapped = outage(poller.events, t_stop, served)
        if moved is None:
            # NAT: the VIP may have moved while the replies still go to a gateway nobody holds: say so.
            gateway_with_vip(ctx, backup.name, None if mode == "clean" else [backup.name])
            raise CheckFailed("failover.vip-moved", f"a real server answering through {backup.name} within "
                              f"{gap_bound + 15:g} s", f"client sees MAC {neighbour_mac(spec.vip)}, {failed} failed "
                              f"requests, last answer {poller.events[-1].server if poller.events else None}")
        # A frozen MASTER (hard mode) cannot be asked; its VIP is still configured but it is silent.
        holders = ctx.vip_holders(None if mode == "clean" else [backup.name])
        if (mode == "clean" and holders != {master.name: False, backup.name: True}) or not holders.get(backup.name):
            raise CheckFailed("failover.backup-only", f"VIP on {backup.name}" + (" only" if mode == "clean" else ""),
                              f"holders {holders}")
        gateway_with_vip(ctx, backup.name, None if mode == "clean" else [backup.name])
        figures = _client_figures(client)
        moved_after = round(moved.t - t_stopped, 2)
        result = {"passed": True, "mode": mode, "service_gap_s": round(gap, 2), "failed_requests": failed,
                  "gap_bound_s": gap_bound, "vip_moved_after_s": round(moved.t - t_stop, 2),
                  "vip_moved_after_stop_s": moved_after, "stop_command_s": round(t_stopped - t_stop, 2),
                  "vrrp_bound_s": round(spec.failover_bound_s, 2), "holders": holders,
                  "third_party_client": figures.as_report(), "client_error_bound": client_error_bound(gap_bound),
                  "timeline": poll_timeline(poller.events, t_stop, {d.mac: d.name for d in spec.directors}),
                  "failed_after_return": poll_timeline(flapped, t_stop, {d.mac: d.name for d in spec.directors})}
        _assert_outage(FAILOVER_IDS, result, gap, failed, gap_bound, figures, f"{master.name} -> {backup.name}",
                       spec.topo.ipvs_starts_at_takeover)
        if moved_after > gap_bound:
            raise CheckFailed("failover.vip-moved", f"{backup.name} answering within {gap_bound:g} s of the stop "
                              f"command on {master.name} returning", f"{moved_after} s")
        if heartbeat:
            result["takeover_done_after_s"] = heartbeat_settled(ctx, ON_BACKUP)
        return result
    except Exception:
        _start_master(ctx, master, mode)  # leave the lab whole for the next run
        if not spec.preempt:  # nopreempt: the BACKUP keeps the VIP unless its HA daemon restarts
            ctx.ssh(backup.address, f"systemctl restart {ha_daemon(spec)}")
        raise
    finally:
        poller.stop()
        client.stop()


CLIENT_RUN_S = 30  # hey runs at most this long past the gap bound; the step stops it when done (SIGINT)


def _client_figures(client: ThirdPartyClient) -> ClientFigures:
    """Stop hey (SIGINT: it prints its summary) and read its figures."""
    client.interrupt()
    return client.result()


# (the gap id, the failed-requests id): the poller's and hey's failed requests are one assertion, as no fault can
# fail one without the other (each counts requests lost to the same outage).
FAILOVER_IDS = ("failover.gap", "failover.failed-requests")
FAILBACK_IDS = ("failback.gap", "failback.failed-requests")


def _assert_outage(ids: tuple[str, str], result: dict[str, Any], gap: float, failed: int, gap_bound: float,
                   figures: ClientFigures, moving: str, settles: bool = False) -> None:
    """One outage of at most gap_bound (ids[0]), its failed requests bounded, as the poller and hey saw them
    (ids[1])."""
    if gap > gap_bound:
        raise CheckFailed(ids[0], f"service gap <= {gap_bound:g} s ({moving})",
                          f"{gap:.2f} s; timeline {result.get('timeline')}")
    polls = failed_polls_bound(gap, POLL_INTERVAL_S)
    flapped = result.get("failed_after_return") or []
    # heartbeat starts ldirectord at each takeover; its first check rounds make the service flap for seconds (seen
    # in CI: 2-6 s with checkinterval 2, the fallback answering between): reported (failed_after_return), not failed.
    if failed > polls or (flapped and not settles):
        raise CheckFailed(ids[1], f"one outage ({moving}): at most {polls} failed polls in its {gap:.2f} s (a poll "
                          f"every {POLL_INTERVAL_S:g} s), none once a real server answered again",
                          f"{failed} in the outage, then {len(flapped)} more: the service flapped; those polls "
                          f"[s, answer (None: no answer), holder by the client's ARP]: {flapped[:20]}")
    errors = client_error_bound(gap_bound)
    wrong = {code: n for code, n in figures.statuses.items() if code != "200"}
    if figures.errors > errors or wrong or not figures.requests:
        raise CheckFailed(ids[1], f"{CLIENT}: at most {errors} failed requests (ceil({gap_bound:g} s x "
                          f"{RATE_PER_S}/s) + 1) and only status 200 ({moving})",
                          f"{figures.requests} requests, {figures.errors} errors {figures.error_kinds}, statuses "
                          f"{figures.statuses}, slowest {figures.slowest_s} s")


def check_failback(ctx: StepContext) -> dict[str, Any]:
    """Bring the MASTER back: with preemption the VIP returns to it; with nopreempt it stays. Unicast
    labs: with multicast VRRP dropped on the bridge."""
    spec = ctx.spec
    result: dict[str, Any] = {}
    with _vrrp_transport(spec, result):
        result |= failback(ctx, spec.failover_mode)
    return result


# How long this host may keep a stale ARP entry for the VIP once nobody confirms it: Linux's reachable time
# (base_reachable_time 30 s, randomised up to 45 s), delay_first_probe 5 s, 3 unicast + 3 broadcast probes.
NEIGHBOUR_EXPIRY_S = 60


def check_freeze(ctx: StepContext) -> dict[str, Any]:
    """topology lvs-heartbeat: the active director's VM frozen (no goodbye, VIP still configured): the other
    takes over once heartbeat's deadtime has passed; resumed, both own the resources ("Both machines own
    foreign resources!"), heartbeat settles it (one node restarts its heartbeat) and the VIP ends on the
    MASTER (auto_failback) or stays (off). Then both heartbeats must run and agree again, so the clean
    failover that follows is a real one."""
    result = {"failover": failover(ctx, "hard"), "failback": failback(ctx, "hard")}
    return {"passed": True} | result


def _holders_settle(ctx: StepContext, wanted: dict[str, bool]) -> dict[str, bool]:
    """Who holds the VIP, asked until it is `wanted` or the failover bound has passed: heartbeat's failback
    lets the returning MASTER answer while the BACKUP is still giving its copy up (keepalived: at once)."""
    spec = ctx.spec
    deadline = ctx.monotonic() + spec.failover_bound_s
    while True:
        holders = ctx.vip_holders()
        if holders == wanted or ctx.monotonic() > deadline:
            return holders
        ctx.sleep(0.5)


# keepalived started on an emulated guest: config read, checker and VRRP processes forked, first advert.
DAEMON_START_ALLOWANCE_S = 5.0


def failback_bound(spec: VerifySpec, mode: str) -> float:
    """Seconds from the MASTER's return (its HA daemon started / its VM resumed) until it holds the VIP again
    (preempt): keepalived: failoverBound (its master-down timer, or preempting the lower priority at once)
    + DAEMON_START_ALLOWANCE_S; heartbeat: the peer releases the resources, then this node runs the takeover
    (failoverBound + 20 s), after a freeze plus this host's ARP expiry (nobody re-announces the VIP)."""
    if not spec.topo.heartbeat:
        return spec.failover_bound_s + DAEMON_START_ALLOWANCE_S
    return spec.failover_bound_s + 20 + (NEIGHBOUR_EXPIRY_S if mode == "hard" else 0)


def failback(ctx: StepContext, mode: str) -> dict[str, Any]:
    spec = ctx.spec
    master, backup = spec.master, spec.backup
    poller = Poller(spec.vip, spec.port).start()
    limit = failback_bound(spec, mode)
    # After a heartbeat freeze this host keeps the BACKUP's MAC for the VIP until its ARP entry expires, while the
    # BACKUP (restarting its heartbeat) stops serving: the outage may last that long too.
    stale_arp = NEIGHBOUR_EXPIRY_S if mode == "hard" and spec.topo.heartbeat else 0
    gap_bound = failover_gap_bound(spec, mode) + stale_arp
    client = ThirdPartyClient(spec.vip, spec.port, limit + CLIENT_RUN_S)
    try:
        ctx.sleep(1)
        t0 = ctx.monotonic()
        _start_master(ctx, master, mode)
        t_started = ctx.monotonic()
        if spec.preempt:
            # heartbeat after a freeze: the resumed MASTER keeps the VIP it never released; the BACKUP gives
            # its copy up only when it restarts its heartbeat (its split-brain recovery), and nobody announces
            # the VIP again: this host may keep the BACKUP's MAC until its ARP entry for the VIP expires
            # (measured: back on the MASTER 36-50 s after the resume, the BACKUP serving meanwhile).
            back = poller.wait_for(lambda ev: ev.ok and ev.mac == master.mac and not is_sorry(ev.server), t0,
                                   limit + (t_started - t0))
            ctx.sleep(1)
            gap, failed, flapped = outage(poller.events, t0, served)
            holders = _holders_settle(ctx, {master.name: True, backup.name: False}) if back else {}
            if back is None or holders != {master.name: True, backup.name: False} or back.t - t_started > limit:
                raise CheckFailed("failback.returns", f"VIP back on {master.name} only (preempt), answering within "
                                  f"{limit:g} s of its return", f"holders {holders}, client MAC "
                                  f"{neighbour_mac(spec.vip)}, answered after "
                                  f"{round(back.t - t_started, 2) if back else None} s")
            gateway_with_vip(ctx, master.name)
            result = {"passed": True, "preempt": True, "vip_returned_after_s": round(back.t - t0, 2),
                      "vip_returned_after_start_s": round(back.t - t_started, 2), "bound_s": limit,
                      "service_gap_s": round(gap, 2), "failed_requests": failed,
                      "timeline": poll_timeline(poller.events, t0, {d.mac: d.name for d in spec.directors}),
                      "failed_after_return": poll_timeline(flapped, t0, {d.mac: d.name for d in spec.directors})}
            if mode == "hard" and spec.topo.heartbeat:
                result["arp_expiry_allowance_s"] = NEIGHBOUR_EXPIRY_S
            if spec.topo.heartbeat:
                result["settled_after_s"] = heartbeat_settled(ctx, ON_MASTER)
        else:
            # nopreempt / auto_failback off: long enough for the returning MASTER to have taken the VIP if it would
            ctx.sleep(limit)
            gap, failed, flapped = outage(poller.events, t0, served)
            holders = ctx.vip_holders()
            if holders != {master.name: False, backup.name: True}:
                raise CheckFailed("failback.stays", f"VIP stays on {backup.name} (nopreempt) for {limit:g} s",
                                  f"holders {holders}")
            result = {"passed": True, "preempt": False, "vip_stayed_on": backup.name, "failed_requests": failed,
                      "service_gap_s": round(gap, 2), "bound_s": limit,
                      "failed_after_return": poll_timeline(flapped, t0, {d.mac: d.name for d in spec.directors})}
        figures = _client_figures(client)
        result |= {"third_party_client": figures.as_report(), "client_error_bound": client_error_bound(gap_bound)}
        _assert_outage(FAILBACK_IDS, result, gap, failed, gap_bound, figures, f"{backup.name} -> {master.name}",
                       spec.topo.ipvs_starts_at_takeover)
        if not spec.preempt:  # put the lab back: restarting the BACKUP's HA daemon hands the VIP to the MASTER
            ctx.ssh(backup.address, f"systemctl restart {ha_daemon(spec)}")
        return result
    finally:
        poller.stop()
        client.stop()


def check_restored(ctx: StepContext) -> dict[str, Any]:
    """The lab is back in its initial state: VIP on the MASTER only, every real server in the table."""
    spec = ctx.spec
    deadline = ctx.monotonic() + spec.failover_bound_s + 20
    holders: dict[str, bool] = {}
    master = spec.master
    while ctx.monotonic() < deadline:
        holders = ctx.vip_holders()
        if [n for n, h in holders.items() if h] == [master.name]:
            gateway_with_vip(ctx, master.name)
            if spec.real_servers:
                wait_all_in_ipvs(ctx)
            return {"passed": True, "vip_holder": next(n for n, h in holders.items() if h)}  # observed
        ctx.sleep(1)
    raise CheckFailed("restore.master-only", f"VIP on {master.name} only after the checks", f"holders {holders}")
