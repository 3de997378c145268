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


def run_in(ns: str, *args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    """Run a runner command inside the namespace, streaming its output to the test log."""
    cmd = ["ip", "netns", "exec", ns, PY, str(ROOT / "tools" / "lvslab.py"), *args]
    print("$", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=timeout)
    sys.stdout.write(proc.stdout[-20000:])
    return proc


def start_in(ns: str, *args: str, log: Path) -> subprocess.Popen[bytes]:
    cmd = ["ip", "netns", "exec", ns, PY, str(ROOT / "tools" / "lvslab.py"), *args]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def read_report(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.fail("the end-to-end tests need root (network namespace, libvirtd)")
    name = f"lvslab-e2e-{os.getpid()}"
    before = set((ROOT / "stacks").glob("Pulumi.ci*-*.yaml"))
    subprocess.run([str(ROOT / "tools" / "host.sh"), "start", name], check=True)
    try:
        yield name
    finally:
        # Safety net: a lab this run left behind (a kept one whose test failed) is destroyed before
        # libvirtd stops, so no VM outlives the run.
        for stack_file in sorted(set((ROOT / "stacks").glob("Pulumi.ci*-*.yaml")) - before):
            stack = stack_file.name.removeprefix("Pulumi.").removesuffix(".yaml")
            run_in(name, "destroy", "--stack", stack, "--rm")
        subprocess.run([str(ROOT / "tools" / "host.sh"), "stop", name, "--force"], check=False)
