"""Pure rendering of every text artefact of a lab: cloud-init user-data, keepalived.conf, nginx site,
network-config, meta-data and libvirt XML. Templates are data (cloud-init/, providers/); this module
only chooses the values. StrictUndefined: a missing value is an error, never an empty string.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import jinja2

from lvslab.config import SCHEDULER_MODULES, Director, LabConfig, RealServer

ROOT = Path(__file__).resolve().parent.parent
CLOUD_INIT_DIR = ROOT / "cloud-init"
LIBVIRT_TEMPLATE_DIR = ROOT / "providers"


def _env(directory: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory), undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False,
    )


_CLOUD_INIT = _env(CLOUD_INIT_DIR)
_LIBVIRT = _env(LIBVIRT_TEMPLATE_DIR)


def mac_for(stack: str, name: str) -> str:
    """Deterministic locally administered MAC (QEMU's 52:54:00 prefix) for a node or bridge."""
    digest = hashlib.sha256(f"{stack}/{name}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def keepalived_conf(cfg: LabConfig, director: Director, auth_pass: str) -> str:
    vrid = cfg.vrrp.virtual_router_id
    if "backup-wrong-vrid" in cfg.faults and director.state == "BACKUP":
        vrid = vrid % 255 + 1  # fault: the BACKUP listens for another router id
    advert = cfg.vrrp.advert_int
    return _CLOUD_INIT.get_template("keepalived.conf.j2").render(
        stack=cfg.stack, director=director, virtual_router_id=vrid,
        vrrp={"advert_int": int(advert) if advert == int(advert) else advert,
              "version": cfg.vrrp.version, "preempt": cfg.vrrp.preempt},
        auth_pass=auth_pass, vip=cfg.vip, port=cfg.port, hc=cfg.health_check, lb_algo=cfg.lb_algo,
        lb_kind=cfg.lb_kind, persistence_timeout=cfg.persistence_timeout, real_servers=cfg.real_servers,
    )


def nginx_site(cfg: LabConfig, server: RealServer) -> str:
    return _CLOUD_INIT.get_template("nginx-site.conf.j2").render(node=server, port=cfg.port)


def _common(cfg: LabConfig, node: Director | RealServer, role: str, ssh_public_key: str) -> dict[str, object]:
    return {"stack": cfg.stack, "role": role, "node": node, "ssh_public_key": ssh_public_key.strip(),
            "package_source": cfg.package_source, "faults": cfg.faults, "vip": cfg.vip}


def director_user_data(cfg: LabConfig, director: Director, ssh_public_key: str, auth_pass: str) -> str:
    return _CLOUD_INIT.get_template("director.yaml.j2").render(
        **_common(cfg, director, "director", ssh_public_key),
        scheduler_module=SCHEDULER_MODULES[cfg.lb_algo],
        keepalived_conf=keepalived_conf(cfg, director, auth_pass),
    )


def real_server_user_data(cfg: LabConfig, server: RealServer, ssh_public_key: str) -> str:
    return _CLOUD_INIT.get_template("real-server.yaml.j2").render(
        **_common(cfg, server, "real-server", ssh_public_key), nginx_site=nginx_site(cfg, server),
    )


def network_config(cfg: LabConfig, node: Director | RealServer) -> str:
    return _CLOUD_INIT.get_template("network-config.yaml.j2").render(
        node=node, mac=mac_for(cfg.stack, node.name), prefixlen=cfg.prefixlen,
    )


def meta_data(cfg: LabConfig, node: Director | RealServer) -> str:
    return _CLOUD_INIT.get_template("meta-data.yaml.j2").render(
        node=node, instance_id=f"{cfg.prefix}-{node.name}",
    )


def network_xml(cfg: LabConfig) -> str:
    return _LIBVIRT.get_template("network.xml.j2").render(
        name=f"{cfg.prefix}-net", bridge=cfg.bridge, mac=mac_for(cfg.stack, "bridge"),
        host_address=cfg.host_address, prefixlen=cfg.prefixlen,
    )


@dataclass(frozen=True)
class DomainDisks:
    disk_path: str
    seed_path: str
    repo_path: str | None
    kernel: str | None
    initrd: str | None


def domain_xml(cfg: LabConfig, node: Director | RealServer, role: str, domain_type: str,
               disks: DomainDisks, console_log: str) -> str:
    cmdline = f"root=LABEL=rootfs ro {cfg.image.kernel_cmdline}"
    return _LIBVIRT.get_template("domain.xml.j2").render(
        name=f"{cfg.prefix}-{node.name}", stack=cfg.stack, role=role, node_name=node.name,
        domain_type=domain_type, memory_mib=cfg.vm.memory_mib, vcpus=cfg.vm.vcpus,
        tb_cache_mib=cfg.vm.tb_cache_mib, kernel=disks.kernel, initrd=disks.initrd, cmdline=cmdline,
        disk_path=disks.disk_path, seed_path=disks.seed_path, repo_path=disks.repo_path,
        network=f"{cfg.prefix}-net", mac=mac_for(cfg.stack, node.name), console_log=console_log,
    )
