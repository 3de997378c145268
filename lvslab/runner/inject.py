"""Runtime faults on a running lab (lvslab.faults.RUNTIME_FAULTS): inject, run the steps that must catch it,
repair, run them again."""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from lvslab.faults import RUNTIME_FAULTS, Fault
from lvslab.hypervisor import parse_uri
from lvslab.model import derive, verify_spec
from lvslab.runner.guard import log
from lvslab.runner.stacks import lab_config, private_key_of, select_stack


class FaultError(RuntimeError):
    """A fault's inject or repair command failed on a node: said in one line, no traceback."""


RESULT_LINE = "fault-result: "  # the last line of `fault`: its result as one line of JSON, for tests and CI


def cmd_fault(args: argparse.Namespace) -> int:
    """Break a running lab one way, show the named assertion fails, repair it, wait for the lab to settle back
    (with --recheck: show the steps pass again); several --fault run one after another on the lab, loaded once
    (each `fault` process costs seconds of pulumi calls). A command that fails on a node ends the run with one
    line saying which (and a fault-result line), not a traceback. Exit status 0 when every fault went as
    expected."""
    expects = args.expect or []
    if expects and len(expects) != len(args.fault):
        log(f"--expect given {len(expects)} times for {len(args.fault)} --fault: give one per fault, in order")
        return 2
    stack = select_stack(args.stack)
    spec = verify_spec(derive(lab_config(stack, args.stack)))
    key_text = private_key_of(stack)
    if not key_text:
        log(f"stack {args.stack} has no sshPrivateKey output: is the lab up?")
        return 1
    worst = 0
    for i, name in enumerate(args.fault):
        try:
            worst = max(worst, _inject_check_repair(RUNTIME_FAULTS[name], spec, key_text,
                                                    expects[i] if expects else None, args.recheck))
        except FaultError as exc:
            log(f"fault {name}: {exc}")
            print(f"{RESULT_LINE}{json.dumps({'fault': name, 'error': str(exc)})}", flush=True)
            return 1  # the lab may be left broken: the next faults would say nothing true
    return worst


SCRIPT_TIMEOUT_S = 150  # an inject or repair may wait up to 60 s on the node (lvslab.faults) after a reload


