"""The verification steps of a lab (readiness, VRRP/ARP state, round-robin, health check, failover,
failback), as the tutorials test by hand, measured. Pure evaluation functions first (unit-tested), then
the steps that drive a real lab. Every failure raises CheckFailed naming the check, what was expected
and what was observed.
"""

from __future__ import annotations

import concurrent.futures
import os
import random
import re
import subprocess
import time
from collections import Counter
from typing import Any

from lvslab.probe import Poller, SshKey, arp_responders, http_get, neighbour_mac, ssh


class CheckFailed(RuntimeError):
    def __init__(self, check: str, expected: str, observed: str) -> None:
        super().__init__(f"check {check} failed: expected {expected}; observed {observed}")
        self.check = check


# --- pure evaluation -------------------------------------------------------------------------------

def expected_counts(servers: list[dict[str, Any]], lb_algo: str, total: int) -> dict[str, float] | None:
    """Requests each real server should get for `total` fresh connections, or None if the scheduler's
    split is not predictable from one client (lc, sh, mh, ...)."""
    if lb_algo == "rr":
        active = [s for s in servers if s["weight"] > 0]
        return {s["name"]: (total / len(active) if s["weight"] > 0 else 0) for s in servers}
    if lb_algo == "wrr":
        weight_sum = sum(s["weight"] for s in servers)
        return {s["name"]: total * s["weight"] / weight_sum for s in servers}
    return None


def evaluate_distribution(counts: dict[str, int], servers: list[dict[str, Any]], lb_algo: str,
                          persistence: int, total: int) -> str | None:
    """None if the client-side counts match the scheduler, else what is wrong."""
    answered = sum(counts.values())
    if answered != total:
        return f"{total - answered} of {total} requests failed"
    unknown = set(counts) - {s["name"] for s in servers}
    if unknown:
        return f"answers from unknown servers {sorted(unknown)}"
    if persistence:
        return None if len(counts) == 1 else f"persistence is on but {len(counts)} servers answered"
    expected = expected_counts(servers, lb_algo, total)
    if expected is None:
        missing = [s["name"] for s in servers if s["weight"] > 0 and s["name"] not in counts]
        return f"servers never answered: {missing}" if missing and lb_algo not in ("sh", "mh", "dh", "fo") else None
    off = {n: (counts.get(n, 0), e) for n, e in expected.items() if abs(counts.get(n, 0) - e) > 1}
    if off:
        return "counts off by more than 1: " + ", ".join(f"{n} got {c}, expected {e:g}" for n, (c, e) in off.items())
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


_CONN_RE = re.compile(r"^\S+\s+\S+\s+\S+\s+(\d+\.\d+\.\d+\.\d+):(\d+)\s")


def fresh_source_ports(ipvsadm_lnc: str, client: str, count: int, low: int = 20000, high: int = 30000) -> list[int]:
    """`count` distinct client ports with no entry in `ipvsadm -Lnc` for this client. The range lies below
    the kernel's ephemeral range, so no other socket of this host takes them meanwhile."""
    taken = {int(m.group(2)) for line in ipvsadm_lnc.splitlines()
             if (m := _CONN_RE.match(line)) and m.group(1) == client}
    free = [p for p in range(low, high) if p not in taken]
    return random.sample(free, count)


def health_check_window(hc: dict[str, Any]) -> tuple[float, float]:
    """Seconds keepalived may take to remove a failed server and to re-add a recovered one."""
    per_try = hc["connect_timeout"] + hc["delay_before_retry"]
    remove = hc["delay_loop"] + (hc["retry"] + 1) * per_try
    add = hc["delay_loop"] + hc["connect_timeout"]
    return remove, add


# --- helpers on a live lab -------------------------------------------------------------------------

def _parallel(fn: Any, items: list[Any]) -> list[Any]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(items))) as pool:
        return list(pool.map(fn, items))


