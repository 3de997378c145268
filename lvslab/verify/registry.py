"""The steps by name, which of them a lab runs (its topology, its features), and running one."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from lvslab.lab.topology import TOPOLOGIES
from lvslab.model import VerifySpec
from lvslab.verify.context import StepContext
from lvslab.verify.probe import (
    SshKey,
)
from lvslab.verify.steps.balance import check_persistence, check_round_robin
from lvslab.verify.steps.failover import (
    check_failback,
    check_failover,
    check_freeze,
    check_restored,
    check_vrrp_unicast,
)
from lvslab.verify.steps.health import check_health, check_sorry_server
from lvslab.verify.steps.state import check_lvs_state, check_readiness, check_vip_state
from lvslab.verify.steps.sync import check_connection_sync

STEPS: dict[str, Callable[[StepContext], dict[str, Any]]] = {
    "readiness": check_readiness,
    "lvs-state": check_lvs_state,
    "vip-state": check_vip_state,
    "round-robin": check_round_robin,
    "health-check": check_health,
    "persistence": check_persistence,
    "sorry-server": check_sorry_server,
    "connection-sync": check_connection_sync,
    "vrrp-unicast": check_vrrp_unicast,
    "failover": check_failover,
    "failback": check_failback,
    "freeze": check_freeze,
    "restore": check_restored,
}


# Steps that only apply when the lab has the feature.
OPTIONAL_STEPS: dict[str, Callable[[VerifySpec], bool]] = {
    "persistence": lambda spec: spec.persistence > 0,
    "sorry-server": lambda spec: spec.sorry_server,
    "connection-sync": lambda spec: spec.sync_daemon,
    "vrrp-unicast": lambda spec: spec.unicast_peers,
}




def steps_for(spec: VerifySpec, skip: tuple[str, ...] = ()) -> list[str]:
    """The steps this lab runs, in order; `skip`: the stack's verify.skip."""
    return [s for s in TOPOLOGIES[spec.topology].steps
            if (s not in OPTIONAL_STEPS or OPTIONAL_STEPS[s](spec)) and s not in skip]


def run_step(name: str, spec: VerifySpec, private_key: str) -> dict[str, Any]:
    t0 = time.monotonic()
    with SshKey(private_key) as key:
        result = STEPS[name](StepContext(spec, key))
    result["duration_s"] = round(time.monotonic() - t0, 1)
    return result
