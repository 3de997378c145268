"""Pure evaluation parts of the verification: distribution, ipvsadm parsing, outage, windows."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from lvslab.model import HealthCheckSpec
from lvslab.verify.evaluate import evaluate_distribution, expected_counts, outage
from lvslab.verify.ipvsadm import parse_ipvsadm_list, parse_ipvsadm_stats, table_watch_script

SERVERS = {"web1": 1, "web2": 1}

STATS = """IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  10.77.0.100:80                     32      192        0    12736        0
  -> 10.77.0.21:80                      16       96        0     6368        0
  -> 10.77.0.22:80                      16       96        0     6368        0
"""

LIST = """IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.77.0.100:80 rr
  -> 10.77.0.21:80                Route   1      0          3
  -> 10.77.0.22:80                Route   3      0          2
"""


def test_rr_equal_counts_pass_and_skew_fails() -> None:
    assert evaluate_distribution({"web1": 16, "web2": 16}, SERVERS, "rr", 0, 32) is None
    assert evaluate_distribution({"web1": 17, "web2": 15}, SERVERS, "rr", 0, 32) is None  # ± 1
    assert evaluate_distribution({"web1": 18, "web2": 14}, SERVERS, "rr", 0, 32) is not None
    assert "web2 got 0" in evaluate_distribution({"web1": 32}, SERVERS, "rr", 0, 32)


def test_failed_requests_fail() -> None:
    assert evaluate_distribution({"web1": 4, "web2": 3}, SERVERS, "rr", 0, 8) == "1 of 8 requests failed"


def test_wrr_follows_weights() -> None:
    servers = {"a": 3, "b": 1}
    assert expected_counts(servers, "wrr", 8) == {"a": 6, "b": 2}
    assert evaluate_distribution({"a": 6, "b": 2}, servers, "wrr", 0, 8) is None
    assert evaluate_distribution({"a": 4, "b": 4}, servers, "wrr", 0, 8) is not None


def test_persistence_expects_one_server() -> None:
    assert evaluate_distribution({"web1": 8}, SERVERS, "rr", 300, 8) is None
    assert evaluate_distribution({"web1": 4, "web2": 4}, SERVERS, "rr", 300, 8) is not None


def test_unknown_server_fails() -> None:
    assert "unknown" in evaluate_distribution({"web1": 4, "evil": 4}, SERVERS, "rr", 0, 8)


def test_parse_ipvsadm() -> None:
    assert parse_ipvsadm_stats(STATS) == {
        "10.77.0.21": {"conns": 16, "inpkts": 96, "outpkts": 0},
        "10.77.0.22": {"conns": 16, "inpkts": 96, "outpkts": 0},
    }
    assert parse_ipvsadm_list(LIST) == {"10.77.0.21": {"forward": "Route", "weight": 1},
                                        "10.77.0.22": {"forward": "Route", "weight": 3}}


def ev(t: float, ok: bool) -> SimpleNamespace:
    return SimpleNamespace(t=t, ok=ok)


def test_outage() -> None:
    events = [ev(0.0, True), ev(1.0, True), ev(1.1, False), ev(1.2, False), ev(3.5, True), ev(3.6, True)]
    assert outage(events, since=0.5)[:2] == (pytest.approx(2.4), 2)
    assert outage(events, since=0.5)[2] == []
    assert outage([ev(0, True), ev(1, True)], 0) == (0.0, 0, [])
    assert outage([ev(0, False)], 0)[0] == float("inf")
    # flapping: a failure after the service came back is listed apart from the first outage's two
    flap = ev(3.7, False)
    assert outage([*events, flap, ev(3.8, True)], since=0.5)[1:] == (2, [flap])


def test_a_flapping_service_fails_the_failed_requests_assertion() -> None:
    """Polls not served after a real server answered again (a sorry page or an error in the rotation) fail
    the failed-requests id, not the gap; without them, the outage's own polls pass."""
    from lvslab.verify.client import ClientFigures
    from lvslab.verify.failure import CheckFailed
    from lvslab.verify.steps.failover import FAILOVER_IDS, _assert_outage

    polls = [ev(round(0.1 * i, 1), i not in (3, 4, 5, 9, 12)) for i in range(20)]
    gap, failed, flapped = outage(polls, since=0.0)
    assert gap == pytest.approx(0.3) and failed == 3 and [e.t for e in flapped] == [0.9, 1.2]
    figures = ClientFigures(requests=30, errors=0, statuses={"200": 30}, error_kinds={}, slowest_s=0.2)
    result = {"failed_after_return": [[0.9, False, None, "director2"], [1.2, True, "sorry-director2", "director2"]]}
    with pytest.raises(CheckFailed) as caught:
        _assert_outage(FAILOVER_IDS, result, gap, failed, 1.5, figures, "director1 -> director2")
    assert caught.value.assertion == "failover.failed-requests"
    assert "3 in the outage, then 2 more" in str(caught.value) and "sorry-director2" in str(caught.value)
    _assert_outage(FAILOVER_IDS, {"failed_after_return": []}, gap, failed, 1.5, figures, "director1 -> director2")