def _vip_holders(spec: dict[str, Any], key: SshKey, only: list[str] | None = None) -> dict[str, bool]:
    """Which directors have the VIP configured (asked over SSH; `only` skips a frozen one)."""
    directors = [d for d in spec["directors"] if only is None or d["name"] in only]

    def holds(d: dict[str, Any]) -> bool:
        out = ssh(key, d["address"], "ip -4 -o addr show dev eth0", timeout=60)
        if out.returncode != 0:
            raise CheckFailed("vip-state", f"SSH to {d['name']}", out.stderr.strip())
        return f" {spec['vip']}/" in out.stdout
    return dict(zip([d["name"] for d in directors], _parallel(holds, directors), strict=True))


def _ipvs_list(spec: dict[str, Any], key: SshKey, director: dict[str, Any], stats: bool = False) -> str:
    out = ssh(key, director["address"], "ipvsadm -Ln" + (" --stats" if stats else ""))
    if out.returncode != 0:
        raise CheckFailed("ipvs", f"ipvsadm on {director['name']}", out.stderr.strip())
    return out.stdout


def _director(spec: dict[str, Any], state: str) -> dict[str, Any]:
    return next(d for d in spec["directors"] if d["state"] == state)


def _virsh(spec: dict[str, Any], *args: str) -> None:
    subprocess.run(["virsh", "-q", "-c", spec["uri"], *args], check=True, capture_output=True)


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


def check_readiness(spec: dict[str, Any], key: SshKey) -> dict[str, Any]:
    """Every node finished cloud-init (marker written) without errors. Where the serial console log is on
    this host, wait on it (costs the busy, emulated guests nothing); then confirm over SSH, retried."""
    deadline = time.monotonic() + spec["ready_timeout"]
    t0 = time.monotonic()

    def wait(node: dict[str, Any]) -> dict[str, Any]:
        last = "no answer"
        uptime = None
        while time.monotonic() < deadline:
            uptime = console_finished(node.get("console_log"))
            if uptime is not None or not node.get("console_log") or not os.path.exists(node["console_log"]):
                break
            time.sleep(2)
        while time.monotonic() < deadline:
            out = ssh(key, node["address"], "cat /var/lib/lvslab/ready && cloud-init status --long", timeout=60)
            if out.returncode in (0, 1) and out.stdout.strip():
                if "status: done" in out.stdout:
                    return {"seconds": round(time.monotonic() - t0, 1), "boot_to_ready_s": uptime}
                if "status: error" in out.stdout:
                    raise CheckFailed("readiness", f"cloud-init done on {node['name']}",
                                      "cloud-init error: " + " ".join(out.stdout.split())[:400])
            last = (out.stderr or out.stdout).strip()[-200:] or f"exit {out.returncode}"
            time.sleep(10)
        raise CheckFailed("readiness", f"{node['name']} ready within {spec['ready_timeout']} s", last)

    nodes = spec["directors"] + spec["real_servers"]
    results = _parallel(wait, nodes)
    return {"passed": True, "nodes": {n["name"]: r for n, r in zip(nodes, results, strict=False)},
            "seconds": round(time.monotonic() - t0, 1)}


def check_lvs_state(spec: dict[str, Any], key: SshKey) -> dict[str, Any]:
    """The VIP is on the MASTER only; only the MASTER answers ARP for it; every real server holds the VIP
    on lo as /32 with arp_ignore=1/arp_announce=2."""
    holders = _vip_holders(spec, key)
    master = _director(spec, "MASTER")
    holding = sorted(n for n, h in holders.items() if h)
    if holding != [master["name"]]:
        raise CheckFailed("vip-state", f"VIP {spec['vip']} on {master['name']} only", f"held by {holding or 'nobody'}")

    script = ("ip -4 -o addr show dev lo; for i in all lo eth0; do "
              "echo $i $(sysctl -n net.ipv4.conf.$i.arp_ignore) $(sysctl -n net.ipv4.conf.$i.arp_announce); done")

    def rs_config(rs: dict[str, Any]) -> str | None:
        out = ssh(key, rs["address"], script)
        if out.returncode != 0:
            return f"{rs['name']}: SSH failed: {out.stderr.strip()}"
        problems = []
        if f" {spec['vip']}/32 " not in out.stdout:
            problems.append(f"VIP {spec['vip']}/32 not on lo")
        for line in out.stdout.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] in ("all", "lo", "eth0") and (parts[1], parts[2]) != ("1", "2"):
                problems.append(f"{parts[0]} arp_ignore={parts[1]} arp_announce={parts[2]}")
        return f"{rs['name']}: " + ", ".join(problems) if problems else None

    rs_problems = [p for p in _parallel(rs_config, spec["real_servers"]) if p]
    if rs_problems:
        raise CheckFailed("real-server-config", "VIP/32 on lo and arp_ignore=1, arp_announce=2 on every real server",
                          "; ".join(rs_problems))

    responders = arp_responders(spec["bridge"], spec["vip"], spec["host_address"])
    if responders != {master["mac"]}:
        names = {d["mac"]: d["name"] for d in spec["directors"] + spec["real_servers"]}
        raise CheckFailed("vip-arp", f"only {master['name']} ({master['mac']}) answers ARP for {spec['vip']}",
                          f"answered by {sorted(names.get(m, m) for m in responders) or 'nobody'}")
    return {"passed": True, "vip_holder": master["name"], "arp_responders": sorted(responders)}


