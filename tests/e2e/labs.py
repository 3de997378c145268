"""What the e2e modules share: booting a kept ephemeral lab (its module's fixture owns its lifetime: booted on
first use, destroyed when the module ends), the assertions every verified lab meets, runtime faults, day-2
changes and the leak-free destroy. One lab family per module, so `pytest tests/e2e -k <family>` boots only
that lab, any order works, and no more than the pair of tests/e2e/test_pair.py runs at once."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from lvslab.runner.inject import RESULT_LINE
from lvslab.stackfile import read_stack, write_stack
from tests.e2e.conftest import read_report, run_in, start_in

STEPS = ["readiness", "lvs-state", "round-robin", "health-check", "failover", "failback", "restore"]
SORRY = "sorry-server"  # only in labs with lvs.sorryServer (the ci template)


def ephemeral_args(template: str, report: Path, hypervisors: str | None = None,
                   boots_at_once: int | None = None) -> list[str]:
    args = ["ephemeral", "--template", template, "--keep", "--json", str(report)]
    if boots_at_once:
        args += ["--boots-at-once", str(boots_at_once)]
    return [*args, "--hypervisors", hypervisors] if hypervisors else args


def _lab_result(netns: str, code: int, seconds: float, report: Path, output: str, name: str) -> dict[str, Any]:
    print(f"--- lab {name} (exit {code}, {seconds:.0f} s) ---\n" + output[-15000:])
    return {"code": code, "seconds": round(seconds), "netns": netns,
            "report": read_report(report) if report.exists() else None}


@contextmanager
def kept_labs(netns: str, work: Path, templates: dict[str, str],
              hypervisors: str | None = None) -> Iterator[dict[str, dict[str, Any]]]:
    """Boot the labs {name: template} at once (each an ephemeral run with --keep), yield {name: {code, seconds,
    netns, report}}, and destroy whatever is still up when the block ends (a test may have destroyed it)."""
    t0 = time.monotonic()
    logs = {k: work / f"{k}.log" for k in templates}
    # Labs booting side by side here share this host's cores (each alone would boot `cores` VMs at once).
    shared = max(1, len(os.sched_getaffinity(0)) // len(templates)) if len(templates) > 1 and not hypervisors \
        else None
    procs = {k: start_in(netns, *ephemeral_args(t, work / f"{k}.json", hypervisors, shared), log=logs[k])
             for k, t in templates.items()}
    codes = {k: p.wait(timeout=3000) for k, p in procs.items()}
    labs = {k: _lab_result(netns, codes[k], time.monotonic() - t0, work / f"{k}.json", logs[k].read_text(), k)
            | {"boots_at_once": shared} for k in templates}
    try:
        yield labs
    finally:
        for lab in labs.values():
            if lab["report"]:
                run_in(netns, "destroy", "--stack", lab["report"]["stack"], "--rm")


def lab_fixture(name: str, template: str, remote: bool = False) -> Any:
    """A module's `lab` fixture: the one lab `name` of `template` (on the test hypervisor if `remote`), booted
    when a test of the module first asks for it and destroyed when the module ends."""

    @pytest.fixture(scope="module")
    def lab(netns: str, request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
        uri = request.getfixturevalue("remote_hypervisor") if remote else None
        with kept_labs(netns, tmp_path_factory.mktemp(template), {name: template}, hypervisors=uri) as labs:
            yield labs[name] | ({"remote": uri} if remote else {})

    return lab


def lab_run(lab: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    """A runner command on a kept lab, in its namespace and with its environment (a fleet lab's backend)."""
    return run_in(lab["netns"], *args, env=lab.get("env"))


def up(lab: dict[str, Any]) -> dict[str, Any]:
    """The report of a lab that came up (fail the test otherwise)."""
    if not lab["report"] or lab["code"] != 0:
        pytest.fail(f"the lab did not come up (exit {lab['code']})")
    return lab["report"]


def most_booting_at_once(started: dict[str, float], ready: dict[str, float]) -> int:
    """The most first boots in progress at any moment: each node boots from its domain's start to its ready."""
    return max(sum(started[m] <= started[n] < ready[m] for m in ready) for n in ready)


def assert_boots_in_waves(report: dict[str, Any], at_once: int | None = None) -> None:
    """vm.bootsAtOnce auto: as many first boots at once as the hypervisor's cores (the test hypervisor shares
    this machine's), or `at_once` (ephemeral --boots-at-once), and never more; directors first."""
    at_once = at_once or os.cpu_count() or 1
    nodes = report["verification"]["readiness"]["nodes"]
    assert set(report["ready_after_up_start_s"]) == set(nodes)
    started, ready = report["domain_started_after_up_start_s"], report["ready_after_up_start_s"]
    assert most_booting_at_once(started, ready) == min(at_once, len(nodes)), (started, ready)
    roles = {n["name"]: n["role"] for n in report["lab"]["nodes"]}
    if len(nodes) > at_once:
        assert max(started[n] for n, r in roles.items() if r == "director") < min(
            started[n] for n, r in roles.items() if r != "director"), started


def assert_verified(report: dict[str, Any], counts: dict[str, int] | None, health_check_server: str,
                    extra: list[str], preempt: bool = True, boots_at_once: int | None = None) -> None:
    assert report["failed"] == [], report["failed"]  # includes: no changes in preview, nor after refresh
    # The real providers only: no dynamic provider resource in the state.
    assert {t.split(":")[0] for t in report["resource_types"]} == {"pulumi", "lvslab", "libvirt", "command"}
    assert "libvirt:index/domain:Domain" in report["resource_types"]
    assert "command:remote:Command" in report["resource_types"]
    assert not [t for t in report["resource_types"] if "dynamic" in t]
    verification = report["verification"]
    assert sorted(verification) == sorted(STEPS + extra)  # outputs come back key-sorted
    assert_boots_in_waves(report, boots_at_once)
    # (the lab's image runs two cloud-init stages: its local and config stages are masked; the profile is
    # taken once the boot finished, so systemd's kernel/userspace split is in it)
    nodes = verification["readiness"]["nodes"]
    assert all(set(n["boot_profile"]["cloud_init_stages"]) == {"init-network", "modules-final"}
               and n["boot_profile"]["userspace_s"] > 0 for n in nodes.values()), nodes
    rr = verification["round-robin"]
    if counts is None:  # persistence or sh: every request of the one client on one server
        assert len(rr["counts"]) == 1 and sum(rr["counts"].values()) == rr["requests"], rr["counts"]
        counts = rr["counts"]
    assert rr["counts"] == counts and {k: v for k, v in rr["ipvs_conns"].items() if v} == counts
    # hey, the third-party client, ran through the VIP during failover and failback and got answers
    for step in ("failover", "failback"):
        client = verification[step]["third_party_client"]
        assert client["client"] == "hey" and client["requests"] > client["errors"], (step, client)
    failback = verification["failback"]
    assert ("vip_returned_after_start_s" in failback) is preempt and ("vip_stayed_on" in failback) is not preempt
    assert verification["health-check"]["server"] == health_check_server


def run_faults(lab: dict[str, Any], faults: list[tuple[str, str]]) -> subprocess.CompletedProcess[str]:
    """`tools/lvslab.py fault` on a kept lab with every (fault, assertion) in one process, one after another (each
    process costs ~10 s of pulumi calls to load the lab): each fault's result is its own result line."""
    args = ["fault", "--stack", up(lab)["stack"]]
    for fault, assertion in faults:
        args += ["--fault", fault, "--expect", assertion]
    return lab_run(lab, *args)


def fault_result(proc: subprocess.CompletedProcess[str], fault: str | None = None) -> dict[str, Any]:
    """The runner's one-line JSON result of `fault` (default: the last) in a fault run ({} when it printed none)."""
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_LINE):
            result: dict[str, Any] = json.loads(line[len(RESULT_LINE):])
            if fault is None or result.get("fault") == fault:
                return result
    return {}


