"""The tables that replace strings compared across the code: topologies, schedulers, the VIP test. Each row
must be complete (its steps registered, its templates present, its pushed file renderable) and the Python
and shell forms of "holds the VIP" must agree."""

from __future__ import annotations

import subprocess

import pytest

from lvslab.lab.scheduler import EQUAL, SCHEDULERS, WEIGHTED
from lvslab.lab.topology import TOPOLOGIES
from lvslab.lab.vip import HOLDS_VIP_TEST, holds_vip
from lvslab.render import CLOUD_INIT_DIR
from lvslab.verify.evaluate import expected_counts
from lvslab.verify.registry import OPTIONAL_STEPS, STEPS


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_each_topology_row_is_complete(name: str) -> None:
    topo = TOPOLOGIES[name]
    assert set(topo.steps) <= set(STEPS) and len(set(topo.steps)) == len(topo.steps)
    assert topo.steps[0] == "readiness" and topo.steps[-1] == "restore"  # first wait, last put back
    assert {"failover", "failback"} <= set(topo.steps)
    assert (CLOUD_INIT_DIR / topo.director_template).is_file()
    assert topo.uses_ipvs == (topo.ipvs_manager is not None) == ("round-robin" in topo.steps)
    assert topo.uses_vrrp != topo.heartbeat  # one daemon moves the VIP
    assert topo.failover_stops in (topo.ha_daemon, "nginx")
    assert not set(topo.refused) & {"topology", "vip", "directors"}


def test_every_step_runs_in_some_topology_and_optional_steps_are_registered() -> None:
    assert set(STEPS) == {s for t in TOPOLOGIES.values() for s in t.steps}
    assert set(OPTIONAL_STEPS) <= set(STEPS)


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_scheduler_rows(name: str) -> None:
    s = SCHEDULERS[name]
    assert s.module == f"ip_vs_{name}"
    assert sum([s.split is not None, s.least_connection, s.source_hash]) <= 1  # one kind of prediction
    counts = expected_counts({"a": 3, "b": 1}, name, 8)
    assert counts == ({"a": 4, "b": 4} if s.split == EQUAL else {"a": 6, "b": 2} if s.split == WEIGHTED else None)


ADDRESSES = """2: eth0    inet 10.77.0.11/24 brd 10.77.0.255 scope global eth0\\       valid_lft forever
2: eth0    inet 10.77.0.100/32 scope global eth0\\       valid_lft forever
"""


@pytest.mark.parametrize("vip,held", [("10.77.0.100", True), ("10.77.0.10", False), ("10.77.0.1", False),
                                      ("10.77.0.11", True), ("0.77.0.100", False)])
def test_holds_vip_is_one_test_in_python_and_shell(vip: str, held: bool) -> None:
    assert holds_vip(ADDRESSES, vip) is held
    shell = f"ip() {{ printf '%s' '{ADDRESSES}'; }}; " + HOLDS_VIP_TEST.format(vip=vip)
    assert (subprocess.run(["bash", "-c", shell]).returncode == 0) is held
