"""What a lab leaves behind, looked up independently of Pulumi's state: the runner's leak check after
every destroy. Every libvirt domain, network, pool and volume (cloud-init seed ISOs included) whose name
carries the lab's prefix, the lab's pool and console-log directories on its hypervisor (this machine, or
a remote one asked over SSH) and its seed directory here, with their files."""

from __future__ import annotations

import os
import shutil
import subprocess

from lvslab.hypervisor import Hypervisor, parse_uri
from lvslab.model import LabFacts

# Prints each PATH argument that exists: a directory as "PATH/" followed by the files under it.
_LIST_PATHS = ('for p; do if [ -d "$p" ]; then echo "$p/"; find "$p" -type f; '
               'elif [ -e "$p" ]; then echo "$p"; fi; done')


def _virsh(hv: Hypervisor, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(hv.command(["virsh", "-q", "-c", hv.local_uri, *args]), capture_output=True, text=True)


class InventoryError(RuntimeError):
    """The hypervisor could not be asked: nothing can be said about what is left (never 'nothing')."""


def _names(hv: Hypervisor, *args: str) -> list[str]:
    proc = _virsh(hv, *args)
    if proc.returncode != 0:
        raise InventoryError(f"virsh {' '.join(args)} on hypervisor {hv.name}: {proc.stderr.strip()[-300:]}")
    return proc.stdout.split()


def existing_paths(hv: Hypervisor, paths: list[str]) -> list[str]:
    """Which of PATHS exist on the hypervisor (directories as 'PATH/' followed by their files)."""
    if not paths:
        return []
    if hv.remote:
        proc = subprocess.run(hv.command(["sh", "-c", _LIST_PATHS, "sh", *paths]), capture_output=True, text=True)
        if proc.returncode != 0:
            raise InventoryError(f"listing {' '.join(paths)} on hypervisor {hv.name}: {proc.stderr.strip()[-300:]}")
        return proc.stdout.splitlines()
    found: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            found.append(path + "/")
            found += [os.path.join(d, f) for d, _, files in os.walk(path) for f in files]
        elif os.path.exists(path):
            found.append(path)
    return found


def leftovers(hv: Hypervisor, prefix: str, hypervisor_paths: list[str],
              local_paths: list[str] | None = None) -> dict[str, list[str]]:
    """Objects named PREFIX* in the hypervisor's libvirt, which of hypervisor_paths exist there and which of
    local_paths exist here. Empty lists mean nothing is left."""
    found: dict[str, list[str]] = {
        "domains": [n for n in _names(hv, "list", "--all", "--name") if n.startswith(prefix)],
        "networks": [n for n in _names(hv, "net-list", "--all", "--name") if n.startswith(prefix)],
        "pools": [n for n in _names(hv, "pool-list", "--all", "--name") if n.startswith(prefix)],
        "volumes": [],
        "files": existing_paths(hv, hypervisor_paths) + existing_paths(Hypervisor(uri=""), local_paths or []),
    }
    for pool in _names(hv, "pool-list", "--name"):
        for line in _virsh(hv, "vol-list", pool).stdout.splitlines():
            parts = line.split()
            if parts and (parts[0].startswith(prefix) or pool.startswith(prefix)):
                found["volumes"].append(f"{pool}/{parts[0]}")
    return found


def _where(facts: LabFacts) -> tuple[Hypervisor, list[str], list[str]]:
    """The lab's hypervisor, the paths kept there (pool, console logs) and here (seed ISOs)."""
    hv = parse_uri(facts.cfg.libvirt_uri)
    return hv, [facts.pool_path, facts.console_dir], [facts.seed_dir]


def lab_leftovers(facts: LabFacts) -> dict[str, list[str]]:
    """Only the kinds of which something is left; a hypervisor that cannot be asked is reported as such
    (kind "unknown"), so a leak check never passes blind."""
    hv, there, here = _where(facts)
    try:
        found = leftovers(hv, facts.prefix + "-", there, here)
    except InventoryError as exc:
        return {"unknown": [str(exc)]}
    return {k: v for k, v in found.items() if v}


def purge(facts: LabFacts) -> None:
    """Remove what the lab's prefix and paths still show, by name. The runner's safety net when `pulumi
    destroy` could not: an operation interrupted mid-create (SIGINT/SIGTERM during `up`) leaves objects that
    libvirt made but Pulumi's state never recorded (pending creates), so destroy does not know them."""
    hv, there, here = _where(facts)
    try:
        found = leftovers(hv, facts.prefix + "-", [])
    except InventoryError:
        return  # the leak check that follows says so
    for domain in found["domains"]:
        _virsh(hv, "destroy", domain)
        _virsh(hv, "undefine", domain)
    for volume in found["volumes"]:
        pool, _, name = volume.partition("/")
        _virsh(hv, "vol-delete", name, "--pool", pool)
    for pool in found["pools"]:
        _virsh(hv, "pool-destroy", pool)
        _virsh(hv, "pool-undefine", pool)
    for network in found["networks"]:
        _virsh(hv, "net-destroy", network)
        _virsh(hv, "net-undefine", network)
    subprocess.run(hv.command(["rm", "-rf", *there]), capture_output=True)
    for path in here:
        shutil.rmtree(path, ignore_errors=True)
