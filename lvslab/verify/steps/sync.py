"""The connection-sync step: a long download through the VIP survives the MASTER freezing (IPVS's sync daemon
gave the BACKUP its connection entry) and the MASTER taking the VIP back."""

from __future__ import annotations

from typing import Any

from lvslab.model import STREAM_PATH
from lvslab.verify.bounds import failover_gap_bound
from lvslab.verify.context import StepContext
from lvslab.verify.evaluate import fresh_source_ports
from lvslab.verify.failure import CheckFailed
from lvslab.verify.ipvsadm import parse_ipvsadm_connections
from lvslab.verify.live import virsh
from lvslab.verify.probe import Download, Poller, neighbour_mac

# lvs.syncDaemon: the throttled download keeps at least this share of its rate while the BACKUP holds the VIP
# and after the MASTER took it back (without sync the BACKUP resets the connection: 0).
SYNC_RATE_SHARE = 0.5
SYNC_HOLD_S = 6.0  # seconds of each phase the download is measured


def check_connection_sync(ctx: StepContext) -> dict[str, Any]:
    """lvs_sync_daemon (seed 002's --start-daemon master/backup): a download throttled to `rate` through the
    VIP keeps >= SYNC_RATE_SHARE x rate x SYNC_HOLD_S bytes while the MASTER is frozen (its connection entry
    reached the BACKUP) and again after the MASTER resumed and took the VIP back. Without sync the new
    director has no entry for the connection and resets it."""
    spec = ctx.spec
    master, backup = spec.master, spec.backup
    gap_bound = failover_gap_bound(spec, "hard")
    result: dict[str, Any] = {"path": STREAM_PATH}
    listing = ctx.ssh(master.address, "ipvsadm -Lnc").stdout
    port = fresh_source_ports(listing, spec.client_address, 1)[0]
    download = Download(spec.vip, spec.port, STREAM_PATH, source_port=port).start()
    wanted = int(SYNC_RATE_SHARE * download.rate * SYNC_HOLD_S)
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
                      synced_state=synced[0].state if synced else None, bytes_wanted_per_phase=wanted)
        poller = Poller(spec.vip, spec.port, interval=0.2).start()
        t_freeze = ctx.monotonic()
        before = download.received
        virsh(spec, "suspend", master.domain)
        frozen = True
        moved = poller.wait_for(lambda ev: ev.ok and ev.mac == backup.mac, t_freeze, gap_bound)
        if moved is None:
            raise CheckFailed("connection-sync.vip-moved", f"VIP answering through {backup.name} within "
                              f"{gap_bound:g} s of {master.name} freezing",
                              f"client sees MAC {neighbour_mac(spec.vip)}")
        t_moved = moved.t
        while ctx.monotonic() < t_moved + SYNC_HOLD_S and download.alive:
            ctx.sleep(0.2)
        on_backup = download.bytes_at(ctx.monotonic()) - download.bytes_at(t_moved)
        virsh(spec, "resume", master.domain)
        frozen = False
        t_resume = ctx.monotonic()
        # The MASTER resumes still MASTER (a frozen VM never saw the election) and takes the VIP back.
        back = poller.wait_for(lambda ev: ev.ok and ev.mac == master.mac, t_resume, gap_bound)
        if back is None:
            raise CheckFailed("connection-sync.vip-back", f"{master.name} answering for the VIP again within "
                              f"{gap_bound:g} s of its resume", f"client sees MAC {neighbour_mac(spec.vip)}")
        while ctx.monotonic() < back.t + SYNC_HOLD_S and download.alive:
            ctx.sleep(0.2)
        after = download.bytes_at(ctx.monotonic()) - download.bytes_at(back.t)
        result.update(bytes_before_freeze=before, vip_moved_after_s=round(t_moved - t_freeze, 2),
                      vip_back_after_s=round(back.t - t_resume, 2), bytes_while_backup_held_vip=on_backup,
                      bytes_after_master_took_vip_back=after, bytes_total=download.received, length=download.length,
                      error=download.error)
        if download.error or (not download.alive and not download.done) or min(on_backup, after) < wanted:
            raise CheckFailed("connection-sync.stream-kept", f"the download from {download.server} through the VIP "
                              f">= {wanted} bytes ({SYNC_RATE_SHARE:g} x {download.rate} B/s x {SYNC_HOLD_S:g} s) "
                              "while "
                              f"{backup.name} held the VIP and again after {master.name} took it back",
                              f"{download.error or ('stalled' if not download.alive else 'below that')}: "
                              f"{before} bytes before the freeze, {on_backup} while {backup.name} held the VIP, "
                              f"{after} after; entry synced to {backup.name}: {bool(synced)}")
    finally:
        if frozen:
            virsh(spec, "resume", master.domain)
        if poller:
            poller.stop()
        download.stop()
    result["passed"] = True
    return result
