"""An ephemeral CI run: a unique stack in a slot, up with the verification, the idempotency previews,
always destroy, the leak check, the report (JSON, pictures) and the exit status."""

from __future__ import annotations

import argparse
import json
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pulumi import automation as auto

from lvslab.config import PROJECT
from lvslab.hypervisor import parse_uri
from lvslab.progress import BootProgress, is_dial_retry, local_consoles
from lvslab.runner.artefacts import collect_artefacts
from lvslab.runner.fleet import FleetError, Heartbeat, Store, redact, runner_id, store_url
from lvslab.runner.guard import Interrupted, SignalGuard, log, run_guarded
from lvslab.runner.slots import SLOTS, candidate_uris, choose_hypervisor, ephemeral_config, reserve_slot
from lvslab.runner.stacks import (
    destroy_stack,
    first_error,
    leak_check,
    outputs_of,
    pending_creates,
    print_summary,
    resource_types,
    select_stack,
)
from lvslab.stackfile import read_stack, write_stack

DOMAIN_CREATED = re.compile(r"libvirt:index:Domain (\S+)-node-domain created")


def ready_after_up_start(started_at: dict[str, float], verification: dict[str, Any] | None) -> dict[str, float]:
    """When each node was ready, in seconds from the start of `up` (make bench's target): its domain's
    creation plus the guest uptime at which cloud-init finished (read from its console). Not the ready
    command's end, which also waits for SSH dials and keeps the boot profile."""
    nodes = ((verification or {}).get("readiness") or {}).get("nodes") or {}
    return {name: round(started_at[name] + r["boot_to_ready_s"], 1) for name, r in nodes.items()
            if name in started_at and r.get("boot_to_ready_s") is not None}


@dataclass
class EphemeralRun:
    """One ephemeral lab's run, shared by its phases: its slot and stack, the report, pulumi's output lines,
    the failures so far, and when each node's domain was created (from the start of up)."""

    name: str
    slot: int
    uri: str
    stack_path: Path
    report: dict[str, Any]
    events: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    started_at: dict[str, float] = field(default_factory=dict)
    stack: auto.Stack | None = None
    t_up: float = 0.0
    progress: BootProgress | None = None
    fleet: Store | None = None  # the fleet store (a team's PostgreSQL), or None: slots in local files
    heartbeat: Heartbeat | None = None

    def save_stack_file(self) -> None:
        """The stack's config file (with pulumi's salt once the stack exists) into the fleet store: a reaper on
        another machine destroys the lab from it."""
        if self.fleet is not None:
            try:
                self.fleet.save_stack_file(self.name, self.stack_path.read_text())
            except FleetError as exc:  # the run goes on; only a reaper elsewhere would lack the file
                log(f"{exc}: the store has no stack file of {self.name} (a reaper on another machine needs it)")

    def on_output(self, line: str) -> None:
        """pulumi's output: all of it into the event log; shown without the SSH dial retries (the boot
        progress says what each node is doing instead)."""
        self.events.append(line)
        if not is_dial_retry(line):
            print(line, flush=True)
        started = DOMAIN_CREATED.search(line)
        if started and started.group(1) not in self.started_at:
            self.started_at[started.group(1)] = round(time.monotonic() - self.t_up, 1)
            if self.progress is not None:
                self.progress.domain_started(started.group(1))

    def phase(self, guard: SignalGuard, label: str, fn: Callable[[], Any], limit_s: float | None = None) -> Any:
        """Run one pulumi operation; past `limit_s` it is interrupted (it fails, the lab is still destroyed)
        instead of holding the whole run."""
        t0 = time.monotonic()
        watchdog = None
        done = threading.Event()
        if limit_s:
            def overdue() -> None:
                log(f"{label} still running after {limit_s:.0f} s: interrupting it")
                SignalGuard.interrupt_children()  # pulumi cancels gracefully ...
                if not done.wait(20):
                    SignalGuard.interrupt_children()  # ... and stops at the second
            watchdog = threading.Timer(limit_s, overdue)
            watchdog.daemon = True
            watchdog.start()
        try:
            return run_guarded(guard, fn)
        finally:
            done.set()
            if watchdog:
                watchdog.cancel()
            self.report["phases"][label] = round(time.monotonic() - t0, 1)
            log(f"{label} took {self.report['phases'][label]} s")


def cmd_ephemeral(args: argparse.Namespace) -> int:
    t_start = time.monotonic()
    try:
        run = _prepare(args)
    except FleetError as exc:
        log(f"ephemeral: {exc}")
        return 2
    signals = SignalGuard()
    try:
        with signals as guard:
            try:
                run.stack = select_stack(run.name)
            except auto.errors.CommandError as exc:  # the state backend cannot be reached: nothing was created
                run.failed.append("state backend: " + first_error(str(exc)))
            else:
                _run_lab(run, args, guard)
    finally:
        _teardown(run, args, signals)
    run.report["failed"] = run.failed
    run.report["seconds"] = round(time.monotonic() - t_start, 1)
    run.report |= {"faults": list(args.fault), "expect_fail": args.expect_fail, "kept": bool(args.keep)}
    if args.json:
        Path(args.json).write_text(json.dumps(run.report, indent=2))
    if run.report.get("lab"):
        keep_pictures(run.report, Path(args.json) if args.json else None, Path(args.artefacts) / run.name)
    keep_ci_reports(run.report, Path(args.artefacts) / run.name)
    return finish(run.report, args.expect_fail)