def _run_on(key: Any, node: Any, script: str, retry: bool) -> None:
    """A fault's inject or repair on one node. Only a repair (written to be run twice) is retried when the node
    does not answer in time: seen in CI, an inject retried after its own 60 s wait overwrote the saved config
    its repair restores, and the next fault found the BACKUP still broken."""
    from lvslab.verify.probe import ssh

    try:
        out = ssh(key, node.address, script, timeout=SCRIPT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        status = ssh(key, node.address, "systemctl status keepalived --no-pager -n 5; uptime", timeout=60).stdout
        if not retry:
            raise FaultError(f"{script!r} on {node.name}: no answer within {SCRIPT_TIMEOUT_S} s. Node says:\n"
                             f"{status}") from None
        log(f"{script!r} on {node.name}: no answer within {SCRIPT_TIMEOUT_S} s; retrying. Node says:\n{status}")
        out = ssh(key, node.address, script, timeout=SCRIPT_TIMEOUT_S)
    if out.returncode != 0:
        raise FaultError(f"{script!r} on {node.name} failed (exit {out.returncode}): "
                         f"{(out.stderr.strip() or out.stdout.strip())[-800:]}")


def _wait_vrrp(ctx: Any, targets: Any) -> None:
    time.sleep(ctx.spec.failover_bound_s + 2)


def _wait_health_check(ctx: Any, targets: Any) -> None:
    """Until no target is in the VIP holder's table with a weight above 0 (seen in CI without it: nginx stopped on
    a real server, the restore step ran before keepalived's health check had noticed, and passed)."""
    from lvslab.verify.bounds import health_windows
    from lvslab.verify.ipvsadm import parse_ipvsadm_list
    from lvslab.verify.live import ipvs_list

    limit = health_windows(ctx.spec.health_check)[0] + 10  # the removal bound, plus SSH round trips
    deadline = time.monotonic() + limit
    wanted = {node.address for node in targets}
    while time.monotonic() < deadline:
        table = parse_ipvsadm_list(ipvs_list(ctx, ctx.active_director()))
        if not any(table.get(a, {}).get("weight", 0) > 0 for a in wanted):
            return
        time.sleep(1)
    raise FaultError(f"the health checker kept {', '.join(n.name for n in targets)} in the IPVS table "
                     f"for {limit:g} s after the inject: the fault cannot be shown")


# lvslab.faults.SETTLES: how the runner waits for each (a test keeps the two tables' keys equal).
def _relearn_vip_neighbour(spec: Any) -> None:
    """A fault may have pointed this host's ARP entry for the VIP at another node (rs-announces-vip): it is set
    to the MASTER's MAC again (the lab settled: the VIP is there), stale, so the next packet confirms it. Not a
    request to the VIP: that would leave an IPVS connection (and a persistence template) behind. Kept, not
    deleted: a fault that poisons it needs one (Linux updates, never creates, an entry from a gratuitous ARP).
    Local labs only: a remote lab's client is on its hypervisor."""
    if not parse_uri(spec.uri).remote:
        subprocess.run(["ip", "neigh", "replace", spec.vip, "lladdr", spec.master.mac, "dev", spec.bridge, "nud",
                        "stale"], capture_output=True)


SETTLE_WAITS: dict[str, Callable[[Any, Any], None]] = {
    "": lambda ctx, targets: None,
    "vrrp": _wait_vrrp,
    "health-check": _wait_health_check,
}


def _inject_check_repair(fault: Fault, spec: Any, key_text: str, expect: str | None, recheck: bool) -> int:
    from lvslab.verify.context import StepContext
    from lvslab.verify.failure import CheckFailed
    from lvslab.verify.live import lab_settled
    from lvslab.verify.probe import SshKey
    from lvslab.verify.run import run as run_step

    targets = {"real_servers": spec.real_servers, "one_real_server": spec.real_servers[:1],
               "last_real_server": spec.real_servers[-1:],
               "directors": spec.directors, "master": (spec.master,), "backup": (spec.backup,)}[fault.targets]
    expected = expect or fault.expected(spec.lb_kind)
    result: dict[str, Any] = {"fault": fault.name, "expected_assertion": expected}
    with SshKey(key_text, parse_uri(spec.uri).jump_options()) as key:
        def on_all(script: str, retry: bool = False) -> None:
            for node in targets:
                _run_on(key, node, script, retry)
        lab = {"vip": spec.vip, "port": spec.port, "algo": spec.lb_algo, "persistence": spec.persistence,
               "persistence_long": 6 * spec.persistence, "timeouts": " ".join(map(str, spec.lvs_timeouts)),
               "gateway": spec.gateway_vip}
        try:
            on_all(fault.inject.format(**lab))
        except FaultError:
            # Half-injected: put back what can be put back before saying so (the next fault starts from it).
            try:
                on_all(fault.repair.format(**lab), retry=True)
            except FaultError as exc:
                log(f"repair after the failed inject failed too: {exc}")
            raise

        def run_steps() -> bool:
            return all(run_step(step, replace(spec, **dict(fault.verify)), key_text)["passed"]
                       for step in fault.steps)

        t0 = time.monotonic()
        try:
            SETTLE_WAITS[fault.settle](StepContext(spec, key), targets)  # a settle that fails still repairs
            run_steps()
            result["failed_assertion"] = None
        except CheckFailed as exc:
            result.update(failed_assertion=getattr(exc, "assertion", exc.check), message=str(exc))
        finally:
            result["until_caught_s"] = round(time.monotonic() - t0, 1)  # settle + steps: what CI pays per fault
            on_all(fault.repair.format(**lab), retry=True)
        try:
            # VRRP election, heartbeat, health checks: waited for, not slept (lvslab.verify.live.lab_settled)
            # Settled is the lab's initial state (VIP on the MASTER, every real server in the table, heartbeat
            # agreeing); --recheck also runs the fault's steps again (CI leaves that out: the lab's own
            # verification showed them passing, and re-running them cost CI about 350 s).
            result["settled_after_repair_s"] = lab_settled(StepContext(spec, key))
            _relearn_vip_neighbour(spec)
            result["after_repair"] = run_steps() if recheck else True
        except CheckFailed as exc:
            result["after_repair"] = f"still failing: {exc}"
        result["seconds"] = round(time.monotonic() - t0, 1)
    print(json.dumps(result, indent=2))
    print(f"{RESULT_LINE}{json.dumps(result)}", flush=True)
    ok = result["failed_assertion"] == expected and result["after_repair"] is True
    log(f"fault {fault.name}: assertion {result['failed_assertion']} failed (expected {expected}); "
        f"after repair: {result['after_repair']} -> {'OK' if ok else 'WRONG'}")
    return 0 if ok else 1
