"""verify.skip: the steps a stack leaves out while iterating, validated against its topology's steps."""

from __future__ import annotations

from typing import Any

from lvslab.config import parse_config
from tests.unit.test_config import problems


def test_verify_skip_names_steps_of_the_topology(dev_raw: dict[str, Any]) -> None:
    """verify.skip: one message per unknown step, a step this topology does not run, readiness never, and
    failback only skipped together with failover (it starts from the VIP failover moved)."""
    dev_raw["verify"] = {"skip": ["round-robin", "freeze", "readiness", "failovr"]}
    got = sorted(problems(dev_raw))
    assert got[0].startswith("lvs-lab:verify.skip[1]: not a step of this topology; its steps: lvs-state, "), got
    assert got[1].startswith("lvs-lab:verify.skip[2]: unknown step; expected one of lvs-state, "), got
    assert got[2].startswith("lvs-lab:verify.skip[3]: unknown step;") and "(got 'failovr')" in got[2], got
    assert len(got) == 3
    dev_raw["verify"] = {"skip": ["failover"]}
    assert problems(dev_raw) == ["lvs-lab:verify.skip: failover skipped but not failback: failback starts from "
                                 "the VIP failover moved (skip both) (got ['failover'])"]
    dev_raw["verify"] = {"skip": "failover"}
    assert problems(dev_raw) == ["lvs-lab:verify.skip: must be a list (got 'failover')"]
    dev_raw["verify"] = {"skip": ["failback", "failover"]}
    assert parse_config(dev_raw, "dev").verify.skip == ("failback", "failover")
