"""Pure rendering of every text artefact of a lab: cloud-init user-data, keepalived.conf, nginx site,
network-config, meta-data and the libvirt XSLT transforms. Templates are data (cloud-init/, xslt/); this module
only chooses the values. StrictUndefined: a missing value is an error, never an empty string.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jinja2

from lvslab.config import HEALTH_PAGE_SUFFIX, LabConfig
from lvslab.faults import render_flags
from lvslab.lab.topology import LDIRECTORD
from lvslab.model import SORRY_PREFIX, STREAM_MIB, STREAM_PATH, TUN_ADVMSS, LabFacts, NodeFacts, health_page_file

ROOT = Path(__file__).resolve().parent.parent
CLOUD_INIT_DIR = ROOT / "cloud-init"
XSLT_DIR = ROOT / "xslt"


def template_env(directory: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory), undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False,
    )


_CLOUD_INIT = template_env(CLOUD_INIT_DIR)
_XSLT = template_env(XSLT_DIR)


def keepalived_conf(cfg: LabConfig, director: NodeFacts, auth_pass: str) -> str:
    vrid = cfg.vrrp.virtual_router_id
    offset = render_flags(cfg.faults).backup_vrid_offset
    if offset and director.state == "BACKUP":
        vrid = (vrid + offset - 1) % 255 + 1  # fault: the BACKUP listens for another router id
    advert = cfg.vrrp.advert_int
    return _CLOUD_INIT.get_template("keepalived.conf.j2").render(
        stack=cfg.stack, director=director, virtual_router_id=vrid,
        vrrp={"advert_int": int(advert) if advert == int(advert) else advert,
              "version": cfg.vrrp.version, "preempt": cfg.vrrp.preempt, "unicast_peers": cfg.vrrp.unicast_peers},
        peer=next(d for d in cfg.directors if d.name != director.name),
        auth_pass=auth_pass, vip=cfg.vip, port=cfg.port, hc=cfg.health_check, lb_algo=cfg.lb_algo,
        lb_kind=cfg.lb_kind, persistence_timeout=cfg.persistence_timeout, real_servers=cfg.real_servers,
        sorry_server=cfg.sorry_server and render_flags(cfg.faults).sorry_server_line,
        sync_daemon=cfg.sync_daemon, sync_id=cfg.vrrp.virtual_router_id, timeouts=cfg.timeouts,
        gateway_vip=cfg.gateway_vip, gateway_router_id=cfg.gateway_router_id, prefixlen=cfg.prefixlen,
        vip_prefixlen=cfg.vip_subnet.prefixlen, topology=cfg.topology, nginx_check=cfg.nginx_check,
    )


def _health_page(cfg: LabConfig) -> str | None:
    """lvs-heartbeat: the file behind the health path that ldirectord's receive reads (else None: nginx
    answers the health path itself)."""
    if cfg.topo.ipvs_manager == LDIRECTORD and cfg.health_check.type == "HTTP_GET":
        return health_page_file(cfg.health_check.path)
    return None


def nginx_site(cfg: LabConfig, server: NodeFacts) -> str:
    return _CLOUD_INIT.get_template("nginx-site.conf.j2").render(node=server, port=cfg.port,
                                                                 health_path=cfg.health_check.path,
                                                                 health_page=_health_page(cfg))


def ha_cf(cfg: LabConfig, director: NodeFacts) -> str:
    """heartbeat's ha.cf (lvs-heartbeat): timing, unicast heartbeats to the peer, both node names."""
    return _CLOUD_INIT.get_template("ha.cf.j2").render(
        stack=cfg.stack, director=director, hb=cfg.heartbeat, directors=cfg.directors,
        peer=next(d for d in cfg.directors if d.name != director.name),
    )


def haresources(cfg: LabConfig) -> str:
    """heartbeat's haresources (lvs-heartbeat), the same on both directors: the MASTER owns VIP + ldirectord."""
    return _CLOUD_INIT.get_template("haresources.j2").render(stack=cfg.stack, master=cfg.master, vip=cfg.vip)


def ldirectord_cf(cfg: LabConfig) -> str:
    """ldirectord.cf (lvs-heartbeat), the same on both directors."""
    return _CLOUD_INIT.get_template("ldirectord.cf.j2").render(
        stack=cfg.stack, hc=cfg.health_check, vip=cfg.vip, port=cfg.port, real_servers=cfg.real_servers,
        sorry_server=cfg.sorry_server and render_flags(cfg.faults).sorry_server_line, lb_algo=cfg.lb_algo,
        persistence_timeout=cfg.persistence_timeout,
    )


def sorry_site(cfg: LabConfig, director: NodeFacts) -> str:
    """The director's own nginx for keepalived's sorry_server or ldirectord's fallback (answers as
    SORRY_PREFIX + its name)."""
    return _CLOUD_INIT.get_template("nginx-sorry.conf.j2").render(node=director, port=cfg.port,
                                                                  label=SORRY_PREFIX + director.name)


