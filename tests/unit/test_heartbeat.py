"""Topology lvs-heartbeat (seed 003): its config rules, its rendered heartbeat and ldirectord files, and
ldirectord.cf read by the real ldirectord, taken from the lab's own package repository."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from lvslab.config import ConfigError, parse_config
from lvslab.faults import LDIRECTORD_CF, RUNTIME_FAULTS
from lvslab.imagebuild import cache_key, default_cache, default_spec
from lvslab.model import derive, verify_spec
from lvslab.render import director_user_data, ha_cf, haresources, ldirectord_cf, nginx_site, real_server_user_data
from lvslab.stackfile import load_config

STACKS = Path(__file__).parents[2] / "stacks"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH0VtHs3aV1aQ8x7mBq0p2U6vYpVdJt3b6yJ0a8bW9c0 lvs-lab-test"


def heartbeat_raw() -> dict[str, Any]:
    return load_config("heartbeat")


def problems(raw: dict[str, Any]) -> list[str]:
    """(The one-mistake-one-message cases of lvs-heartbeat are in test_config.py's GOLDEN table.)"""
    with pytest.raises(ConfigError) as err:
        parse_config(raw, "heartbeat")
    return err.value.problems


def test_stack_parses_with_heartbeat_timing_and_bound() -> None:
    cfg = parse_config(heartbeat_raw(), "heartbeat")
    hb = cfg.heartbeat
    assert (hb.keepalive, hb.deadtime, hb.warntime, hb.initdead, hb.auto_failback) == (1, 5, 3, 20, True)
    # deadtime, then heartbeat's takeover (IPaddr2 + ldirectord's start)
    assert cfg.failover_bound_seconds() == 5 + 25.0
    spec = verify_spec(derive(cfg))
    assert spec.topology == "lvs-heartbeat" and spec.preempt and spec.heartbeat_initdead == 20
    assert spec.health_check.page_file == "/var/www/html/health.html" and spec.health_check.receive == "ok"
    # failurecount 1, retried at the next checkinterval: removed within 2 + 1 x (2 + 2) s, re-added within 2 + 2
    assert spec.health_check.window() == (6, 4)


def test_heartbeat_and_ldirectord_keys_only_with_lvs_heartbeat() -> None:
    raw = load_config("dev")
    raw["heartbeat"] = {"deadtime": 5}
    raw["healthCheck"]["receive"] = "ok"
    raw["lvs"]["quiescent"] = True
    assert problems(raw) == [
        "lvs-lab:heartbeat: is only used with topology lvs-heartbeat (heartbeat's timing); with lvs-keepalived "
        "keepalived's VRRP moves the VIP (vrrp) (got {'deadtime': 5})",
        "lvs-lab:healthCheck.receive: is only used with topology lvs-heartbeat (ldirectord's receive regexp); not "
        "with lvs-keepalived (got 'ok')",
        "lvs-lab:lvs.quiescent: is only used with topology lvs-heartbeat (ldirectord's quiescent); not with "
        "lvs-keepalived (got True)",
    ]


def test_heartbeat_files() -> None:
    """ha.cf: the configured timing, unicast to the peer, both node names, haresources mode; haresources:
    the MASTER owns the VIP and ldirectord; ldirectord.cf: both real servers by DR, the fallback, negotiate."""
    cfg = parse_config(heartbeat_raw(), "heartbeat")
    d1, d2 = derive(cfg).directors
    conf = ha_cf(cfg, d2)
    for line in ("keepalive 1", "deadtime 5", "warntime 3", "initdead 20", "udpport 694", "ucast eth0 10.86.0.11",
                 "auto_failback on", "node director1", "node director2", "crm no"):
        assert f"\n{line}\n" in conf, line
    assert "director1 IPaddr2::10.86.0.100/32/eth0 ldirectord::ldirectord.cf\n" in haresources(cfg)
    ld = ldirectord_cf(cfg)
    for line in ("checkinterval=2", "negotiatetimeout=2", "failurecount=1", "quiescent=no", "virtual=10.86.0.100:80",
                 "\treal=10.86.0.21:80 gate 1", "\treal=10.86.0.22:80 gate 1", "\tfallback=127.0.0.1:80 gate",
                 "\tchecktype=negotiate", '\trequest="/health.html"', '\treceive="ok"', "\tscheduler=rr"):
        assert f"\n{line}\n" in ld, line
    raw = heartbeat_raw()
    raw["heartbeat"]["autoFailback"] = False
    raw["lvs"] |= {"quiescent": True, "persistenceTimeout": 30, "sorryServer": False}
    raw["healthCheck"] = {"type": "TCP_CHECK", "retry": 2}
    cfg = parse_config(raw, "heartbeat")
    assert "\nauto_failback off\n" in ha_cf(cfg, d1)
    ld = ldirectord_cf(cfg)
    assert "\nquiescent=yes\n" in ld and "\n\tpersistent=30\n" in ld and "\n\tchecktype=connect\n" in ld
    assert "failurecount=3" in ld and "fallback" not in ld and "receive" not in ld


def test_director_and_real_server_user_data(tmp_path: Path) -> None:
    """A heartbeat director installs heartbeat, ldirectord, ipvsadm and nginx (the fallback), writes
    heartbeat's three files once the packages are in (authkeys 0600 with the secret), keeps ldirectord's own
    unit off and does not start heartbeat: ldirectord.cf is pushed later, and the push starts it; a real server
    serves '<name> ok' as its health page. cloud-init's schema accepts both."""
    cfg = parse_config(heartbeat_raw(), "heartbeat")
    facts = derive(cfg)
    text = director_user_data(cfg, facts.directors[0], KEY, "s3cret")
    doc = yaml.safe_load(text)
    assert doc["packages"] == ["heartbeat", "ldirectord", "ipvsadm", "nginx"]
    files = {f["path"]: f for f in doc["write_files"]}
    for path in ("/etc/ha.d/ha.cf", "/etc/ha.d/authkeys", "/etc/ha.d/haresources"):
        assert files[path]["defer"] is True, path
    assert "/etc/ha.d/ldirectord.cf" not in files and "virtual=" not in text
    assert files["/etc/ha.d/authkeys"]["permissions"] == "0600"
    assert files["/etc/ha.d/authkeys"]["content"] == "auth 1\n1 sha1 s3cret\n"
    # in place before runcmd's systemd reload: heartbeat's own split-brain restart survives systemd
    restart = files["/etc/systemd/system/heartbeat.service.d/lvslab-restart.conf"]
    assert "defer" not in restart and "Restart=always\n" in restart["content"]
    assert "keepalived" not in text.replace("keepalived's", "")
    commands = [" ".join(c) if isinstance(c, list) else c for c in doc["runcmd"]]
    assert "systemctl disable --no-reload ldirectord" in commands
    assert not [c for c in commands if "heartbeat" in c], commands
    web = real_server_user_data(cfg, facts.real_servers[1], KEY)
    web_files = {f["path"]: f["content"] for f in yaml.safe_load(web)["write_files"]}
    assert web_files["/var/www/html/health.html"] == "web2 ok\n"
    assert "return 200" not in nginx_site(cfg, facts.real_servers[1])  # the page is the file, not nginx's text
    for i, ud in enumerate((text, web)):
        (tmp_path / f"ud{i}.yaml").write_text(ud)
        proc = subprocess.run(["cloud-init", "schema", "-c", str(tmp_path / f"ud{i}.yaml")], capture_output=True,
                              text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def ldirectord(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lab's own ldirectord with its Perl modules and ipvsadm, unpacked from the image's repository ISO
    (the exact packages the directors install) into a scratch directory; nothing is installed on the host."""
    iso = default_cache() / f"image-{default_spec().suite}-{cache_key(default_spec())}" / "repo.iso"
    if not iso.exists():
        pytest.fail(f"{iso} missing: run make image")
    root = tmp_path_factory.mktemp("ldirectord")
    listing = subprocess.run(["isoinfo", "-J", "-f", "-i", str(iso)], capture_output=True, text=True,
                             check=True).stdout.split()
    wanted = [p for p in listing if p.endswith(".deb") and
              (p.startswith(("/ldirectord_", "/ipvsadm_")) or p.split("_")[0].endswith("-perl"))]
    assert any(p.startswith("/ldirectord_") for p in wanted), listing
    for path in wanted:
        deb = root / "pkg.deb"
        with deb.open("wb") as out:
            subprocess.run(["isoinfo", "-J", "-x", path, "-i", str(iso)], stdout=out, check=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    # ldirectord looks for /sbin/ipvsadm, or ./ipvsadm in debug mode (-d)
    (root / "ipvsadm").symlink_to(root / "sbin" / "ipvsadm")
    return root


def ldirectord_reads(root: Path, conf: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`ldirectord -d CONF status` parses CONF and reports: exit 3 = read, not running; 2 = config error."""
    path = tmp_path / "ldirectord.cf"
    path.write_text(conf)
    perl5lib = f"{root}/usr/lib/x86_64-linux-gnu/perl5/5.36:{root}/usr/share/perl5"
    return subprocess.run(["perl", "usr/sbin/ldirectord", "-d", str(path), "status"], cwd=root, text=True,
                          capture_output=True, env={**os.environ, "PERL5LIB": perl5lib}, timeout=60)


@pytest.mark.tools
@pytest.mark.parametrize("variant", ["stack", "tcp-quiescent-persistent"])
def test_ldirectord_reads_the_rendered_config(ldirectord: Path, tmp_path: Path, variant: str) -> None:
    raw = heartbeat_raw()
    if variant != "stack":
        raw["lvs"] |= {"quiescent": True, "persistenceTimeout": 30, "lbAlgo": "wlc"}
        raw["healthCheck"] = {"type": "TCP_CHECK", "retry": 2}
    conf = ldirectord_cf(parse_config(raw, "heartbeat"))
    proc = ldirectord_reads(ldirectord, conf, tmp_path)
    assert proc.returncode == 3 and "ldirectord is stopped" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


@pytest.mark.tools
@pytest.mark.parametrize("broken", ["\tchecktype=negotiat", "\treal=10.86.0.21:80 gat 1"])
def test_ldirectord_refuses_a_broken_config(ldirectord: Path, tmp_path: Path, broken: str) -> None:
    """The tool really checks: one wrong word in the rendered file is a configuration error."""
    conf = ldirectord_cf(parse_config(heartbeat_raw(), "heartbeat"))
    good = {"\tchecktype=negotiat": "\tchecktype=negotiate",
            "\treal=10.86.0.21:80 gat 1": "\treal=10.86.0.21:80 gate 1"}
    assert good[broken] in conf
    proc = ldirectord_reads(ldirectord, conf.replace(good[broken], broken), tmp_path)
    assert proc.returncode == 2 and "Configuration Error" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


@pytest.mark.tools
def test_connect_only_fault_changes_just_the_check_type(ldirectord: Path, tmp_path: Path) -> None:
    """check-connect-only's sed on the rendered ldirectord.cf: negotiate becomes connect and nothing else
    changes; ldirectord still reads it; the repair moves the saved original back."""
    fault = RUNTIME_FAULTS["check-connect-only"]
    conf = ldirectord_cf(parse_config(heartbeat_raw(), "heartbeat"))
    path = tmp_path / "ld.cf"
    path.write_text(conf)
    sed = fault.inject.split(" && ")[0].replace(LDIRECTORD_CF, str(path))
    subprocess.run(sed, shell=True, check=True)
    assert path.read_text() == conf.replace("\tchecktype=negotiate\n", "\tchecktype=connect\n") != conf
    assert ldirectord_reads(ldirectord, path.read_text(), tmp_path).returncode == 3
    assert fault.repair.startswith(f"mv {LDIRECTORD_CF}.lvslab-fault {LDIRECTORD_CF} && ")
    assert fault.assertion == "health-check.removed" and fault.steps == ("health-check",)


@pytest.mark.tools
def test_ldirectord_push_script_for_real(ldirectord: Path, tmp_path: Path) -> None:
    """The ldirectord.cf command, run with the lab's real ldirectord (systemctl faked): the first push installs
    the file and starts heartbeat; a later one with ldirectord not running here (the other director holds the
    resources) only replaces the file; a file ldirectord refuses changes nothing and fails with its complaint."""
    from lvslab.commands import ldirectord_push_script

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    perl5lib = f"{ldirectord}/usr/lib/x86_64-linux-gnu/perl5/5.36:{ldirectord}/usr/share/perl5"
    (bin_dir / "ldirectord").write_text(  # as in ldirectord_reads: from the unpacked root (it finds ipvsadm there)
        f'#!/bin/sh\ncd {ldirectord} && PERL5LIB={perl5lib} exec perl usr/sbin/ldirectord "$@"\n')
    calls, active = tmp_path / "systemctl.log", tmp_path / "heartbeat-active"
    (bin_dir / "systemctl").write_text(f'#!/bin/sh\necho "$*" >> {calls}\n'
                                       f'case "$*" in "-q is-active heartbeat") [ -e {active} ];; '
                                       f'"restart heartbeat") touch {active};; esac\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    conf = tmp_path / "ldirectord.cf"
    script = ldirectord_push_script("true", conf=str(conf))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}

    def push(text: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", "-c", script], input=text, capture_output=True, text=True, env=env, timeout=120)

    good = ldirectord_cf(parse_config(heartbeat_raw(), "heartbeat"))
    first = push(good)
    assert first.returncode == 0 and first.stdout.strip() == "heartbeat started", first.stdout + first.stderr
    assert conf.read_text() == good and oct(conf.stat().st_mode & 0o777) == "0o644"
    assert "restart heartbeat" in calls.read_text()
    changed = good.replace("\treal=10.86.0.22:80 gate 1\n", "")
    again = push(changed)
    assert again.returncode == 0 and "ldirectord runs on the other director" in again.stdout, again.stderr
    assert conf.read_text() == changed and calls.read_text().count("restart heartbeat") == 1
    broken = push(changed.replace("checktype=negotiate", "checktype=sometimes"))
    assert broken.returncode == 1 and "ldirectord refused the new configuration" in broken.stderr, broken.stderr
    assert conf.read_text() == changed and not (tmp_path / "ldirectord.cf.new").exists()


def test_unsettled_heartbeat_says_what_it_was_doing() -> None:
    """heartbeat stuck in "transition": the failure names each director's state and its latest log lines."""
    from lvslab.model import derive, verify_spec
    from lvslab.verify.context import StepContext
    from lvslab.verify.failure import CheckFailed
    from lvslab.verify.live import HEARTBEAT_DOING, HEARTBEAT_SETTLED, ON_MASTER, heartbeat_settled
    from tests.conftest import stack_config

    spec = verify_spec(derive(parse_config(stack_config("heartbeat"), "heartbeat")))
    clock = [0.0]

    def ssh(key: object, address: str, script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        out = {HEARTBEAT_SETTLED: "transition\n",
               HEARTBEAT_DOING: "[ 1.0] ResourceManager: info: Running /etc/ha.d/resource.d/ldirectord start\n"
                                "[ 9.0] heartbeat: WARN: Gmain_timeout_dispatch: Dispatch function took too long"}
        return subprocess.CompletedProcess([], 0, out[script], "")

    ctx = StepContext(spec, None, run_ssh=ssh, monotonic=lambda: clock[0],  # type: ignore[arg-type]
                      sleep=lambda s: clock.__setitem__(0, clock[0] + s))
    with pytest.raises(CheckFailed) as failed:
        heartbeat_settled(ctx, ON_MASTER)
    message = str(failed.value)
    assert failed.value.assertion == "heartbeat.settled"
    assert "observed director1 transition; its log: [ 1.0] " in message
    assert "; director2 transition; its log: " in message
    assert message.count("ldirectord start") == 2 and "took too long" in message


def test_a_stopped_heartbeat_is_not_waited_for() -> None:
    """heartbeat's unit stopped on the BACKUP (fault heartbeat-down-backup): no waiting out initdead + bound +
    20 s for a daemon that will not come back; the failure after the grace names it."""
    from lvslab.model import derive, verify_spec
    from lvslab.verify.context import StepContext
    from lvslab.verify.failure import CheckFailed
    from lvslab.verify.live import HEARTBEAT_SETTLED, HEARTBEAT_STOPPED_GRACE_S, ON_MASTER, heartbeat_settled
    from tests.conftest import stack_config

    spec = verify_spec(derive(parse_config(stack_config("heartbeat"), "heartbeat")))
    clock = [0.0]

    def ssh(key: object, address: str, script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        backup = address == spec.backup.address
        out = ("not running (unit inactive)" if backup else "local") if script == HEARTBEAT_SETTLED else "log"
        return subprocess.CompletedProcess([], 0, out, "")

    ctx = StepContext(spec, None, run_ssh=ssh, monotonic=lambda: clock[0],  # type: ignore[arg-type]
                      sleep=lambda s: clock.__setitem__(0, clock[0] + s))
    with pytest.raises(CheckFailed) as failed:
        heartbeat_settled(ctx, ON_MASTER)
    assert clock[0] <= HEARTBEAT_STOPPED_GRACE_S + 1 < spec.heartbeat_initdead + spec.failover_bound_s
    assert "director2 not running (unit inactive)" in str(failed.value)


@pytest.mark.parametrize("vip_after_s,passes", [(40.0, True), (None, False)])
def test_lvs_state_waits_for_heartbeats_resource_scripts(vip_after_s: float | None, passes: bool) -> None:
    """heartbeat says "local" before IPaddr2 ran (its boot acquisition: every resource's status, then the
    takegroup): lvs-state waits 2 x HEARTBEAT_TAKEOVER_S + 2 s for the VIP, no longer, and a VIP that never comes
    fails vip-state.on-master with what heartbeat and its resource scripts were doing on each director."""
    import lvslab.verify.steps.state as checks
    from lvslab.config.model import HEARTBEAT_TAKEOVER_S
    from lvslab.verify.bounds import vip_on_master_wait
    from lvslab.verify.context import StepContext
    from lvslab.verify.live import HEARTBEAT_DOING, HEARTBEAT_SETTLED
    from tests.conftest import stack_config

    spec = verify_spec(derive(parse_config(stack_config("heartbeat"), "heartbeat")))
    assert vip_on_master_wait(spec) == 2 * HEARTBEAT_TAKEOVER_S + 2 == 52
    clock = [0.0]

    class FakeLab(StepContext):
        def vip_holders(self, only: list[str] | None = None) -> dict[str, bool]:
            held = vip_after_s is not None and clock[0] >= vip_after_s
            return {"director1": held, "director2": False}

    def ssh(key: object, address: str, script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        out = {HEARTBEAT_SETTLED: "local\n" if address == spec.master.address else "none\n",
               HEARTBEAT_DOING: "[ 230.4] ResourceManager(default)[2258]: info: Running "
                                "/etc/ha.d//resource.d/IPaddr2 10.86.0.100/32/eth0 start"}
        return subprocess.CompletedProcess([], 0, out[script], "")

    ctx = FakeLab(spec, None, run_ssh=ssh, monotonic=lambda: clock[0],  # type: ignore[arg-type]
                  sleep=lambda s: clock.__setitem__(0, clock[0] + s))
    if passes:
        assert checks.vip_on_master_only(ctx) is None
        assert clock[0] == pytest.approx(40.0, abs=0.6)
        return
    with pytest.raises(checks.CheckFailed) as failed:
        checks.vip_on_master_only(ctx)
    assert failed.value.assertion == "vip-state.on-master"
    assert clock[0] == pytest.approx(52, abs=0.6)
    message = str(failed.value)
    assert "held by nobody" in message and "director1 local; its log: [ 230.4] ResourceManager" in message
    assert "director2 none; its log: " in message
