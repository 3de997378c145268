"""What a lab leaves on the host, looked up independently of Pulumi's state: the runner's leak check after
every destroy. Every libvirt domain, network, pool and volume (cloud-init seed ISOs included) whose name
carries the lab's prefix, and the lab's pool directory and console-log directory with their files."""

from __future__ import annotations

import os
import subprocess

from lvslab.model import LabFacts


def _virsh(uri: str, *args: str) -> list[str]:
    proc = subprocess.run(["virsh", "-q", "-c", uri, *args], capture_output=True, text=True)
    return proc.stdout.split() if proc.returncode == 0 else []


def leftovers(uri: str, prefix: str, paths: list[str]) -> dict[str, list[str]]:
    """Objects named PREFIX* in libvirt at URI, and which of PATHS (files or directories) still exist, with
    the files inside them. Empty lists mean nothing is left."""
    found: dict[str, list[str]] = {
        "domains": [n for n in _virsh(uri, "list", "--all", "--name") if n.startswith(prefix)],
        "networks": [n for n in _virsh(uri, "net-list", "--all", "--name") if n.startswith(prefix)],
        "pools": [n for n in _virsh(uri, "pool-list", "--all", "--name") if n.startswith(prefix)],
        "volumes": [],
        "files": [],
    }
    for pool in _virsh(uri, "pool-list", "--name"):
        proc = subprocess.run(["virsh", "-q", "-c", uri, "vol-list", pool], capture_output=True, text=True)
        for line in proc.stdout.splitlines():
            parts = line.split()
            if parts and (parts[0].startswith(prefix) or pool.startswith(prefix)):
                found["volumes"].append(f"{pool}/{parts[0]}")
    for path in paths:
        if os.path.isdir(path):
            found["files"].append(path + "/")
            found["files"] += [os.path.join(d, f) for d, _, files in os.walk(path) for f in files]
        elif os.path.exists(path):
            found["files"].append(path)
    return found


def lab_leftovers(facts: LabFacts) -> dict[str, list[str]]:
    """Only the kinds of which something is left."""
    found = leftovers(facts.cfg.libvirt_uri, facts.prefix + "-", [facts.pool_path, facts.seed_dir, facts.console_dir])
    return {k: v for k, v in found.items() if v}
