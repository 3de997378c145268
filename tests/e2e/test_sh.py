"""Lab e (stacks/Pulumi.sh.yaml), booted alone: source hashing (six more client addresses on the bridge),
`status`, and issue 15's day-2 change (a real server added and removed in place)."""

from __future__ import annotations

import ipaddress
from typing import Any

from tests.e2e.conftest import run_in
from tests.e2e.labs import (
    assert_verified,
    day2_change,
    destroy_kept,
    fault_fails_its_check,
    lab_fixture,
    status_rows,
    up,
)

lab = lab_fixture("e", "sh")


def test_sh_lab(lab: dict[str, Any]) -> None:
    """sh: the client's 8 requests on one server; each of six more client addresses always on one server,
    and together on both."""
    e = up(lab)
    assert_verified(e, None, "web2", [])
    clients = e["verification"]["round-robin"]["source_hashing"]["clients"]
    assert len(clients) == 6 and set(clients.values()) == {"web1", "web2"}, clients


def test_day2_status(lab: dict[str, Any]) -> None:
    """`status` shows each node's state, role, VRRP state and services and the MASTER's IPVS table, and says
    clearly when the stack does not exist."""
    proc = run_in(lab["netns"], "status", "--stack", up(lab)["stack"])
    assert proc.returncode == 0, proc.stdout[-3000:]
    rows = status_rows(proc.stdout)
    assert set(rows) == {"director1", "director2", "web1", "web2"}, proc.stdout
    assert rows["director1"][1:] == ["running", rows["director1"][2], "director", "MASTER", "keepalived active"]
    assert rows["director2"][4] == "BACKUP" and rows["web1"][3:] == ["real-server", "-", "nginx active"]
    assert "IPVS on director1" in proc.stdout and proc.stdout.count("  -> ") >= 2, proc.stdout
    proc = run_in(lab["netns"], "status", "--stack", "no-such-lab")
    assert proc.returncode == 2 and "no stack 'no-such-lab' in the state backend" in proc.stdout


def test_runtime_fault_fails_its_check(lab: dict[str, Any]) -> None:
    fault_fails_its_check(lab, "scheduler-rr", "round-robin.source-hash")  # rr spreads one client address


def test_day2_real_server_added_and_removed_in_place(lab: dict[str, Any]) -> None:
    """A third real server added, then removed again. The preview creates (deletes) only its resources and
    updates the directors' keepalived.conf in place (no director VM rebuilt); up applies it with the VIP
    answering all along (0 failed requests until the verification starts) and re-runs the verification,
    which sees the new set of real servers."""

    def add(config: dict[str, Any]) -> None:
        servers = config["lvs-lab:realServers"]
        last = ipaddress.IPv4Address(servers[-1]["address"])
        servers.append({"name": "web3", "address": str(last + 1), "weight": 1})
        # test_sh_lab ran them on this lab; the change is about the set of real servers
        config.setdefault("lvs-lab:verify", {})["skip"] = ["failover", "failback"]

    added = day2_change(lab, add)
    changes = added["preview"]["changes"]
    assert added["preview"]["director_rebuilds"] == [], changes
    assert {"web3-node-domain", "web3-node-disk", "web3-node-seed"} <= set(changes.get("create", []))
    assert {"director1-keepalived-conf", "director2-keepalived-conf"} <= set(changes.get("update", []))
    # replaced: only the verification steps (their input, the lab's spec, changed: they run again)
    assert all("-verification-" in n for n in changes.get("replace", [])), changes
    # deleted: only the steps verify.skip leaves out
    assert sorted(n.rsplit("-", 1)[1] for n in changes.get("delete", [])) == ["failback", "failover"], changes
    assert added["watch"]["failed"] == 0 and added["watch"]["requests"] > 100, added["watch"]
    assert "PASS round-robin" in added["output"] and "web3" in added["output"].split("PASS round-robin")[1][:400]
    assert "PASS health-check" in added["output"] and "SKIP failover" in added["output"]

    removed = day2_change(lab, lambda config: config["lvs-lab:realServers"].pop())
    changes = removed["preview"]["changes"]
    assert removed["preview"]["director_rebuilds"] == [], changes
    assert {"web3-node-domain", "web3-node-disk", "web3-node-seed"} <= set(changes.get("delete", []))
    assert {"director1-keepalived-conf", "director2-keepalived-conf"} <= set(changes.get("update", []))
    assert removed["watch"]["failed"] == 0, removed["watch"]
    assert "PASS round-robin" in removed["output"]


def test_destroys_without_leaks(lab: dict[str, Any]) -> None:
    destroy_kept(lab)
