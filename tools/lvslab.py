"""lvs-lab runner (Pulumi Automation API): bring a lab up and verify it, tear it down, or run an ephemeral
CI cycle (unique stack, up, verify, idempotency preview, always destroy, leak check, artefacts).

  lvslab.py up [--stack dev]            create/update the lab and verify it (summary printed)
  lvslab.py destroy [--stack dev] [--rm]
  lvslab.py ephemeral [--template ci] [--keep] [--fault F ...] [--expect-fail CHECK] [--artefacts DIR]
                      [--real-servers N] [--json FILE]

Run it inside the lab's network namespace (the Makefile does), with tools/env.sh's environment.
"""

from __future__ import annotations

import argparse
import fcntl
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pulumi import automation as auto

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lvslab.config import PROJECT, LabConfig, parse_config  # noqa: E402
from lvslab.faults import RUNTIME_FAULTS  # noqa: E402
from lvslab.hypervisor import parse_uri, place  # noqa: E402
from lvslab.inventory import lab_leftovers, purge  # noqa: E402
from lvslab.lab.topology import DEFAULT_TOPOLOGY, TOPOLOGIES  # noqa: E402
from lvslab.model import derive, verify_spec  # noqa: E402
from lvslab.stackfile import unchanged_by_pulumi  # noqa: E402

EPHEMERAL_READY_TIMEOUT_S = 1800
DOMAIN_CREATED = re.compile(r"libvirt:index:Domain (\S+)-node-domain created")
SLOTS = Path(os.environ.get("LVSLAB_RUN_DIR", "/run/lvs-lab")) / "ci-slots"


def log(msg: str) -> None:
    print(f"[lvs-lab {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Interrupted(Exception):
    pass


class SignalGuard:
    """SIGINT/SIGTERM: stop the running pulumi (our child, by PID) gracefully, then let the caller clean up."""

    def __init__(self) -> None:
        self.fired = threading.Event()
        self._second: threading.Timer | None = None

    def __enter__(self) -> SignalGuard:
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *_: object) -> None:
        # The guarded operation is over: its second interrupt must not hit the cleanup's own pulumi calls
        # (seen in CI: `pulumi stack rm` after the destroy killed by it, exit -2, no report written).
        if self._second is not None:
            self._second.cancel()
        for s, h in self._old.items():
            signal.signal(s, h)

    def _handle(self, signum: int, _frame: object) -> None:
        if self.fired.is_set():
            return
        self.fired.set()
        log(f"signal {signum}: cancelling the running operation, then cleaning up")
        self._interrupt_children()
        # pulumi finishes in-flight steps on the first SIGINT; a long check would delay the cleanup, so a
        # second SIGINT after a grace period stops it (checks change no infrastructure).
        self._second = threading.Timer(self.grace_seconds, self._interrupt_children)
        self._second.daemon = True
        self._second.start()

    grace_seconds = 20.0

    @staticmethod
    def _interrupt_children() -> None:
        for pid in _child_pids(os.getpid()):
            try:
                os.kill(pid, signal.SIGINT)
            except ProcessLookupError:
                pass


