"""One VM from the built image, under libvirt in the test's namespace: cloud-init installs keepalived and
ipvsadm from the lab's repository volume (no route anywhere), and IPVS works inside the guest. Drives
the libvirt layer's providers directly (no Pulumi engine), so a failure here points at image/repository."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from lvslab.checks import console_finished
from lvslab.config import parse_config
from lvslab.host import local_image_dir
from lvslab.probe import SSH_OPTIONS
from lvslab.render import DomainDisks, director_user_data, domain_xml, meta_data, network_config, network_xml
from providers import libvirt
from tests.conftest import stack_config

URI = "qemu:///system"


def _config() -> Any:
    raw = stack_config("dev")
    suffix = os.getpid() % 1000
    raw["network"] = {"bridge": f"lvsimg{suffix}", "subnet": "10.201.0.0/24", "hostAddress": "10.201.0.1"}
    raw["vip"] = "10.201.0.100"
    raw["directors"] = [{"name": "director1", "address": "10.201.0.11", "state": "MASTER", "priority": 150},
                        {"name": "director2", "address": "10.201.0.12", "state": "BACKUP", "priority": 100}]
    raw["realServers"] = [{"name": "web1", "address": "10.201.0.21", "weight": 1}]
    return parse_config(raw, f"img{suffix}")


def test_one_vm_installs_lab_packages_from_the_local_repository(netns: str, tmp_path: Path) -> None:
    cfg = _config()
    image = local_image_dir()
    node = cfg.directors[0]
    keyfile = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keyfile)], check=True)
    user_data = director_user_data(cfg, node, keyfile.with_suffix(".pub").read_text(), "s3cret")
    assert "keepalived" in yaml.safe_load(user_data)["packages"]
    pool_dir = tempfile.mkdtemp(prefix="lvslab-img-", dir="/var/tmp")
    log = Path(pool_dir) / "console.log"
    props = {"uri": URI, "pool": f"{cfg.prefix}-pool"}
    net = {"uri": URI, "name": f"{cfg.prefix}-net", "xml": network_xml(cfg)}
    pool = {"uri": URI, "name": props["pool"], "path": pool_dir}
    vols = {n: {**props, "name": f"{cfg.prefix}-{n}", "source": str(image / f), "format": fmt}
            for n, f, fmt in (("base", "base.qcow2", "qcow2"), ("repo", "repo.iso", "raw"),
                              ("vmlinuz", "vmlinuz", "raw"), ("initrd", "initrd.img", "raw"))}
    created: list[tuple[Any, str, dict[str, Any]]] = []

    def create(provider: Any, p: dict[str, Any]) -> dict[str, Any]:
        result = provider.create(p)
        created.append((provider, result.id, result.outs))
        return result.outs

    try:
        create(libvirt._NetworkProvider(), net)
        create(libvirt._PoolProvider(), pool)
        paths = {n: create(libvirt._VolumeProvider(), v)["path"] for n, v in vols.items()}
        disk = create(libvirt._VolumeProvider(), {**props, "name": f"{cfg.prefix}-disk.qcow2", "source": None,
                                                  "backing_path": paths["base"], "size_mib": 4096})
        seed = create(libvirt._SeedProvider(), {**props, "name": f"{cfg.prefix}-seed.iso", "user_data": user_data,
                                                "meta_data": meta_data(cfg, node),
                                                "network_config": network_config(cfg, node)})
        xml = domain_xml(cfg, node, "director", "qemu",
                         DomainDisks(disk["path"], seed["path"], paths["repo"], paths["vmlinuz"], paths["initrd"]),
                         str(log))
        t0 = time.monotonic()
        create(libvirt._DomainProvider(), {"uri": URI, "name": f"{cfg.prefix}-{node.name}", "xml": xml,
                                           "console_log": str(log)})
        uptime = None
        while time.monotonic() - t0 < 900 and uptime is None:
            time.sleep(2)
            uptime = console_finished(str(log))
        assert uptime is not None, log.read_text(errors="replace")[-3000:]
        print(f"single VM boot-to-ready: {uptime:.1f} s guest uptime, {time.monotonic() - t0:.0f} s wall")
        script = ("dpkg-query -W -f='${Package} ${Status}\\n' keepalived ipvsadm; apt-cache policy keepalived | "
                  "grep -m1 -o 'file:/srv/lvslab-repo'; modprobe ip_vs && grep -o '^ip_vs ' /proc/modules; "
                  "ipvsadm -Ln | head -1; cloud-init status")
        # The bridge and the VM live in the test's namespace: ssh from there.
        out = subprocess.run(["ip", "netns", "exec", netns, "ssh", *SSH_OPTIONS, "-i", str(keyfile),
                              f"root@{node.address}", script], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "keepalived install ok installed" in out.stdout and "ipvsadm install ok installed" in out.stdout
        assert "file:/srv/lvslab-repo" in out.stdout and "ip_vs " in out.stdout
        assert "IP Virtual Server" in out.stdout and "status: done" in out.stdout
    finally:
        for provider, id_, outs in reversed(created):
            provider.delete(id_, outs)
    assert all(not v for v in libvirt.objects_with_prefix(URI, cfg.prefix + "-").values())
