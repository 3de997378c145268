"""The commands on one named lab: preview, up, destroy, verify (re-run the steps) and status."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pulumi import automation as auto

from lvslab.hypervisor import parse_uri
from lvslab.progress import is_dial_retry
from lvslab.runner.access import refresh_ssh_config, remove_ssh_config
from lvslab.runner.ephemeral import DOMAIN_CREATED, boot_progress
from lvslab.runner.fleet import release_kept, stack_lock_message
from lvslab.runner.guard import Interrupted, SignalGuard, log, run_guarded
from lvslab.runner.slots import SLOTS
from lvslab.runner.stacks import (
    LabMissing,
    first_error,
    lab_config,
    leak_check,
    outputs_of,
    print_summary,
    running_lab,
    select_stack,
)
from lvslab.stackfile import stack_file


def step_events(seen: list[tuple[str, str]], first_step_at: list[float],
                 on_first_step: Callable[[], None] = lambda: None) -> Callable[[Any], None]:
    """An on_event callback: records (op, urn) of every engine step and when the first verification step
    (a command:local:Command named <lab>-verification-<step>) started, then calls on_first_step."""
    def on_event(event: Any) -> None:
        pre = getattr(event, "resource_pre_event", None)
        if pre is None or pre.metadata is None:
            return
        seen.append((str(pre.metadata.op.value if hasattr(pre.metadata.op, "value") else pre.metadata.op),
                     pre.metadata.urn))
        if (not first_step_at and pre.metadata.type == "command:local:Command"
                and "-verification-" in pre.metadata.urn and pre.metadata.op != "same"):
            first_step_at.append(time.monotonic())
            on_first_step()
    return on_event


def cmd_preview(args: argparse.Namespace) -> int:
    """What `up` would do to the lab, one line per operation, and whether a director's VM would be rebuilt
    (a day-2 change must not: only its keepalived.conf command updates)."""
    from lvslab.day2 import director_rebuilds, plan

    stack = select_stack(args.stack)
    seen: list[tuple[str, str]] = []
    stack.preview(on_output=lambda _line: None, on_event=step_events(seen, []), color="never")
    changes = plan(seen)
    for op, names in changes.items():
        print(f"  {op:<18} {', '.join(names)}")
    rebuilt = director_rebuilds(changes, [d.name for d in lab_config(stack, args.stack).directors])
    print("preview: " + json.dumps({"changes": changes, "director_rebuilds": rebuilt}))
    log(f"preview of {args.stack}: " + ("no director is rebuilt" if not rebuilt else f"REBUILDS {rebuilt}"))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from lvslab.day2 import vip_during
    from lvslab.verify.probe import Poller

    poller = None
    seen: list[tuple[str, str]] = []
    first_step_at: list[float] = []
    try:
        stack = select_stack(args.stack)
        if args.watch:  # the VIP polled until the verification begins (its steps break the lab on purpose and
            # count connections in ipvsadm, which the polls would skew)
            cfg = lab_config(stack, args.stack)
            if parse_uri(cfg.libvirt_uri).remote:
                log(f"up --watch polls the VIP from this host, but lab {args.stack} runs on the remote hypervisor "
                    f"{parse_uri(cfg.libvirt_uri).name}, whose bridge is reachable only there: run up without --watch")
                return 2
            poller = Poller(cfg.vip, cfg.port, interval=0.2, timeout=1.0).start()
        watching = poller
        on_event = step_events(seen, first_step_at, (lambda: watching.stop()) if watching else lambda: None)
        progress = boot_progress(stack, args.stack)

        def on_output(line: str) -> None:  # the SSH dial retries left out: the boot progress says more
            if not is_dial_retry(line):
                print(line, flush=True)
            started = DOMAIN_CREATED.search(line)
            if started:
                progress.domain_started(started.group(1))
        with SignalGuard() as guard:
            t0 = time.monotonic()
            try:
                run_guarded(guard, lambda: stack.up(on_output=on_output, on_event=on_event, color="never"))
            finally:
                progress.stop()
            log(f"up of {args.stack} finished in {time.monotonic() - t0:.0f} s")
    except (auto.errors.CommandError, Interrupted) as exc:
        # pulumi has printed the details; `make destroy` tears down whatever was created.
        locked = stack_lock_message(args.stack, str(exc))
        log(f"up of {args.stack} FAILED: {locked or first_error(str(exc))}")
        return 1
    finally:
        if poller is not None:
            poller.stop()
            watch = vip_during(poller.events, t0, first_step_at[0] if first_step_at else time.monotonic())
            print("vip-watch: " + json.dumps(watch))
            log(f"VIP during the change ({watch['seconds']} s, until the verification began): "
                f"{watch['requests']} requests, {watch['failed']} failed")
    print_summary(outputs_of(stack))
    config = refresh_ssh_config(args.stack)
    if config is not None:
        log(f"a shell on a node: make ssh STACK={args.stack} NODE=<name>, or ssh -F {config} <name>")
    return 0


def cmd_destroy(args: argparse.Namespace) -> int:
    stack = select_stack(args.stack)
    with SignalGuard() as guard:
        try:
            run_guarded(guard, lambda: stack.destroy(on_output=print, color="never", continue_on_error=True))
        except auto.errors.CommandError as exc:
            locked = stack_lock_message(args.stack, str(exc))
            log(f"destroy failed; the stack is kept so it can be retried: {locked or first_error(str(exc))}")
            return 1
    remove_ssh_config(args.stack)
    leaks = leak_check(stack, args.stack).left
    if args.rm and not leaks:
        stack.workspace.remove_stack(args.stack, force=True)
        match = re.fullmatch(r"ci(\d+)-[0-9a-f]+", args.stack)
        if match:  # an ephemeral lab kept with --keep: its generated stack file and slot go too
            stack_file(args.stack).unlink(missing_ok=True)
            shutil.rmtree(SLOTS / match.group(1), ignore_errors=True)
            release_kept(args.stack)
    return 1 if leaks else 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Re-run the lab's verification steps against the running lab (nothing is created or replaced); the exit
    status is the result."""
    from lvslab.report import summary
    from lvslab.verify.failure import CheckFailed
    from lvslab.verify.registry import steps_for
    from lvslab.verify.run import run as run_step

    try:
        cfg, spec, key = running_lab(args.stack)
    except LabMissing as exc:
        log(str(exc))
        return 2
    results: dict[str, dict[str, Any]] = {}
    failed = None
    skip = cfg.verify.skip
    steps = steps_for(spec, skip)
    if args.steps:
        wanted = [s.strip() for s in args.steps.split(",") if s.strip()]
        unknown = [s for s in wanted if s not in steps_for(spec)]
        if unknown:
            log(f"--steps: {', '.join(unknown)} not a step of this lab (its steps: {', '.join(steps_for(spec))})")
            return 2
        steps = [s for s in steps_for(spec) if s in wanted]
        skip = tuple(s for s in steps_for(spec) if s not in wanted)
    for step in steps:
        log(f"step {step} ...")
        try:
            results[step] = run_step(step, spec, key)
        except CheckFailed as exc:
            results[step] = {"passed": False, "error": str(exc)}
            failed = str(exc)
            break
    print(summary(results, skip), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, sort_keys=True))
    log(f"verify {args.stack}: " + (f"FAILED: {failed}" if failed else f"all {len(results)} steps passed"))
    return 1 if failed else 0


