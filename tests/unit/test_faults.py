"""The runtime fault table: each entry is usable by `tools/lvslab.py fault` as written."""

from __future__ import annotations

import dataclasses
import difflib
import shutil
import string
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lvslab.faults import RUNTIME_FAULTS, SETTLES
from lvslab.model import VerifySpec
from lvslab.runner.inject import SETTLE_WAITS
from lvslab.verify.assertions import ASSERTIONS
from lvslab.verify.registry import STEPS

# The checks (assertion id prefixes) each step can raise.
CHECKS_OF_STEPS = {
    "readiness": {"readiness"}, "restore": {"restore"},
    "lvs-state": {"vip-state", "split-brain", "real-server-config", "ipvs-settings", "vip-arp"},
    "round-robin": {"round-robin"}, "health-check": {"health-check"}, "sorry-server": {"sorry-server"},
    "persistence": {"persistence"},
    "connection-sync": {"connection-sync"}, "failback": {"failback"}, "failover": {"failover"},
    "vrrp-unicast": {"vrrp-unicast"}, "vip-state": {"vip-state", "split-brain", "vip-arp"},
    "freeze": {"failover", "failback"},
}
# Checks several steps make (the IPVS gate, NAT's gateway VIP, heartbeat settling): any step may raise them.
SHARED_CHECKS = {"ipvs", "gateway", "heartbeat"}
LAB = {"vip": "10.0.0.100", "port": 80, "algo": "rr", "persistence": 10, "persistence_long": 60,
       "timeouts": "900 120 300", "gateway": "10.201.0.254"}


def sed_on_rendered(inject: str, original: str, tmp_path: Path) -> tuple[Path, list[str]]:
    """A fault's sed (its first command) run on a rendered keepalived.conf: the file and the changed lines
    (ndiff's - and + lines)."""
    conf = tmp_path / "keepalived.conf"
    conf.write_text(original)
    sed = inject.format(**LAB).split(" && ")[0].replace("/etc/keepalived/keepalived.conf", str(conf))
    subprocess.run(sed, shell=True, check=True)
    diff = difflib.ndiff(original.splitlines(), conf.read_text().splitlines())
    return conf, [line for line in diff if line[0] in "+-"]


@pytest.mark.parametrize("name", sorted(RUNTIME_FAULTS))
def test_runtime_fault_is_complete(name: str) -> None:
    fault = RUNTIME_FAULTS[name]
    assert fault.targets in {"real_servers", "one_real_server", "last_real_server", "directors", "master", "backup"}
    assert fault.steps and all(step in STEPS for step in fault.steps)
    for kind in ("DR", "TUN", "NAT"):
        assert fault.expected(kind) in ASSERTIONS, fault.expected(kind)
        assert fault.expected(kind).split(".")[0] in SHARED_CHECKS.union(*(CHECKS_OF_STEPS[s] for s in fault.steps))
    spec_fields = {f.name for f in dataclasses.fields(VerifySpec)}
    assert all(name in spec_fields and isinstance(value, int) for name, value in fault.verify), fault.verify
    for script in (fault.inject, fault.repair):  # every placeholder is one cmd_fault fills in
        fields = {name for _, name, _, _ in string.Formatter().parse(script) if name is not None}
        assert fields <= set(LAB), fields
        script.format(**LAB)


def test_split_brain_fault_kills_keepalived_hard_and_repairs_the_stale_vip() -> None:
    fault = RUNTIME_FAULTS["keepalived-kill9-master"]
    assert fault.targets == "master" and fault.settle and fault.assertion == "split-brain.one-holder"
    # every keepalived process frozen, then killed (no clean VIP removal, no respawn, no stop)
    assert fault.inject.index("kill -STOP $pids") < fault.inject.index("kill -9 $pids")
    assert "systemctl" not in fault.inject
    assert fault.repair.format(vip="10.0.0.100").startswith("ip addr del 10.0.0.100/32 dev eth0")


