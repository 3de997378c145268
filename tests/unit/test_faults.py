"""The runtime fault table: each entry is usable by `tools/lvslab.py fault` as written."""

from __future__ import annotations

import pytest

from lvslab.checks import STEPS
from lvslab.faults import RUNTIME_FAULTS


@pytest.mark.parametrize("name", sorted(RUNTIME_FAULTS))
def test_runtime_fault_is_complete(name: str) -> None:
    fault = RUNTIME_FAULTS[name]
    assert fault.targets in {"real_servers", "one_real_server", "directors", "master"}
    assert fault.step in STEPS
    repair = fault.repair.format(vip="10.0.0.100")  # every placeholder is one cmd_fault fills in
    assert "{" not in repair or "$(" in repair


def test_split_brain_fault_kills_keepalived_hard_and_repairs_the_stale_vip() -> None:
    fault = RUNTIME_FAULTS["keepalived-kill9-master"]
    assert fault.targets == "master" and fault.settle and fault.check == "split-brain"
    assert "kill -9" in fault.inject and "systemctl" not in fault.inject  # no clean VIP removal
    assert fault.repair.format(vip="10.0.0.100").startswith("ip addr del 10.0.0.100/32 dev eth0")