def test_weight_zero_servers_expect_nothing_and_all_zero_is_unpredictable() -> None:
    assert expected_counts({"a": 2, "b": 0}, "rr", 4) == {"a": 4, "b": 0}
    assert expected_counts({"a": 0, "b": 0}, "wrr", 4) is None
    assert expected_counts({"a": 0, "b": 0}, "rr", 4) is None


def test_health_check_window() -> None:
    hc = HealthCheckSpec(type="HTTP_GET", delay_loop=2, connect_timeout=2, retry=1, delay_before_retry=1)
    assert hc.window() == (2 + 2 * 3, 4)


@pytest.mark.parametrize("table,present,expect", [
    ("  -> 10.77.0.22:80                Route   1      0          3\n", True, "done"),
    ("  -> 10.77.0.22:80                Route   0      0          3\n", True, "timeout"),
    ("  -> 10.77.0.21:80                Route   1      0          3\n", True, "timeout"),
    ("  -> 10.77.0.21:80                Route   1      0          3\n", False, "done"),
    ("  -> 10.77.0.22:80                Route   1      0          3\n", False, "timeout"),
])
def test_table_watch_script_decides_from_the_table(tmp_path: Path, table: str, present: bool, expect: str) -> None:
    """The watcher's awk really runs: an ipvsadm stand-in prints a fixed table."""
    (tmp_path / "ipvsadm").write_text(f"#!/bin/sh\nprintf '{table}'\n")
    (tmp_path / "ipvsadm").chmod(0o755)
    script = table_watch_script("10.77.0.22", 80, present, timeout=0)
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=20,
                         env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}).stdout.split()
    assert out[0] == "watching" and out[1] == expect


def test_summary_lists_steps_in_run_order() -> None:
    from lvslab.report import summary

    text = summary({"failover": {"passed": True, "service_gap_s": 0.6},
                    "readiness": {"passed": True, "nodes": {"web1": {"boot_to_ready_s": 66.1}}},
                    "round-robin": {"passed": False, "sequence": ["web1"]}})
    lines = text.splitlines()
    assert [ln.split()[1] for ln in lines[1:]] == ["readiness", "round-robin", "failover"]
    assert lines[2].split()[0] == "FAIL" and '"web1": 66.1' in lines[1] and "sequence" not in text


# `ipvsadm -Lnc`: two connections and a template of client 10.77.0.1, one connection and a template
# (ASSURED: a connection used it) of other clients.
CONNECTIONS = """IPVS connection entries
pro expire state       source             virtual            destination
TCP 00:08  NONE        10.77.0.1:0        10.77.0.100:80     10.77.0.21:80
TCP 01:55  FIN_WAIT    10.77.0.1:20001    10.77.0.100:80     10.77.0.21:80
TCP 00:59  TIME_WAIT   10.77.0.1:20002    10.77.0.100:80     10.77.0.22:80
TCP 01:00  FIN_WAIT    10.77.0.9:20003    10.77.0.100:80     10.77.0.22:80
TCP 00:06  ASSURED     10.77.0.2:0        10.77.0.100:80     10.77.0.22:80
"""