def _child_pids(parent: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            pids.append(int(stat.parent.name))
    return pids


def run_guarded(guard: SignalGuard, fn: Callable[[], Any]) -> Any:
    """Run fn in a thread so signals are handled in the main thread while pulumi runs."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.2)
    if "error" in box:
        raise box["error"]
    if guard.fired.is_set():
        raise Interrupted("interrupted by signal")
    return box.get("value")


def select_stack(name: str) -> auto.Stack:
    return auto.create_or_select_stack(stack_name=name, work_dir=str(ROOT))


def outputs_of(stack: auto.Stack) -> dict[str, Any]:
    return {k: v.value for k, v in stack.outputs().items()}


def print_summary(outputs: dict[str, Any]) -> None:
    from lvslab.report import summary

    if outputs.get("verification"):
        print(summary(outputs["verification"]), flush=True)
    print(f"VIP: {outputs.get('vipUrl')}  MASTER: {outputs.get('master')}  domain type: {outputs.get('domainType')}")


def _step_events(seen: list[tuple[str, str]], first_step_at: list[float],
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
    stack.preview(on_output=lambda _line: None, on_event=_step_events(seen, []), color="never")
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
        on_event = _step_events(seen, first_step_at, (lambda: watching.stop()) if watching else lambda: None)
        with SignalGuard() as guard:
            t0 = time.monotonic()
            run_guarded(guard, lambda: stack.up(on_output=print, on_event=on_event, color="never"))
            log(f"up of {args.stack} finished in {time.monotonic() - t0:.0f} s")
    except (auto.errors.CommandError, Interrupted) as exc:
        # pulumi has printed the details; `make destroy` tears down whatever was created.
        log(f"up of {args.stack} FAILED: {_first_error(str(exc))}")
        return 1
    finally:
        if poller is not None:
            poller.stop()
            watch = vip_during(poller.events, t0, first_step_at[0] if first_step_at else time.monotonic())
            print("vip-watch: " + json.dumps(watch))
            log(f"VIP during the change ({watch['seconds']} s, until the verification began): "
                f"{watch['requests']} requests, {watch['failed']} failed")
    print_summary(outputs_of(stack))
    return 0


def cmd_destroy(args: argparse.Namespace) -> int:
    stack = select_stack(args.stack)
    with SignalGuard() as guard:
        try:
            run_guarded(guard, lambda: stack.destroy(on_output=print, color="never", continue_on_error=True))
        except auto.errors.CommandError as exc:
            log(f"destroy failed; the stack is kept so it can be retried: {_first_error(str(exc))}")
            return 1
    leaks = leak_check(stack, args.stack)
    if args.rm and not leaks:
        stack.workspace.remove_stack(args.stack, force=True)
        match = re.fullmatch(r"ci(\d+)-[0-9a-f]+", args.stack)
        if match:  # an ephemeral lab kept with --keep: its generated stack file and slot go too
            (ROOT / "stacks" / f"Pulumi.{args.stack}.yaml").unlink(missing_ok=True)
            shutil.rmtree(SLOTS / match.group(1), ignore_errors=True)
    return 1 if leaks else 0


def leak_check(stack: auto.Stack, stack_name: str, purge_left: bool = False) -> dict[str, list[str]]:
    """Everything the lab's name prefix or paths still show on the host (libvirt objects, seed ISOs, pool
    and console files), independent of Pulumi's state. With `purge_left` (after an interrupted up, whose
    in-flight creates the state never recorded), what is left is removed by name and checked again."""
    facts = derive(lab_config(stack, stack_name))
    leaks = lab_leftovers(facts)
    if leaks and purge_left:
        log(f"pulumi destroy left {leaks} (creates in flight when the update was interrupted are not in the "
            "state): removing them by name")
        purge(facts)
        leaks = lab_leftovers(facts)
    if leaks:
        log(f"LEAK CHECK FAILED: left behind {leaks}")
    else:
        hv = parse_uri(facts.cfg.libvirt_uri)
        where = f" on hypervisor {hv.name}" if hv.remote else ""
        log(f"leak check: no libvirt domain, network, pool or volume with prefix {facts.prefix}- is left{where}, "
            f"and no file under {facts.pool_path} or {facts.console_dir}{where}, or {facts.seed_dir} here")
    return leaks


def resource_types(stack: auto.Stack) -> list[str]:
    """The resource types in the stack's state (only libvirt:*, command:*, pulumi:* and lvslab:* expected)."""
    deployment = stack.export_stack().deployment or {}
    return sorted({r["type"] for r in deployment.get("resources", [])})


# --- day 2: re-verify and inspect a running lab ---------------------------------------------------------

class LabMissing(Exception):
    """What `verify`/`status` need is not there; the message says what to do."""