def test_persistence_fault_drops_exactly_the_persistence_flag() -> None:
    fault = RUNTIME_FAULTS["persistence-off"]
    lab = {"vip": "10.0.0.100", "port": 80, "algo": "rr", "persistence": 10}
    assert fault.inject.format(**lab) == "ipvsadm -E -t 10.0.0.100:80 -s rr"
    assert fault.repair.format(**lab) == "ipvsadm -E -t 10.0.0.100:80 -s rr -p 10"


def test_preempt_fault_runs_failover_then_failback_and_restores_the_file() -> None:
    fault = RUNTIME_FAULTS["preempt-on"]
    assert fault.steps == ("failover", "failback") and fault.assertion == "failback.stays"
    assert ".lvslab-fault" in fault.inject
    assert fault.repair.startswith("mv /etc/keepalived/keepalived.conf.lvslab-fault")


@pytest.mark.tools
def test_gateway_fault_removes_only_the_backups_gateway_address(dev_raw: dict[str, Any], tmp_path: Path) -> None:
    """The sed of gateway-vip-stays, run on the rendered NAT keepalived.conf: exactly the gateway VIP's line
    goes (the VIP's stays), keepalived's only complaint is the instance without an address (a warning: the
    reloaded keepalived runs VI_GW without it), and the repair's backup is the original."""
    from lvslab.config import parse_config
    from lvslab.model import derive
    from lvslab.render import keepalived_conf
    from tests.unit.test_render import nat_raw

    if not shutil.which("keepalived"):
        pytest.fail("keepalived not installed: run tools/host.sh packages")
    cfg = parse_config(nat_raw(dev_raw), "dev")
    fault = RUNTIME_FAULTS["gateway-vip-stays"]
    assert fault.targets == "backup" and fault.steps == ("failover", "failback")
    assert fault.assertion == "gateway.with-vip"
    conf = tmp_path / "etc/keepalived/keepalived.conf"
    conf.parent.mkdir(parents=True)
    original = keepalived_conf(cfg, derive(cfg).backup, "s3cret")
    conf.write_text(original)
    sed = fault.inject.split(" && ")[0].replace("/etc/keepalived/keepalived.conf", str(conf))
    subprocess.run(sed, shell=True, check=True)
    removed = [line for line in original.splitlines() if line not in conf.read_text().splitlines()]
    assert removed == [f"        {cfg.gateway_vip}/24 dev eth0 label eth0:gw"]
    assert Path(f"{conf}.lvslab-fault").read_text() == original
    proc = subprocess.run(["keepalived", "--config-test", "-f", str(conf)], capture_output=True, text=True)
    assert set(proc.stderr.splitlines()) == {"(VI_GW) No VIP specified; at least one is sensible"}, proc.stderr


