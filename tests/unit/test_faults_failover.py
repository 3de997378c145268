"""Runtime faults aimed at the failover and connection-sync steps: what their commands change, on rendered files
checked by keepalived itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lvslab.faults import KEEPALIVED_DROPIN, RUNTIME_FAULTS
from tests.unit.test_faults import LAB, config_test, rendered_keepalived_conf, sed_on_rendered


@pytest.mark.tools
def test_backup_priority_fault_changes_only_the_priority(dev_raw: dict[str, Any], tmp_path: Path) -> None:
    """backup-priority-higher's sed on the BACKUP's keepalived.conf: its priority (and nothing else) becomes 253,
    above any MASTER's (keepalived's limit is 254 for an owner-less VIP); keepalived accepts it."""
    fault = RUNTIME_FAULTS["backup-priority-higher"]
    assert fault.targets == "backup" and fault.settle == "vrrp" and fault.steps == ("connection-sync",)
    conf, changed = sed_on_rendered(fault.inject, rendered_keepalived_conf(dev_raw, role=1), tmp_path)
    assert [line[2:].strip() for line in changed] == ["priority 100", "priority 253"], changed
    proc = config_test(conf)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr


def test_stop_kills_fault_is_a_drop_in_its_repair_removes() -> None:
    """keepalived-stop-kills: systemd's stop becomes a hard kill on the MASTER (a drop-in, daemon reloaded); the
    repair removes the drop-in, drops the VIP the killed daemon left and restarts keepalived."""
    fault = RUNTIME_FAULTS["keepalived-stop-kills"]
    inject, repair = fault.inject.format(**LAB), fault.repair.format(**LAB)
    assert fault.targets == "master" and fault.steps == ("failover", "failback")
    assert KEEPALIVED_DROPIN in inject and inject.endswith("daemon-reload")
    # every keepalived process frozen before any is killed (KillSignal=SIGKILL alone let the VRRP child remove the
    # VIP on VMs); $$ is systemd's escape for a literal $
    stop = inject.split("ExecStop=", 1)[1]
    assert stop.index("kill -STOP $$pids") < stop.index("kill -9 $$pids") and "KillSignal" not in inject
    assert repair.index(f"rm -f {KEEPALIVED_DROPIN}") < repair.index("ip addr del 10.0.0.100/32 dev eth0") \
        < repair.index("systemctl restart keepalived")


def test_goodbye_advert_fault_drops_only_priority_zero_vrrp() -> None:
    """goodbye-advert-lost: one u32 filter on the MASTER's eth0 matching VRRP (IP protocol 112) whose priority byte
    (IP header 20 bytes + 2) is 0; the repair removes the whole root qdisc it added."""
    fault = RUNTIME_FAULTS["goodbye-advert-lost"]
    assert fault.targets == "master" and fault.steps == ("failover", "failback") and fault.assertion == "failover.gap"
    assert "match ip protocol 112 0xff match u8 0 0xff at 22 action drop" in fault.inject
    assert fault.inject.startswith("tc qdisc add dev eth0 root handle 1: prio") and \
        fault.repair == "tc qdisc del dev eth0 root"