def _run_lab(run: EphemeralRun, args: argparse.Namespace, guard: SignalGuard) -> None:
    """The lab's stack exists: up, verification, idempotency; artefacts when something failed."""
    assert run.stack is not None
    run.save_stack_file()
    log(f"ephemeral stack {run.name} (bridge lvsci{run.slot}, subnet 10.200.{run.slot}.0/24, hypervisor "
        f"{parse_uri(run.uri).name})")
    _up_and_idempotency(run, guard)
    if run.failed and args.artefacts:
        collect_artefacts(run.stack, run.name, Path(args.artefacts) / run.name,
                          {"events.log": "\n".join(run.events), "failure.txt": "\n".join(run.failed)})
    if args.keep:
        log(f"--keep: lab {run.name} left up (destroy with: tools/lvslab.py destroy --stack {run.name} --rm)")


def _prepare(args: argparse.Namespace) -> EphemeralRun:
    """A slot, a unique stack name, the template moved to the slot, placed on a hypervisor, written. With a
    fleet store (lvslab.runner.fleet) the slot and the placement come from every runner's labs there, and the
    runner beats for its lab until the teardown; otherwise from this host's slot files."""
    template = read_stack(args.template)
    default_uri = template.get(f"{PROJECT}:libvirtUri", "qemu:///system")
    candidates = [c.strip() for c in args.hypervisors.split(",") if c.strip()]
    url, fleet, heartbeat = store_url(), None, None
    if url:
        fleet, runner = Store(url), runner_id()
        slot, name, uri = fleet.claim(runner, candidate_uris(candidates, default_uri),
                                      lambda s: f"ci{s}-{secrets.token_hex(3)}")
        heartbeat = Heartbeat(url, name, runner).start()
        log(f"fleet store {redact(url)}: slot {slot} and hypervisor claimed by runner {runner}")
    else:
        slot = reserve_slot()
        name = f"ci{slot}-{secrets.token_hex(3)}"
        uri = choose_hypervisor(slot, candidates, default_uri)
    config = ephemeral_config(template, slot, args.fault, args.real_servers, args.failover_mode, args.boots_at_once)
    config[f"{PROJECT}:libvirtUri"] = uri
    path = write_stack(name, config)
    report: dict[str, Any] = {"stack": name, "slot": slot, "hypervisor": parse_uri(uri).name, "phases": {}}
    run = EphemeralRun(name=name, slot=slot, uri=uri, stack_path=path, report=report, fleet=fleet,
                       heartbeat=heartbeat)
    run.save_stack_file()
    return run


def _up_and_idempotency(run: EphemeralRun, guard: SignalGuard) -> None:
    """up (with the verification), then a preview, a refresh and a preview again: nothing may change."""
    stack, report = run.stack, run.report
    assert stack is not None
    run.t_up = time.monotonic()
    run.progress = boot_progress(stack, run.name)
    try:
        try:
            run.phase(guard, "up", lambda: stack.up(on_output=run.on_output, color="never"))
        finally:
            run.progress.stop()
        outputs = outputs_of(stack)
        report["verification"] = outputs.get("verification")
        report["lab"] = {k: v for k, v in outputs.items() if k not in ("sshPrivateKey", "verification")}
        report["ready_after_up_start_s"] = ready_after_up_start(run.started_at, report["verification"])
        report["domain_started_after_up_start_s"] = dict(run.started_at)
        print_summary(outputs)
        report["resource_types"] = resource_types(stack)
        preview = run.phase(guard, "preview", lambda: stack.preview(on_output=run.on_output, color="never"),
                            limit_s=300)
        changes = {k: v for k, v in (preview.change_summary or {}).items() if k != "same"}
        if changes:
            run.failed.append(f"idempotency: a preview right after up reports changes {changes}")
        # What libvirt reports back must match what was declared: refresh, then nothing to do.
        run.phase(guard, "refresh", lambda: stack.refresh(on_output=run.on_output, color="never"), limit_s=300)
        preview = run.phase(guard, "preview-after-refresh",
                            lambda: stack.preview(on_output=run.on_output, color="never"), limit_s=300)
        changes = {k: v for k, v in (preview.change_summary or {}).items() if k != "same"}
        if changes:
            run.failed.append(f"idempotency: a preview after refresh reports changes {changes}")
    except auto.errors.CommandError as exc:
        run.failed.append("up/verification: " + first_error(str(exc)))
    except Interrupted:
        run.failed.append("interrupted")


