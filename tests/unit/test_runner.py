"""The ephemeral runner's config rewrite (tools/lvslab.py): every stack template moves to its own slot and
stays valid, NAT's second subnet included."""

from __future__ import annotations

import importlib.util
import ipaddress
import re
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest

from lvslab.config import parse_config
from lvslab.runner import ephemeral, lab, slots, stacks
from lvslab.runner import guard as guard_module
from lvslab.stackfile import load_config, project_config, read_stack

ROOT = Path(__file__).resolve().parents[2]


def runner() -> ModuleType:
    """tools/lvslab.py as run (a thin entry point: its main is lvslab.runner.cli's)."""
    spec = importlib.util.spec_from_file_location("lvslab_runner", ROOT / "tools" / "lvslab.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The stack templates in the repository (not the git-ignored stacks of running ephemeral labs, ciN-xxxxxx).
TEMPLATES = sorted(name for name in (p.name.split(".")[1] for p in (ROOT / "stacks").glob("Pulumi.*.yaml"))
                   if not re.fullmatch(r"ci\d+-[0-9a-f]{6}", name))


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_template_moves_to_its_slot_and_stays_valid(template: str) -> None:
    moved = slots.ephemeral_config(read_stack(template), 7, [], None)
    cfg = parse_config(project_config(moved), "ci7")
    assert cfg.bridge == "lvsci7" and cfg.subnet == ipaddress.IPv4Network("10.200.7.0/24")
    nodes = [*cfg.directors, *cfg.real_servers]
    assert all(ipaddress.IPv4Address(n.address) in cfg.subnet for n in nodes)
    if cfg.lb_kind == "NAT":
        assert cfg.client_subnet == ipaddress.IPv4Network("10.201.7.0/24")
        assert ipaddress.IPv4Address(cfg.vip) in cfg.client_subnet and cfg.client == "10.201.7.1"
        assert ipaddress.IPv4Address(cfg.gateway_vip) in cfg.subnet and cfg.gateway_vip.endswith(".254")
    else:
        assert ipaddress.IPv4Address(cfg.vip) in cfg.subnet and cfg.client == cfg.host_address
    assert cfg.vm.boots_at_once == parse_config(project_config(read_stack(template)), template).vm.boots_at_once
    shared = parse_config(project_config(slots.ephemeral_config(read_stack(template), 7, [], None, None, 1)), "ci7")
    assert shared.vm.boots_at_once == 1  # --boots-at-once: labs side by side share the cores


def test_boots_at_once_option_says_what_is_allowed(capsys: pytest.CaptureFixture[str]) -> None:
    from lvslab.runner import cli

    for bad in ("0", "65", "two", "1.5"):
        with pytest.raises(SystemExit):
            cli.main(["ephemeral", "--boots-at-once", bad])
        err = capsys.readouterr().err
        assert f"must be a whole number of VMs from 1 to 64 (got '{bad}')" in err and "Traceback" not in err


def test_a_kept_labs_slot_is_not_handed_out_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lab kept with --keep outlives its runner: its slot (bridge, subnet) must stay taken until destroy,
    while a slot whose runner died without keeping is reclaimed."""
    cli = slots
    monkeypatch.setattr(cli, "SLOTS", tmp_path)
    for slot, kept in ((1, True), (2, False)):
        (tmp_path / str(slot)).mkdir()
        (tmp_path / str(slot) / "pid").write_text("999999999")  # no such process
        if kept:
            (tmp_path / str(slot) / "kept").write_text("ci1-abcdef")
    assert cli.reserve_slot() == 3  # 1 is kept; 2 is stale: removed (free for the next runner)
    assert (tmp_path / "1" / "kept").exists() and not (tmp_path / "2").exists()
    assert cli.reserve_slot() == 2


def test_ready_time_is_domain_start_plus_the_guests_uptime_at_cloud_init_done() -> None:
    """make bench's 'up start -> all nodes ready': from the Domain's create event and the console's uptime,
    not from when the ready command ended (SSH dial cadence, boot profile)."""
    cli = ephemeral
    started = {}
    for line in ["+  libvirt:index:Domain web1-node-domain creating (0s)",
                 "+  libvirt:index:Domain web1-node-domain created (0.51s)",
                 "+  libvirt:index:Domain director1-node-domain created (0.83s)"]:
        found = cli.DOMAIN_CREATED.search(line)
        if found:
            started[found.group(1)] = {"web1": 7.5, "director1": 8.0}[found.group(1)]
    verification = {"readiness": {"nodes": {"web1": {"boot_to_ready_s": 90.25},
                                            "director1": {"boot_to_ready_s": 111.0},
                                            "web2": {"boot_to_ready_s": 95.0}}}}  # no create event seen
    assert cli.ready_after_up_start(started, verification) == {"web1": 97.8, "director1": 119.0}
    assert cli.ready_after_up_start(started, None) == {}


def test_status_helpers() -> None:
    """status: what a node says over SSH -> its VRRP column; the boxed table."""
    from lvslab.report import parse_node_status, services_column, status_table, vrrp_state

    text = "vip 1\nservice keepalived active\nservice nginx inactive\n"
    assert parse_node_status(text) == (True, {"keepalived": "active", "nginx": "inactive"})
    assert vrrp_state("director", True, "active") == "MASTER"
    assert vrrp_state("director", False, "active") == "BACKUP"
    assert vrrp_state("director", True, "failed") == "keepalived failed (VIP held!)"
    assert vrrp_state("real-server", False, "inactive") == "-"
    assert services_column("director", {"keepalived": "active", "nginx": "inactive"}) == "keepalived active"
    assert services_column("director", {"keepalived": "active", "nginx": "active"}) == \
        "keepalived active, nginx active"
    assert services_column("real-server", {"keepalived": "inactive", "nginx": "failed"}) == "nginx failed"
    # topology lvs-heartbeat: heartbeat is the HA daemon (keepalived is not even installed)
    heartbeat = {"keepalived": "inactive", "heartbeat": "active", "nginx": "active"}
    assert services_column("director", heartbeat, "heartbeat") == "heartbeat active, nginx active"
    assert vrrp_state("director", False, "active", "heartbeat") == "BACKUP"
    assert vrrp_state("director", True, "inactive", "heartbeat") == "heartbeat inactive (VIP held!)"
    table = status_table([{"node": "director1", "vrrp": "MASTER"}, {"node": "web1", "vrrp": "-"}], ("node", "vrrp"))
    lines = table.splitlines()
    assert lines[1] == "| node      | vrrp   |" and lines[3] == "| director1 | MASTER |" and len(lines) == 6
    assert len({len(line) for line in lines}) == 1


@pytest.mark.parametrize("fail_at,code", [(None, 0), ("failover", 1)])
def test_verify_exit_status_is_the_result(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                          dev_raw: dict, fail_at: str | None, code: int) -> None:
    """`verify` runs the lab's steps in order against the running lab and stops at the first failing one;
    its exit status says which way it went."""
    import lvslab.verify.registry as checks
    import lvslab.verify.run as verify
    from lvslab.model import derive, verify_spec
    from lvslab.verify.failure import CheckFailed

    cli = runner()
    cfg = parse_config(dev_raw, "dev")
    spec = verify_spec(derive(cfg))
    monkeypatch.setattr(lab, "running_lab", lambda name: (cfg, spec, "key"))
    ran: list[str] = []

    def fake_step(step: str, _spec: object, _key: str) -> dict:
        ran.append(step)
        if step == fail_at:
            raise CheckFailed(step, "VIP answering through director2", "no answer")
        return {"passed": True}

    monkeypatch.setattr(verify, "run_step", fake_step)  # what verify.run calls for a local lab
    assert cli.main(["verify", "--stack", "dev"]) == code
    expected = checks.steps_for(spec)
    assert ran == (expected if fail_at is None else expected[:expected.index(fail_at) + 1])
    out = capsys.readouterr().out
    assert ("FAIL failover" in out) == (fail_at is not None) and "PASS readiness" in out
    # the stack's verify.skip: those steps do not run, the summary says so
    ran.clear()
    monkeypatch.setattr(lab, "running_lab", lambda name: (replace(cfg, verify=replace(cfg.verify, skip=(
        "health-check",))), spec, "key"))
    cli.main(["verify", "--stack", "dev"])
    assert "health-check" not in ran and "round-robin" in ran
    assert re.search(r"SKIP health-check +\(verify.skip\)", capsys.readouterr().out)


def test_verify_says_what_is_missing(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    cli = runner()

    def missing(name: str) -> None:
        raise stacks.LabMissing(f"no stack {name!r} in the state backend")

    monkeypatch.setattr(lab, "running_lab", missing)
    assert cli.main(["verify", "--stack", "nope"]) == 2 and cli.main(["status", "--stack", "nope"]) == 2
    assert capsys.readouterr().out.count("no stack 'nope' in the state backend") == 2


def test_day2_plan_and_vip_watch() -> None:
    """The preview's engine steps become one list per operation; a director resource created, replaced or
    deleted is named (a day-2 change must have none); the VIP polls count only inside the change window."""
    from lvslab.day2 import director_rebuilds, plan, vip_during
    from lvslab.verify.probe import PollEvent

    urn = ("urn:pulumi:ci1::lvs-lab::lvslab:index:Lab$lvslab:index:RealServer$lvslab:index:Node"
           "$libvirt:index/domain:Domain::")
    steps = [("same", urn + "web1-node-domain"), ("create", urn + "web3-node-domain"),
             ("update", urn + "director1-keepalived-conf"), ("update", urn + "director2-keepalived-conf"),
             ("create", urn + "web3-node-disk")]
    changes = plan(steps)
    assert changes == {"create": ["web3-node-disk", "web3-node-domain"],
                       "update": ["director1-keepalived-conf", "director2-keepalived-conf"]}
    assert director_rebuilds(changes, ["director1", "director2"]) == []
    rebuilt = plan([*steps, ("replace", urn + "director2-node-seed"),
                    ("delete-replaced", urn + "director2-node-domain")])
    assert director_rebuilds(rebuilt, ["director1", "director2"]) == [
        "delete-replaced director2-node-domain", "replace director2-node-seed"]
    events = [PollEvent(t, ok, "web1" if ok else None, "52:54:00:00:00:01")
              for t, ok in ((0.5, True), (1.0, False), (2.0, True), (9.0, False))]
    assert vip_during(events, 0.0, 5.0) == {"requests": 3, "failed": 1, "answered_by": {"web1": 2}, "seconds": 5.0}


def test_signal_guard_second_interrupt_ends_with_the_guarded_operation(monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM: children interrupted at once and again after the grace period, but only while the guarded
    operation runs; after the guard the cleanup's own pulumi calls are left alone."""
    import signal
    import time

    cli = guard_module
    calls: list[float] = []
    monkeypatch.setattr(cli.SignalGuard, "interrupt_children", staticmethod(lambda: calls.append(time.monotonic())))
    monkeypatch.setattr(cli.SignalGuard, "grace_seconds", 0.2)
    with cli.SignalGuard() as guard:
        guard._handle(signal.SIGTERM, None)  # noqa: SLF001
        time.sleep(0.4)
    assert len(calls) == 2  # at once, and after the grace period
    with cli.SignalGuard() as guard:
        guard._handle(signal.SIGTERM, None)  # noqa: SLF001
    time.sleep(0.4)  # the guard is gone before the grace period ends: no second interrupt
    assert len(calls) == 3


@pytest.mark.parametrize("template", TEMPLATES)
def test_typed_config_round_trips_through_the_stack_format(template: str) -> None:
    """The runner edits the typed config and writes it back (lvslab.config.serialize): parsing what it writes
    gives the same LabConfig, and only keys a user would write appear (none at its default)."""
    from lvslab.config.serialize import to_raw

    cfg = parse_config(load_config(template), template)
    raw = to_raw(cfg)
    assert parse_config(raw, template) == cfg
    assert "authPass" not in raw and ("vrrp" not in raw or cfg.topo.uses_vrrp)
    moved = slots.relocate(cfg, 9, ["rs-no-vip"], None, "hard" if cfg.preempt else None)
    assert parse_config(to_raw(moved), template) == moved and moved.faults == ("rs-no-vip",)
    assert moved.verify.ready_timeout >= slots.EPHEMERAL_READY_TIMEOUT_S


def test_teardown_record_tells_destroys_own_leaks_from_pending_creates() -> None:
    """Only objects whose create the state held as pending may be left to the purge; anything else destroy
    left is its own leak (files follow their objects and are not judged)."""
    from types import SimpleNamespace

    from lvslab.runner.stacks import Teardown, pending_creates

    deployment = {"pending_operations": [
        {"type": "creating", "resource": {"inputs": {"name": "lvs-lab-ci1-abc-web1"}}},
        {"type": "creating", "resource": {"inputs": {"name": "lvs-lab-ci1-abc-web1.qcow2"}}},
        {"type": "deleting", "resource": {"inputs": {"name": "lvs-lab-ci1-abc-old"}}},
        {"type": "creating", "resource": {"inputs": {}}},
    ]}
    stack = SimpleNamespace(export_stack=lambda: SimpleNamespace(deployment=deployment))
    pending = pending_creates(stack)  # type: ignore[arg-type]
    assert pending == ["lvs-lab-ci1-abc-web1", "lvs-lab-ci1-abc-web1.qcow2"]
    record = Teardown(pending_creates=pending, left_by_destroy={
        "domains": ["lvs-lab-ci1-abc-web1"], "volumes": ["lvs-lab-ci1-abc/lvs-lab-ci1-abc-web1.qcow2"],
        "files": ["/var/lib/lvs-lab/console/web1.log"]})
    assert record.unexplained == []
    record.left_by_destroy["domains"].append("lvs-lab-ci1-abc-director1")  # created, recorded, not destroyed
    assert record.unexplained == ["lvs-lab-ci1-abc-director1"]
    empty = SimpleNamespace(export_stack=lambda: SimpleNamespace(deployment={}))
    assert pending_creates(empty) == []  # type: ignore[arg-type]


def test_a_failed_inject_is_one_line_not_a_traceback(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A batch of faults runs on the lab loaded once; a fault whose command fails on a node ends the batch
    (the lab may be broken) with one result line, not a traceback; the faults after it do not run."""
    import argparse
    import json

    from lvslab.runner import inject

    ran: list[str] = []

    def one(fault: object, spec: object, key: str, expect: object, recheck: bool) -> int:
        ran.append(fault.name)  # type: ignore[attr-defined]
        if fault.name == "nopreempt-on":  # type: ignore[attr-defined]
            raise inject.FaultError("'systemctl reload keepalived' on director1 failed: keepalived.service is not "
                                    "active")
        return 0

    loads: list[str] = []
    monkeypatch.setattr(inject, "select_stack", lambda name: loads.append(name) or object())
    monkeypatch.setattr(inject, "lab_config", lambda stack, name: None)
    monkeypatch.setattr(inject, "derive", lambda cfg: None)
    monkeypatch.setattr(inject, "verify_spec", lambda facts: None)
    monkeypatch.setattr(inject, "private_key_of", lambda stack: "-----KEY-----")
    monkeypatch.setattr(inject, "_inject_check_repair", one)
    args = argparse.Namespace(stack="ci1-abc", fault=["rs-no-vip", "nopreempt-on", "preempt-on"], expect=None,
                              recheck=False)
    assert inject.cmd_fault(args) == 1
    assert ran == ["rs-no-vip", "nopreempt-on"] and loads == ["ci1-abc"]
    out = capsys.readouterr().out
    line = next(li for li in out.splitlines() if li.startswith(inject.RESULT_LINE))
    assert json.loads(line[len(inject.RESULT_LINE):]) == {
        "fault": "nopreempt-on", "error": "'systemctl reload keepalived' on director1 failed: keepalived.service is "
                                          "not active"}
    assert "Traceback" not in out
    args.expect = ["real-server-config.dr"]  # one --expect for three --fault: refused before anything runs
    assert inject.cmd_fault(args) == 2 and ran == ["rs-no-vip", "nopreempt-on"]