def running_lab(name: str) -> tuple[auto.Stack, Any, str]:
    """The stack (never created here), its verification spec and SSH key, and the host services it needs
    (libvirt reachable, the lab's bridge in this network namespace); LabMissing says which is missing."""
    try:
        stack = auto.select_stack(stack_name=name, work_dir=str(ROOT))
    except auto.errors.StackNotFoundError:
        known = sorted(p.name.split(".")[1] for p in (ROOT / "stacks").glob("Pulumi.*.yaml"))
        raise LabMissing(f"no stack {name!r} in the state backend (never brought up, or destroyed with --rm; stack "
                         f"files: {', '.join(known)}): bring the lab up with `make up STACK={name}`") from None
    key = private_key_of(stack)
    if not key:
        raise LabMissing(f"stack {name!r} has no lab up (no sshPrivateKey output): `make up STACK={name}`")
    spec = verify_spec(derive(lab_config(stack, name)))
    hv = parse_uri(spec.uri)
    probe = subprocess.run(hv.command(["virsh", "-c", hv.local_uri, "uri"]), capture_output=True, text=True)
    if probe.returncode != 0:
        where = f"on hypervisor {hv.name} (over SSH)" if hv.remote else "here: start the host services with " \
            "`make host-start`"
        raise LabMissing(f"libvirt at {spec.uri} is not reachable ({probe.stderr.strip()[-200:]}) {where}")
    if not hv.remote and not Path("/sys/class/net", spec.bridge).exists():
        raise LabMissing(f"the lab's bridge {spec.bridge} is not in this network namespace: run inside the lab's "
                         f"namespace (`make verify STACK={name}` / `make status STACK={name}` do)")
    return stack, spec, key


def cmd_verify(args: argparse.Namespace) -> int:
    """Re-run the lab's verification steps against the running lab (nothing is created or replaced); the exit
    status is the result."""
    from lvslab.report import summary
    from lvslab.verify.failure import CheckFailed
    from lvslab.verify.registry import steps_for
    from lvslab.verify.run import run as run_step

    try:
        _, spec, key = running_lab(args.stack)
    except LabMissing as exc:
        log(str(exc))
        return 2
    results: dict[str, dict[str, Any]] = {}
    failed = None
    for step in steps_for(spec):
        log(f"step {step} ...")
        try:
            results[step] = run_step(step, spec, key)
        except CheckFailed as exc:
            results[step] = {"passed": False, "error": str(exc)}
            failed = str(exc)
            break
    print(summary(results), flush=True)
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


# --- ephemeral CI environments -----------------------------------------------------------------------

def reserve_slot() -> int:
    """A slot number no other runner on this host holds: it picks the bridge name and subnet."""
    SLOTS.mkdir(parents=True, exist_ok=True)
    for slot in range(1, 200):
        try:
            (SLOTS / str(slot)).mkdir()
            (SLOTS / str(slot) / "pid").write_text(str(os.getpid()))
            return slot
        except FileExistsError:
            pid_file = SLOTS / str(slot) / "pid"
            if (SLOTS / str(slot) / "kept").exists():
                continue  # a lab kept with --keep still uses this bridge and subnet (destroy frees it)
            if pid_file.exists() and not Path(f"/proc/{pid_file.read_text().strip()}").exists():
                shutil.rmtree(SLOTS / str(slot), ignore_errors=True)  # stale: its runner is gone
    raise RuntimeError("no free CI slot")


