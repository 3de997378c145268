"""Steps on the lab's state: readiness (cloud-init done), lvs-state (VIP, ARP, real servers, IPVS
settings), vip-state (nginx-ha)."""

from __future__ import annotations

import os
import re
import subprocess
from collections import Counter
from typing import Any

from lvslab.bootprofile import parse_profile
from lvslab.guest import readiness_script
from lvslab.model import NodeFacts, VerifySpec
from lvslab.verify.bounds import vip_on_master_wait
from lvslab.verify.context import StepContext
from lvslab.verify.evaluate import RS_CONFIG_SCRIPT, real_server_problems
from lvslab.verify.failure import CheckFailed
from lvslab.verify.ipvsadm import parse_ipvsadm_timeouts, parse_sync_daemons
from lvslab.verify.live import (
    ON_MASTER,
    gateway_with_vip,
    ha_daemon,
    heartbeat_doing,
    heartbeat_settled,
    parallel,
)
from lvslab.verify.probe import (
    arp_responders,
    http_get,
)

# lvs.lbKind -> the assertion on its real-server setup
RS_CONFIG_ASSERTION = {"DR": "real-server-config.dr", "TUN": "real-server-config.tun",
                       "NAT": "real-server-config.nat"}

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


SSH_WAIT_S = 60  # one SSH call waits this long on the node for cloud-init (or the rest of the deadline)
QUICK_SSH_S = 8  # the first call: a node that is up answers within this


def cloud_init_status(ctx: StepContext, node: NodeFacts) -> str:
    """What a node that missed the deadline is doing, in cloud-init's own words (its status, the stage it is
    in), or why SSH could not ask. Only on failure: `cloud-init status` costs the guest a Python start."""
    try:
        out = ctx.ssh(node.address, "cloud-init status --long 2>&1 | grep -E '^(status|detail|errors)' -A1 | "
                      "tr -s '\\n ' ' '", timeout=30)
    except subprocess.TimeoutExpired:
        return "no answer to `cloud-init status` within 30 s"
    said = out.stdout.strip() or out.stderr.strip()[-200:]
    return f"cloud-init status --long: {said}" if out.returncode == 0 else f"SSH exit {out.returncode}: {said}"


def check_readiness(ctx: StepContext) -> dict[str, Any]:
    """Every node finished cloud-init (marker written) without errors. Where the serial console log is on
    this host, wait on it (costs the busy, emulated guests nothing); then confirm over SSH, retried."""
    spec = ctx.spec
    deadline = ctx.monotonic() + spec.ready_timeout
    t0 = ctx.monotonic()

    def wait(node: NodeFacts) -> dict[str, Any]:
        last = "no answer"
        uptime = console_finished(node.console_log)
        # A node that is up already (verify on a running lab, after a resume or a reboot, whose console no
        # longer shows the first boot's "finished" line) answers at once; a booting one is waited for below.
        try:
            out = ctx.ssh(node.address, readiness_script(node.name), timeout=QUICK_SSH_S)
            if out.returncode == 0 and "cloud-init done" in out.stdout:
                return {"seconds": round(ctx.monotonic() - t0, 1), "boot_to_ready_s": uptime,
                        "boot_profile": parse_profile(out.stdout)}
        except subprocess.TimeoutExpired:
            pass
        while ctx.monotonic() < deadline:
            uptime = console_finished(node.console_log)
            if uptime is not None or not os.path.exists(node.console_log):
                break
            ctx.sleep(2)
        while ctx.monotonic() < deadline:
            wait_s = min(SSH_WAIT_S, max(5.0, deadline - ctx.monotonic()))
            try:
                out = ctx.ssh(node.address, readiness_script(node.name), timeout=wait_s)
            except subprocess.TimeoutExpired:  # still booting, or a guest starved of CPU: ask again
                last = f"cloud-init not done after {wait_s:.0f} s of waiting on the node"
                continue
            if out.returncode == 0 and "cloud-init done" in out.stdout:
                return {"seconds": round(ctx.monotonic() - t0, 1), "boot_to_ready_s": uptime,
                        "boot_profile": parse_profile(out.stdout)}
            if "check readiness failed" in out.stderr:
                raise CheckFailed("readiness.cloud-init", f"cloud-init done on {node.name}",
                                  "cloud-init error: " + out.stderr.split("observed", 1)[1].strip()[:400])
            last = (out.stderr or out.stdout).strip()[-200:] or f"exit {out.returncode}"
            ctx.sleep(10)
        raise CheckFailed("readiness.in-time", f"{node.name} ready within {spec.ready_timeout} s",
                          f"{last}; on {node.name}: {cloud_init_status(ctx, node)}")

    results = parallel(wait, spec.nodes)
    return {"passed": True, "nodes": {n.name: r for n, r in zip(spec.nodes, results, strict=True)},
            "seconds": round(ctx.monotonic() - t0, 1)}


