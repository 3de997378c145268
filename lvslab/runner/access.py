"""A way into a running lab: an OpenSSH client config per stack (`ssh -F .lvslab/ssh/STACK/config director1`
from any shell on this host), `ssh` (an interactive shell or one command on one node) and `exec` (a command on
many nodes at once, output prefixed per node, exit status the worst). The nodes' addresses live on the lab's
bridge, which may sit in a network namespace or on a remote hypervisor: the config's ProxyCommand gets there
(netcat in the namespace, OpenSSH's -W through the hypervisor), so the user's own ssh, scp and rsync work."""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from lvslab.hypervisor import parse_uri
from lvslab.runner.guard import log
from lvslab.runner.stacks import LabMissing, running_lab
from lvslab.stackfile import ROOT

ACCESS_DIR = ROOT / ".lvslab" / "ssh"
ROLES = {"directors": ("director",), "real-servers": ("real-server",), "all": ("director", "real-server")}


def current_netns() -> str:
    """The name of the network namespace this process runs in ('' on the host's own network)."""
    out = subprocess.run(["ip", "netns", "identify", str(os.getpid())], capture_output=True, text=True)
    return out.stdout.strip()


def ssh_config_text(nodes: list[Any], key_path: Path, netns: str, jump: list[str]) -> str:
    """Host entries for every node: root, the lab's key, no host key kept (the lab's nodes are rebuilt with new
    keys), and the way to the bridge: `ip netns exec NS nc` when it is in a namespace, the hypervisor's -W jump
    for a remote lab (itself run in the namespace when the hypervisor is reached from there)."""
    proxy = ""
    if jump:  # ["-o", "ProxyCommand=ssh ... -W %h:%p user@host"]
        proxy = jump[1].split("=", 1)[1]
    elif netns:
        proxy = "nc %h %p"
    if proxy and netns:
        proxy = f"ip netns exec {shlex.quote(netns)} {proxy}"
    lines = ["# lvs-lab: written by tools/lvslab.py (up, ssh, exec), removed by destroy. ssh -F <this file> NODE"]
    for node in nodes:
        lines += [f"Host {node.name}", f"    HostName {node.address}", "    User root",
                  f"    IdentityFile {key_path}", "    IdentitiesOnly yes", "    StrictHostKeyChecking no",
                  "    UserKnownHostsFile /dev/null", "    LogLevel ERROR"]
        if proxy:
            lines.append(f"    ProxyCommand {proxy}")
    return "\n".join(lines) + "\n"


def write_ssh_config(stack: str, spec: Any, key_text: str, base: Path = ACCESS_DIR) -> Path:
    """.lvslab/ssh/STACK/config and its key file (0600); the config's path."""
    directory = base / stack
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_path = directory / "key"
    key_path.unlink(missing_ok=True)
    with os.fdopen(os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        f.write(key_text if key_text.endswith("\n") else key_text + "\n")
    config = directory / "config"
    config.write_text(ssh_config_text(list(spec.nodes), key_path, current_netns(), parse_uri(spec.uri).jump_options()))
    return config


def remove_ssh_config(stack: str, base: Path = ACCESS_DIR) -> None:
    shutil.rmtree(base / stack, ignore_errors=True)


def refresh_ssh_config(stack: str) -> Path | None:
    """After an up: the stack's config written again (addresses and key of this lab); None if no lab is up."""
    try:
        _, spec, key_text = running_lab(stack)
    except LabMissing:
        return None
    return write_ssh_config(stack, spec, key_text)


def select_nodes(spec: Any, names: list[str], role: str | None) -> list[Any]:
    """The nodes named (in the lab's order), or those of a role; ValueError naming what does not exist."""
    if role:
        return [n for n in spec.nodes if n.role in ROLES[role]]
    known = {n.name for n in spec.nodes}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"no node {', '.join(unknown)} in this lab (its nodes: {', '.join(sorted(known))})")
    return [n for n in spec.nodes if n.name in names]


def _lab_access(stack: str) -> tuple[Any, Path] | None:
    try:
        _, spec, key_text = running_lab(stack)
    except LabMissing as exc:
        log(str(exc))
        return None
    return spec, write_ssh_config(stack, spec, key_text)


def cmd_ssh(args: argparse.Namespace) -> int:
    """An interactive shell on one node (or one command, with a terminal) through the stack's config."""
    found = _lab_access(args.stack)
    if found is None:
        return 2
    spec, config = found
    try:
        select_nodes(spec, [args.node], None)
    except ValueError as exc:
        log(str(exc))
        return 2
    argv = ["ssh", "-F", str(config), "-t", args.node, *args.command]
    sys.stdout.flush()
    os.execvp("ssh", argv)
    return 0  # not reached


def run_on_nodes(config: Path, nodes: list[Any], command: str, timeout: float) -> list[tuple[str, int, str]]:
    """(node, exit status, output) of `command` run on every node at once through the config."""
    def one(node: Any) -> tuple[str, int, str]:
        try:
            out = subprocess.run(["ssh", "-F", str(config), "-o", "BatchMode=yes", node.name, command],
                                 capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return node.name, 124, f"no answer within {timeout:g} s\n"
        return node.name, out.returncode, out.stdout + out.stderr

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        return list(pool.map(one, nodes))


def cmd_exec(args: argparse.Namespace) -> int:
    """CMD on the chosen nodes at once; each output line prefixed with its node (or grouped under a header per
    node with --group); the exit status is the worst of the nodes'."""
    command = shlex.join(args.command) if len(args.command) > 1 else " ".join(args.command)
    if not command.strip():
        log("exec: nothing to run: give the command after --, e.g. exec --all -- ipvsadm -Ln")
        return 2
    found = _lab_access(args.stack)
    if found is None:
        return 2
    spec, config = found
    try:
        nodes = select_nodes(spec, args.nodes.split(",") if args.nodes else [], args.role or
                             ("all" if not args.nodes else None))
    except ValueError as exc:
        log(str(exc))
        return 2
    results = run_on_nodes(config, nodes, command, args.timeout)
    width = max(len(name) for name, _, _ in results)
    for name, code, output in results:
        lines = output.rstrip("\n").splitlines()
        if args.group:
            print(f"=== {name} (exit {code})")
            print("\n".join(lines))
        else:
            print("\n".join(f"{name:<{width}} | {line}" for line in lines) or f"{name:<{width}} |")
    worst = max(code for _, code, _ in results)
    failed = [f"{name} ({code})" for name, code, _ in results if code]
    log(f"exec on {len(results)} nodes: " + (f"failed on {', '.join(failed)}" if failed else "all exit 0"))
    return worst