def _wait_all_in_ipvs(spec: dict[str, Any], key: SshKey, timeout: float) -> str:
    master = _director(spec, "MASTER")
    wanted = {rs["address"] for rs in spec["real_servers"] if rs["weight"] > 0}
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = _ipvs_list(spec, key, master)
        present = {a for a, v in parse_ipvsadm_list(text).items() if v["weight"] > 0}
        if wanted <= present:
            return text
        time.sleep(1)
    raise CheckFailed("round-robin", f"every real server in the IPVS table of {master['name']} within {timeout:g} s",
                      text.strip() or "empty table")


def check_round_robin(spec: dict[str, Any], key: SshKey) -> dict[str, Any]:
    """Fresh connections to the VIP; counts per real server follow the scheduler; ipvsadm agrees."""
    master = _director(spec, "MASTER")
    _wait_all_in_ipvs(spec, key, timeout=spec["health_check"]["delay_loop"] * 3 + 60)
    # Zero the counters and list the connection entries still held (FIN_WAIT/TIME_WAIT for minutes):
    # requests must come from client ports without an entry, or IPVS reuses it instead of scheduling.
    listing = ssh(key, master["address"], "ipvsadm -Z && ipvsadm -Lnc").stdout
    total = spec["requests_per_server"] * len(spec["real_servers"])
    ports = fresh_source_ports(listing, spec["host_address"], total)
    sequence = []
    for source_port in ports:
        res = http_get(spec["vip"], spec["port"], timeout=3, source_port=source_port)
        sequence.append(res.server if res.ok else f"ERROR({res.error})")
    counts = Counter(s for s in sequence if not s.startswith("ERROR"))
    # The kernel folds per-CPU counters into what ipvsadm shows every 2 s (estimator): wait for them.
    deadline = time.monotonic() + 10
    while True:
        stats_text = _ipvs_list(spec, key, master, stats=True)
        stats = parse_ipvsadm_stats(stats_text)
        if sum(v["conns"] for v in stats.values()) >= total or time.monotonic() > deadline:
            break
        time.sleep(1)
    problem = evaluate_distribution(dict(counts), spec["real_servers"], spec["lb_algo"], spec["persistence"], total)
    if problem:
        raise CheckFailed("round-robin", f"{total} requests split by {spec['lb_algo']} over "
                          f"{[s['name'] for s in spec['real_servers']]}", f"{problem}; sequence {sequence}")
    by_addr = {rs["address"]: rs["name"] for rs in spec["real_servers"]}
    ipvs_counts = {by_addr.get(a, a): v["conns"] for a, v in stats.items()}
    if any(ipvs_counts.get(name, 0) != c for name, c in counts.items()) or sum(ipvs_counts.values()) != total:
        raise CheckFailed("round-robin", f"ipvsadm --stats connection counts equal to the client's {dict(counts)}",
                          f"{ipvs_counts}\n{stats_text}")
    if any(v["outpkts"] for v in stats.values()):
        raise CheckFailed("round-robin", "OutPkts 0 (DR: replies bypass the director)", stats_text)
    return {"passed": True, "requests": total, "counts": dict(counts), "sequence": sequence,
            "ipvs_conns": ipvs_counts, "ipvsadm_stats": stats_text}