def check_lvs_state(ctx: StepContext) -> dict[str, Any]:
    """The VIP is on the MASTER only (nopreempt: handed to it first if the other director came up first);
    only the MASTER answers ARP for it; every real server holds the VIP on lo as /32 with arp_ignore=1/
    arp_announce=2."""
    spec = ctx.spec
    master = spec.master
    result: dict[str, Any] = {}
    if spec.topo.heartbeat:
        result["vip_settled_after_s"] = heartbeat_settled(ctx, ON_MASTER)
    handed_over = vip_on_master_only(ctx)
    gateway_with_vip(ctx, master.name)

    def rs_config(rs: NodeFacts) -> str | None:
        out = ctx.ssh(rs.address, RS_CONFIG_SCRIPT)
        if out.returncode != 0:
            return f"{rs.name}: SSH failed: {out.stderr.strip()}"
        problems = real_server_problems(out.stdout, spec.lb_kind, spec.vip, spec.gateway_vip)
        return f"{rs.name}: " + ", ".join(problems) if problems else None

    rs_problems = [p for p in parallel(rs_config, spec.real_servers) if p]
    if rs_problems:
        wanted = {"DR": "VIP/32 on lo and arp_ignore=1, arp_announce=2",
                  "TUN": "VIP/32 on tunl0, arp_ignore=1, arp_announce=2 and rp_filter not strict",
                  "NAT": f"the default route via the gateway VIP {spec.gateway_vip} and no VIP"}[spec.lb_kind]
        raise CheckFailed(RS_CONFIG_ASSERTION[spec.lb_kind], f"{wanted} on every real server", "; ".join(rs_problems))

    _check_ipvs_settings(ctx, master)
    result |= {"passed": True, "vip_holder": master.name, "arp_responders": _arp_from_master_only(spec)}
    if handed_over is not None:
        result["nopreempt_vip_handed_over_after_s"] = handed_over
    return result


def vip_on_master_only(ctx: StepContext) -> float | None:
    """The VIP is on the MASTER only (split-brain names both holders otherwise). nopreempt: if the other
    node came up first and kept it, hand it over first; returns the seconds that took, else None."""
    spec = ctx.spec
    holders = ctx.vip_holders()
    master = spec.master
    holding = sorted(n for n, h in holders.items() if h)
    if spec.preempt and holding != [master.name]:
        # The election may still run: the director pushed last (often the MASTER, its boot the longer) started
        # keepalived a moment ago and preempts within a few adverts; heartbeat's resource scripts may still run.
        deadline = ctx.monotonic() + vip_on_master_wait(spec)
        while holding != [master.name] and ctx.monotonic() < deadline:
            ctx.sleep(0.5)
            holding = sorted(n for n, h in ctx.vip_holders().items() if h)
    handed_over = None
    if not spec.preempt and holding == [spec.backup.name]:
        # nopreempt (both BACKUP): whichever director's keepalived started first took the VIP and keeps it.
        # Hand it to the higher priority, as an operator would: restart keepalived on the holder.
        handed_over = _hand_vip_to_master(ctx)
        holding = [master.name]
    if len(holding) > 1:
        raise CheckFailed("split-brain.one-holder", f"VIP {spec.vip} on one director only", ctx.split_brain(holding))
    if holding != [master.name]:
        doing = f"; heartbeat: {heartbeat_doing(ctx, list(spec.directors))}" if spec.topo.heartbeat else ""
        raise CheckFailed("vip-state.on-master", f"VIP {spec.vip} on {master.name} only",
                          f"held by {holding or 'nobody'} (on the directors' eth0){doing}")
    return handed_over


