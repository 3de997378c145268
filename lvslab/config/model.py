"""The typed config a lab is built from (frozen dataclasses), with what it implies (master, backup, the
failover bound). Defaults come from the schema (lvslab.config.schema), one place each."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from lvslab.config.schema import default
from lvslab.lab.topology import TOPOLOGIES, Topology

PROJECT = "lvs-lab"
# The real servers' health page with topology lvs-heartbeat says "<name> ok"; healthCheck.receive must match it.
HEALTH_PAGE_SUFFIX = " ok"
# heartbeat's takeover after deadtime, until real servers answer again: IPaddr2 takes the VIP (the director's own
# nginx answers it with the fallback page meanwhile), then ldirectord's Perl start and its first checks put the real
# servers into IPVS. Measured after a frozen peer in CI on 2026-12-04: a real server answered 25.15 s after the
# freeze (deadtime 5 s: 20 s of takeover); counting the fallback page as service it was 4.7-6.2 s on an idle host
# and 10.8 s under load.
HEARTBEAT_TAKEOVER_S = 25.0


class ConfigError(ValueError):
    """All problems found in a stack's configuration, one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid lvs-lab configuration:\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class Director:
    name: str
    address: str
    priority: int
    state: str  # MASTER or BACKUP


@dataclass(frozen=True)
class RealServer:
    name: str
    address: str
    weight: int


@dataclass(frozen=True)
class HealthCheck:
    type: str = default("healthCheck.type")
    path: str = default("healthCheck.path")
    expect_status: int = default("healthCheck.expectStatus")
    connect_timeout: int = default("healthCheck.connectTimeout")
    retry: int = default("healthCheck.retry")
    delay_before_retry: int = default("healthCheck.delayBeforeRetry")
    delay_loop: int = default("healthCheck.delayLoop")
    # lvs-heartbeat: ldirectord's `receive`, a regexp the health page must match (negotiate check).
    receive: str = default("healthCheck.receive")
    # lvs-heartbeat: ldirectord's `quiescent`: a failed real server stays in the table with weight 0.
    quiescent: bool = default("lvs.quiescent")


@dataclass(frozen=True)
class Vrrp:
    virtual_router_id: int = default("vrrp.virtualRouterId")
    advert_int: float = default("vrrp.advertInt")
    version: int = default("vrrp.version")
    preempt: bool = default("vrrp.preempt")
    # keepalived's unicast_src_ip/unicast_peer: adverts go to the other director's address, for networks
    # that block multicast (clouds, many labs).
    unicast_peers: bool = default("vrrp.unicastPeers")


@dataclass(frozen=True)
class NginxCheck:
    """topology nginx-ha: keepalived's vrrp_script that checks nginx on each node (seed 004's
    chk_http_port), tracked by the VRRP instance. weight 0: `fall` failures put the instance in FAULT (it
    gives the VIP up at once); weight != 0: they change its priority by weight (as in the tutorial)."""

    interval: int = default("nginxCheck.interval")
    fall: int = default("nginxCheck.fall")
    rise: int = default("nginxCheck.rise")
    weight: int = default("nginxCheck.weight")
    process: str = default("nginxCheck.process")  # what the script looks for (pgrep -x)


@dataclass(frozen=True)
class Heartbeat:
    """topology lvs-heartbeat (seed 003): heartbeat's ha.cf timing in seconds. A silent peer is declared
    dead after `deadtime`; `initdead` is the first wait at start (both nodes boot); auto_failback moves
    the resources back to the node haresources names (the MASTER) when it returns."""

    keepalive: int = default("heartbeat.keepalive")
    deadtime: int = default("heartbeat.deadtime")
    warntime: int = default("heartbeat.warntime")
    initdead: int = default("heartbeat.initdead")
    auto_failback: bool = default("heartbeat.autoFailback")
    udp_port: int = default("heartbeat.udpPort")


@dataclass(frozen=True)
class LvsTimeouts:
    """IPVS connection-entry timeouts in seconds (seed 002's `ipvsadm --set`); the kernel's by default.
    tcp_fin bounds how long a closed connection keeps its persistence template alive."""

    tcp: int = default("lvs.timeouts.tcp")
    tcp_fin: int = default("lvs.timeouts.tcpFin")
    udp: int = default("lvs.timeouts.udp")
    configured: bool = False  # rendered into keepalived.conf only when the stack sets them


@dataclass(frozen=True)
class Image:
    """Where the VM disk comes from and how it boots (kernel = direct kernel boot)."""

    source: str = default("image.source")  # "local" = the image lvs-lab builds, else a path to a qcow2 cloud image
    boot_method: str = default("image.bootMethod")
    kernel: str = default("image.kernel")
    initrd: str = default("image.initrd")
    # cloud-init=enabled: cloud-init's systemd generator skips ds-identify (the seed is always NoCloud).
    kernel_cmdline: str = default("image.kernelCmdline")