def check_health(spec: dict[str, Any], key: SshKey) -> dict[str, Any]:
    """Stop nginx on one real server: keepalived removes it; start it: it comes back. Both timed."""
    victim = spec["real_servers"][-1]
    master = _director(spec, "MASTER")
    remove_window, add_window = health_check_window(spec["health_check"])
    slack = 10.0
    others = {rs["name"] for rs in spec["real_servers"] if rs is not victim and rs["weight"] > 0}
    result: dict[str, Any] = {"server": victim["name"], "remove_window_s": remove_window, "add_window_s": add_window}
    stopped = False
    try:
        t_stop = time.monotonic()
        out = ssh(key, victim["address"], "systemctl stop nginx")
        stopped = out.returncode == 0
        if not stopped:
            raise CheckFailed("health-check", f"nginx stopped on {victim['name']}", out.stderr.strip())
        # Removed = the table lost it, seen from the client as a streak of answers from the others only.
        streak, removed_at = 0, None
        deadline = t_stop + remove_window + slack
        while time.monotonic() < deadline:
            res = http_get(spec["vip"], spec["port"], timeout=1)
            streak = streak + 1 if res.ok and res.server in others else 0
            if streak >= 2 * max(1, len(others)):
                removed_at = time.monotonic()
                break
            time.sleep(0.2)
        table = parse_ipvsadm_list(_ipvs_list(spec, key, master))
        if removed_at is None or victim["address"] in table:
            raise CheckFailed("health-check", f"{victim['name']} removed within {remove_window + slack:g} s",
                              f"still in table: {victim['address'] in table}; client streak {streak}")
        result["removed_after_s"] = round(removed_at - t_stop, 1)
        t_start = time.monotonic()
        ssh(key, victim["address"], "systemctl start nginx")
        stopped = False
        back_at = None
        deadline = t_start + add_window + slack
        while time.monotonic() < deadline:
            if http_get(spec["vip"], spec["port"], timeout=1).server == victim["name"]:
                back_at = time.monotonic()
                break
            time.sleep(0.2)
        if back_at is None:
            raise CheckFailed("health-check", f"{victim['name']} answering again within {add_window + slack:g} s",
                              "no answer from it")
        result["readded_after_s"] = round(back_at - t_start, 1)
    finally:
        if stopped:
            ssh(key, victim["address"], "systemctl start nginx")
    result["passed"] = True
    return result


def _stop_master(spec: dict[str, Any], key: SshKey, master: dict[str, Any]) -> None:
    if spec["failover_mode"] == "hard":
        _virsh(spec, "suspend", master["domain"])  # frozen: no adverts, VIP still configured
    else:
        out = ssh(key, master["address"], "systemctl stop keepalived")
        if out.returncode != 0:
            raise CheckFailed("failover", f"keepalived stopped on {master['name']}", out.stderr.strip())


def _start_master(spec: dict[str, Any], key: SshKey, master: dict[str, Any]) -> None:
    if spec["failover_mode"] == "hard":
        _virsh(spec, "resume", master["domain"])
    else:
        ssh(key, master["address"], "systemctl start keepalived")


