"""The hand-driven baseline of `make bench`: one lab VM (the dev stack's first real server) booted with
plain QEMU, no Pulumi and no libvirt, from the same image, kernel, repository and a seed rendered by the
same templates; timed from QEMU's start to cloud-init's "finished" line on the serial console. It is the
floor the lab's per-VM boot is compared with.

Networking: a user-mode NIC with `restrict=on` (the guest reaches nothing, not even this host), run
inside the lab's network namespace by the caller.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from lvslab.commands import SEED_ISO_COMMAND
from lvslab.config import LabConfig
from lvslab.host import local_image_dir
from lvslab.model import derive
from lvslab.render import meta_data, network_config, real_server_user_data

_FINISHED = re.compile(r"Cloud-init v\. \S+ finished at .* Up ([0-9.]+) seconds")


def qemu_command(image: Path, overlay: str, seed: str, console: str, cfg: LabConfig, mac: str) -> list[str]:
    """The QEMU command line of one lab VM as libvirt would start it (TCG, one vCPU, virtio disks)."""
    return [
        "qemu-system-x86_64", "-machine", "pc", "-cpu", "max", "-smp", str(cfg.vm.vcpus),
        "-m", str(cfg.vm.memory_mib), "-accel", f"tcg,tb-size={cfg.vm.tb_cache_mib}",
        "-kernel", str(image / "vmlinuz"), "-initrd", str(image / "initrd.img"),
        "-append", f"root=LABEL=rootfs ro {cfg.image.kernel_cmdline}",
        "-drive", f"file={overlay},if=virtio,format=qcow2,cache=unsafe",
        "-drive", f"file={seed},if=virtio,format=raw,readonly=on",
        "-drive", f"file={image / 'repo.iso'},if=virtio,format=raw,readonly=on",
        "-netdev", "user,id=n0,restrict=on", "-device", f"virtio-net-pci,netdev=n0,mac={mac}",
        "-device", "virtio-rng-pci", "-display", "none", "-serial", f"file:{console}", "-no-reboot",
    ]


def boot_one(cfg: LabConfig, timeout: float = 900) -> dict[str, Any]:
    """Boot the first real server of `cfg` by hand; returns wall seconds to cloud-init finished, the
    guest's own uptime then, and QEMU's CPU seconds."""
    image = local_image_dir()
    facts = derive(cfg)
    node = facts.real_servers[0]
    with tempfile.TemporaryDirectory(prefix="lvslab-handboot-") as tmp:
        key = Path(tmp) / "id"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        seed, overlay, console = f"{tmp}/seed.iso", f"{tmp}/disk.qcow2", f"{tmp}/console.log"
        env = {**os.environ, "SEED_ISO": seed, "META_DATA": meta_data(node),
               "USER_DATA": real_server_user_data(cfg, node, (key.with_suffix(".pub")).read_text().strip()),
               "NETWORK_CONFIG": network_config(facts, node)}
        subprocess.run(["sh", "-c", SEED_ISO_COMMAND], env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(image / "base.qcow2"),
                        overlay, "4G"], check=True)
        t0 = time.monotonic()
        proc = subprocess.Popen(qemu_command(image, overlay, seed, console, cfg, node.mac),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            uptime = None
            while time.monotonic() - t0 < timeout and proc.poll() is None:
                match = _FINISHED.search(Path(console).read_text(errors="replace")) if os.path.exists(console) else None
                if match:
                    uptime = float(match.group(1))
                    break
                time.sleep(0.5)
            wall = round(time.monotonic() - t0, 1)
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu = round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 1)
        finally:
            proc.terminate()  # our own QEMU, by PID
            proc.wait(timeout=30)
    if uptime is None:
        raise RuntimeError(f"hand-booted VM did not finish cloud-init within {timeout:g} s")
    return {"node": node.name, "wall_to_ready_s": wall, "guest_uptime_s": uptime, "qemu_cpu_s": cpu}


def main() -> int:
    """python -m lvslab.handboot [STACK]: boot that stack's first real server by hand, print JSON."""
    import json
    import sys

    from lvslab.config import parse_config
    from lvslab.stackfile import load_config

    stack = sys.argv[1] if len(sys.argv) > 1 else "dev"
    cfg = parse_config(load_config(stack), stack, auth_pass=None)
    print(json.dumps(boot_one(cfg)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
