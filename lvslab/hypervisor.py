"""Where a lab's VMs run: this machine, or a remote hypervisor reached over SSH (`qemu+ssh://` URI).

A lab's bridge is only reachable on its hypervisor, so everything that talks to the lab goes there: SSH to
the nodes hops through the hypervisor (ProxyCommand), and the verification steps, which also send HTTP to
the VIP and ARP on the bridge, run on the hypervisor itself (`relay`: this package is sent along as a zip
over the same SSH connection and run by the hypervisor's python3; nothing is installed there).
Pure apart from `relay`, which starts the SSH client.
"""

from __future__ import annotations

import io
import json
import shlex
import subprocess
import zipfile
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

# Set on the hypervisor's side of a relay: the step runs there, it must not relay again.
RELAYED_VARIABLE = "LVSLAB_RELAYED"
SSH_BASE = ["-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=5"]


class HypervisorError(ValueError):
    pass


@dataclass(frozen=True)
class Hypervisor:
    """A libvirt URI, and for a remote (qemu+ssh) one the SSH endpoint it names: user, host, port, the
    identity file (`keyfile=`) and the pinned host keys (`knownhosts=`, as terraform-provider-libvirt reads
    them; without it ~/.ssh/known_hosts)."""

    uri: str
    host: str = ""
    user: str = "root"
    port: int = 22
    keyfile: str = ""
    known_hosts: str = ""
    socket: str = ""

    @property
    def remote(self) -> bool:
        return bool(self.host)

    @property
    def name(self) -> str:
        """How reports name it: the SSH host, or 'local'."""
        return self.host or "local"

    @property
    def local_uri(self) -> str:
        """The same libvirt as seen on the hypervisor itself."""
        if not self.remote:
            return self.uri
        path = urlsplit(self.uri).path or "/system"
        return f"qemu://{path}" + (f"?socket={self.socket}" if self.socket else "")

    def ssh_options(self) -> list[str]:
        """OpenSSH options for reaching the hypervisor (as `ssh OPTIONS user@host`)."""
        opts = [*SSH_BASE, "-p", str(self.port)]
        if self.keyfile:
            opts += ["-i", self.keyfile, "-o", "IdentitiesOnly=yes"]
        if self.known_hosts:
            opts += ["-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes"]
        return opts

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}"

    def jump_options(self) -> list[str]:
        """OpenSSH options that reach a lab node through this hypervisor (none for a local one)."""
        if not self.remote:
            return []
        return ["-o", "ProxyCommand=" + shlex.join(["ssh", *self.ssh_options(), "-W", "%h:%p", self.destination])]

    def command(self, argv: list[str]) -> list[str]:
        """argv run on the hypervisor (unchanged for a local one)."""
        if not self.remote:
            return argv
        return ["ssh", *self.ssh_options(), self.destination, shlex.join(argv)]


def pinned_host_key(known_hosts: str, hv: Hypervisor) -> str | None:
    """The hypervisor's host key ("TYPE BASE64") from known_hosts text, for connections that pin it
    (hashed entries cannot be matched: None)."""
    wanted = hv.host if hv.port == 22 else f"[{hv.host}]:{hv.port}"
    for line in known_hosts.splitlines():
        fields = line.split()
        if len(fields) >= 3 and not line.startswith("#") and wanted in fields[0].split(","):
            return f"{fields[1]} {fields[2]}"
    return None


def parse_uri(uri: str) -> Hypervisor:
    """The hypervisor a libvirt URI names. Remote ones must be qemu+ssh: the lab's checks run on them over SSH."""
    parts = urlsplit(uri)
    scheme = parts.scheme
    if scheme in ("qemu", "qemu+unix") and not parts.hostname:
        return Hypervisor(uri=uri)
    if scheme != "qemu+ssh":
        raise HypervisorError(f"transport {scheme!r} is not supported for a remote hypervisor: use qemu+ssh://"
                              "user@host/system (the lab's checks run on the hypervisor over SSH)")
    if not parts.hostname:
        raise HypervisorError("a qemu+ssh URI needs a host (qemu+ssh://user@host/system)")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    return Hypervisor(uri=uri, host=parts.hostname, user=parts.username or "root", port=parts.port or 22,
                      keyfile=query.get("keyfile", ""), known_hosts=query.get("knownhosts", ""),
                      socket=query.get("socket", ""))


def place(candidates: list[str], in_use: list[str]) -> str:
    """The hypervisor for a new lab: the candidate holding the fewest of the labs in_use (their URIs), the
    first of those in list order on a tie, so labs go round-robin over the list, one per hypervisor while
    there are enough."""
    if not candidates:
        raise HypervisorError("no hypervisor to place the lab on")
    return min(candidates, key=lambda uri: (in_use.count(uri), candidates.index(uri)))


# --- running a module of this package on the hypervisor --------------------------------------------------

# Read by the hypervisor's python3 from stdin: one JSON header line, the zip, then the module's own stdin.
_BOOTSTRAP = """
import io, json, os, runpy, shutil, sys, tempfile
head = json.loads(sys.stdin.buffer.readline())
work = tempfile.mkdtemp(prefix="lvslab-relay-")
try:
    path = os.path.join(work, "lvslab.zip")
    with open(path, "wb") as f:
        f.write(sys.stdin.buffer.read(head["size"]))
    sys.path.insert(0, path)
    os.environ.update(head["env"])
    sys.argv = [head["module"], *head["args"]]
    sys.stdin = io.TextIOWrapper(sys.stdin.buffer)
    runpy.run_module(head["module"], run_name="__main__", alter_sys=True)
finally:
    shutil.rmtree(work, ignore_errors=True)
"""


def package_zip() -> bytes:
    """The verification's modules (its import closure, computed: standard library only, test_layers.py) as a
    zip importable by the remote python3."""
    from lvslab.imports import ROOT, VERIFY_ENTRY, closure

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for _, source in sorted(closure(VERIFY_ENTRY).items()):
            z.write(source, str(source.relative_to(ROOT)))
    return buf.getvalue()


def relay_argv(hv: Hypervisor) -> list[str]:
    return hv.command(["python3", "-c", _BOOTSTRAP])


def relay(hv: Hypervisor, module: str, args: list[str], stdin: str, env: dict[str, str],
          timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python3 -m MODULE ARGS` on the hypervisor with this package, stdin and extra environment (which
    travels inside the SSH connection's stdin: secrets never appear in an argument list). stdout is
    returned; stderr (progress, failures) passes straight through."""
    blob = package_zip()
    head = json.dumps({"size": len(blob), "module": module, "args": args,
                       "env": {**env, RELAYED_VARIABLE: "1"}}).encode() + b"\n"
    proc = subprocess.run(relay_argv(hv), input=head + blob + stdin.encode(), stdout=subprocess.PIPE,
                          timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(errors="replace"), "")