def test_fresh_source_ports_avoid_ipvs_entries() -> None:
    from lvslab.verify.evaluate import fresh_source_ports

    listing = CONNECTIONS
    # Every free port of the range: deterministic, so the test cannot pass or fail by chance.
    ports = fresh_source_ports(listing, "10.77.0.1", 9998, low=20000, high=30000)
    assert len(set(ports)) == 9998 and not {20001, 20002} & set(ports) and 20003 in ports
    with pytest.raises(ValueError):
        fresh_source_ports(listing, "10.77.0.1", 9999, low=20000, high=30000)


def test_parse_connections_finds_the_persistence_template() -> None:
    from lvslab.verify.ipvsadm import parse_ipvsadm_connections

    template, conn, _, _, assured = parse_ipvsadm_connections(CONNECTIONS)
    assert assured.is_template and assured.client == "10.77.0.2"
    assert template.is_template and template.expire_s == 8 and template.destination == "10.77.0.21:80"
    assert not conn.is_template and conn.client_port == 20001 and conn.expire_s == 115
    assert parse_ipvsadm_connections("IPVS connection entries\npro expire state source virtual destination\n") == []


def test_parse_timeouts_and_sync_daemons() -> None:
    from lvslab.verify.ipvsadm import parse_ipvsadm_timeouts, parse_sync_daemons

    assert parse_ipvsadm_timeouts("Timeout (tcp tcpfin udp): 900 5 300\n") == (900, 5, 300)
    assert parse_ipvsadm_timeouts("") is None
    both = ("master sync daemon (mcast=eth0, syncid=0, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"
            "backup sync daemon (mcast=eth1, syncid=0, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n")
    assert parse_sync_daemons(both) == {"master": "eth0 0", "backup": "eth1 0"}
    assert parse_sync_daemons("") == {}


def test_optional_steps_follow_the_features() -> None:
    from dataclasses import replace

    from lvslab.config import parse_config
    from lvslab.model import derive, verify_spec
    from lvslab.verify.registry import steps_for

    base = verify_spec(derive(parse_config({"network": {"subnet": "10.77.0.0/24", "hostAddress": "10.77.0.1",
                                                         "bridge": "b0"}, "vip": "10.77.0.100",
                                             "directors": [{"name": "d1", "address": "10.77.0.11", "priority": 150,
                                                            "state": "MASTER"},
                                                           {"name": "d2", "address": "10.77.0.12", "priority": 100,
                                                            "state": "BACKUP"}],
                                             "realServers": [{"name": "w1", "address": "10.77.0.21", "weight": 1}]},
                                            "t")))
    assert "persistence" not in steps_for(base) and "connection-sync" not in steps_for(base)
    full = steps_for(replace(base, persistence=10, sync_daemon=True, sorry_server=True))
    assert full.index("round-robin") < full.index("persistence") < full.index("connection-sync") < full.index(
        "failover")


def test_least_connection_evaluation() -> None:
    from lvslab.verify.evaluate import evaluate_least_connection

    servers = ["web1", "web2", "web3"]
    assert evaluate_least_connection({"web2": 4, "web3": 4}, "web1", servers, 8) is None
    assert "web1 holds the long connections but got 1" in evaluate_least_connection(
        {"web1": 1, "web2": 4, "web3": 3}, "web1", servers, 8)
    assert evaluate_least_connection({"web2": 8}, "web1", servers, 8) == "servers never answered: ['web3']"
    assert evaluate_least_connection({"web2": 3, "web3": 4}, "web1", servers, 8) == "1 of 8 requests failed"


def test_source_hashing_evaluation() -> None:
    from lvslab.verify.evaluate import evaluate_source_hashing

    good = {"10.0.0.250": ["web1"] * 4, "10.0.0.249": ["web2"] * 4}
    assert evaluate_source_hashing(good) is None
    assert "several servers" in evaluate_source_hashing({**good, "10.0.0.248": ["web1", "web2", "web1", "web1"]})
    assert "failing" in evaluate_source_hashing({**good, "10.0.0.248": ["ERROR(timeout)"] * 4})
    one = evaluate_source_hashing({"a": ["web1"] * 4, "b": ["web1"] * 4})
    assert one == "all 2 client addresses hashed to one server"



