"""Derived facts of a lab, computed once from the validated config: every name, MAC, path, role, bound
and window that the components, the checks and the runner need. Nothing else builds a libvirt name or a
MAC; changing a naming rule here changes it everywhere.

Also the typed verification spec: what the checks (a separate process run by a command resource) know
about the lab, as a frozen dataclass with a JSON round trip. No pulumi import here.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, fields
from typing import Any

from lvslab.config import PROJECT, Director, LabConfig, RealServer
from lvslab.lab.scheduler import SCHEDULERS, Scheduler
from lvslab.lab.topology import LDIRECTORD, TOPOLOGIES, Topology

POOL_ROOT = os.environ.get("LVSLAB_POOL_DIR") or "/var/lib/lvs-lab/pools"
SEED_ROOT = os.environ.get("LVSLAB_SEED_DIR") or "/var/lib/lvs-lab/seeds"
LOG_ROOT = os.environ.get("LVSLAB_LOG_DIR") or "/var/log/lvs-lab"
OVERLAY_SIZE_MIB = 4096
# The X-Real-Server header of a director's sorry page: this prefix + the director's name.
SORRY_PREFIX = "sorry-"
# A large file every real server serves, for the long-lived (throttled) download of the connection-sync
# step; sparse on disk, so it costs nothing.
STREAM_PATH = "/lvslab-stream.bin"
STREAM_MIB = 16
# LVS-TUN: the director wraps each client packet in a 20-byte IPIP header; real servers advertise this
# MSS to clients (1500 - 20 - 40) so full-size client segments still fit the bridge's MTU once wrapped.
TUN_ADVMSS = 1440
# nginx's document root on the real servers (index.html names the server).
WEB_ROOT = "/var/www/html"


def health_page_file(path: str) -> str:
    """topology lvs-heartbeat: the file behind healthCheck.path on a real server. It holds "<name> ok" (what
    ldirectord's receive must match), so the health-check step can make it stop matching and match again."""
    return WEB_ROOT + path + ("index.html" if path.endswith("/") else "")


def mac_for(stack: str, name: str) -> str:
    """Deterministic locally administered MAC (QEMU's 52:54:00 prefix) for a node or the bridge."""
    digest = hashlib.sha256(f"{stack}/{name}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def lab_prefix(stack: str) -> str:
    """Prefix of every libvirt object and host path of a stack, so labs of different stacks coexist."""
    return f"{PROJECT}-{stack}"


def kernel_cmdlines(cmdline: str) -> list[dict[str, str]]:
    """A kernel command line in the shape pulumi-libvirt reads back: one map of key=value arguments and
    one map {"_": "flags"} (keyless arguments, space-separated), each sorted. Any other shape shows a diff
    at every refresh."""
    pairs: dict[str, str] = {}
    flags: list[str] = []
    for arg in cmdline.split():
        key, sep, value = arg.partition("=")
        if sep:
            pairs[key] = value
        else:
            flags.append(arg)
    shape: list[dict[str, str]] = []
    if pairs:
        shape.append(dict(sorted(pairs.items())))
    if flags:
        shape.append({"_": " ".join(sorted(flags))})
    return shape


@dataclass(frozen=True)
class NodeFacts:
    """One VM: its config entry plus the names and paths derived from it."""

    name: str
    role: str  # "director" or "real-server"
    address: str
    mac: str
    domain: str
    disk_volume: str
    seed_volume: str
    seed_file: str  # the NoCloud ISO on the machine running Pulumi, uploaded as seed_volume
    console_log: str
    state: str = ""  # directors: MASTER or BACKUP
    priority: int = 0  # directors
    weight: int = 0  # real servers


@dataclass(frozen=True)
class _Nodes:
    """The nodes and their look-ups, shared by the lab's facts and the verification spec."""

    directors: tuple[NodeFacts, ...]
    real_servers: tuple[NodeFacts, ...]

    @property
    def nodes(self) -> tuple[NodeFacts, ...]:
        return self.directors + self.real_servers

    @property
    def master(self) -> NodeFacts:
        return next(d for d in self.directors if d.state == "MASTER")

    @property
    def backup(self) -> NodeFacts:
        return next(d for d in self.directors if d.state == "BACKUP")


@dataclass(frozen=True)
class LabFacts(_Nodes):
    cfg: LabConfig
    prefix: str
    network: str
    bridge_mac: str
    pool: str
    pool_path: str
    seed_dir: str
    console_dir: str

    def node(self, name: str) -> NodeFacts:
        return next(n for n in self.nodes if n.name == name)

    def volume(self, suffix: str) -> str:
        """Name of a shared volume of the lab's pool (base image, kernel, initrd, repository)."""
        return f"{self.prefix}-{suffix}"

    @property
    def cmdlines(self) -> list[dict[str, str]]:
        return kernel_cmdlines(f"root=LABEL=rootfs ro {self.cfg.image.kernel_cmdline}")


def boots_at_once(setting: str | int, domain_type: str, hypervisor_cpus: int, vcpus: int, nodes: int) -> int:
    """vm.bootsAtOnce resolved: under software emulation a booting VM keeps one core busy per vCPU, so auto
    boots as many as the hypervisor's cores carry; under KVM (guests mostly wait on I/O) all at once."""
    if setting == "all" or (setting == "auto" and domain_type == "kvm"):
        return max(nodes, 1)
    if setting == "auto":
        return max(1, hypervisor_cpus // max(vcpus, 1))
    return int(setting)


def boot_after(names: tuple[str, ...], at_once: int) -> dict[str, str | None]:
    """Which node's readiness each node's domain waits for: the i-th starts when the (i - at_once)-th is ready,
    so at most `at_once` first boots share the CPU. In list order: directors first, as they take longest and
    their configuration pushes follow their boot."""
    return {name: names[i - at_once] if i >= at_once else None for i, name in enumerate(names)}


def derive(cfg: LabConfig, pool_root: str = POOL_ROOT, log_root: str = LOG_ROOT,
           seed_root: str = SEED_ROOT) -> LabFacts:
    """All derived facts of a validated config, computed once."""
    prefix = lab_prefix(cfg.stack)
    console_dir = os.path.join(log_root, prefix)
    seed_dir = os.path.join(seed_root, prefix)

    def node(n: Director | RealServer, role: str) -> NodeFacts:
        domain = f"{prefix}-{n.name}"
        # state: the role the director plays at start (the higher priority is the MASTER, also in the
        # non-preemptive setup where both are configured BACKUP; keepalived.conf renders that).
        extra: dict[str, Any] = ({"state": "MASTER" if n == cfg.master else "BACKUP", "priority": n.priority}
                                 if isinstance(n, Director) else {"weight": n.weight})
        return NodeFacts(name=n.name, role=role, address=n.address, mac=mac_for(cfg.stack, n.name), domain=domain,
                         disk_volume=f"{domain}.qcow2", seed_volume=f"{domain}-seed.iso",
                         seed_file=os.path.join(seed_dir, f"{n.name}-seed.iso"),
                         console_log=os.path.join(console_dir, f"{n.name}.log"), **extra)

    return LabFacts(
        cfg=cfg, prefix=prefix, network=f"{prefix}-net", bridge_mac=mac_for(cfg.stack, "bridge"),
        pool=f"{prefix}-pool", pool_path=os.path.join(pool_root, prefix), seed_dir=seed_dir, console_dir=console_dir,
        directors=tuple(node(d, "director") for d in cfg.directors),
        real_servers=tuple(node(s, "real-server") for s in cfg.real_servers),
    )


# --- the verification spec -----------------------------------------------------------------------------

@dataclass(frozen=True)
class HealthCheckSpec:
    type: str
    delay_loop: int
    connect_timeout: int
    retry: int
    delay_before_retry: int
    receive: str = ""  # lvs-heartbeat: ldirectord's receive regexp
    page_file: str = ""  # lvs-heartbeat: the health page on each real server
    quiescent: bool = False  # lvs-heartbeat: a failed real server stays in the table with weight 0

    def window(self) -> tuple[float, float]:
        """Seconds keepalived may take to remove a failed server and to re-add a recovered one."""
        per_try = self.connect_timeout + self.delay_before_retry
        return self.delay_loop + (self.retry + 1) * per_try, self.delay_loop + self.connect_timeout


@dataclass(frozen=True)
class VerifySpec(_Nodes):
    """Everything the checks know about a lab (no secrets: the SSH key travels separately)."""

    topology: str  # a name of lvslab.lab.topology.TOPOLOGIES: which daemons, which steps
    uri: str
    vip: str
    port: int
    bridge: str
    client_address: str  # this host's address that talks to the VIP (NAT: in the client subnet)
    extra_clients: tuple[str, ...]  # more client addresses on the bridge, for sh
    lb_kind: str
    gateway_vip: str  # NAT: the real servers' default gateway, moving with the VIP ("" otherwise)
    lb_algo: str
    persistence: int
    sorry_server: bool
    sync_daemon: bool
    lvs_timeouts: tuple[int, int, int]  # tcp, tcpfin, udp seconds (ipvsadm -L --timeout)
    health_check: HealthCheckSpec
    advert_int: float
    preempt: bool
    unicast_peers: bool
    failover_bound_s: float
    heartbeat_initdead: int  # lvs-heartbeat: heartbeat's first wait for its peer at boot (0 otherwise)
    failover_mode: str
    requests_per_server: int
    ready_timeout: int

    @property
    def topo(self) -> Topology:
        """This lab's row of the topology table."""
        return TOPOLOGIES[self.topology]

    @property
    def scheduler(self) -> Scheduler:
        """What the checks may predict of the lab's IPVS scheduler."""
        return SCHEDULERS[self.lb_algo]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> VerifySpec:
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        if set(raw) != known:
            raise ValueError(f"verification spec keys differ: missing {sorted(known - set(raw))}, "
                             f"unknown {sorted(set(raw) - known)}")
        raw["directors"] = tuple(NodeFacts(**n) for n in raw["directors"])
        raw["real_servers"] = tuple(NodeFacts(**n) for n in raw["real_servers"])
        raw["health_check"] = HealthCheckSpec(**raw["health_check"])
        raw["lvs_timeouts"] = tuple(raw["lvs_timeouts"])
        raw["extra_clients"] = tuple(raw["extra_clients"])
        return cls(**raw)


def extra_clients(cfg: LabConfig, count: int = 6) -> tuple[str, ...]:
    """Client addresses for the sh check, added to the host's side of the bridge for the check only: the
    highest free host addresses of the VIP's subnet (none of them a node, a VIP or the host)."""
    used = {cfg.vip, cfg.gateway_vip, cfg.host_address, cfg.client,
            *(n.address for n in (*cfg.directors, *cfg.real_servers))}
    free = [str(a) for a in reversed(list(cfg.vip_subnet.hosts())) if str(a) not in used]
    return tuple(free[:count])


def verify_spec(facts: LabFacts) -> VerifySpec:
    cfg = facts.cfg
    return VerifySpec(
        topology=cfg.topology, uri=cfg.libvirt_uri, vip=cfg.vip, port=cfg.port, bridge=cfg.bridge,
        client_address=cfg.client,
        extra_clients=extra_clients(cfg), lb_kind=cfg.lb_kind, gateway_vip=cfg.gateway_vip, lb_algo=cfg.lb_algo,
        persistence=cfg.persistence_timeout,
        sorry_server=cfg.sorry_server,
        sync_daemon=cfg.sync_daemon, lvs_timeouts=(cfg.timeouts.tcp, cfg.timeouts.tcp_fin, cfg.timeouts.udp),
        directors=facts.directors,
        real_servers=facts.real_servers,
        health_check=_health_check_spec(cfg),
        advert_int=cfg.vrrp.advert_int, preempt=cfg.preempt,
        unicast_peers=cfg.vrrp.unicast_peers, failover_bound_s=cfg.failover_bound_seconds(),
        heartbeat_initdead=cfg.heartbeat.initdead if cfg.topo.heartbeat else 0,
        failover_mode=cfg.verify.failover_mode, requests_per_server=cfg.verify.requests_per_server,
        ready_timeout=cfg.verify.ready_timeout,
    )


def _health_check_spec(cfg: LabConfig) -> HealthCheckSpec:
    """keepalived's check as configured; ldirectord's (lvs-heartbeat) mapped onto the same windows: it retries
    at the next checkinterval (delay_loop), failurecount = retry + 1."""
    hc = cfg.health_check
    heartbeat = cfg.topo.ipvs_manager == LDIRECTORD
    return HealthCheckSpec(
        type=hc.type, delay_loop=hc.delay_loop, connect_timeout=hc.connect_timeout, retry=hc.retry,
        delay_before_retry=hc.delay_loop if heartbeat else hc.delay_before_retry,
        receive=hc.receive if heartbeat and hc.type == "HTTP_GET" else "",
        page_file=health_page_file(hc.path) if heartbeat and hc.type == "HTTP_GET" else "",
        quiescent=hc.quiescent and heartbeat,
    )
