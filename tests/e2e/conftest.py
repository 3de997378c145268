"""End-to-end fixtures: a network namespace of the test run's own (loopback only, no uplink) with
virtlogd/libvirtd inside it; every lab of the run lives on bridges inside that namespace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PY = str(ROOT / ".lvslab" / "venv" / "bin" / "python")


def run_in(ns: str, *args: str, timeout: float = 3600,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a runner command inside the namespace, streaming its output to the test log. `env`: variables set
    on top of this process's (a fleet lab's state backend, say)."""
    cmd = ["ip", "netns", "exec", ns, PY, str(ROOT / "tools" / "lvslab.py"), *args]
    print("$", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=timeout, env={**os.environ, **(env or {})})
    sys.stdout.write(proc.stdout[-20000:])
    return proc


def start_in(ns: str, *args: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A runner command started in the background (its own process group: a test may kill the whole runner)."""
    cmd = ["ip", "netns", "exec", ns, PY, str(ROOT / "tools" / "lvslab.py"), *args]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})}, start_new_session=True)


def read_report(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def running_lvslab_netns() -> str | None:
    """The namespace of a libvirtd that tools/host.sh started (and that still runs), if any."""
    for pid_file in sorted(Path("/run/lvs-lab").glob("*/libvirtd.pid")):
        try:
            os.kill(int(pid_file.read_text().strip()), 0)
        except (OSError, ValueError):
            continue
        return pid_file.parent.name
    return None


def foreign_libvirtd() -> bool:
    """A libvirtd answers on the system socket that tools/host.sh did not start (systemd's, say)."""
    answers = subprocess.run(["virsh", "-c", "qemu:///system", "version"], capture_output=True).returncode == 0
    return answers and running_lvslab_netns() is None


@pytest.fixture(scope="session")
def netns() -> Iterator[str]:
    """The namespace the labs of this run live in. libvirt has one system daemon per host, so two runs
    cannot each have their own: when lvs-lab's daemon already runs (say for `make up`'s dev lab), this run
    shares its namespace knowingly (its labs get their own bridges and subnets there) and leaves the daemon
    running; otherwise it starts one in a namespace of its own and stops it at the end. A daemon that is
    not lvs-lab's cannot be isolated from: fail at once."""
    if os.geteuid() != 0:
        pytest.fail("the end-to-end tests need root (network namespace, libvirtd)")
    if foreign_libvirtd():
        pytest.fail("a libvirtd that lvs-lab did not start runs on this host: the e2e labs cannot be isolated "
                    "in a network namespace of their own (stop it, or run the e2e tests on a CI machine)")
    shared = running_lvslab_netns()
    name = shared or f"lvslab-e2e-{os.getpid()}"
    print(f"e2e labs run in network namespace {name}" + (" (shared with the running lvs-lab daemon)"
                                                        if shared else " (own libvirtd)"), flush=True)
    before = set((ROOT / "stacks").glob("Pulumi.ci*-*.yaml"))
    if not shared:  # tests always ask for a private daemon (tools/host.sh: private mode)
        subprocess.run([str(ROOT / "tools" / "host.sh"), "start", name], check=True,
                       env={**os.environ, "LVSLAB_PRIVATE_LIBVIRTD": "1"})
    try:
        yield name
    finally:
        # Safety net: a lab this run left behind (a kept one whose test failed) is destroyed before
        # libvirtd stops, so no VM outlives the run.
        for stack_file in sorted(set((ROOT / "stacks").glob("Pulumi.ci*-*.yaml")) - before):
            stack = stack_file.name.removeprefix("Pulumi.").removesuffix(".yaml")
            run_in(name, "destroy", "--stack", stack, "--rm")
        if not shared:
            subprocess.run([str(ROOT / "tools" / "host.sh"), "stop", name, "--force"], check=False)


@pytest.fixture(scope="session")
def remote_hypervisor(netns: str) -> Iterator[str]:
    """A second libvirtd in a network namespace of its own, reached from the labs' namespace only through
    an sshd started there (tools/hypervisor.sh): the libvirt URI of a remote hypervisor."""
    script = str(ROOT / "tools" / "hypervisor.sh")
    proc = subprocess.run([script, "start", netns, "hv1", "1"], capture_output=True, text=True)
    sys.stdout.write(proc.stderr)
    if proc.returncode != 0:
        pytest.fail(f"the test hypervisor did not start: {proc.stderr[-2000:]}")
    try:
        yield proc.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([script, "stop", netns, "hv1", "--force"], check=False)