def _arp_from_master_only(spec: VerifySpec) -> list[str]:
    """Only the MASTER's MAC answers ARP for the VIP on the bridge."""
    master = spec.master
    responders = arp_responders(spec.bridge, spec.vip, spec.client_address)
    if responders != {master.mac}:
        names = {n.mac: n.name for n in spec.nodes}
        raise CheckFailed("vip-arp.master-only", f"only {master.name} ({master.mac}) answers ARP for {spec.vip}",
                          f"answered by {sorted(names.get(m, m) for m in responders) or 'nobody'}")
    return sorted(responders)


def check_vip_state(ctx: StepContext) -> dict[str, Any]:
    """topology nginx-ha (seed 004's `curl VIP`): the VIP is on the MASTER only, only it answers ARP for it,
    and every fresh request to the VIP is served by the MASTER's nginx."""
    spec = ctx.spec
    master = spec.master
    handed_over = vip_on_master_only(ctx)
    responders = _arp_from_master_only(spec)
    requests = 2 * spec.requests_per_server
    answers = Counter(http_get(spec.vip, spec.port).server or "failed" for _ in range(requests))
    if answers != Counter({master.name: requests}):
        raise CheckFailed("vip-state.served-by-master", f"all {requests} requests to the VIP served by {master.name}",
                          f"answered by {dict(answers)}")
    result: dict[str, Any] = {"passed": True, "vip_holder": master.name, "arp_responders": responders,
                              "requests": requests, "answered_by": dict(answers)}
    if handed_over is not None:
        result["nopreempt_vip_handed_over_after_s"] = handed_over
    return result


def _hand_vip_to_master(ctx: StepContext) -> float:
    """nopreempt: move the VIP from the lower-priority director (it came up first) to the MASTER by
    restarting the HA daemon on the holder; seconds until the VIP is on the MASTER only."""
    spec = ctx.spec
    t0 = ctx.monotonic()
    daemon = ha_daemon(spec)
    out = ctx.ssh(spec.backup.address, f"systemctl restart {daemon}")
    if out.returncode != 0:
        raise CheckFailed("vip-state.handover", f"{daemon} restarted on {spec.backup.name} (nopreempt hand-over)",
                          out.stderr.strip())
    deadline = t0 + spec.failover_bound_s + 20
    holders: dict[str, bool] = {}
    while ctx.monotonic() < deadline:
        holders = ctx.vip_holders()
        if [n for n, h in holders.items() if h] == [spec.master.name]:
            return round(ctx.monotonic() - t0, 1)
        ctx.sleep(0.5)
    raise CheckFailed("vip-state.handover", f"VIP on {spec.master.name} after {daemon} restarted on {spec.backup.name} "
                      "(nopreempt: the first director up keeps the VIP)", f"holders {holders}")


def _check_ipvs_settings(ctx: StepContext, master: NodeFacts) -> None:
    """Both directors run IPVS with the configured connection timeouts (lvs.timeouts, the kernel's when
    unset) and, with lvs.syncDaemon, the sync daemon of their VRRP role (master sends, backup receives)."""
    spec = ctx.spec
    def settings(d: NodeFacts) -> str:
        return ctx.ssh(d.address, "ipvsadm -L --timeout; ipvsadm -L --daemon").stdout

    problems = []
    sync_ids = set()
    for d, text in zip(spec.directors, parallel(settings, spec.directors), strict=True):
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
        raise CheckFailed("ipvs-settings.timeouts-sync",
                          "the configured IPVS timeouts and sync daemons on both directors",
                          "; ".join(problems))
