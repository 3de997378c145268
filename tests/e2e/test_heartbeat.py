"""Lab g (stacks/Pulumi.heartbeat.yaml, seed 003), booted alone: heartbeat moves the VIP, ldirectord runs
IPVS; its faults and a day-2 scheduler change in place."""

from __future__ import annotations

import json
from typing import Any

from tests.e2e.labs import (
    day2_change,
    destroy_kept,
    lab_fixture,
    runtime_fault_tests,
    up,
)

lab = lab_fixture("g", "heartbeat")
DAY2_SKIP = ("health-check", "sorry-server", "freeze", "failover", "failback")


def test_heartbeat_lab(lab: dict[str, Any]) -> None:
    """32 requests split 16/16 by ldirectord's rr; a real server whose health page stops matching `receive`
    leaves the table and returns; with both real servers down the directors' fallback answers; the VIP moves
    when heartbeat stops on the active director (handed over: no gap to speak of) and when its VM freezes
    (deadtime + takeover), and goes back (auto_failback)."""
    g = up(lab)
    assert g["failed"] == [], g["failed"]
    verification = g["verification"]
    assert sorted(verification) == sorted(["readiness", "lvs-state", "round-robin", "health-check", "sorry-server",
                                           "freeze", "failover", "failback", "restore"])
    rr = verification["round-robin"]
    assert rr["requests"] == 32 and rr["counts"] == {"web1": 16, "web2": 16} == rr["ipvs_conns"], rr
    hc = verification["health-check"]
    assert hc["fault"].startswith("/var/www/html/health.html no longer matching receive")
    sorry = verification["sorry-server"]
    assert sorry["sorry_answered_by"] == "sorry-director1" and sorry["normal_answered_by"] == "web1"
    fo, fb = verification["failover"], verification["failback"]
    assert fo["mode"] == "clean" and fo["holders"] == {"director1": False, "director2": True}
    assert fo["vrrp_bound_s"] == 5 + 25.0 and fb["preempt"]
    freeze = verification["freeze"]
    assert freeze["failover"]["mode"] == "hard" and freeze["failover"]["holders"] == {"director2": True}
    # a frozen director is declared dead after deadtime (5 s): the gap cannot be shorter than that
    assert 5 <= freeze["failover"]["service_gap_s"], freeze["failover"]
    assert freeze["failback"]["preempt"]


# (runtime fault, the assertion it must make fail): run in one `fault` process (the lab loaded once)
FAULTS = [
    ("check-connect-only", "health-check.removed"),  # ldirectord only connects: the wrong page goes unnoticed
    ("heartbeat-down-backup", "heartbeat.settled"),  # nobody to take over
]

faults_run, test_runtime_fault_fails_its_assertion = runtime_fault_tests(FAULTS)


def test_day2_heartbeat_scheduler_and_weight_in_place(lab: dict[str, Any]) -> None:
    """rr -> wrr with web1 at weight 3 updates both directors' ldirectord.cf in place (the active one's
    ldirectord reloads it, the other keeps it for its takeover), no director rebuilt, 0 failed requests; the
    verification then sees 24/8 of 32 requests."""

    def reweigh(config: dict[str, Any]) -> None:
        config["lvs-lab:lvs"]["lbAlgo"] = "wrr"
        config["lvs-lab:realServers"][0]["weight"] = 3
        # test_heartbeat_lab ran them on this lab: the change needs the balance and the lab's state (160 s less)
        config.setdefault("lvs-lab:verify", {})["skip"] = list(DAY2_SKIP)

    changed = day2_change(lab, reweigh)
    changes = changed["preview"]["changes"]
    assert changed["preview"]["director_rebuilds"] == [] and not changes.get("create"), changes
    assert {"director1-ldirectord-conf", "director2-ldirectord-conf"} <= set(changes.get("update", []))
    assert "ldirectord reloaded" in changed["output"] and "ldirectord.cf replaced" in changed["output"]
    assert changed["watch"]["failed"] == 0, changed["watch"]
    rr = json.loads(changed["output"].split("PASS round-robin", 1)[1].split("\n", 1)[0])
    assert rr["counts"] == {"web1": 24, "web2": 8} == rr["ipvs_conns"], rr
    assert all(f"SKIP {step}" in changed["output"] for step in DAY2_SKIP), changed["output"][-3000:]
    assert "PASS restore" in changed["output"]


def test_destroys_without_leaks(lab: dict[str, Any]) -> None:
    destroy_kept(lab)