def rs_output(vip_on: str | None = None, gateway: str | None = None, arp: str = "1 2",
              rp_all: str = "2", rp_tunl0: str = "-") -> str:
    """What RS_CONFIG_SCRIPT prints on a real server at 10.77.0.21: the VIP 10.77.0.100/32 on `vip_on`,
    a default route via `gateway`, one ARP pair for all/lo/eth0, rp_filter of all and tunl0."""
    lines = ["1: lo    inet 127.0.0.1/8 scope host lo"]
    if vip_on:
        lines.append(f"3: {vip_on}    inet 10.77.0.100/32 scope global {vip_on}")
    lines.append("2: eth0    inet 10.77.0.21/24 brd 10.77.0.255 scope global eth0")
    if gateway:
        lines.append(f"default via {gateway} dev eth0 proto static")
    lines += [f"arp {i} {arp}" for i in ("all", "lo", "eth0")] + [f"rp all {rp_all}", f"rp tunl0 {rp_tunl0}"]
    return "\n".join(lines) + "\n"


DR_RS = rs_output(vip_on="lo")
NAT_RS = rs_output(gateway="10.77.0.254", arp="0 0")
TUN_RS = rs_output(vip_on="tunl0", rp_all="0", rp_tunl0="0")


@pytest.mark.parametrize("text,kind,expect", [
    (DR_RS, "DR", []),
    (DR_RS.replace("arp eth0 1 2", "arp eth0 0 0"), "DR", ["eth0 arp_ignore=0 arp_announce=0"]),
    (DR_RS.replace(" 10.77.0.100/32 ", " 10.77.0.99/32 "), "DR", ["VIP 10.77.0.100/32 not on lo"]),
    (TUN_RS, "TUN", []),
    (TUN_RS.replace("rp all 0", "rp all 2"), "TUN", []),  # loose is fine: the client is reachable
    (TUN_RS.replace("rp all 0", "rp all 1"), "TUN",
     ["rp_filter strict (all=1, tunl0=0): packets unwrapped on tunl0 are dropped"]),
    (rs_output(rp_all="0"), "TUN", ["VIP 10.77.0.100/32 not on tunl0", "no tunl0 (module ipip not loaded)"]),
    (DR_RS, "TUN", ["VIP 10.77.0.100/32 not on tunl0", "no tunl0 (module ipip not loaded)"]),
    (NAT_RS, "NAT", []),
    (NAT_RS.replace("via 10.77.0.254", "via 10.77.0.11"), "NAT",
     ["default route via ['10.77.0.11'], expected via 10.77.0.254"]),
    (NAT_RS.replace("default via 10.77.0.254 dev eth0 proto static\n", ""), "NAT",
     ["default route via nothing, expected via 10.77.0.254"]),
    (rs_output(vip_on="lo", gateway="10.77.0.254", arp="0 0"), "NAT",
     ["VIP 10.77.0.100 on lo (NAT: the director rewrites it; the real server must not own it)"]),
])
def test_real_server_problems_per_forwarding_method(text: str, kind: str, expect: list[str]) -> None:
    from lvslab.verify.evaluate import real_server_problems

    assert real_server_problems(text, kind, "10.77.0.100", "10.77.0.254" if kind == "NAT" else "") == expect


def test_multicast_vrrp_ruleset_passes_nft_check() -> None:
    """The bridge table the unicast steps install: accepted by nft's own check (-c: nothing committed),
    and a typo in it is refused, so the check has teeth."""
    import shutil

    from lvslab.verify.probe import multicast_vrrp_ruleset, nft_table_name

    if not shutil.which("nft"):
        pytest.fail("nft not installed: run tools/host.sh packages")
    macs = ["52:54:00:aa:bb:01", "52:54:00:aa:bb:02"]
    ruleset = multicast_vrrp_ruleset("lvs-ci.1", macs)
    assert nft_table_name("lvs-ci.1") == "lvslab_lvs_ci_1" and "ip daddr 224.0.0.18 ip protocol vrrp" in ruleset
    broken = ruleset.replace("ip protocol vrrp counter drop", "ip protocol vrp drop")
    for text, ok in ((ruleset, True), (broken, False)):
        proc = subprocess.run(["nft", "-c", "-f", "-"], input=text, capture_output=True, text=True)
        assert (proc.returncode == 0) == ok, proc.stderr


