"""Lab c (stacks/Pulumi.sticky.yaml), booted alone: persistence (template in ipvsadm -Lnc, expiry, the client
moves) and nopreempt (VIP stays on the BACKUP that took it, 0 failed requests), forwarded by LVS-TUN
(replies bypass the director, a large request and response get through the tunnel)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.labs import assert_verified, destroy_kept, fault_fails_its_check, lab_fixture, up

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


@pytest.mark.parametrize("fault,assertion", [
    ("persistence-off", "persistence.one-server"),
    ("persistence-long", "persistence.template-timer"),  # persists 60 s where 10 s are configured
    ("scheduler-sh", "persistence.moves"),  # after expiry the client hashes to the same server again
    ("preempt-on", "failback.stays"),
    ("rp-filter-strict", "round-robin.split"),
    ("mss-unclamped", "round-robin.tunnel-mtu"),
    ("rs-no-vip", "real-server-config.tun"),
])
def test_runtime_fault_fails_its_assertion(lab: dict[str, Any], fault: str, assertion: str) -> None:
    fault_fails_its_check(lab, fault, assertion)


def test_destroys_without_leaks(lab: dict[str, Any]) -> None:
    destroy_kept(lab)
