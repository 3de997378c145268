"""The runner's view of Pulumi stacks: select one, read its outputs and resource types, the running lab's
spec and SSH key, and the leak check after a destroy (independent of Pulumi's state)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pulumi import automation as auto

from lvslab.config import PROJECT, LabConfig, parse_config
from lvslab.hypervisor import parse_uri
from lvslab.inventory import lab_leftovers, purge
from lvslab.model import LabFacts, derive, verify_spec
from lvslab.runner.guard import log
from lvslab.stackfile import ROOT


def select_stack(name: str) -> auto.Stack:
    return auto.create_or_select_stack(stack_name=name, work_dir=str(ROOT))


def outputs_of(stack: auto.Stack) -> dict[str, Any]:
    return {k: v.value for k, v in stack.outputs().items()}


def print_summary(outputs: dict[str, Any]) -> None:
    from lvslab.report import summary

    if outputs.get("verification"):
        print(summary(outputs["verification"]), flush=True)
    print(f"VIP: {outputs.get('vipUrl')}  MASTER: {outputs.get('master')}  domain type: {outputs.get('domainType')}")


@dataclass
class Teardown:
    """What a destroy left, shown rather than assumed: the leak check runs right after `pulumi destroy`; only
    then, after an interrupted `up`, are leftovers purged by name and the check repeated."""

    pending_creates: list[str] = field(default_factory=list)  # libvirt names of creates the state holds as pending
    left_by_destroy: dict[str, list[str]] = field(default_factory=dict)
    purged: dict[str, list[str]] = field(default_factory=dict)
    left: dict[str, list[str]] = field(default_factory=dict)  # after the purge (if any): the leaks

    @property
    def unexplained(self) -> list[str]:
        """libvirt objects destroy left though the state never held their create as pending: destroy's own
        leak (files follow their objects and are not judged here)."""
        objects = [name.rpartition("/")[2] for kind in ("domains", "volumes", "pools", "networks")
                   for name in self.left_by_destroy.get(kind, [])]
        return sorted(n for n in objects if n not in self.pending_creates)


def pending_creates(stack: auto.Stack) -> list[str]:
    """The libvirt names (inputs.name) of the creates Pulumi's state holds as pending: an interrupted `up`
    whose in-flight creates may exist in libvirt without a record Pulumi's destroy would act on."""
    deployment = stack.export_stack().deployment or {}
    names = []
    for op in deployment.get("pending_operations") or []:
        resource = op.get("resource", {})
        name = (resource.get("inputs") or {}).get("name")
        if op.get("type") == "creating" and isinstance(name, str):
            names.append(name)
    return sorted(names)


def leak_check(stack: auto.Stack, stack_name: str, purge_left: bool = False,
               pending: list[str] | None = None) -> Teardown:
    """Everything the lab's name prefix or paths still show on the host (libvirt objects, seed ISOs, pool
    and console files), independent of Pulumi's state, recorded as what destroy left. With `purge_left` (after
    an interrupted up) that is then removed by name and checked again."""
    return leak_check_of(derive(lab_config(stack, stack_name)), purge_left, pending)


def leak_check_of(facts: LabFacts, purge_left: bool = False, pending: list[str] | None = None) -> Teardown:
    """leak_check from the lab's facts (a lab whose stack was never created in the backend has only those)."""
    record = Teardown(pending_creates=sorted(pending or []))
    record.left_by_destroy = record.left = lab_leftovers(facts)
    if record.left and purge_left:
        log(f"pulumi destroy left {record.left} (pending creates in the state: {record.pending_creates or 'none'}): "
            "removing them by name")
        purge(facts)
        record.left = lab_leftovers(facts)
        record.purged = {k: [v for v in names if v not in record.left.get(k, [])]
                         for k, names in record.left_by_destroy.items()}
    if record.left:
        log(f"LEAK CHECK FAILED: left behind {record.left}")
    else:
        hv = parse_uri(facts.cfg.libvirt_uri)
        where = f" on hypervisor {hv.name}" if hv.remote else ""
        log(f"leak check: no libvirt domain, network, pool or volume with prefix {facts.prefix}- is left{where}, "
            f"and no file under {facts.pool_path} or {facts.console_dir}{where}, or {facts.seed_dir} here")
    return record


def destroy_stack(stack: auto.Stack, interrupted: bool) -> tuple[bool, str]:
    """`pulumi destroy` (continuing past errors), after an interrupted update a refresh and a second try:
    (destroyed, the first error otherwise)."""
    try:
        stack.destroy(on_output=print, color="never", continue_on_error=True)
        return True, ""
    except auto.errors.CommandError as exc:
        error = first_error(str(exc))
    if interrupted:
        # An interrupted create can leave a record of an object libvirt never kept ("Domain not found" on
        # delete): a refresh drops such records, then destroy again.
        log("destroy after the interrupted update failed: refreshing the state, then destroying again")
        try:
            stack.refresh(on_output=print, color="never")
            stack.destroy(on_output=print, color="never", continue_on_error=True)
            return True, ""
        except auto.errors.CommandError as again:
            error = first_error(str(again))
    return False, error


def first_error(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if "check " in ln and "failed" in ln]
    return lines[0] if lines else text.strip().splitlines()[-1][:500]


def resource_types(stack: auto.Stack) -> list[str]:
    """The resource types in the stack's state (only libvirt:*, command:*, pulumi:* and lvslab:* expected)."""
    deployment = stack.export_stack().deployment or {}
    return sorted({r["type"] for r in deployment.get("resources", [])})


# --- day 2: re-verify and inspect a running lab ---------------------------------------------------------

class LabMissing(Exception):
    """What `verify`/`status` need is not there; the message says what to do."""


def running_lab(name: str) -> tuple[LabConfig, Any, str]:
    """The stack's config (the stack is never created here), its verification spec and SSH key, and the host
    services it needs
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
    cfg = lab_config(stack, name)
    spec = verify_spec(derive(cfg))
    hv = parse_uri(spec.uri)
    probe = subprocess.run(hv.command(["virsh", "-c", hv.local_uri, "uri"]), capture_output=True, text=True)
    if probe.returncode != 0:
        where = f"on hypervisor {hv.name} (over SSH)" if hv.remote else "here: start the host services with " \
            "`make host-start`"
        raise LabMissing(f"libvirt at {spec.uri} is not reachable ({probe.stderr.strip()[-200:]}) {where}")
    if not hv.remote and not Path("/sys/class/net", spec.bridge).exists():
        raise LabMissing(f"the lab's bridge {spec.bridge} is not in this network namespace: run inside the lab's "
                         f"namespace (`make verify STACK={name}` / `make status STACK={name}` do)")
    return cfg, spec, key


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