@dataclass(frozen=True)
class Vm:
    vcpus: int = default("vm.vcpus")
    memory_mib: int = default("vm.memoryMib")
    tb_cache_mib: int = default("vm.tbCacheMib")  # QEMU TCG translation cache; the default of 1 GiB triples RSS
    # How many of the lab's VMs boot at the same time: "auto" (as many as the hypervisor has cores for under
    # software emulation, all under KVM), "all", or a number. Under TCG every VM is CPU-bound while it boots:
    # more VMs than cores only share the cores and cost more CPU each (measured +32 % per VM, 4 on 2 cores).
    boots_at_once: str | int = default("vm.bootsAtOnce")


@dataclass(frozen=True)
class Verify:
    enabled: bool = default("verify.enabled")
    requests_per_server: int = default("verify.requestsPerServer")
    failover_mode: str = default("verify.failoverMode")
    ready_timeout: int = default("verify.readyTimeout")
    nonce: str = default("verify.nonce")
    skip: tuple[str, ...] = ()  # verify.skip


@dataclass(frozen=True)
class LabConfig:
    stack: str
    libvirt_uri: str
    domain_type: str
    bridge: str
    subnet: ipaddress.IPv4Network
    host_address: str
    vip: str
    port: int
    directors: tuple[Director, ...]
    real_servers: tuple[RealServer, ...]
    lb_algo: str
    lb_kind: str
    persistence_timeout: int
    health_check: HealthCheck
    vrrp: Vrrp
    image: Image
    vm: Vm
    package_source: str
    verify: Verify
    faults: tuple[str, ...] = field(default_factory=tuple)
    # keepalived's sorry_server: the directors' own nginx (127.0.0.1, IPVS local node) answers while every
    # real server is out of the table (seed 003's ldirectord fallback, done by keepalived).
    sorry_server: bool = default("lvs.sorryServer")
    # keepalived's lvs_sync_daemon: the MASTER's IPVS connection table is copied to the BACKUP (seed 002's
    # `ipvsadm --start-daemon master/backup`), so established connections survive a failover.
    sync_daemon: bool = default("lvs.syncDaemon")
    timeouts: LvsTimeouts = field(default_factory=LvsTimeouts)
    # LVS-NAT: the VIP and the client live in a second subnet on the same bridge (so replies must cross the
    # director); the real servers' default gateway is gateway_vip, a second VIP in the lab's subnet that
    # keepalived moves together with the VIP (one vrrp_sync_group). Unset (None, "") with DR.
    client_subnet: ipaddress.IPv4Network | None = None
    client_address: str = ""
    gateway_vip: str = ""
    topology: str = default("topology")
    nginx_check: NginxCheck = field(default_factory=NginxCheck)
    heartbeat: Heartbeat = field(default_factory=Heartbeat)

    @property
    def topo(self) -> Topology:
        """This lab's row of the topology table."""
        return TOPOLOGIES[self.topology]

    @property
    def client(self) -> str:
        """The address the lab's client (this host) talks to the VIP from."""
        return self.client_address or self.host_address

    @property
    def gateway_router_id(self) -> int:
        """NAT: the VRRP router id of the gateway VIP's instance (the next one after the VIP's)."""
        return self.vrrp.virtual_router_id % 255 + 1

    @property
    def vip_subnet(self) -> ipaddress.IPv4Network:
        """The subnet the VIP lives in (its prefix on the director)."""
        return self.client_subnet or self.subnet

    @property
    def master(self) -> Director:
        """The director that holds the VIP first: the higher priority (also with both in state BACKUP)."""
        return max(self.directors, key=lambda d: d.priority)

    @property
    def backup(self) -> Director:
        return min(self.directors, key=lambda d: d.priority)

    @property
    def prefixlen(self) -> int:
        return self.subnet.prefixlen

    @property
    def preempt(self) -> bool:
        """Does the VIP go back to the MASTER when it returns? (keepalived's preempt, heartbeat's
        auto_failback)"""
        return self.heartbeat.auto_failback if self.topo.heartbeat else self.vrrp.preempt

    def failover_bound_seconds(self) -> float:
        """keepalived's master-down interval on the BACKUP: 3 x advert_int + skew. nginx-ha: the vrrp_script
        first needs `fall` failed runs, `interval` seconds apart (nginx may stop just after a run), the last
        one taking up to its timeout (= interval)."""
        prio = self.backup.priority
        skew = (256 - prio) / 256 if self.vrrp.version == 2 else (256 - prio) * self.vrrp.advert_int / 256
        vrrp = 3 * self.vrrp.advert_int + skew
        if self.topo.failover_bound == "vrrp-script":
            return (self.nginx_check.fall + 1) * self.nginx_check.interval + vrrp
        if self.topo.failover_bound == "heartbeat":
            # A silent peer is dead after deadtime (clean stops hand over sooner); then heartbeat runs the
            # resource scripts: IPaddr2 (VIP + gratuitous ARP) and ldirectord (a Perl start, first checks).
            return self.heartbeat.deadtime + HEARTBEAT_TAKEOVER_S
        return vrrp