def _teardown(run: EphemeralRun, args: argparse.Namespace, signals: SignalGuard) -> None:
    """Always (unless --keep): destroy, check for leaks, remove the stack; a failed destroy keeps the state
    (and the slot) for `destroy --stack NAME --rm` to retry."""
    stack = run.stack
    if stack is not None and not args.keep:
        # Nothing may stop the teardown half-way: further SIGINT/SIGTERM are ignored until it is done.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda s, _f: log(f"signal {s} ignored: destroying the lab first"))
        t0 = time.monotonic()
        pending = pending_creates(stack)
        destroyed, error = destroy_stack(stack, interrupted=signals.fired.is_set())
        if not destroyed:
            run.failed.append("destroy: " + error)
        run.report["phases"]["destroy"] = round(time.monotonic() - t0, 1)
        record = leak_check(stack, run.name, purge_left=signals.fired.is_set(), pending=pending)
        run.report["teardown"] = asdict(record) | {"unexplained": record.unexplained}
        leaks = record.left
        if leaks:
            run.failed.append(f"leak check: {leaks}")
        elif record.unexplained:
            run.failed.append(f"leak check: pulumi destroy left {record.unexplained}, which the state held as "
                              "created (not pending): removed by name, but destroy alone leaks them")
        if destroyed and not leaks:
            stack.workspace.remove_stack(run.name, force=True)
        else:  # keep the state: `tools/lvslab.py destroy --stack NAME --rm` can retry
            args.keep = True
            log(f"stack {run.name} kept for a retry: tools/lvslab.py destroy --stack {run.name} --rm")
    if run.heartbeat is not None:
        run.heartbeat.stop()
    if not args.keep:
        run.stack_path.unlink(missing_ok=True)
        if run.fleet is None:
            shutil.rmtree(SLOTS / str(run.slot), ignore_errors=True)
    elif run.fleet is None:
        (SLOTS / str(run.slot) / "kept").write_text(run.name)
    if run.fleet is not None:
        _settle_in_store(run, kept=bool(args.keep))


def _settle_in_store(run: EphemeralRun, kept: bool) -> None:
    """The lab's row: freed once destroyed; kept (its slot held until `destroy --stack NAME --rm`) otherwise.
    A store that fails here is said; the row then waits for `reap`."""
    assert run.fleet is not None
    try:
        if kept:
            run.fleet.keep(run.name)
        else:
            run.fleet.release(run.name)
    except FleetError as exc:
        run.failed.append(f"fleet store: {exc}")
        log(f"{exc}: the store still lists {run.name}; `tools/lvslab.py reap` frees it once its heartbeat is stale")
    finally:
        run.fleet.close()


def keep_pictures(report: dict[str, Any], json_path: Path | None, artefacts: Path) -> None:
    """The run's topology and failover pictures, next to the JSON report and in the artefacts folder.
    Diagnostics: a picture that cannot be drawn is said, never a failed run."""
    from lvslab.pictures import write_pictures

    for stem in ([json_path.with_suffix("")] if json_path else []) + [artefacts / "run"]:
        try:
            stem.parent.mkdir(parents=True, exist_ok=True)
            for path in write_pictures(report, stem):
                log(f"picture: {path}")
        except (OSError, subprocess.CalledProcessError, ImportError) as exc:
            log(f"pictures not drawn ({exc})")


def boot_progress(stack: auto.Stack, name: str) -> BootProgress:
    """Each node's boot stages said as they change (from the console logs on this host), started now."""
    from lvslab.model import derive
    from lvslab.runner.stacks import lab_config

    facts = derive(lab_config(stack, name))
    consoles = local_consoles(list(facts.nodes), parse_uri(facts.cfg.libvirt_uri).remote)
    return BootProgress(consoles, lambda text: log(f"boot: {text}")).start()


def keep_ci_reports(report: dict[str, Any], artefacts: Path) -> None:
    """report.json, JUnit report.xml and the self-contained report.html in the run's artefacts folder."""
    from lvslab.ci_reports import write_ci_reports

    artefacts.mkdir(parents=True, exist_ok=True)
    (artefacts / "report.json").write_text(json.dumps(report, indent=2))
    for path in write_ci_reports(report, artefacts):
        log(f"report: {path}")


def finish(report: dict[str, Any], expect_fail: str | None) -> int:
    failed = report["failed"]
    print("\nephemeral lab summary:")
    for label, secs in report["phases"].items():
        print(f"  {label:<10} {secs:>7} s")
    if expect_fail:
        hit = [f for f in failed if f"check {expect_fail} failed" in f]
        others = [f for f in failed if f.startswith(("leak", "destroy"))]
        ok = bool(hit) and not others
        print(f"  expected assertion {expect_fail} to fail: {'yes' if hit else 'NO'}; failures: {failed}")
        return 0 if ok else 1
    print("  result: " + ("PASS" if not failed else "FAIL: " + "; ".join(failed)))
    return 0 if not failed else 1