def choose_hypervisor(slot: int, candidates: list[str], default: str) -> str:
    """Place the lab of `slot` on one of the candidate libvirt URIs ("local" = the template's own) round-robin
    by the labs the other slots hold (lvslab.hypervisor.place), and record the choice in the slot."""
    uris = [default if c == "local" else c for c in candidates] or [default]
    for uri in uris:
        parse_uri(uri)  # a bad URI stops the run here, before any resource
    with open(SLOTS / ".placement.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        in_use = [f.read_text() for f in SLOTS.glob("*/hypervisor") if f.parent.name != str(slot)]
        uri = place(uris, in_use)
        (SLOTS / str(slot) / "hypervisor").write_text(uri)
    return uri


def ephemeral_config(template: dict[str, Any], slot: int, faults: list[str],
                     real_servers: int | None, failover_mode: str | None = None) -> dict[str, Any]:
    """Template config moved to its own bridge and /24 so several labs can run side by side."""
    cfg = json.loads(json.dumps(template))
    ns = f"{PROJECT}:"
    old = ipaddress.IPv4Network(cfg[ns + "network"]["subnet"])
    new = ipaddress.IPv4Network(f"10.200.{slot}.0/24")

    def move(addr: str) -> str:
        return str(new.network_address + (int(ipaddress.IPv4Address(addr)) - int(old.network_address)))

    network = cfg[ns + "network"]
    cfg[ns + "network"] = {"bridge": f"lvsci{slot}", "subnet": str(new), "hostAddress": move(network["hostAddress"])}
    if "clientSubnet" in network:  # LVS-NAT: the VIP and the client in a second subnet, moved alike
        old_client = ipaddress.IPv4Network(network["clientSubnet"])
        new_client = ipaddress.IPv4Network(f"10.201.{slot}.0/24")

        def move_client(addr: str) -> str:
            return str(new_client.network_address + (int(ipaddress.IPv4Address(addr)) -
                                                     int(old_client.network_address)))

        cfg[ns + "network"]["clientSubnet"] = str(new_client)
        if "clientAddress" in network:
            cfg[ns + "network"]["clientAddress"] = move_client(network["clientAddress"])
        cfg[ns + "vip"] = move_client(cfg[ns + "vip"])
        lvs = cfg[ns + "lvs"]
        if "gatewayVip" in lvs:
            lvs["gatewayVip"] = move(lvs["gatewayVip"])
    else:
        cfg[ns + "vip"] = move(cfg[ns + "vip"])
    for d in cfg[ns + "directors"]:
        d["address"] = move(d["address"])
    if ns + "realServers" in cfg:  # (topology nginx-ha has none)
        servers = cfg[ns + "realServers"]
        if real_servers:
            servers = [{"name": f"web{i}", "address": move(str(old.network_address + 20 + i)), "weight": 1}
                       for i in range(1, real_servers + 1)]
        else:
            for s in servers:
                s["address"] = move(s["address"])
        cfg[ns + "realServers"] = servers
    if TOPOLOGIES[cfg.get(ns + "topology", DEFAULT_TOPOLOGY)].uses_vrrp:  # (else heartbeat moves its VIP)
        cfg[ns + "vrrp"] = {**cfg.get(ns + "vrrp", {}), "virtualRouterId": 100 + slot % 150}
    if faults:
        cfg[ns + "faults"] = faults
    verify = dict(cfg.get(ns + "verify", {}))
    # Ephemeral labs boot next to each other (CI runs two at once on two emulated cores): allow for it.
    verify["readyTimeout"] = max(int(verify.get("readyTimeout", 0)), EPHEMERAL_READY_TIMEOUT_S)
    if failover_mode:
        verify["failoverMode"] = failover_mode
    cfg[ns + "verify"] = verify
    return cfg


def private_key_of(stack: auto.Stack) -> str | None:
    """The lab's SSH private key: the stack's secret output `sshPrivateKey` (decrypted only in memory). An
    update that failed (a failing check) saved no stack outputs; then it comes from the key resource's
    secret stdout in the state."""
    output = stack.outputs().get("sshPrivateKey")
    if output is not None and output.value:
        return str(output.value)
    from lvslab.commands import split_key_pair

    for res in (stack.export_stack().deployment or {}).get("resources", []):
        if res.get("type") == "command:local:Command" and res.get("urn", "").endswith("-credentials-ssh-key"):
            stdout = res.get("outputs", {}).get("stdout")
            if isinstance(stdout, dict):  # a secret, as `stack export --show-secrets` shows it
                stdout = json.loads(stdout.get("plaintext", '""'))
            if stdout:
                return split_key_pair(str(stdout))[1]
    return None


def lab_config(stack: auto.Stack, name: str) -> LabConfig:
    raw = {}
    for key, item in stack.get_all_config().items():
        ns, _, short = key.partition(":")
        if ns == PROJECT and short != "authPass":
            try:
                raw[short] = json.loads(item.value)
            except json.JSONDecodeError:
                raw[short] = item.value
    return parse_config(raw, name, auth_pass=None)


def collect_artefacts(stack: auto.Stack, name: str, dest: Path, extra: dict[str, str]) -> None:
    """Diagnostics before destroy: consoles, cloud-init logs, the HA daemon's journal and ipvsadm, event log."""
    from lvslab.verify.probe import SshKey, ssh

    dest.mkdir(parents=True, exist_ok=True)
    for fname, text in extra.items():
        (dest / fname).write_text(text)
    facts = derive(lab_config(stack, name))
    hv = parse_uri(facts.cfg.libvirt_uri)
    if hv.remote:  # the console logs are on the hypervisor
        (dest / "consoles").mkdir(exist_ok=True)
        for node in facts.nodes:
            out = subprocess.run(hv.command(["cat", node.console_log]), capture_output=True)
            if out.returncode == 0:
                (dest / "consoles" / os.path.basename(node.console_log)).write_bytes(out.stdout)
    elif os.path.isdir(facts.console_dir):
        shutil.copytree(facts.console_dir, dest / "consoles", dirs_exist_ok=True)
    try:
        key_text = private_key_of(stack)
    except auto.errors.CommandError as exc:
        (dest / "outputs-error.txt").write_text(str(exc))
        return
    if not key_text:
        return
    with SshKey(key_text, hv.jump_options()) as key:
        for node in facts.nodes:
            journal = facts.cfg.topo.ha_log_command  # the HA daemon's log (keepalived's, heartbeat's)
            role_script = (f"{journal}; ipvsadm -Ln; ipvsadm -Ln --stats; ip addr"
                           if node.role == "director" else
                           "systemctl status nginx --no-pager; ip addr; sysctl -a 2>/dev/null | grep arp_")
            script = ("cloud-init status --long; systemd-analyze; systemd-analyze blame | head -25; "
                      "cat /var/log/cloud-init-output.log; " + role_script)
            try:
                out = ssh(key, node.address, script, timeout=60)
                (dest / f"{node.name}.txt").write_text(out.stdout + out.stderr)
            except subprocess.TimeoutExpired:
                (dest / f"{node.name}.txt").write_text("ssh timed out")
    log(f"artefacts in {dest}")


def ready_after_up_start(started_at: dict[str, float], verification: dict[str, Any] | None) -> dict[str, float]:
    """When each node was ready, in seconds from the start of `up` (make bench's target): its domain's
    creation plus the guest uptime at which cloud-init finished (read from its console). Not the ready
    command's end, which also waits for SSH dials and keeps the boot profile."""
    nodes = ((verification or {}).get("readiness") or {}).get("nodes") or {}
    return {name: round(started_at[name] + r["boot_to_ready_s"], 1) for name, r in nodes.items()
            if name in started_at and r.get("boot_to_ready_s") is not None}


def cmd_ephemeral(args: argparse.Namespace) -> int:
    t_start = time.monotonic()
    slot = reserve_slot()
    name = f"ci{slot}-{secrets.token_hex(3)}"
    template = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{args.template}.yaml").read_text())["config"]
    config = ephemeral_config(template, slot, args.fault, args.real_servers, args.failover_mode)
    candidates = [c.strip() for c in args.hypervisors.split(",") if c.strip()]
    uri = choose_hypervisor(slot, candidates, config.get(f"{PROJECT}:libvirtUri", "qemu:///system"))
    config[f"{PROJECT}:libvirtUri"] = uri
    stack_file = ROOT / "stacks" / f"Pulumi.{name}.yaml"
    stack_file.write_text(yaml.safe_dump({"config": config}))
    report: dict[str, Any] = {"stack": name, "slot": slot, "hypervisor": parse_uri(uri).name, "phases": {}}
    events: list[str] = []
    failed: list[str] = []
    stack = None
    signals = SignalGuard()
    try:
        with signals as guard:
            stack = select_stack(name)
            log(f"ephemeral stack {name} (bridge lvsci{slot}, subnet 10.200.{slot}.0/24, hypervisor "
                f"{parse_uri(uri).name})")

            def phase(label: str, fn: Callable[[], Any], limit_s: float | None = None) -> Any:
                """Run one pulumi operation; past `limit_s` it is interrupted (it fails, the lab is still
                destroyed) instead of holding the whole run."""
                t0 = time.monotonic()
                watchdog = None
                done = threading.Event()
                if limit_s:
                    def overdue() -> None:
                        log(f"{label} still running after {limit_s:.0f} s: interrupting it")
                        SignalGuard._interrupt_children()  # noqa: SLF001 - pulumi cancels gracefully ...
                        if not done.wait(20):
                            SignalGuard._interrupt_children()  # noqa: SLF001 - ... and stops at the second
                    watchdog = threading.Timer(limit_s, overdue)
                    watchdog.daemon = True
                    watchdog.start()
                try:
                    return run_guarded(guard, fn)
                finally:
                    done.set()
                    if watchdog:
                        watchdog.cancel()
                    report["phases"][label] = round(time.monotonic() - t0, 1)
                    log(f"{label} took {report['phases'][label]} s")

            started_at: dict[str, float] = {}
            t_up = time.monotonic()

            def on_output(line: str) -> None:
                events.append(line)
                print(line, flush=True)
                started = DOMAIN_CREATED.search(line)
                if started and started.group(1) not in started_at:
                    started_at[started.group(1)] = round(time.monotonic() - t_up, 1)

            try:
                phase("up", lambda: stack.up(on_output=on_output, color="never"))
                outputs = outputs_of(stack)
                report["verification"] = outputs.get("verification")
                report["lab"] = {k: v for k, v in outputs.items() if k not in ("sshPrivateKey", "verification")}
                report["ready_after_up_start_s"] = ready_after_up_start(started_at, report["verification"])
                report["domain_started_after_up_start_s"] = dict(started_at)
                print_summary(outputs)
                report["resource_types"] = resource_types(stack)
                preview = phase("preview", lambda: stack.preview(on_output=on_output, color="never"), limit_s=300)
                changes = {k: v for k, v in (preview.change_summary or {}).items() if k != "same"}
                if changes:
                    failed.append(f"idempotency: a preview right after up reports changes {changes}")
                # What libvirt reports back must match what was declared: refresh, then nothing to do.
                phase("refresh", lambda: stack.refresh(on_output=on_output, color="never"), limit_s=300)
                preview = phase("preview-after-refresh", lambda: stack.preview(on_output=on_output, color="never"),
                                limit_s=300)
                changes = {k: v for k, v in (preview.change_summary or {}).items() if k != "same"}
                if changes:
                    failed.append(f"idempotency: a preview after refresh reports changes {changes}")
            except auto.errors.CommandError as exc:
                failed.append("up/verification: " + _first_error(str(exc)))
            except Interrupted:
                failed.append("interrupted")
            if failed and args.artefacts:
                collect_artefacts(stack, name, Path(args.artefacts) / name,
                                  {"events.log": "\n".join(events), "failure.txt": "\n".join(failed)})
            if args.keep:
                log(f"--keep: lab {name} left up (destroy with: tools/lvslab.py destroy --stack {name} --rm)")
    finally:
        if stack is not None and not args.keep:
            # Nothing may stop the teardown half-way: further SIGINT/SIGTERM are ignored until it is done.
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda s, _f: log(f"signal {s} ignored: destroying the lab first"))
            t0 = time.monotonic()
            destroyed = True
            try:
                stack.destroy(on_output=print, color="never", continue_on_error=True)
            except auto.errors.CommandError as exc:
                destroyed = False
                error = _first_error(str(exc))
                if signals.fired.is_set():
                    # An interrupted create can leave a record of an object libvirt never kept ("Domain not
                    # found" on delete): a refresh drops such records, then destroy again.
                    log("destroy after the interrupted update failed: refreshing the state, then destroying again")
                    try:
                        stack.refresh(on_output=print, color="never")
                        stack.destroy(on_output=print, color="never", continue_on_error=True)
                        destroyed = True
                    except auto.errors.CommandError as again:
                        error = _first_error(str(again))
                if not destroyed:
                    failed.append("destroy: " + error)
            report["phases"]["destroy"] = round(time.monotonic() - t0, 1)
            leaks = leak_check(stack, name, purge_left=signals.fired.is_set())
            if leaks:
                failed.append(f"leak check: {leaks}")
            if destroyed and not leaks:
                stack.workspace.remove_stack(name, force=True)
            else:  # keep the state: `tools/lvslab.py destroy --stack NAME --rm` can retry
                args.keep = True
                log(f"stack {name} kept for a retry: tools/lvslab.py destroy --stack {name} --rm")
        if not args.keep:
            stack_file.unlink(missing_ok=True)
            shutil.rmtree(SLOTS / str(slot), ignore_errors=True)
        else:
            (SLOTS / str(slot) / "kept").write_text(name)
    report["failed"] = failed
    report["seconds"] = round(time.monotonic() - t_start, 1)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    if report.get("lab"):
        keep_pictures(report, Path(args.json) if args.json else None, Path(args.artefacts) / name)
    return finish(report, args.expect_fail)


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


