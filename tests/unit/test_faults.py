"""The runtime fault table: each entry is usable by `tools/lvslab.py fault` as written."""

from __future__ import annotations

import pytest

from lvslab.checks import STEPS
from lvslab.faults import RUNTIME_FAULTS

# The check names each step can raise (CheckFailed's first argument).
CHECKS_OF_STEPS = {
    "lvs-state": {"vip-state", "split-brain", "real-server-config", "ipvs-settings", "vip-arp"},
    "round-robin": {"round-robin"}, "sorry-server": {"sorry-server"}, "persistence": {"persistence"},
    "connection-sync": {"connection-sync"}, "failback": {"failback"},
}


@pytest.mark.parametrize("name", sorted(RUNTIME_FAULTS))
def test_runtime_fault_is_complete(name: str) -> None:
    fault = RUNTIME_FAULTS[name]
    assert fault.targets in {"real_servers", "one_real_server", "directors", "master"}
    assert fault.steps and all(step in STEPS for step in fault.steps)
    assert fault.check in CHECKS_OF_STEPS[fault.steps[-1]]
    lab = {"vip": "10.0.0.100", "port": 80, "algo": "rr", "persistence": 10}
    for script in (fault.inject, fault.repair):  # every placeholder is one cmd_fault fills in
        filled = script.format(**lab)
        assert "{" not in filled or "$(" in filled


def test_split_brain_fault_kills_keepalived_hard_and_repairs_the_stale_vip() -> None:
    fault = RUNTIME_FAULTS["keepalived-kill9-master"]
    assert fault.targets == "master" and fault.settle and fault.check == "split-brain"
    assert "kill -9" in fault.inject and "systemctl" not in fault.inject  # no clean VIP removal
    assert fault.repair.format(vip="10.0.0.100").startswith("ip addr del 10.0.0.100/32 dev eth0")


def test_persistence_fault_drops_exactly_the_persistence_flag() -> None:
    fault = RUNTIME_FAULTS["persistence-off"]
    lab = {"vip": "10.0.0.100", "port": 80, "algo": "rr", "persistence": 10}
    assert fault.inject.format(**lab) == "ipvsadm -E -t 10.0.0.100:80 -s rr"
    assert fault.repair.format(**lab) == "ipvsadm -E -t 10.0.0.100:80 -s rr -p 10"


def test_preempt_fault_runs_failover_then_failback_and_restores_the_file() -> None:
    fault = RUNTIME_FAULTS["preempt-on"]
    assert fault.steps == ("failover", "failback") and fault.check == "failback"
    assert ".lvslab-fault" in fault.inject
    assert fault.repair.startswith("mv /etc/keepalived/keepalived.conf.lvslab-fault")