@pytest.mark.tools
def test_unicast_fault_leaves_plain_multicast_vrrp(dev_raw: dict[str, Any], tmp_path: Path) -> None:
    """unicast-off's sed on a rendered unicast keepalived.conf: every unicast line goes and nothing else, and
    keepalived accepts the result without a complaint (plain multicast VRRP)."""
    from lvslab.config import parse_config
    from lvslab.model import derive
    from lvslab.render import keepalived_conf

    if not shutil.which("keepalived"):
        pytest.fail("keepalived not installed: run tools/host.sh packages")
    dev_raw["vrrp"]["unicastPeers"] = True
    cfg = parse_config(dev_raw, "dev")
    fault = RUNTIME_FAULTS["unicast-off"]
    assert fault.targets == "directors" and fault.steps == ("vrrp-unicast",)
    assert fault.assertion == "vrrp-unicast.master-only"
    conf, changed = sed_on_rendered(fault.inject, keepalived_conf(cfg, derive(cfg).directors[0], "s3cret"),
                                    tmp_path)
    assert changed == ["-     unicast_src_ip 10.77.0.11", "-     unicast_peer {", "-         10.77.0.12", "-     }"]
    assert "unicast" not in conf.read_text().replace("# Unicast VRRP", "")
    proc = subprocess.run(["keepalived", "--config-test", "-f", str(conf)], capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr


@pytest.mark.tools
def test_wrong_process_fault_changes_only_what_the_script_looks_for(tmp_path: Path) -> None:
    """check-wrong-process's sed on a rendered nginx-ha keepalived.conf: only the script line changes, to a
    process that always runs (keepalived itself), and keepalived accepts the result."""
    from lvslab.config import parse_config
    from lvslab.model import derive
    from lvslab.render import keepalived_conf
    from tests.unit.test_nginx_ha_render import nginx_ha_raw

    cfg = parse_config(nginx_ha_raw(), "nginx-ha")
    fault = RUNTIME_FAULTS["check-wrong-process"]
    assert fault.targets == "directors" and fault.steps == ("failover", "failback")
    assert fault.assertion == "failover.vip-moved"
    conf, changed = sed_on_rendered(fault.inject, keepalived_conf(cfg, derive(cfg).directors[0], "s3cret"),
                                    tmp_path)
    assert changed == ['-     script "/usr/bin/pgrep -x nginx"', '+     script "/usr/bin/pgrep -x keepalived"']
    proc = subprocess.run(["keepalived", "--config-test", "-f", str(conf)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_templates_and_components_see_flags_never_fault_names() -> None:
    """A cloud-init fault reaches the rendered files only as RenderFlags (render_flags is the one place that
    maps them); no template or component tests a fault's name."""
    from lvslab.faults import CLOUD_INIT_FAULTS, RenderFlags, render_flags
    from lvslab.imports import ROOT

    for path in [*(ROOT / "cloud-init").glob("*.j2"), *(ROOT / "components").glob("*.py"), ROOT / "lvslab/render.py"]:
        text = path.read_text()
        for name in CLOUD_INIT_FAULTS:
            assert f'"{name}"' not in text and f"'{name}'" not in text, f"{path.name} tests fault {name}"
    assert render_flags([]) == RenderFlags()
    for name, fault in CLOUD_INIT_FAULTS.items():
        flags = render_flags([name])
        changed = {f for f in RenderFlags.__dataclass_fields__ if getattr(flags, f) != getattr(RenderFlags(), f)}
        assert changed == set(fault.flags), name  # each fault turns exactly its own features off


def rendered_keepalived_conf(dev_raw: dict[str, Any], role: int = 0) -> str:
    from lvslab.config import parse_config
    from lvslab.model import derive
    from lvslab.render import keepalived_conf

    cfg = parse_config(dev_raw, "dev")
    return keepalived_conf(cfg, derive(cfg).directors[role], "s3cret")


def config_test(conf: Path) -> subprocess.CompletedProcess[str]:
    if not shutil.which("keepalived"):
        pytest.fail("keepalived not installed: run tools/host.sh packages")
    return subprocess.run(["keepalived", "--config-test", "-f", str(conf)], capture_output=True, text=True)


@pytest.mark.tools
def test_tcp_only_fault_turns_http_get_into_a_tcp_check(dev_raw: dict[str, Any], tmp_path: Path) -> None:
    """check-tcp-only's sed on the dev lab's HTTP_GET keepalived.conf: each real server's url block goes and its
    HTTP_GET becomes a TCP_CHECK with the same timings; keepalived accepts it."""
    dev_raw["healthCheck"]["type"] = "HTTP_GET"
    conf, changed = sed_on_rendered(RUNTIME_FAULTS["check-tcp-only"].inject, rendered_keepalived_conf(dev_raw),
                                    tmp_path)
    text = conf.read_text()
    assert "HTTP_GET" not in text and "url {" not in text and text.count("TCP_CHECK {") == len(dev_raw["realServers"])
    assert {line[2:].strip() for line in changed if line[0] == "-"} >= {"HTTP_GET {", "url {", "}"}
    proc = config_test(conf)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr


@pytest.mark.tools
def test_nopreempt_fault_makes_both_directors_backups_without_preemption(dev_raw: dict[str, Any],
                                                                         tmp_path: Path) -> None:
    """nopreempt-on's sed on the MASTER's keepalived.conf of a preempt lab: state BACKUP and nopreempt after
    its priority, nothing else; keepalived accepts it (no 'nopreempt will not work' warning)."""
    dev_raw["vrrp"]["preempt"] = True
    conf, changed = sed_on_rendered(RUNTIME_FAULTS["nopreempt-on"].inject, rendered_keepalived_conf(dev_raw),
                                    tmp_path)
    assert changed == ["-     state MASTER", "+     state BACKUP", "+     nopreempt"], changed
    proc = config_test(conf)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr


@pytest.mark.tools
def test_backup_sorry_only_fault_moves_every_real_server_to_a_closed_port(dev_raw: dict[str, Any],
                                                                         tmp_path: Path) -> None:
    """backup-sorry-only's sed on the BACKUP's keepalived.conf, for both check types: every HTTP_GET asks for a
    page nobody serves, every TCP_CHECK connects to port 1; keepalived accepts both."""
    fault = RUNTIME_FAULTS["backup-sorry-only"]
    servers = len(dev_raw["realServers"])
    for check, old, new in (("HTTP_GET", f"path {dev_raw['healthCheck']['path']}", "path /lvslab-no-such-page"),
                            ("TCP_CHECK", "connect_port 80", "connect_port 1")):
        dev_raw["healthCheck"]["type"] = check
        (tmp_path / check).mkdir()
        conf, changed = sed_on_rendered(fault.inject, rendered_keepalived_conf(dev_raw, 1), tmp_path / check)
        wanted = [f"{sign} {line}" for _ in range(servers) for sign, line in (("-", old), ("+", new))]
        assert [f"{line[0]} {line[1:].strip()}" for line in changed] == wanted, changed
        proc = config_test(conf)
        assert proc.returncode == 0 and not proc.stderr, proc.stderr


@pytest.mark.parametrize("name", sorted(RUNTIME_FAULTS))
def test_a_fault_run_leaves_the_lab_as_it_found_it(name: str) -> None:
    """A failover that passes leaves the MASTER stopped (or frozen) until the failback step: every fault that
    runs failover runs failback right after it, so its after-repair run puts the lab back for the next fault."""
    steps = RUNTIME_FAULTS[name].steps
    if "failover" in steps:
        assert steps[steps.index("failover") + 1:steps.index("failover") + 2] == ("failback",), steps


def test_every_fault_settles_on_something_the_runner_waits_for() -> None:
    """A settle the runner does not know would be skipped silently: the steps would race the daemon."""
    assert {fault.settle for fault in RUNTIME_FAULTS.values()} <= set(SETTLES) == set(SETTLE_WAITS)
    # a real server stopped for the restore step: keepalived must have removed it first
    assert RUNTIME_FAULTS["nginx-down-at-restore"].settle == "health-check"


def _table(weight: int) -> str:
    return ("TCP  10.0.0.100:80 rr\n"
            f"  -> 10.0.0.21:80                 Route   {weight}      0          0\n"
            "  -> 10.0.0.22:80                 Route   1      0          0\n")


def test_health_check_settle_waits_for_the_removal_and_gives_up_at_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    from lvslab.runner import inject

    clock = [0.0]
    monkeypatch.setattr(inject.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(inject.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    spec = types.SimpleNamespace(health_check=types.SimpleNamespace(window=lambda: (7.0, 4.0)))
    target = types.SimpleNamespace(name="web1", address="10.0.0.21")
    tables = iter([_table(1), _table(1), _table(0)])
    ctx = types.SimpleNamespace(spec=spec, active_director=lambda: types.SimpleNamespace(address="d", name="d1"),
                                ssh=lambda address, cmd: types.SimpleNamespace(returncode=0, stdout=next(tables)))
    SETTLE_WAITS["health-check"](ctx, [target])
    assert clock[0] == 2  # two polls saw it in the table, the third at weight 0
    clock[0] = 0.0
    ctx.ssh = lambda address, cmd: types.SimpleNamespace(returncode=0, stdout=_table(1))
    with pytest.raises(inject.FaultError, match="kept web1 in the IPVS table for 19 s"):
        SETTLE_WAITS["health-check"](ctx, [target])


SORRY_ONLY = """IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.0.0.100:80 rr
  -> 10.0.0.21:80                 Route   0      0          0
  -> 127.0.0.1:80                 Route   1      0          0
"""


@pytest.mark.parametrize("table,wait,code", [
    (SORRY_ONLY, "NO_REAL_SERVER_LEFT", 0),  # a quiescent server at weight 0 serves nothing
    (SORRY_ONLY.replace("Route   0", "Route   1"), "REAL_SERVER_BACK", 0),
    (SORRY_ONLY.replace("Route   0", "Masq    2"), "NO_REAL_SERVER_LEFT", 1),  # still serving: gives up, shows it
    (SORRY_ONLY, "REAL_SERVER_BACK", 1),
])
def test_director_waits_read_weights_and_give_up_with_the_table(tmp_path: Path, table: str, wait: str,
                                                                code: int) -> None:
    """backup-sorry-only's waits on the director, run by a real shell against a stand-in ipvsadm and a clock
    that jumps 30 s per reading (so giving up takes two rounds, not 60 s)."""
    import lvslab.faults as faults

    (tmp_path / "ipvsadm").write_text(f"#!/bin/sh\ncat <<'EOT'\n{table}EOT\n")
    (tmp_path / "date").write_text("#!/bin/sh\nn=$(cat \"$0.n\" 2>/dev/null || echo 0); echo $((n + 30)) > \"$0.n\"; "
                                   "echo $((1000 + n))\n")
    (tmp_path / "sleep").write_text("#!/bin/sh\ntrue\n")
    for tool in ("ipvsadm", "date", "sleep"):
        (tmp_path / tool).chmod(0o755)
    script = getattr(faults, wait).format()
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=20,
                         env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    assert out.returncode == code, out
    assert ("10.0.0.21:80" in out.stdout) == (code == 1)  # the table is shown only when it gave up


def test_an_inject_that_does_not_answer_is_not_run_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only repairs are retried after a timeout: an inject run twice overwrote the config its repair restores."""
    import types

    import lvslab.verify.probe as probe
    from lvslab.runner import inject

    calls: list[str] = []

    def slow(key: object, address: str, script: str, timeout: float = 60) -> object:
        calls.append(script)
        if script.startswith("systemctl status"):
            return types.SimpleNamespace(returncode=0, stdout="keepalived active", stderr="")
        if len(calls) == 1:
            raise subprocess.TimeoutExpired(script, timeout)
        return types.SimpleNamespace(returncode=0, stdout="", stderr="")

    monkeypatch.setattr(probe, "ssh", slow)
    node = types.SimpleNamespace(name="director2", address="10.0.0.12")
    with pytest.raises(inject.FaultError, match="director2: no answer within 150 s"):
        inject._run_on(None, node, "sed -i.lvslab-fault x", retry=False)  # noqa: SLF001
    assert calls == ["sed -i.lvslab-fault x", "systemctl status keepalived --no-pager -n 5; uptime"]
    calls.clear()
    inject._run_on(None, node, "mv x.lvslab-fault x", retry=True)  # noqa: SLF001
    assert calls[0] == calls[2] == "mv x.lvslab-fault x" and len(calls) == 3


def test_lab_settled_fails_when_the_vip_does_not_come_back() -> None:
    """After a repair the runner waits for the initial state; a lab that does not get there fails the run (the
    next fault would otherwise start from a broken lab)."""
    import types

    from lvslab.verify.failure import CheckFailed
    from lvslab.verify.live import lab_settled

    clock = [0.0]
    d1, d2 = types.SimpleNamespace(name="director1"), types.SimpleNamespace(name="director2")
    spec = types.SimpleNamespace(topo=types.SimpleNamespace(heartbeat=False), preempt=True, master=d1, backup=d2,
                                 directors=(d1, d2), failover_bound_s=3.6, real_servers=())
    holders = [{"director1": False, "director2": True}] * 100
    ctx = types.SimpleNamespace(spec=spec, monotonic=lambda: clock[0], vip_holders=lambda: holders.pop(),
                                sleep=lambda s: clock.__setitem__(0, clock[0] + s))
    with pytest.raises(CheckFailed, match="VIP on director1 only within 23.6 s of the repair; observed held by "
                                          r"\['director2'\]"):
        lab_settled(ctx)
    holders[-1] = {"director1": True, "director2": False}
    clock[0] = 0.0
    assert lab_settled(ctx) == 0.0
    # nopreempt: the BACKUP may keep it; the runner hands it back as the failback step does
    d2.address, spec.preempt, spec.topo.ha_daemon = "10.0.0.12", False, "keepalived"
    restarted: list[tuple[str, str]] = []
    ctx.ssh = lambda address, cmd: restarted.append((address, cmd))
    holders[:] = [{"director1": True, "director2": False}, {"director1": False, "director2": True}]
    clock[0] = 0.0
    lab_settled(ctx)
    assert restarted == [("10.0.0.12", "systemctl restart keepalived")] and not holders


@pytest.mark.tools
@pytest.mark.parametrize("name,role", [("unchecked-local-server-backup", 1), ("unchecked-local-server-on-restart", 0)])
def test_unchecked_local_server_fault_adds_one_real_server_without_a_check(dev_raw: dict[str, Any], tmp_path: Path,
                                                                         name: str, role: int) -> None:
    """The unchecked-local-server faults' sed: one real_server 127.0.0.1 block (no checker: keepalived never
    takes it out) inside the virtual_server, with or without a sorry server; keepalived accepts it."""
    for sorry in (True, False):
        dev_raw.setdefault("lvs", {})["sorryServer"] = sorry
        (tmp_path / str(sorry)).mkdir()
        conf, changed = sed_on_rendered(RUNTIME_FAULTS[name].inject, rendered_keepalived_conf(dev_raw, role),
                                        tmp_path / str(sorry))
        assert [line[1:].strip() for line in changed] == ["real_server 127.0.0.1 80 {", "weight 1", "}"], changed
        assert all(line[0] == "+" for line in changed)
        proc = config_test(conf)
        assert proc.returncode == 0 and not proc.stderr, proc.stderr


@pytest.mark.tools
def test_slow_check_fault_adds_a_four_second_check_to_every_real_server(dev_raw: dict[str, Any],
                                                                      tmp_path: Path) -> None:
    """slow-check-on-restart's sed: a MISC_CHECK sleeping 4 s (no warmup) in every real_server block, beside its
    own check; keepalived accepts it (script security on: /bin/sleep is root's)."""
    servers = len(dev_raw["realServers"])
    conf, changed = sed_on_rendered(RUNTIME_FAULTS["slow-check-on-restart"].inject,
                                    rendered_keepalived_conf(dev_raw), tmp_path)
    block = ["MISC_CHECK {", 'misc_path "/bin/sleep 4"', "misc_timeout 10", "warmup 0", "}"]
    security = ["script_user root", "enable_script_security"]
    assert [line[1:].strip() for line in changed] == security + block * servers, changed
    assert all(line[0] == "+" for line in changed)
    proc = config_test(conf)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