def _first_error(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if "check " in ln and "failed" in ln]
    return lines[0] if lines else text.strip().splitlines()[-1][:500]


def finish(report: dict[str, Any], expect_fail: str | None) -> int:
    failed = report["failed"]
    print("\nephemeral lab summary:")
    for label, secs in report["phases"].items():
        print(f"  {label:<10} {secs:>7} s")
    if expect_fail:
        hit = [f for f in failed if f"check {expect_fail} failed" in f]
        others = [f for f in failed if f.startswith(("leak", "destroy"))]
        ok = bool(hit) and not others
        print(f"  expected check {expect_fail} to fail: {'yes' if hit else 'NO'}; failures: {failed}")
        return 0 if ok else 1
    print("  result: " + ("PASS" if not failed else "FAIL: " + "; ".join(failed)))
    return 0 if not failed else 1


def cmd_fault(args: argparse.Namespace) -> int:
    """Break a running lab one way, show the named check fails, repair it, show the check passes again."""
    from lvslab.verify.failure import CheckFailed
    from lvslab.verify.probe import SshKey, ssh
    from lvslab.verify.run import run as run_step

    fault = RUNTIME_FAULTS[args.fault]
    stack = select_stack(args.stack)
    spec = verify_spec(derive(lab_config(stack, args.stack)))
    key_text = private_key_of(stack)
    if not key_text:
        log(f"stack {args.stack} has no sshPrivateKey output: is the lab up?")
        return 1
    targets = {"real_servers": spec.real_servers, "one_real_server": spec.real_servers[:1],
               "directors": spec.directors, "master": (spec.master,), "backup": (spec.backup,)}[fault.targets]
    result: dict[str, Any] = {"fault": fault.name, "expected_check": fault.check}
    with SshKey(key_text, parse_uri(spec.uri).jump_options()) as key:
        def on_all(script: str) -> None:
            for node in targets:
                try:
                    out = ssh(key, node.address, script)
                except subprocess.TimeoutExpired:
                    # Seen once in CI: `systemctl restart keepalived` after kill -9 did not return within
                    # 60 s. Say what the node shows, then try once more with more time.
                    status = ssh(key, node.address, "systemctl status keepalived --no-pager -n 5; uptime",
                                 timeout=60).stdout
                    log(f"{script!r} on {node.name}: no answer within 60 s; retrying. Node says:\n{status}")
                    out = ssh(key, node.address, script, timeout=180)
                if out.returncode != 0:
                    raise RuntimeError(f"{script!r} on {node.name}: {out.stderr.strip()}")
        lab = {"vip": spec.vip, "port": spec.port, "algo": spec.lb_algo, "persistence": spec.persistence}
        on_all(fault.inject.format(**lab))
        if fault.settle:
            time.sleep(spec.failover_bound_s + 2)

        def run_steps() -> bool:
            return all(run_step(step, spec, key_text)["passed"] for step in fault.steps)

        try:
            run_steps()
            result["failed_check"] = None
        except CheckFailed as exc:
            result.update(failed_check=exc.check, message=str(exc))
        finally:
            on_all(fault.repair.format(**lab))
        time.sleep(spec.failover_bound_s + 2)  # VRRP election / health checks settle
        try:
            result["after_repair"] = run_steps()
        except CheckFailed as exc:
            result["after_repair"] = f"still failing: {exc}"
    print(json.dumps(result, indent=2))
    ok = result["failed_check"] == fault.check and result["after_repair"] is True
    log(f"fault {fault.name}: check {result['failed_check']} failed (expected {fault.check}); "
        f"after repair: {result['after_repair']} -> {'OK' if ok else 'WRONG'}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="lvs-lab runner")
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up")
    up.add_argument("--watch", action="store_true",
                    help="poll the VIP during the update and count failed requests until the verification begins")
    preview = sub.add_parser("preview", help="what up would change; says whether a director would be rebuilt")
    preview.add_argument("--stack", default="dev")
    up.add_argument("--stack", default="dev")
    down = sub.add_parser("destroy")
    down.add_argument("--stack", default="dev")
    down.add_argument("--rm", action="store_true", help="also remove the stack")
    eph = sub.add_parser("ephemeral")
    eph.add_argument("--template", default="ci")
    eph.add_argument("--keep", action="store_true", help="keep the lab up for debugging")
    eph.add_argument("--fault", action="append", default=[], help="test-only fault (lvslab/faults.py)")
    eph.add_argument("--expect-fail", help="succeed only if this check fails (and teardown is clean)")
    eph.add_argument("--artefacts", default=str(ROOT / "artefacts"))
    eph.add_argument("--real-servers", type=int)
    eph.add_argument("--failover-mode", choices=["clean", "hard"], help="clean: stop keepalived; hard: freeze VM")
    eph.add_argument("--json", help="write the run report here")
    eph.add_argument("--hypervisors", default=os.environ.get("LVSLAB_HYPERVISORS", ""),
                     help="comma-separated libvirt URIs the labs are placed on round-robin ('local': the "
                          "template's own; default $LVSLAB_HYPERVISORS, else the template's)")
    verify = sub.add_parser("verify", help="re-run the verification against the running lab (exit status = result)")
    verify.add_argument("--stack", default="dev")
    verify.add_argument("--json", help="write the step results here")
    status = sub.add_parser("status", help="each node's state, role, VRRP state and services; the IPVS table")
    status.add_argument("--stack", default="dev")
    fault = sub.add_parser("fault")
    fault.add_argument("--stack", required=True)
    fault.add_argument("--fault", required=True, choices=sorted(RUNTIME_FAULTS))
    args = parser.parse_args(argv)
    command = {"up": cmd_up, "destroy": cmd_destroy, "ephemeral": cmd_ephemeral, "fault": cmd_fault,
               "verify": cmd_verify, "status": cmd_status, "preview": cmd_preview}[args.cmd]
    if args.cmd == "ephemeral":  # its stack file is generated and removed again
        return command(args)
    with unchanged_by_pulumi(ROOT / "stacks" / f"Pulumi.{args.stack}.yaml"):
        return command(args)


if __name__ == "__main__":
    raise SystemExit(main())
