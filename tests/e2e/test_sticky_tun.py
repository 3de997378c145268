"""Lab c (stacks/Pulumi.sticky.yaml), booted alone: persistence (template in ipvsadm -Lnc, expiry, the client
moves) and nopreempt (VIP stays on the BACKUP that took it, 0 failed requests), forwarded by LVS-TUN
(replies bypass the director, a large request and response get through the tunnel). Then day 2 on the same lab:
`status`, a real server added and removed in place, and last the scheduler changed to source hashing (seed 002's
sh, shown from six more client addresses; a lab of its own cost CI 370 s)."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from tests.e2e.conftest import run_in
from tests.e2e.labs import (
    assert_verified,
    day2_change,
    destroy_kept,
    fault_fails_its_check,
    lab_fixture,
    runtime_fault_tests,
    status_rows,
    up,
)

lab = lab_fixture("c", "sticky")


def test_sticky_tun_lab(lab: dict[str, Any]) -> None:
    c = up(lab)
    assert_verified(c, None, "web2", ["persistence"], preempt=False)
    persistence = c["verification"]["persistence"]
    assert persistence["moved"] and persistence["second_server"] != persistence["first_server"]
    # the template's timer was re-armed to the configured 10 s; no connection outlived it (tcpfin 5 s): gone
    # within T0 + 1 s
    assert persistence["template_expire_s"] <= 10 and max(persistence["connections_expire_s"]) < 10, persistence
    assert persistence["bound_s"] == persistence["template_expire_s"] + 1, persistence
    failback = c["verification"]["failback"]
    assert failback["failed_requests"] == 0 and failback["vip_stayed_on"] == "director2"
    tunnel = c["verification"]["round-robin"]["tunnel_mtu"]
    assert tunnel["large_request_ok"] and tunnel["response_bytes"] == 1 << 20 and tunnel["pmtu_learned"] is None


# (runtime fault, the assertion it must make fail): run in one `fault` process (the lab loaded once)
FAULTS = [
    ("persistence-off", "persistence.one-server"),
    ("scheduler-sh", "persistence.expiry"),  # after expiry the client hashes to the same server again
    ("preempt-on", "failback.stays"),
    ("rp-filter-strict", "round-robin.split"),
    ("mss-unclamped", "round-robin.tunnel-mtu"),
    ("rs-no-vip", "real-server-config.tun"),
    ("master-down-nopreempt", "vip-state.handover"),  # nopreempt: nobody to hand the VIP back to
    ("persistence-per-network", "persistence.template"),  # the template is the client's /24, not the client
    ("rs-announces-vip", "round-robin.ipvs-counts"),  # requests reach web1 past the director: it counts none
    # last of the persistence faults: its 60 s template outlives the repair, a persistence step after it waits it out
    ("persistence-long", "persistence.template-timer"),  # persists 60 s where 10 s are configured
]

faults_run, test_runtime_fault_fails_its_assertion = runtime_fault_tests(FAULTS)


def test_day2_status(lab: dict[str, Any]) -> None:
    """`status` shows each node's state, role, VRRP state and services and the IPVS table of the director holding
    the VIP, and says clearly when the stack does not exist."""
    proc = run_in(lab["netns"], "status", "--stack", up(lab)["stack"])
    assert proc.returncode == 0, proc.stdout[-3000:]
    rows = status_rows(proc.stdout)
    assert set(rows) == {"director1", "director2", "web1", "web2"}, proc.stdout
    assert rows["director1"][1:] == ["running", rows["director1"][2], "director", "MASTER", "keepalived active"]
    assert rows["director2"][4] == "BACKUP" and rows["web1"][3:] == ["real-server", "-", "nginx active"]
    assert "IPVS on director1" in proc.stdout and proc.stdout.count("  -> ") >= 2, proc.stdout
    proc = run_in(lab["netns"], "status", "--stack", "no-such-lab")
    assert proc.returncode == 2 and "no stack 'no-such-lab' in the state backend" in proc.stdout


def test_day2_real_server_added_and_removed_in_place(lab: dict[str, Any]) -> None:
    """A third real server added, then removed again. The preview creates (deletes) only its resources and
    updates the directors' keepalived.conf in place (no director VM rebuilt); up applies it with the VIP
    answering all along (0 failed requests until the verification starts) and re-runs the verification,
    which sees the new set of real servers."""

    def add(config: dict[str, Any]) -> None:
        servers = config["lvs-lab:realServers"]
        last = ipaddress.IPv4Address(servers[-1]["address"])
        servers.append({"name": "web3", "address": str(last + 1), "weight": 1})
        # test_sticky_tun_lab ran them on this lab; the change is about the set of real servers
        config.setdefault("lvs-lab:verify", {})["skip"] = ["persistence", "failover", "failback"]

    added = day2_change(lab, add)
    changes = added["preview"]["changes"]
    assert added["preview"]["director_rebuilds"] == [], changes
    assert {"web3-node-domain", "web3-node-disk", "web3-node-seed"} <= set(changes.get("create", []))
    assert {"director1-keepalived-conf", "director2-keepalived-conf"} <= set(changes.get("update", []))
    # replaced: only the verification steps (their input, the lab's spec, changed: they run again)
    assert all("-verification-" in n for n in changes.get("replace", [])), changes
    # deleted: only the steps verify.skip leaves out
    assert sorted(n.rsplit("-", 1)[1] for n in changes.get("delete", [])) == ["failback", "failover",
                                                                              "persistence"], changes
    assert added["watch"]["failed"] == 0 and added["watch"]["requests"] > 100, added["watch"]
    assert "PASS round-robin" in added["output"] and "web3" in added["output"].split("PASS round-robin")[1][:400]
    assert "PASS health-check" in added["output"] and "SKIP failover" in added["output"]

    def remove(config: dict[str, Any]) -> None:
        config["lvs-lab:realServers"].pop()
        config["lvs-lab:verify"]["skip"].append("health-check")  # shown with web3 above; the set is what changed

    removed = day2_change(lab, remove)
    changes = removed["preview"]["changes"]
    assert removed["preview"]["director_rebuilds"] == [], changes
    assert {"web3-node-domain", "web3-node-disk", "web3-node-seed"} <= set(changes.get("delete", []))
    assert {"director1-keepalived-conf", "director2-keepalived-conf"} <= set(changes.get("update", []))
    assert removed["watch"]["failed"] == 0, removed["watch"]
    assert "PASS round-robin" in removed["output"]


def test_day2_source_hashing_then_its_fault(lab: dict[str, Any]) -> None:
    """lbAlgo rr -> sh without persistence (keepalived.conf reloaded in place): the client's requests on one
    server; each of six more client addresses always on one server, together on both. Then rr behind
    keepalived's back spreads one address: round-robin.source-hash fails. Last on this lab: it stays sh."""

    def source_hashing(config: dict[str, Any]) -> None:
        config["lvs-lab:lvs"]["lbAlgo"] = "sh"
        config["lvs-lab:lvs"]["persistenceTimeout"] = 0
        config.setdefault("lvs-lab:verify", {})["skip"] = ["health-check", "failover", "failback"]

    changed = day2_change(lab, source_hashing)
    assert changed["preview"]["director_rebuilds"] == [], changed["preview"]["changes"]
    rr = json.loads(changed["output"].split("PASS round-robin", 1)[1].split("\n", 1)[0])
    assert len(set(rr["counts"])) == 1, rr  # one client address: one server
    clients = rr["source_hashing"]["clients"]
    assert len(clients) == 6 and set(clients.values()) == {"web1", "web2"}, clients
    fault_fails_its_check(lab, "scheduler-rr", "round-robin.source-hash")  # rr spreads one client address


def test_destroys_without_leaks(lab: dict[str, Any]) -> None:
    destroy_kept(lab)
