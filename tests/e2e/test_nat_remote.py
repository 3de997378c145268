"""Lab d (stacks/Pulumi.nat.yaml), booted alone on the test hypervisor (qemu+ssh): LVS-NAT (replies cross the
director, the real servers route through the gateway VIP, which moves with the VIP), lc, and unicast VRRP
with multicast VRRP dropped on the bridge."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import run_in
from tests.e2e.labs import (
    assert_verified,
    destroy_kept,
    lab_fixture,
    runtime_fault_tests,
    status_rows,
    up,
)
from tests.e2e.remote import assert_on_remote_hypervisor

lab = lab_fixture("d", "nat", remote=True)


def test_nat_lab(lab: dict[str, Any]) -> None:
    """Replies cross the director (OutPkts > 0, unlike DR); lc avoids the server holding connections; the
    unicast VRRP probes to 224.0.0.18 were dropped, unicast adverts crossed, and failover and failback ran
    with multicast VRRP dropped."""
    d = up(lab)
    assert_verified(d, {"web1": 4, "web2": 4}, "web2", ["vrrp-unicast"])
    rr = d["verification"]["round-robin"]
    outpkts = [int(line.split()[4]) for line in rr["ipvsadm_stats"].splitlines() if line.strip().startswith("->")
               and line.split()[1][0].isdigit()]
    assert len(outpkts) == 2 and all(n > 0 for n in outpkts), rr["ipvsadm_stats"]
    lc = rr["least_connection"]
    assert lc["counts"] == {"web1" if lc["loaded"] == "web2" else "web2": rr["requests"]}, lc
    unicast = d["verification"]["vrrp-unicast"]
    assert unicast["multicast_vrrp_dropped"] >= 3 and unicast["unicast_vrrp_seen"] >= 3
    for step in ("failover", "failback"):
        assert d["verification"][step]["unicast_vrrp_seen"] > 0, d["verification"][step]


def test_nat_lab_on_the_remote_hypervisor(lab: dict[str, Any]) -> None:
    """Placed there (--hypervisors), verified there; `status` of the remote lab goes the same way."""
    d = up(lab)
    assert_on_remote_hypervisor(d, lab["netns"], lab["remote"])
    proc = run_in(lab["netns"], "status", "--stack", d["stack"])
    assert proc.returncode == 0, proc.stdout[-3000:]
    rows = status_rows(proc.stdout)
    assert rows["director1"][1] == "running" and rows["director1"][4] == "MASTER", proc.stdout
    assert rows["web1"][5] == "nginx active" and "IPVS on director1" in proc.stdout, proc.stdout


# (runtime fault, the assertion it must make fail): run in one `fault` process (the lab loaded once)
FAULTS = [
    ("gateway-vip-stays", "gateway.with-vip"),
    ("scheduler-rr", "round-robin.least-connection"),  # rr sends fresh connections to the loaded server too
    ("unicast-off", "vrrp-unicast.master-only"),
    ("rs-no-gateway", "real-server-config.nat"),
]

faults_run, test_runtime_fault_fails_its_assertion = runtime_fault_tests(FAULTS)


def test_destroys_without_leaks(lab: dict[str, Any]) -> None:
    destroy_kept(lab)
