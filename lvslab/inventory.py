"""What a lab leaves on the host, looked up independently of Pulumi's state: the runner's leak check after
every destroy. Every libvirt domain, network, pool and volume (cloud-init seed ISOs included) whose name
carries the lab's prefix, and the lab's pool directory and console-log directory with their files."""

from __future__ import annotations

import os
import shutil
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


def purge(facts: LabFacts) -> None:
    """Remove what the lab's prefix and paths still show, by name. The runner's safety net when `pulumi
    destroy` could not: an operation interrupted mid-create (SIGINT/SIGTERM during `up`) leaves objects that
    libvirt made but Pulumi's state never recorded (pending creates), so destroy does not know them."""
    uri, prefix = facts.cfg.libvirt_uri, facts.prefix + "-"

    def virsh(*args: str) -> None:
        subprocess.run(["virsh", "-q", "-c", uri, *args], capture_output=True)

    found = leftovers(uri, prefix, [])
    for domain in found["domains"]:
        virsh("destroy", domain)
        virsh("undefine", domain)
    for volume in found["volumes"]:
        pool, _, name = volume.partition("/")
        virsh("vol-delete", name, "--pool", pool)
    for pool in found["pools"]:
        virsh("pool-destroy", pool)
        virsh("pool-undefine", pool)
    for network in found["networks"]:
        virsh("net-destroy", network)
        virsh("net-undefine", network)
    for path in (facts.pool_path, facts.seed_dir, facts.console_dir):
        shutil.rmtree(path, ignore_errors=True)
