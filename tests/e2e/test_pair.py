"""Two ephemeral labs side by side (stacks/Pulumi.{ci,weighted}.yaml): full verification, idempotency, the
runtime faults of their features, then a leak-free destroy of each."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.labs import SORRY, assert_verified, destroy_kept, fault_fails_its_check, kept_labs, up

# name -> (template, the steps it adds to the base steps)
LABS = {
    "a": ("ci", [SORRY]),  # rr, HTTP_GET, sorry server, clean failover
    "b": ("weighted", ["connection-sync"]),  # wrr 3:2:1, TCP_CHECK, hard failover, sync daemon
}


@pytest.fixture(scope="module")
def pair(netns: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    with kept_labs(netns, tmp_path_factory.mktemp("pair"), {k: t for k, (t, _) in LABS.items()}) as labs:
        yield labs


def test_labs_side_by_side(pair: dict[str, dict[str, Any]]) -> None:
    print(json.dumps({k: (lab["code"], lab["seconds"]) for k, lab in pair.items()}))
    a, b = up(pair["a"]), up(pair["b"])
    assert a["slot"] != b["slot"] and a["stack"] != b["stack"]
    assert_verified(a, {"web1": 4, "web2": 4}, "web2", LABS["a"][1])
    sorry = a["verification"][SORRY]
    assert sorry["sorry_answered_by"] == "sorry-director1" and sorry["normal_answered_by"] == "web1"
    assert sorry["sorry_after_s"] <= sorry["remove_window_s"] + 10
    assert sorry["normal_after_s"] <= sorry["add_window_s"] + 10
    # wrr 3:2:1 over 60 fresh connections: exactly 30/20/10 (IPVS's wrr is deterministic for one client);
    # the TCP_CHECK removal of the weight-1 server is decided from the IPVS table, not from client shares.
    assert_verified(b, {"web1": 30, "web2": 20, "web3": 10}, "web3", LABS["b"][1])
    # connection sync: the download went on while the BACKUP held the VIP and after the MASTER resumed
    sync = b["verification"]["connection-sync"]
    assert sync["synced_to_backup"] and sync["bytes_while_backup_held_vip"] > 0
    assert sync["bytes_after_master_resumed"] > 0 and sync["error"] is None
    assert a["verification"]["failover"]["mode"] == "clean" and b["verification"]["failover"]["mode"] == "hard"
    assert all("destroy" not in r["phases"] for r in (a, b))  # kept for the fault tests


@pytest.mark.parametrize("lab,fault,check", [
    ("a", "rs-no-arp-sysctls", "real-server-config"),
    ("a", "rs-no-vip", "real-server-config"),
    ("a", "nginx-down-all", "round-robin"),
    ("a", "keepalived-down-all", "vip-state"),
    ("a", "sorry-server-down", "sorry-server"),
    ("a", "keepalived-kill9-master", "split-brain"),
    ("b", "sync-daemon-off", "connection-sync"),
    ("b", "scheduler-rr", "round-robin"),  # wrr 3:2:1 becomes 20/20/20
])
def test_runtime_fault_fails_its_check(pair: dict[str, dict[str, Any]], lab: str, fault: str, check: str) -> None:
    proc = fault_fails_its_check(pair[lab], fault, check)
    if check == "split-brain":  # both holders and both ARP answers named, and the way out
        found = re.search(r'"message": ("(?:[^"\\]|\\.)*")', proc.stdout)
        assert found, proc.stdout[-3000:]
        message = json.loads(found.group(1))
        assert "['director1', 'director2']" in message and message.count("52:54:00:") == 2, message
        assert "repair: on director1" in message, message


@pytest.mark.parametrize("lab", sorted(LABS))
def test_kept_lab_destroys_without_leaks(pair: dict[str, dict[str, Any]], lab: str) -> None:
    """After the fault tests: destroy each kept lab and check nothing with its prefix is left."""
    destroy_kept(pair[lab])