def check_failover(spec: dict[str, Any], key: SshKey) -> dict[str, Any]:
    """Take the MASTER away; the BACKUP must take the VIP within the VRRP bound; never both hold it."""
    master, backup = _director(spec, "MASTER"), _director(spec, "BACKUP")
    bound = spec["failover_bound_s"]
    poller = Poller(spec["vip"], spec["port"]).start()
    try:
        time.sleep(1)
        t_stop = time.monotonic()
        _stop_master(spec, key, master)
        t_stopped = time.monotonic()
        moved = poller.wait_for(lambda ev: ev.ok and ev.mac == backup["mac"], t_stop, bound + 15)
        time.sleep(1)
        gap, failed = outage(poller.events, t_stop)
        if moved is None:
            raise CheckFailed("failover", f"VIP answering through {backup['name']} within {bound + 15:.1f} s",
                              f"client sees MAC {neighbour_mac(spec['vip'])}, {failed} failed requests")
        # A frozen MASTER (hard mode) cannot be asked; its VIP is still configured but it is silent.
        holders = _vip_holders(spec, key, None if spec["failover_mode"] == "clean" else [backup["name"]])
        if spec["failover_mode"] == "clean" and holders != {master["name"]: False, backup["name"]: True}:
            raise CheckFailed("failover", f"VIP on {backup['name']} only", f"holders {holders}")
        if not holders.get(backup["name"]):
            raise CheckFailed("failover", f"VIP on {backup['name']}", f"holders {holders}")
        if gap > bound + 1.0:
            raise CheckFailed("failover", f"service gap <= VRRP bound {bound:.2f} s (+1 s)", f"{gap:.2f} s")
        return {"passed": True, "mode": spec["failover_mode"], "service_gap_s": round(gap, 2),
                "failed_requests": failed, "vip_moved_after_s": round(moved.t - t_stopped, 2),
                "vrrp_bound_s": round(bound, 2), "holders": holders}
    except Exception:
        _start_master(spec, key, master)  # leave the lab whole for the next run
        raise
    finally:
        poller.stop()


def check_failback(spec: dict[str, Any], key: SshKey) -> dict[str, Any]:
    """Bring the MASTER back: with preemption the VIP returns to it; with nopreempt it stays."""
    master, backup = _director(spec, "MASTER"), _director(spec, "BACKUP")
    poller = Poller(spec["vip"], spec["port"]).start()
    try:
        time.sleep(1)
        t0 = time.monotonic()
        _start_master(spec, key, master)
        t_started = time.monotonic()
        if spec["preempt"]:
            back = poller.wait_for(lambda ev: ev.ok and ev.mac == master["mac"], t0, spec["failover_bound_s"] + 20)
            time.sleep(1)
            gap, failed = outage(poller.events, t0)
            holders = _vip_holders(spec, key)
            if back is None or holders != {master["name"]: True, backup["name"]: False}:
                raise CheckFailed("failback", f"VIP back on {master['name']} only (preempt)",
                                  f"holders {holders}, client MAC {neighbour_mac(spec['vip'])}")
            return {"passed": True, "preempt": True, "vip_returned_after_s": round(back.t - t_started, 2),
                    "service_gap_s": round(gap, 2), "failed_requests": failed}
        time.sleep(3 * spec["advert_int"] + 2)
        holders = _vip_holders(spec, key)
        if holders != {master["name"]: False, backup["name"]: True}:
            raise CheckFailed("failback", f"VIP stays on {backup['name']} (nopreempt)", f"holders {holders}")
        # Put the lab back: restarting the BACKUP hands the VIP to the higher priority.
        ssh(key, backup["address"], "systemctl restart keepalived")
        return {"passed": True, "preempt": False, "vip_stayed_on": backup["name"]}
    finally:
        poller.stop()


def check_restored(spec: dict[str, Any], key: SshKey) -> dict[str, Any]:
    """The lab is back in its initial state: VIP on the MASTER only, every real server in the table."""
    deadline = time.monotonic() + spec["failover_bound_s"] + 20
    holders: dict[str, bool] = {}
    master = _director(spec, "MASTER")
    while time.monotonic() < deadline:
        holders = _vip_holders(spec, key)
        if [n for n, h in holders.items() if h] == [master["name"]]:
            _wait_all_in_ipvs(spec, key, timeout=spec["health_check"]["delay_loop"] * 3 + 30)
            return {"passed": True, "vip_holder": master["name"]}
        time.sleep(1)
    raise CheckFailed("restore", f"VIP on {master['name']} only after the checks", f"holders {holders}")


STEPS = {
    "readiness": check_readiness,
    "lvs-state": check_lvs_state,
    "round-robin": check_round_robin,
    "health-check": check_health,
    "failover": check_failover,
    "failback": check_failback,
    "restore": check_restored,
}


def run_step(name: str, spec: dict[str, Any], private_key: str) -> dict[str, Any]:
    t0 = time.monotonic()
    with SshKey(private_key) as key:
        result = STEPS[name](spec, key)
    result["duration_s"] = round(time.monotonic() - t0, 1)
    return result