def assert_fault_caught(proc: subprocess.CompletedProcess[str], assertion: str, fault: str | None = None) -> None:
    """Exactly `assertion` failed under the fault (matched by id, from the runner's JSON), and the lab settled
    back to its initial state after the repair."""
    result = fault_result(proc, fault)
    assert result.get("failed_assertion") == assertion and result.get("after_repair") is True, \
        (result, proc.stdout[-3000:])
    assert result["message"].startswith(f"check {assertion} failed: expected "), result["message"]


def selected_faults(request: pytest.FixtureRequest, table: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (fault, assertion) rows of a module's table whose tests this session runs (-k selects some)."""
    chosen = {item.callspec.params["fault"] for item in request.session.items
              if item.module is request.module and hasattr(item, "callspec") and "fault" in item.callspec.params}
    return [(fault, assertion) for fault, assertion in table if fault in chosen]


def fault_batch(lab: dict[str, Any], request: pytest.FixtureRequest,
                table: list[tuple[str, str]]) -> dict[str, subprocess.CompletedProcess[str]]:
    """The module's selected faults run on its kept lab in one process: {fault: that process}."""
    faults = selected_faults(request, table)
    if not faults:
        return {}
    proc = run_faults(lab, faults)
    return {fault: proc for fault, _ in faults}


def runtime_fault_tests(table: list[tuple[str, str]]) -> tuple[Any, Any]:
    """A module's runtime fault tests: the module fixture running its selected faults on its kept lab in one
    process, and the test of each (fault, assertion) row. In the module:
    `faults_run, test_runtime_fault_fails_its_assertion = runtime_fault_tests(FAULTS)`."""
    @pytest.fixture(scope="module")
    def faults_run(lab: dict[str, Any], request: pytest.FixtureRequest) -> dict[str, Any]:
        return fault_batch(lab, request, table)

    @pytest.mark.parametrize("fault,assertion", table)
    def test_runtime_fault_fails_its_assertion(faults_run: dict[str, Any], fault: str, assertion: str) -> None:
        assert_fault_caught(faults_run[fault], assertion, fault)

    return faults_run, test_runtime_fault_fails_its_assertion


def fault_fails_its_check(lab: dict[str, Any], fault: str, assertion: str) -> subprocess.CompletedProcess[str]:
    """Inject `fault` into a kept lab: exactly `assertion` fails, and the lab settles back after the repair."""
    proc = run_faults(lab, [(fault, assertion)])
    assert_fault_caught(proc, assertion, fault)
    return proc


def destroy_kept(lab: dict[str, Any]) -> None:
    """Destroy a kept lab and check nothing with its prefix is left (the fixture then has nothing to do)."""
    report = up(lab)
    proc = lab_run(lab, "destroy", "--stack", report["stack"], "--rm")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "leak check: no libvirt domain" in proc.stdout
    lab["report"] = None  # already destroyed


def day2_change(lab: dict[str, Any], edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Edit a kept lab's stack config, preview (no director resource rebuilt), then `up --watch` (the VIP
    polled during the change: no failed request before the verification began)."""
    stack = up(lab)["stack"]
    config = read_stack(stack)
    edit(config)
    write_stack(stack, config)
    proc = lab_run(lab, "preview", "--stack", stack)
    assert proc.returncode == 0, proc.stdout[-3000:]
    preview = json.loads(proc.stdout.split("preview: ", 1)[1].splitlines()[0])
    proc = lab_run(lab, "up", "--stack", stack, "--watch")
    print(proc.stdout[-6000:])
    assert proc.returncode == 0, proc.stdout[-3000:]
    watch = json.loads(proc.stdout.split("vip-watch: ", 1)[1].splitlines()[0])
    return {"preview": preview, "watch": watch, "output": proc.stdout}


def status_rows(output: str) -> dict[str, list[str]]:
    """`tools/lvslab.py status`'s node table: {node: its cells after the name}."""
    return {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in output.splitlines() if line.startswith("| ") and not line.startswith("| node ")}