def cmd_status(args: argparse.Namespace) -> int:
    """Each node's domain state, address, role, VRRP state and services, then the IPVS table of the director
    holding the VIP."""
    from lvslab.report import NODE_STATUS_SCRIPT, parse_node_status, services_column, status_table, vrrp_state
    from lvslab.verify.live import ha_daemon, parallel
    from lvslab.verify.probe import SshKey, ssh

    try:
        _, spec, key_text = running_lab(args.stack)
    except LabMissing as exc:
        log(str(exc))
        return 2
    daemon = ha_daemon(spec)
    ha = "vrrp" if spec.topo.uses_vrrp else "heartbeat"  # the HA column: VRRP's or heartbeat's view
    hv = parse_uri(spec.uri)
    with SshKey(key_text, hv.jump_options()) as key:
        def one(node: Any) -> dict[str, str]:
            state = subprocess.run(hv.command(["virsh", "-c", hv.local_uri, "domstate", node.domain]),
                                   capture_output=True, text=True).stdout.strip() or "missing"
            row = {"node": node.name, "domain": node.domain, "state": state, "address": node.address,
                   "role": node.role}
            try:
                out = ssh(key, node.address, NODE_STATUS_SCRIPT.format(vip=spec.vip), timeout=20)
            except subprocess.TimeoutExpired:
                out = None
            if out is None or out.returncode != 0:
                return {**row, ha: "?", "services": "unreachable over SSH"}
            vip, services = parse_node_status(out.stdout)
            return {**row, ha: vrrp_state(node.role, vip, services.get(daemon, "unknown"), daemon),
                    "services": services_column(node.role, services, daemon)}

        rows = parallel(one, spec.nodes)
        print(status_table(rows, ("node", "domain", "state", "address", "role", ha, "services")))
        print(f"VIP {spec.vip}:{spec.port} ({spec.topology}, {spec.lb_kind if spec.real_servers else 'no IPVS'})")
        holder = next((d for d, r in zip(spec.directors, rows, strict=False) if r[ha] == "MASTER"), None)
        if holder is not None and spec.real_servers:
            out = ssh(key, holder.address, "ipvsadm -Ln --stats", timeout=20)
            print(f"IPVS on {holder.name}:\n{out.stdout.rstrip() or out.stderr.strip()}")
    return 0
