"""Facts about the machine running Pulumi that the program needs: where the built image is and whether KVM
really works for an ordinary guest."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lvslab.config import LabConfig
from lvslab.hypervisor import Hypervisor
from lvslab.imagebuild import cache_key, default_cache, default_spec


class HostError(RuntimeError):
    pass


@dataclass(frozen=True)
class ImageFiles:
    """Host files the lab's pool is filled from (the built image, or a user's cloud image)."""

    image: str
    kernel: str | None
    initrd: str | None
    repo: str | None
    digest: str


def local_image_dir(cache: Path | None = None) -> Path:
    """The built image for the default spec; an error that says how to build it when missing."""
    spec = default_spec()
    path = (cache or default_cache()) / f"image-{spec.suite}-{cache_key(spec)}"
    if not (path / "manifest.json").exists():
        raise HostError(f"the lab's base image is not built yet ({path}): run `make image`")
    return path


def read_key_file(path: str, key: str, param: str) -> str:
    """A file a config value names (an SSH key, a known_hosts file), with an error that says which."""
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise HostError(f"lvs-lab:{key}: {param} {path} cannot be read ({exc.strerror})") from None


def kvm_works(kernel: str, initrd: str | None, timeout: float = 15.0) -> bool:
    """Boot the guest kernel under KVM for a moment: /dev/kvm can exist and still hang real guests
    (as on hosts that only offer PVM). The result is cached per kernel and host kernel."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    host = os.uname().release
    digest = hashlib.sha256(Path(kernel).read_bytes()).hexdigest()[:16]
    cache = default_cache() / "kvm-probe.json"
    known = json.loads(cache.read_text()) if cache.exists() else {}
    if f"{host}/{digest}" in known:
        return bool(known[f"{host}/{digest}"])
    cmd = ["qemu-system-x86_64", "-accel", "kvm", "-m", "256", "-nodefaults", "-display", "none",
           "-no-reboot", "-serial", "stdio", "-kernel", kernel, "-append", "console=ttyS0 panic=-1"]
    if initrd:
        cmd += ["-initrd", initrd]
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=timeout).stdout
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or b""
    works = b"Linux version" in out and b"Run /init" in out
    known[f"{host}/{digest}"] = works
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(known))
    return works


def hypervisor_cpus(hv: Hypervisor) -> int:
    """The hypervisor's CPU count (vm.bootsAtOnce auto): this machine's, or `nproc` over SSH."""
    if not hv.remote:
        return os.cpu_count() or 1
    try:
        proc = subprocess.run(hv.command(["nproc", "--all"]), capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        proc = subprocess.CompletedProcess([], 255, "", "no answer within 60 s")
    if proc.returncode != 0 or not proc.stdout.strip().isdigit():
        raise HostError(f"lvs-lab:vm.bootsAtOnce is auto but the CPU count of hypervisor {hv.name} could not be read "
                        f"({(proc.stderr or proc.stdout).strip()[-200:] or f'exit {proc.returncode}'}): "
                        "set vm.bootsAtOnce to a number of VMs")
    return int(proc.stdout)


def resolve_domain_type(cfg: LabConfig, kernel: str | None, initrd: str | None,
                        remote: bool = False) -> tuple[str, str | None]:
    """(domain type, note to show once) for domainType auto/kvm/qemu. KVM is probed on this machine only:
    for a remote hypervisor, auto means qemu unless domainType says kvm."""
    if cfg.domain_type == "qemu":
        return "qemu", None
    if remote:
        if cfg.domain_type == "kvm":
            return "kvm", None
        return "qemu", ("domainType auto on a remote hypervisor: VMs run under QEMU software emulation (TCG); "
                        "set lvs-lab:domainType to kvm if that hypervisor has working KVM")
    if kernel and kvm_works(kernel, initrd):
        return "kvm", None
    if cfg.domain_type == "kvm":
        raise HostError("lvs-lab:domainType is 'kvm' but KVM cannot run a guest on this host "
                        "(use 'auto' or 'qemu')")
    return "qemu", "KVM is not usable for ordinary guests here: VMs run under QEMU software emulation (TCG)"