def _common(cfg: LabConfig, node: NodeFacts, role: str, ssh_public_key: str) -> dict[str, object]:
    return {"stack": cfg.stack, "role": role, "node": node, "ssh_public_key": ssh_public_key.strip(),
            "package_source": cfg.package_source, "flags": render_flags(cfg.faults), "vip": cfg.vip,
            "lb_kind": cfg.lb_kind}


def director_user_data(cfg: LabConfig, director: NodeFacts, ssh_public_key: str, auth_pass: str) -> str:
    """An LVS director's user-data (keepalived, whose configuration a command pushes later, see
    pushed_file; heartbeat + ldirectord with topology lvs-heartbeat), or with topology nginx-ha an
    nginx node's (it serves the VIP itself)."""
    topo = cfg.topo
    sorry = sorry_site(cfg, director) if cfg.sorry_server else None
    extra: dict[str, Callable[[], dict[str, object]]] = {  # what each template renders besides the common part
        "heartbeat.yaml.j2": lambda: {"ha_cf": ha_cf(cfg, director), "haresources": haresources(cfg),
                                      "auth_pass": auth_pass, "sorry_site": sorry},
        "nginx-ha.yaml.j2": lambda: {"nginx_site": nginx_site(cfg, director),
                                     "keepalived_conf": keepalived_conf(cfg, director, auth_pass)},
        "director.yaml.j2": lambda: {"sorry_site": sorry},
    }
    return _CLOUD_INIT.get_template(topo.director_template).render(
        **_common(cfg, director, topo.director_role, ssh_public_key), **extra[topo.director_template]())


def pushed_file(cfg: LabConfig, director: NodeFacts, auth_pass: str) -> str:
    """The content of the topology's pushed file (Topology.pushed): lvs-keepalived's keepalived.conf (real
    servers, weights, scheduler, health check), lvs-heartbeat's ldirectord.cf (the IPVS side; heartbeat's own
    files stay in the user-data: they change with the directors, not with the real servers). nginx-ha bakes its
    keepalived.conf into the user-data: it holds nothing that changes day to day."""
    pushed = cfg.topo.pushed
    assert pushed is not None, f"topology {cfg.topology} pushes no file"
    renderers: dict[str, Callable[[], str]] = {"keepalived.conf": lambda: keepalived_conf(cfg, director, auth_pass),
                                               "ldirectord.cf": lambda: ldirectord_cf(cfg)}
    return renderers[pushed.name]()


def real_server_user_data(cfg: LabConfig, server: NodeFacts, ssh_public_key: str) -> str:
    return _CLOUD_INIT.get_template("real-server.yaml.j2").render(
        **_common(cfg, server, "real-server", ssh_public_key), nginx_site=nginx_site(cfg, server),
        health_page=_health_page(cfg), health_text=server.name + HEALTH_PAGE_SUFFIX,
        stream_path=STREAM_PATH, stream_mib=STREAM_MIB, subnet=str(cfg.subnet), advmss=TUN_ADVMSS,
    )


def network_config(facts: LabFacts, node: NodeFacts) -> str:
    cfg = facts.cfg
    # LVS-NAT: real servers answer through the directors (their default gateway is the gateway VIP).
    gateway = cfg.gateway_vip if cfg.lb_kind == "NAT" and node.role == "real-server" else None
    return _CLOUD_INIT.get_template("network-config.yaml.j2").render(
        node=node, mac=node.mac, prefixlen=cfg.prefixlen, gateway=gateway,
    )


def meta_data(node: NodeFacts) -> str:
    return _CLOUD_INIT.get_template("meta-data.yaml.j2").render(node=node, instance_id=node.domain)


def network_xslt(facts: LabFacts) -> str:
    """XSLT for pulumi-libvirt's Network: fixed bridge MAC, no STP, the configured host address, no DHCP/DNS."""
    cfg = facts.cfg
    return _XSLT.get_template("network.xsl.j2").render(
        network=facts.network, bridge=cfg.bridge, bridge_mac=facts.bridge_mac, host_address=cfg.host_address,
        client_address=cfg.client_address,
    )


def domain_xslt(facts: LabFacts, node: NodeFacts, domain_type: str, repo_volume: str | None) -> str:
    """XSLT for pulumi-libvirt's Domain: TCG cache (emulation only), overlay cache mode, read-only repository,
    serial console log file, headless, virtio RNG."""
    return _XSLT.get_template("domain.xsl.j2").render(
        domain=node.domain, tb_cache_mib=facts.cfg.vm.tb_cache_mib if domain_type == "qemu" else 0,
        disk_volume=node.disk_volume, repo_volume=repo_volume, console_log=node.console_log,
    )