def test_nft_counters_by_rule_comment() -> None:
    from lvslab.verify.probe import parse_nft_counters

    listing = ('{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"table": {"family": "bridge", "name": "t"}}, '
               '{"rule": {"comment": "multicast-vrrp", "expr": [{"match": {}}, {"counter": {"packets": 3, '
               '"bytes": 96}}, {"drop": null}]}}, {"rule": {"comment": "unicast-vrrp", "expr": [{"counter": '
               '{"packets": 12, "bytes": 480}}]}}, {"rule": {"expr": [{"counter": {"packets": 1, "bytes": 1}}]}}]}')
    assert parse_nft_counters(listing) == {"multicast-vrrp": 3, "unicast-vrrp": 12}


def test_rs_config_script_runs_and_parses_here() -> None:
    """The real servers' config script really runs (sh, ip, sysctl on this host) and yields the rows the
    evaluation reads: the ARP sysctls of all/lo/eth0 and the rp_filter of all/tunl0 ('-' when absent)."""
    from lvslab.verify.evaluate import RS_CONFIG_SCRIPT

    out = subprocess.run(["sh", "-c", RS_CONFIG_SCRIPT], capture_output=True, text=True, timeout=20).stdout
    rows = [line.split() for line in out.splitlines()]
    assert [r[1] for r in rows if r[0] == "arp"] == ["all", "lo", "eth0"]
    rp = {r[1]: r[2] for r in rows if r[0] == "rp"}
    assert set(rp) == {"all", "tunl0"} and rp["all"].isdigit()
    assert any(len(r) > 3 and r[1] == "lo" and r[2] == "inet" for r in rows)


@pytest.mark.parametrize("preempt,sequence,outcome", [
    # preempt: the BACKUP took the VIP first (pushed first), the MASTER preempts a moment later
    (True, [["director2"], ["director1", "director2"], ["director1"]], None),
    (True, [["director2"]] * 50, "vip-state"),  # never moves: fails after the failover bound
    (True, [["director1", "director2"]] * 50, "split-brain"),  # both keep it: split brain, named as such
    (True, [[]] * 50, "vip-state"),  # nobody
])
def test_vip_on_master_waits_for_the_election(dev_raw: dict[str, Any], preempt: bool, sequence: list[list[str]],
                                              outcome: str | None) -> None:
    """lvs-state right after the directors' keepalived started: a preempting MASTER that started last takes
    the VIP within the failover bound; the check waits for that, and only for that long."""
    import dataclasses

    import lvslab.verify.steps.state as checks
    from lvslab.config import parse_config
    from lvslab.model import derive, verify_spec
    from lvslab.verify.context import StepContext

    spec = dataclasses.replace(verify_spec(derive(parse_config(dev_raw, "dev"))), failover_bound_s=0.2)
    asked = iter(sequence)
    clock = [0.0]  # a fake clock: each sleep advances it

    class FakeLab(StepContext):
        """Who holds the VIP comes from `sequence`, one answer per question; the clock is fake."""

        def vip_holders(self, only: list[str] | None = None) -> dict[str, bool]:
            held = next(asked)
            return {n: n in held for n in ("director1", "director2")} if held is not None else {}

        def split_brain(self, holding: list[str]) -> str:
            return f"both: {holding}"

    ctx = FakeLab(spec, None, monotonic=lambda: clock[0],  # type: ignore[arg-type]
                  sleep=lambda s: clock.__setitem__(0, clock[0] + s))
    if outcome is None:
        assert checks.vip_on_master_only(ctx) is None
        assert next(asked, "done") == "done"
    else:
        with pytest.raises(checks.CheckFailed) as failed:
            checks.vip_on_master_only(ctx)
        assert failed.value.check == outcome
        assert clock[0] == pytest.approx(spec.failover_bound_s + 2, abs=0.5)  # waited the bound, no longer
