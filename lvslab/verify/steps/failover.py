"""Steps on high availability: failover, failback, a frozen director, connection sync, unicast VRRP,
and the lab put back in its initial state."""

from __future__ import annotations

import contextlib
from typing import Any

from lvslab.model import STREAM_PATH, NodeFacts, VerifySpec
from lvslab.verify.context import StepContext
from lvslab.verify.evaluate import fresh_source_ports, outage, poll_timeline
from lvslab.verify.failure import CheckFailed
from lvslab.verify.ipvsadm import parse_ipvsadm_connections
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
    VRRP_GROUP,
    Download,
    Poller,
    multicast_vrrp_dropped,
    neighbour_mac,
)


def check_connection_sync(ctx: StepContext) -> dict[str, Any]:
    """lvs_sync_daemon (seed 002's --start-daemon master/backup): a throttled download through the VIP goes on
    while the MASTER is frozen (its connection entry reached the BACKUP) and after it resumes. Without sync the
    new director has no entry for the connection and resets it."""
    spec = ctx.spec
    master, backup = spec.master, spec.backup
    bound = spec.failover_bound_s
    hold_s = 6.0  # bytes must keep arriving this long through the BACKUP
    result: dict[str, Any] = {"path": STREAM_PATH}
    listing = ctx.ssh(master.address, "ipvsadm -Lnc").stdout
    port = fresh_source_ports(listing, spec.client_address, 1)[0]
    download = Download(spec.vip, spec.port, STREAM_PATH, source_port=port).start()
    poller: Poller | None = None
    frozen = False
    try:
        t0 = ctx.monotonic()
        while download.received < 256 * 1024 and download.alive and ctx.monotonic() - t0 < 30:
            ctx.sleep(0.2)
        ctx.sleep(2)  # a few sync periods: the entry is on the BACKUP now (if sync runs)
        synced = [e for e in parse_ipvsadm_connections(ctx.ssh(backup.address, "ipvsadm -Lnc").stdout)
                  if e.client == spec.client_address and e.client_port == port]
        result.update(server=download.server, synced_to_backup=bool(synced),
                      synced_state=synced[0].state if synced else None)
        poller = Poller(spec.vip, spec.port, interval=0.2).start()
        t_freeze = ctx.monotonic()
        before = download.received
        virsh(spec, "suspend", master.domain)
        frozen = True
        moved = poller.wait_for(lambda ev: ev.ok and ev.mac == backup.mac, t_freeze, bound + 15)
        if moved is None:
            raise CheckFailed("connection-sync", f"VIP answering through {backup.name} within {bound + 15:.1f} s",
                              f"client sees MAC {neighbour_mac(spec.vip)}")
        t_moved = moved.t
        deadline = t_moved + hold_s
        while ctx.monotonic() < deadline and download.alive:
            ctx.sleep(0.2)
        on_backup = download.bytes_at(ctx.monotonic()) - download.bytes_at(t_moved)
        virsh(spec, "resume", master.domain)
        frozen = False
        t_resume = ctx.monotonic()
        # The MASTER resumes still MASTER (a frozen VM never saw the election) and takes the VIP back.
        poller.wait_for(lambda ev: ev.ok and ev.mac == master.mac, t_resume, bound + 20)
        t_back = ctx.monotonic()
        while ctx.monotonic() < t_back + hold_s and download.alive:
            ctx.sleep(0.2)
        after = download.bytes_at(ctx.monotonic()) - download.bytes_at(t_resume)
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
            virsh(spec, "resume", master.domain)
        if poller:
            poller.stop()
        download.stop()
    result["passed"] = True
    return result


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
            raise CheckFailed("failover", f"{_taken_away(spec)} stopped on {master.name}", out.stderr.strip())


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
    + 2 s the VIP is on the MASTER only and unicast adverts crossed the bridge."""
    spec = ctx.spec
    master, backup = spec.master, spec.backup
    window = 3 * spec.advert_int + 2
    result: dict[str, Any] = {"window_s": window}
    with _vrrp_transport(spec, result):
        out = ctx.ssh(master.address, VRRP_PROBE.format(source=master.address, group=VRRP_GROUP))
        if out.returncode != 0:
            raise CheckFailed("vrrp-unicast", f"3 probe packets to {VRRP_GROUP} sent from {master.name}",
                              out.stderr.strip()[-300:])
        ctx.sleep(window)
        holders = ctx.vip_holders()
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


def check_failover(ctx: StepContext) -> dict[str, Any]:
    """Take the MASTER away; the BACKUP must take the VIP within the VRRP bound; never both hold it.
    Unicast labs: with multicast VRRP dropped on the bridge."""
    spec = ctx.spec
    result: dict[str, Any] = {}
    with _vrrp_transport(spec, result):
        result |= failover(ctx, spec.failover_mode)
    return result


def failover(ctx: StepContext, mode: str) -> dict[str, Any]:
    spec = ctx.spec
    master, backup = spec.master, spec.backup
    bound = spec.failover_bound_s
    heartbeat = spec.topo.heartbeat
    if heartbeat:
        heartbeat_settled(ctx, ON_MASTER, "failover")
    poller = Poller(spec.vip, spec.port).start()
    try:
        ctx.sleep(1)
        t_stop = ctx.monotonic()
        _stop_master(ctx, master, mode)
        moved = poller.wait_for(lambda ev: ev.ok and ev.mac == backup.mac, t_stop, bound + 15)
        ctx.sleep(1)
        gap, failed = outage(poller.events, t_stop)
        if moved is None:
            # NAT: the VIP may have moved while the replies still go to a gateway nobody holds: say so.
            gateway_with_vip(ctx, backup.name, "failover",
                              None if mode == "clean" else [backup.name])
            raise CheckFailed("failover", f"VIP answering through {backup.name} within {bound + 15:.1f} s",
                              f"client sees MAC {neighbour_mac(spec.vip)}, {failed} failed requests")
        # A frozen MASTER (hard mode) cannot be asked; its VIP is still configured but it is silent.
        holders = ctx.vip_holders(None if mode == "clean" else [backup.name])
        if mode == "clean" and holders != {master.name: False, backup.name: True}:
            raise CheckFailed("failover", f"VIP on {backup.name} only", f"holders {holders}")
        if not holders.get(backup.name):
            raise CheckFailed("failover", f"VIP on {backup.name}", f"holders {holders}")
        gateway_with_vip(ctx, backup.name, "failover", None if mode == "clean" else [backup.name])
        if gap > bound + 1.0:
            raise CheckFailed("failover", f"service gap <= failover bound {bound:.2f} s (+1 s)", f"{gap:.2f} s")
        takeover = heartbeat_settled(ctx, ON_BACKUP, "failover") if heartbeat else None
        # Timed from the moment the MASTER was told to stop: never negative.
        return {"passed": True, "mode": mode, **({"takeover_done_after_s": takeover} if heartbeat else {}),
                "service_gap_s": round(gap, 2),
                "failed_requests": failed, "vip_moved_after_s": round(moved.t - t_stop, 2),
                "vrrp_bound_s": round(bound, 2), "holders": holders,
                "timeline": poll_timeline(poller.events, t_stop, {d.mac: d.name for d in spec.directors})}
    except Exception:
        _start_master(ctx, master, mode)  # leave the lab whole for the next run
        if not spec.preempt:  # nopreempt: the BACKUP keeps the VIP unless its HA daemon restarts
            ctx.ssh(backup.address, f"systemctl restart {ha_daemon(spec)}")
        raise
    finally:
        poller.stop()


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


def failback(ctx: StepContext, mode: str) -> dict[str, Any]:
    spec = ctx.spec
    master, backup = spec.master, spec.backup
    poller = Poller(spec.vip, spec.port).start()
    try:
        ctx.sleep(1)
        t0 = ctx.monotonic()
        _start_master(ctx, master, mode)
        if spec.preempt:
            # heartbeat after a freeze: the resumed MASTER keeps the VIP it never released; the BACKUP gives
            # its copy up only when it restarts its heartbeat (its split-brain recovery), and nobody announces
            # the VIP again: this host may keep the BACKUP's MAC until its ARP entry for the VIP expires
            # (measured: back on the MASTER 36-50 s after the resume, the BACKUP serving meanwhile).
            stale_arp = mode == "hard" and spec.topo.heartbeat
            limit = spec.failover_bound_s + 20 + (NEIGHBOUR_EXPIRY_S if stale_arp else 0)
            back = poller.wait_for(lambda ev: ev.ok and ev.mac == master.mac, t0, limit)
            ctx.sleep(1)
            gap, failed = outage(poller.events, t0)
            holders = _holders_settle(ctx, {master.name: True, backup.name: False}) if back else {}
            if back is None or holders != {master.name: True, backup.name: False}:
                raise CheckFailed("failback", f"VIP back on {master.name} only (preempt), answering within "
                                  f"{limit:g} s", f"holders {holders}, client MAC {neighbour_mac(spec.vip)}")
            gateway_with_vip(ctx, master.name, "failback")
            result = {"passed": True, "preempt": True, "vip_returned_after_s": round(back.t - t0, 2),
                      "service_gap_s": round(gap, 2), "failed_requests": failed}
            if stale_arp:
                result["arp_expiry_allowance_s"] = NEIGHBOUR_EXPIRY_S
            if spec.topo.heartbeat:
                result["settled_after_s"] = heartbeat_settled(ctx, ON_MASTER, "failback")
            return result
        # nopreempt / auto_failback off: long enough for the returning MASTER to have taken the VIP if it would
        ctx.sleep(spec.failover_bound_s if spec.topo.heartbeat else 3 * spec.advert_int + 2)
        gap, failed = outage(poller.events, t0)
        holders = ctx.vip_holders()
        if holders != {master.name: False, backup.name: True}:
            raise CheckFailed("failback", f"VIP stays on {backup.name} (nopreempt)", f"holders {holders}")
        # Put the lab back: restarting the BACKUP's HA daemon hands the VIP to the MASTER.
        ctx.ssh(backup.address, f"systemctl restart {ha_daemon(spec)}")
        return {"passed": True, "preempt": False, "vip_stayed_on": backup.name, "failed_requests": failed}
    finally:
        poller.stop()


def check_restored(ctx: StepContext) -> dict[str, Any]:
    """The lab is back in its initial state: VIP on the MASTER only, every real server in the table."""
    spec = ctx.spec
    deadline = ctx.monotonic() + spec.failover_bound_s + 20
    holders: dict[str, bool] = {}
    master = spec.master
    while ctx.monotonic() < deadline:
        holders = ctx.vip_holders()
        if [n for n, h in holders.items() if h] == [master.name]:
            gateway_with_vip(ctx, master.name, "restore")
            if spec.real_servers:
                wait_all_in_ipvs(ctx, timeout=spec.health_check.delay_loop * 3 + 30, check="restore")
            return {"passed": True, "vip_holder": master.name}
        ctx.sleep(1)
    raise CheckFailed("restore", f"VIP on {master.name} only after the checks", f"holders {holders}")
