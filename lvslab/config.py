"""The lab's configuration: one typed model, parsed and validated in one place.

Why here: every bad value must be reported (all of them, each naming its config key and value)
before a single resource is declared, so nothing half-built is left behind by a typo.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

from lvslab.faults import CLOUD_INIT_FAULTS
from lvslab.hypervisor import HypervisorError, parse_uri
from lvslab.lab.scheduler import DEFAULT_SCHEDULER, SCHEDULERS
from lvslab.lab.topology import DEFAULT_TOPOLOGY, KEEPALIVED, NGINX_HA, TOPOLOGIES, Topology

PROJECT = "lvs-lab"

HEALTH_CHECKS = ("TCP_CHECK", "HTTP_GET")
DOMAIN_TYPES = ("auto", "kvm", "qemu")
BOOT_METHODS = ("kernel", "bootloader")
PACKAGE_SOURCES = ("local", "mirror")
FAILOVER_MODES = ("clean", "hard")
# IPVS forwarding methods (keepalived's lb_kind) the lab builds and verifies.
LB_KINDS = ("DR", "NAT", "TUN")
# Config sections that only mean something with IPVS (topologies lvs-*).
LVS_ONLY_KEYS = ("realServers", "lvs", "healthCheck")
# The real servers' health page with topology lvs-heartbeat says "<name> ok"; healthCheck.receive must match it.
HEALTH_PAGE_SUFFIX = " ok"
# Host names (RFC 1123 labels, lowercase, starting with a letter): they become hostnames and libvirt names.
_NAME_RE = re.compile(r"[a-z](?:[a-z0-9-]{0,29}[a-z0-9])?")
_BRIDGE_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}")
# libvirt URIs of the QEMU driver: qemu:///system, qemu+ssh://user@host/system, qemu+tcp://host/session?...
_URI_RE = re.compile(r"qemu(\+[a-z]+)?://[^/\s]*/(system|session)(\?\S*)?")
# An HTTP path nginx can serve as a plain location and keepalived can put in `url { path ... }`.
_PATH_RE = re.compile(r"/[A-Za-z0-9._~/-]*")
# keepalived's limits: persistence_timeout at most 31 days; VRRPv2 advert_int fits one byte of seconds.
MAX_PERSISTENCE_S = 2678400
MAX_ADVERT_INT_V2 = 255
# IPVS connection timeouts (ipvsadm --set tcp tcpfin udp; keepalived's lvs_timeouts): the kernel's defaults.
KERNEL_LVS_TIMEOUTS = {"tcp": 900, "tcpFin": 120, "udp": 300}
# heartbeat's takeover after deadtime: the resource scripts (IPaddr2, ldirectord's Perl start and first
# checks), measured 6 s on an idle 2-VM lab under emulation; the rest is room for a busy host.
HEARTBEAT_TAKEOVER_S = 9.0


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
    type: str = "HTTP_GET"
    path: str = "/"
    expect_status: int = 200
    connect_timeout: int = 2
    retry: int = 1
    delay_before_retry: int = 1
    delay_loop: int = 2
    # lvs-heartbeat: ldirectord's `receive`, a regexp the health page must match (negotiate check).
    receive: str = "ok"
    # lvs-heartbeat: ldirectord's `quiescent`: a failed real server stays in the table with weight 0.
    quiescent: bool = False


@dataclass(frozen=True)
class Vrrp:
    virtual_router_id: int = 61
    advert_int: float = 1
    version: int = 2
    preempt: bool = True
    # keepalived's unicast_src_ip/unicast_peer: adverts go to the other director's address, for networks
    # that block multicast (clouds, many labs).
    unicast_peers: bool = False


@dataclass(frozen=True)
class NginxCheck:
    """topology nginx-ha: keepalived's vrrp_script that checks nginx on each node (seed 004's
    chk_http_port), tracked by the VRRP instance. weight 0: `fall` failures put the instance in FAULT (it
    gives the VIP up at once); weight != 0: they change its priority by weight (as in the tutorial)."""

    interval: int = 2
    fall: int = 2
    rise: int = 1
    weight: int = 0
    process: str = "nginx"  # what the script looks for (pgrep -x)


@dataclass(frozen=True)
class Heartbeat:
    """topology lvs-heartbeat (seed 003): heartbeat's ha.cf timing in seconds. A silent peer is declared
    dead after `deadtime`; `initdead` is the first wait at start (both nodes boot); auto_failback moves
    the resources back to the node haresources names (the MASTER) when it returns."""

    keepalive: int = 1
    deadtime: int = 5
    warntime: int = 3
    initdead: int = 20
    auto_failback: bool = True
    udp_port: int = 694


@dataclass(frozen=True)
class LvsTimeouts:
    """IPVS connection-entry timeouts in seconds (seed 002's `ipvsadm --set`); the kernel's by default.
    tcp_fin bounds how long a closed connection keeps its persistence template alive."""

    tcp: int = KERNEL_LVS_TIMEOUTS["tcp"]
    tcp_fin: int = KERNEL_LVS_TIMEOUTS["tcpFin"]
    udp: int = KERNEL_LVS_TIMEOUTS["udp"]
    configured: bool = False  # rendered into keepalived.conf only when the stack sets them


@dataclass(frozen=True)
class Image:
    """Where the VM disk comes from and how it boots (kernel = direct kernel boot)."""

    source: str = "local"  # "local" = the image lvs-lab builds, else a path to a qcow2 cloud image
    boot_method: str = "kernel"
    kernel: str = ""
    initrd: str = ""
    # cloud-init=enabled: cloud-init's systemd generator skips ds-identify (the seed is always NoCloud).
    kernel_cmdline: str = "console=ttyS0 net.ifnames=0 mitigations=off quiet cloud-init=enabled"


@dataclass(frozen=True)
class Vm:
    vcpus: int = 1
    memory_mib: int = 448
    tb_cache_mib: int = 256  # QEMU TCG translation cache; the default of 1 GiB triples RSS
    # How many of the lab's VMs boot at the same time: "auto" (as many as the hypervisor has cores for under
    # software emulation, all under KVM), "all", or a number. Under TCG every VM is CPU-bound while it boots:
    # more VMs than cores only share the cores and cost more CPU each (measured +32 % per VM, 4 on 2 cores).
    boots_at_once: str | int = "auto"


@dataclass(frozen=True)
class Verify:
    enabled: bool = True
    requests_per_server: int = 4
    failover_mode: str = "clean"
    ready_timeout: int = 900
    nonce: str = ""


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
    sorry_server: bool = False
    # keepalived's lvs_sync_daemon: the MASTER's IPVS connection table is copied to the BACKUP (seed 002's
    # `ipvsadm --start-daemon master/backup`), so established connections survive a failover.
    sync_daemon: bool = False
    timeouts: LvsTimeouts = field(default_factory=LvsTimeouts)
    # LVS-NAT: the VIP and the client live in a second subnet on the same bridge (so replies must cross the
    # director); the real servers' default gateway is gateway_vip, a second VIP in the lab's subnet that
    # keepalived moves together with the VIP (one vrrp_sync_group). Unset (None, "") with DR.
    client_subnet: ipaddress.IPv4Network | None = None
    client_address: str = ""
    gateway_vip: str = ""
    topology: str = "lvs-keepalived"
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


KNOWN_KEYS = {
    "libvirtUri", "domainType", "network", "vip", "port", "directors", "realServers", "lvs",
    "healthCheck", "vrrp", "authPass", "image", "vm", "packageSource", "verify", "faults", "topology",
    "nginxCheck", "heartbeat",
}


class _Reader:
    """Reads typed values out of nested config dicts, recording problems instead of raising."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, key: str, message: str, value: Any) -> None:
        self.problems.append(f"{PROJECT}:{key}: {message} (got {value!r})")

    def unknown(self, key: str, name: str, allowed: set[str] | frozenset[str], value: Any) -> None:
        """An unknown key, with the nearest valid one when there is a likely typo."""
        near = difflib.get_close_matches(name, sorted(allowed), n=1, cutoff=0.6)
        hint = f"did you mean '{near[0]}'? " if near else ""
        self.fail(key, f"unknown key; {hint}expected one of {', '.join(sorted(allowed))}", value)

    def obj(self, raw: Any, key: str, allowed: set[str]) -> dict[str, Any]:
        """A nested object; unknown keys are reported (typos must not be silently ignored)."""
        sub = raw
        if not isinstance(sub, dict):
            self.fail(key, "must be an object", sub)
            return {}
        for unknown in sorted(set(sub) - allowed):
            self.unknown(f"{key}.{unknown}", unknown, allowed, sub[unknown])
        return sub

    def integer(self, raw: dict[str, Any], name: str, key: str, default: int | None, lo: int, hi: int,
                unit: str = "") -> int | None:
        """An integer in [lo, hi]; None when missing (no default) or invalid, so no follow-up check uses it."""
        value = raw.get(name, default)
        allowed = f"between {lo} and {hi}{' ' + unit if unit else ''}"
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            value = int(value)
        if value is None:
            self.fail(key, f"is required: an integer {allowed}", value)
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"must be an integer {allowed}", value)
            return None
        if not lo <= value <= hi:
            self.fail(key, f"must be {allowed}", value)
            return None
        return value

    def number(self, raw: dict[str, Any], name: str, key: str, default: float) -> float | None:
        """A finite number (not a boolean); None when invalid."""
        value = raw.get(name, default)
        if isinstance(value, bool):
            self.fail(key, "must be a number, not true/false", value)
            return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(key, "must be a number", value)
            return None
        if not math.isfinite(number):
            self.fail(key, "must be a finite number", value)
            return None
        return number

    def string(self, raw: dict[str, Any], name: str, key: str, default: str | None,
               choices: tuple[str, ...] | None = None) -> str:
        value = raw.get(name, default)
        if not isinstance(value, str) or (default is None and not value):
            self.fail(key, "must be a non-empty string", value)
            return default or ""
        if choices and value not in choices:
            self.fail(key, f"must be one of {', '.join(choices)}", value)
        return value

    def boolean(self, raw: dict[str, Any], name: str, key: str, default: bool) -> bool:
        value = raw.get(name, default)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            self.fail(key, "must be true or false", value)
            return default
        return value

    def address(self, value: Any, key: str) -> ipaddress.IPv4Address | None:
        try:
            return ipaddress.IPv4Address(value)
        except (ipaddress.AddressValueError, ValueError, TypeError):
            self.fail(key, "must be an IPv4 address", value)
            return None


BOOTS_AT_ONCE_WORDS = ("auto", "all")


def _boots_at_once(r: _Reader, value: Any) -> str | int:
    """vm.bootsAtOnce: auto, all or a whole number of VMs (1-64)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if value in BOOTS_AT_ONCE_WORDS or (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 64):
        return value
    r.fail("vm.bootsAtOnce", "must be auto (cores of the hypervisor under software emulation, all under KVM), "
           "all, or a number of VMs between 1 and 64", value)
    return "auto"


def parse_config(raw: dict[str, Any], stack: str, auth_pass: str | None = None,
                 auth_pass_is_secret: bool = True, foreign: dict[str, Any] | None = None) -> LabConfig:
    """Parse and validate the stack's config (keys without the project prefix); raise ConfigError with one
    line per mistake. `foreign`: config keys of other namespaces ("ns:key"), checked for a misspelt
    project namespace (their values would be silently ignored otherwise)."""
    r = _Reader()
    for full, value in sorted((foreign or {}).items()):
        ns, _, key = full.partition(":")
        if ns != PROJECT and difflib.SequenceMatcher(None, ns.lower(), PROJECT).ratio() >= 0.7:
            hint = f"{PROJECT}:{key}" if key in KNOWN_KEYS else f"a key of {PROJECT}"
            r.problems.append(f"{full}: unknown namespace '{ns}'; did you mean '{hint}'? (got {value!r})")
    for unknown in sorted(set(raw) - KNOWN_KEYS):
        r.unknown(unknown, unknown, KNOWN_KEYS, raw[unknown])

    topology = r.string(raw, "topology", "topology", DEFAULT_TOPOLOGY, tuple(TOPOLOGIES))
    if topology not in TOPOLOGIES:  # reported; validate the rest as the topology its keys suggest
        topology = KEEPALIVED if "realServers" in raw else NGINX_HA
    topo = TOPOLOGIES[topology]
    nginx_ha = not topo.uses_ipvs
    heartbeat_ha = topo.heartbeat
    if "heartbeat" in raw and not heartbeat_ha:
        r.fail("heartbeat", f"is only used with topology lvs-heartbeat (heartbeat's timing); with {topology} "
               "keepalived's VRRP moves the VIP (vrrp)", raw["heartbeat"])
    if heartbeat_ha:
        for dotted, why in topo.refused.items():
            section, _, name = dotted.partition(".")
            holder = raw.get(section) if name else raw
            if isinstance(holder, dict) and (name or section) in holder:
                r.fail(dotted, f"is not used with topology lvs-heartbeat: {why}", holder[name or section])
        raw = _without(raw, topo.refused)
    else:
        for dotted, what in (("healthCheck.receive", "ldirectord's receive regexp"),
                             ("lvs.quiescent", "ldirectord's quiescent")):
            section, _, name = dotted.partition(".")
            if isinstance(raw.get(section), dict) and name in raw[section]:
                r.fail(dotted, f"is only used with topology lvs-heartbeat ({what}); not with {topology}",
                       raw[section][name])
        raw = _without(raw, {"healthCheck.receive": "", "lvs.quiescent": ""})
    if nginx_ha:
        for key in LVS_ONLY_KEYS:
            if key in raw:
                r.fail(key, "is not used with topology nginx-ha (two nginx nodes share the VIP, no IPVS: the "
                       "directors serve the pages themselves)", raw[key])
        raw = {k: v for k, v in raw.items() if k not in LVS_ONLY_KEYS}
    elif "nginxCheck" in raw:
        checker = "ldirectord" if heartbeat_ha else "keepalived"
        r.fail("nginxCheck", f"is only used with topology nginx-ha (keepalived's check of nginx); with {topology} "
               f"{checker} checks the real servers (healthCheck)", raw["nginxCheck"])

    libvirt_uri = r.string(raw, "libvirtUri", "libvirtUri", "qemu:///system")
    if libvirt_uri and not _URI_RE.fullmatch(libvirt_uri):
        r.fail("libvirtUri", "must be a libvirt URI of the QEMU driver, e.g. qemu:///system or "
               "qemu+ssh://user@host/system", libvirt_uri)
    elif libvirt_uri:
        try:
            hv = parse_uri(libvirt_uri)
        except HypervisorError as exc:
            r.fail("libvirtUri", str(exc), libvirt_uri)
        else:
            if hv.remote and not hv.keyfile:
                r.fail("libvirtUri", "a remote hypervisor needs keyfile=PATH in the URI (the SSH key the lab's "
                       "commands and checks use to reach it and to hop through it to the nodes)", libvirt_uri)
    domain_type = r.string(raw, "domainType", "domainType", "auto", DOMAIN_TYPES)

    net = r.obj(raw.get("network", {}), "network", {"bridge", "subnet", "hostAddress", "clientSubnet",
                                                    "clientAddress"})
    bridge = r.string(net, "bridge", "network.bridge", None)
    if bridge and not _BRIDGE_RE.fullmatch(bridge):
        r.fail("network.bridge", "must be 1-15 characters of letters, digits, '_', '.', '-' (Linux IFNAMSIZ)",
               bridge)
    subnet: ipaddress.IPv4Network | None = None
    try:
        subnet = ipaddress.IPv4Network(net.get("subnet"), strict=True)
        if subnet.prefixlen > 29:
            r.fail("network.subnet", "must be /29 or larger", net.get("subnet"))
            subnet = None
    except (ValueError, TypeError):
        r.fail("network.subnet", "must be an IPv4 network in CIDR form with no host bits, e.g. 10.77.0.0/24",
               net.get("subnet"))

    # The forwarding method first: it decides which subnet the VIP belongs to.
    lvs = r.obj(raw.get("lvs", {}), "lvs",
                {"lbAlgo", "lbKind", "persistenceTimeout", "sorryServer", "syncDaemon", "timeouts", "gatewayVip",
                 "quiescent"})
    lb_kind = r.string(lvs, "lbKind", "lvs.lbKind", "DR", LB_KINDS)
    if heartbeat_ha and lb_kind in LB_KINDS and lb_kind != "DR":
        r.fail("lvs.lbKind", "must be DR with topology lvs-heartbeat (seed 003's LVS-DR: ldirectord's gate)", lb_kind)
        lb_kind = "DR"
    nat = lb_kind == "NAT"
    client_subnet: ipaddress.IPv4Network | None = None
    if "clientSubnet" in net and not nat:
        r.fail("network.clientSubnet", "is only used with lvs.lbKind NAT (the VIP's and the client's subnet); "
               f"with {lb_kind} the VIP lives in network.subnet", net["clientSubnet"])
    elif "clientAddress" in net and not nat:
        r.fail("network.clientAddress", f"is only used with lvs.lbKind NAT; with {lb_kind} the client is "
               "network.hostAddress", net["clientAddress"])
    elif "gatewayVip" in lvs and not nat:
        r.fail("lvs.gatewayVip", f"is only used with lvs.lbKind NAT (the real servers' gateway); with {lb_kind} "
               "the real servers answer the client directly", lvs["gatewayVip"])
    elif nat:
        try:
            client_subnet = ipaddress.IPv4Network(net.get("clientSubnet"), strict=True)
            if client_subnet.prefixlen > 29:
                r.fail("network.clientSubnet", "must be /29 or larger", net.get("clientSubnet"))
                client_subnet = None
            elif subnet is not None and client_subnet.overlaps(subnet):
                r.fail("network.clientSubnet", f"must not overlap network.subnet {subnet} (with NAT the client "
                       "must be in another subnet, or the real servers would answer it directly)",
                       net.get("clientSubnet"))
                client_subnet = None
        except (ValueError, TypeError):
            r.fail("network.clientSubnet", "is required with lvs.lbKind NAT: the VIP's and the client's IPv4 "
                   "subnet on the same bridge, in CIDR form without host bits, e.g. 10.177.0.0/24",
                   net.get("clientSubnet"))

    used: dict[ipaddress.IPv4Address, str] = {}

    def host_in_subnet(value: Any, key: str, within: ipaddress.IPv4Network | None = subnet,
                       within_key: str = "network.subnet") -> str:
        """A host address inside the subnet (checked only when the subnet itself is valid: one mistake, one
        message), not its network or broadcast address, not used twice."""
        addr = r.address(value, key)
        if addr is None:
            return str(value)
        if within is not None and addr not in within:
            r.fail(key, f"must be inside {within_key} {within}", str(addr))
        elif within is not None and addr in (within.network_address, within.broadcast_address):
            r.fail(key, f"must not be the network or broadcast address of {within}", str(addr))
        if addr in used:
            r.fail(key, f"duplicates the address of {used[addr]}", str(addr))
        else:
            used[addr] = key
        return str(addr)

    host_address = host_in_subnet(net.get("hostAddress"), "network.hostAddress")
    client_address = gateway_vip = ""
    if nat and client_subnet is not None:
        client_address = host_in_subnet(net.get("clientAddress", str(next(client_subnet.hosts()))),
                                        "network.clientAddress", client_subnet, "network.clientSubnet")
        vip = host_in_subnet(raw.get("vip"), "vip", client_subnet, "network.clientSubnet (lvs.lbKind NAT)")
    elif nat:
        vip = str(raw.get("vip"))  # its subnet is already reported
    else:
        vip = host_in_subnet(raw.get("vip"), "vip")
    port = r.integer(raw, "port", "port", 80, 1, 65535)

    vr = r.obj(raw.get("vrrp", {}), "vrrp", {"virtualRouterId", "advertInt", "version", "preempt", "unicastPeers"})
    preempt = r.boolean(vr, "preempt", "vrrp.preempt", True)

    directors: list[Director] = []
    raw_dirs = raw.get("directors")
    if not isinstance(raw_dirs, list) or len(raw_dirs) != 2:
        r.fail("directors", "must be a list of exactly two directors", raw_dirs)
        raw_dirs = raw_dirs if isinstance(raw_dirs, list) else []
    names: dict[str, str] = {}

    def node_name(value: Any, key: str) -> str:
        if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
            r.fail(key, "must be a host name: a lowercase letter, then lowercase letters, digits and '-', "
                   "not ending in '-', at most 31 characters", value)
            return str(value)
        if value in names:
            r.fail(key, f"duplicates the name of {names[value]}", value)
        names[value] = key
        return value

    complete = True  # every director field valid: only then are the cross-checks below meaningful
    for i, d in enumerate(raw_dirs):
        key = f"directors[{i}]"
        d = r.obj(d, key, {"name", "address", "priority", "state"})
        before = len(r.problems)
        priority = r.integer(d, "priority", f"{key}.priority", None, 1, 254)
        directors.append(Director(
            name=node_name(d.get("name"), f"{key}.name"),
            address=host_in_subnet(d.get("address"), f"{key}.address"),
            priority=priority or 0,
            state=r.string(d, "state", f"{key}.state", None, ("MASTER", "BACKUP")),
        ))
        complete = complete and len(r.problems) == before
    if len(directors) == 2 and complete:
        states = sorted(d.state for d in directors)
        high, low = sorted(directors, key=lambda d: d.priority, reverse=True)
        if high.priority == low.priority:
            r.fail("directors", "the two priorities must differ (the higher one is the MASTER)",
                   [d.priority for d in directors])
        elif heartbeat_ha and states != ["BACKUP", "MASTER"]:
            r.fail("directors", "must be one MASTER and one BACKUP with topology lvs-heartbeat (haresources names "
                   "the MASTER; heartbeat.autoFailback decides whether the VIP returns to it)", states)
        elif states == ["BACKUP", "MASTER"]:
            if high.state != "MASTER":
                r.fail("directors", f"the MASTER's priority must be higher than the BACKUP's "
                       f"({low.name} {low.priority} <= {high.name} {high.priority})", states)
        elif states == ["BACKUP", "BACKUP"]:
            if preempt:
                r.fail("directors", "both BACKUP is keepalived's non-preemptive setup: it needs vrrp.preempt "
                       "false (nopreempt on the higher priority); else make one the MASTER", states)
        else:
            r.fail("directors", "must be one MASTER and one BACKUP, or both BACKUP with vrrp.preempt false",
                   [d.state for d in directors])

    servers: list[RealServer] = []
    raw_rs = raw.get("realServers", [] if nginx_ha else None)
    if nginx_ha:
        pass
    elif not isinstance(raw_rs, list) or not raw_rs:
        r.fail("realServers", "must be a list of at least one real server", raw_rs)
        raw_rs = []
    for i, s in enumerate(raw_rs):
        key = f"realServers[{i}]"
        s = r.obj(s, key, {"name", "address", "weight"})
        weight = r.integer(s, "weight", f"{key}.weight", 1, 0, 65535)
        servers.append(RealServer(
            name=node_name(s.get("name"), f"{key}.name"),
            address=host_in_subnet(s.get("address"), f"{key}.address"),
            weight=-1 if weight is None else weight,
        ))
    if servers and all(s.weight == 0 for s in servers):
        r.fail("realServers", "at least one real server needs a weight above 0 (weight 0 takes no new "
               "connections)", [s.weight for s in servers])

    if nat and subnet is not None:
        # Default: the subnet's last host address (the usual gateway spot).
        gateway_vip = host_in_subnet(lvs.get("gatewayVip", str(subnet.broadcast_address - 1)), "lvs.gatewayVip")
    sorry_server = r.boolean(lvs, "sorryServer", "lvs.sorryServer", False)
    sync_daemon = r.boolean(lvs, "syncDaemon", "lvs.syncDaemon", False)
    tmo = r.obj(lvs.get("timeouts", {}), "lvs.timeouts", set(KERNEL_LVS_TIMEOUTS))
    unit = "seconds (unset: the kernel's default)"
    timeouts = LvsTimeouts(
        tcp=r.integer(tmo, "tcp", "lvs.timeouts.tcp", KERNEL_LVS_TIMEOUTS["tcp"], 1, 86400, unit) or 0,
        tcp_fin=r.integer(tmo, "tcpFin", "lvs.timeouts.tcpFin", KERNEL_LVS_TIMEOUTS["tcpFin"], 1, 86400, unit) or 0,
        udp=r.integer(tmo, "udp", "lvs.timeouts.udp", KERNEL_LVS_TIMEOUTS["udp"], 1, 86400, unit) or 0,
        configured=bool(tmo),
    )
    lb_algo = r.string(lvs, "lbAlgo", "lvs.lbAlgo", DEFAULT_SCHEDULER, tuple(SCHEDULERS))
    persistence = r.integer(lvs, "persistenceTimeout", "lvs.persistenceTimeout", 0, 0, MAX_PERSISTENCE_S,
                            "seconds (0 = off; keepalived's maximum is 31 days)")

    hc = r.obj(raw.get("healthCheck", {}), "healthCheck",
               {"type", "path", "expectStatus", "connectTimeout", "retry", "delayBeforeRetry", "delayLoop", "receive"})
    health = HealthCheck(
        type=r.string(hc, "type", "healthCheck.type", "HTTP_GET", HEALTH_CHECKS),
        path=r.string(hc, "path", "healthCheck.path", "/"),
        expect_status=r.integer(hc, "expectStatus", "healthCheck.expectStatus", 200, 100, 599) or 0,
        connect_timeout=r.integer(hc, "connectTimeout", "healthCheck.connectTimeout", 2, 1, 3600, "seconds") or 0,
        retry=r.integer(hc, "retry", "healthCheck.retry", 1, 0, 100, "retries") or 0,
        delay_before_retry=r.integer(hc, "delayBeforeRetry", "healthCheck.delayBeforeRetry", 1, 0, 3600,
                                     "seconds") or 0,
        delay_loop=r.integer(hc, "delayLoop", "healthCheck.delayLoop", 2, 1, 3600, "seconds") or 0,
        receive=r.string(hc, "receive", "healthCheck.receive", "ok"),
        quiescent=r.boolean(lvs, "quiescent", "lvs.quiescent", False),
    )
    if heartbeat_ha:
        _check_receive(r, health, "receive" in hc, servers)
    if health.path and not _PATH_RE.fullmatch(health.path):
        r.fail("healthCheck.path", "must be an absolute URL path of letters, digits and . _ ~ / - (no spaces, "
               "query or fragment); the real servers' nginx serves it", health.path)

    version = r.integer(vr, "version", "vrrp.version", 2, 2, 3)
    advert_int = r.number(vr, "advertInt", "vrrp.advertInt", 1)
    vrrp = Vrrp(
        virtual_router_id=r.integer(vr, "virtualRouterId", "vrrp.virtualRouterId", 61, 1, 255) or 0,
        advert_int=advert_int if advert_int is not None else 1,
        version=version or 2,
        preempt=preempt,
        unicast_peers=r.boolean(vr, "unicastPeers", "vrrp.unicastPeers", False),
    )
    if advert_int is None or version is None:
        pass
    elif advert_int <= 0:
        r.fail("vrrp.advertInt", "must be greater than 0 seconds", advert_int)
    elif version == 2 and (advert_int != int(advert_int) or advert_int > MAX_ADVERT_INT_V2):
        r.fail("vrrp.advertInt", f"must be whole seconds from 1 to {MAX_ADVERT_INT_V2} with VRRP version 2",
               advert_int)
    elif version == 3 and not 0.01 <= advert_int <= 40.95:
        r.fail("vrrp.advertInt", "must be between 0.01 and 40.95 seconds with VRRP version 3", advert_int)

    # authPass is optional: without it the lab generates one (a secret kept in the state).
    if auth_pass is not None and vrrp.version == 2 and not heartbeat_ha:
        if not 1 <= len(auth_pass) <= 8:
            # The value itself is a secret: report its length only.
            r.fail("authPass", "must be 1 to 8 characters: keepalived's PASS authentication silently "
                   "truncates longer passwords", f"<secret of {len(auth_pass)} characters>")
        elif not auth_pass_is_secret:
            r.fail("authPass", "must be stored as a secret (pulumi config set --secret authPass ...)",
                   "<plaintext>")

    im = r.obj(raw.get("image", {}), "image", {"source", "bootMethod", "kernel", "initrd", "kernelCmdline"})
    image = Image(
        source=r.string(im, "source", "image.source", "local"),
        boot_method=r.string(im, "bootMethod", "image.bootMethod", "kernel", BOOT_METHODS),
        kernel=r.string(im, "kernel", "image.kernel", ""),
        initrd=r.string(im, "initrd", "image.initrd", ""),
        kernel_cmdline=r.string(im, "kernelCmdline", "image.kernelCmdline", Image.kernel_cmdline),
    )
    package_source = r.string(raw, "packageSource", "packageSource", "local", PACKAGE_SOURCES)
    before = len(r.problems)
    for key, path in (("image.source", image.source), ("image.kernel", image.kernel),
                      ("image.initrd", image.initrd)):
        if not path or (key == "image.source" and path == "local"):
            continue
        if not os.path.isabs(path) or not os.path.isfile(path):
            what = "'local' (the image lvs-lab builds) or " if key == "image.source" else ""
            r.fail(key, f"must be {what}an absolute path to an existing file on this machine (it is uploaded "
                   "to the hypervisor; URLs are not fetched)", path)
    if len(r.problems) > before:
        pass  # one mistake, one message: no follow-up checks on an unusable image
    elif image.source == "local" and image.boot_method == "bootloader":
        r.fail("image.bootMethod", "bootloader needs an image.source with a bootloader; the image lvs-lab builds "
               "boots its kernel directly (kernel)", image.boot_method)
    elif image.source != "local" and image.boot_method == "kernel" and not image.kernel:
        r.fail("image.kernel", "is required when image.source is not 'local' and image.bootMethod is 'kernel'",
               image.kernel)
    elif image.source != "local" and image.boot_method == "bootloader" and (image.kernel or image.initrd):
        r.fail("image.kernel", "is not used with image.bootMethod bootloader (the image boots itself)",
               image.kernel or image.initrd)
    elif image.source != "local" and package_source == "local":
        r.fail("packageSource", "local (the repository built with lvs-lab's image) works with image.source "
               "local only; set packageSource: mirror for a custom image", package_source)

    vmr = r.obj(raw.get("vm", {}), "vm", {"vcpus", "memoryMib", "tbCacheMib", "bootsAtOnce"})
    vm = Vm(
        vcpus=r.integer(vmr, "vcpus", "vm.vcpus", 1, 1, 64, "vCPUs") or 0,
        memory_mib=r.integer(vmr, "memoryMib", "vm.memoryMib", 448, 256, 65536, "MiB") or 0,
        tb_cache_mib=r.integer(vmr, "tbCacheMib", "vm.tbCacheMib", 256, 32, 4096, "MiB") or 0,
        boots_at_once=_boots_at_once(r, vmr.get("bootsAtOnce", "auto")),
    )

    ve = r.obj(raw.get("verify", {}), "verify",
               {"enabled", "requestsPerServer", "failoverMode", "readyTimeout", "nonce"})
    verify = Verify(
        enabled=r.boolean(ve, "enabled", "verify.enabled", True),
        requests_per_server=r.integer(ve, "requestsPerServer", "verify.requestsPerServer", 4, 1, 1000,
                                      "requests") or 0,
        failover_mode=r.string(ve, "failoverMode", "verify.failoverMode", "clean", FAILOVER_MODES),
        ready_timeout=r.integer(ve, "readyTimeout", "verify.readyTimeout", 900, 30, 7200, "seconds") or 0,
        nonce=str(ve.get("nonce", "")),
    )
    if not preempt and verify.failover_mode == "hard":
        r.fail("verify.failoverMode", "hard cannot show nopreempt (vrrp.preempt false): a frozen MASTER resumes "
               "as MASTER and takes the VIP back by priority; use clean (keepalived stopped and started)",
               verify.failover_mode)

    faults = raw.get("faults", [])
    if not isinstance(faults, list):
        r.fail("faults", "must be a list", faults)
        faults = []
    for i, f in enumerate(faults):
        if f not in CLOUD_INIT_FAULTS:
            r.fail(f"faults[{i}]", f"unknown fault; expected one of {', '.join(CLOUD_INIT_FAULTS)}", f)

    nc = r.obj(raw.get("nginxCheck", {}), "nginxCheck", {"interval", "fall", "rise", "weight", "process"})
    nginx_check = NginxCheck(
        interval=r.integer(nc, "interval", "nginxCheck.interval", 2, 1, 60, "seconds") or 0,
        fall=r.integer(nc, "fall", "nginxCheck.fall", 2, 1, 10, "failed runs") or 0,
        rise=r.integer(nc, "rise", "nginxCheck.rise", 1, 1, 10, "good runs") or 0,
        weight=r.integer(nc, "weight", "nginxCheck.weight", 0, -253, 253,
                         "(0: the instance goes FAULT; else the priority changes by it)") or 0,
        process=r.string(nc, "process", "nginxCheck.process", "nginx") or "",
    )
    if nginx_check.process and not _NAME_RE.fullmatch(nginx_check.process):
        r.fail("nginxCheck.process", "must be a process name (pgrep -x): a lowercase letter, then lowercase "
               "letters, digits and '-'", nginx_check.process)
    if nginx_ha and nginx_check.weight and len(directors) == 2 and complete:
        high, low = sorted(directors, key=lambda d: d.priority, reverse=True)
        # The MASTER with nginx down must end up below the BACKUP with nginx up.
        if nginx_check.weight < 0 and high.priority + nginx_check.weight >= low.priority:
            r.fail("nginxCheck.weight", f"must bring {high.name}'s priority {high.priority} below {low.name}'s "
                   f"{low.priority} when nginx is down (weight < {low.priority - high.priority}), or the VIP "
                   "never moves", nginx_check.weight)
        elif nginx_check.weight > 0 and low.priority + nginx_check.weight <= high.priority:
            r.fail("nginxCheck.weight", f"must lift {low.name}'s priority {low.priority} above {high.name}'s "
                   f"{high.priority} while {high.name}'s nginx is down (weight > {high.priority - low.priority}), "
                   "or the VIP never moves", nginx_check.weight)

    heartbeat = _heartbeat(r, raw.get("heartbeat", {})) if heartbeat_ha else Heartbeat()

    if r.problems:
        raise ConfigError(r.problems)
    assert subnet is not None and port is not None and persistence is not None
    return LabConfig(
        stack=stack, libvirt_uri=libvirt_uri, domain_type=domain_type, bridge=bridge, subnet=subnet,
        host_address=host_address, vip=vip, port=port, directors=tuple(directors),
        real_servers=tuple(servers), lb_algo=lb_algo, lb_kind=lb_kind, persistence_timeout=persistence,
        health_check=health, vrrp=vrrp, image=image, vm=vm, package_source=package_source,
        verify=verify, faults=tuple(faults), sorry_server=sorry_server, sync_daemon=sync_daemon,
        timeouts=timeouts, client_subnet=client_subnet, client_address=client_address, gateway_vip=gateway_vip,
        topology=topology, nginx_check=nginx_check, heartbeat=heartbeat,
    )


def _without(raw: dict[str, Any], dotted_keys: dict[str, str]) -> dict[str, Any]:
    """raw minus the given keys ("section" or "section.key"); the caller's dicts are left alone."""
    out = dict(raw)
    for dotted in dotted_keys:
        section, _, name = dotted.partition(".")
        if not name:
            out.pop(section, None)
        elif isinstance(out.get(section), dict):
            out[section] = {k: v for k, v in out[section].items() if k != name}
    return out


def _heartbeat(r: _Reader, raw: Any) -> Heartbeat:
    """heartbeat's ha.cf timing, checked against heartbeat's own rules."""
    hb = r.obj(raw, "heartbeat", {"keepalive", "deadtime", "warntime", "initdead", "autoFailback", "udpPort"})
    keepalive = r.integer(hb, "keepalive", "heartbeat.keepalive", 1, 1, 60, "seconds")
    deadtime = r.integer(hb, "deadtime", "heartbeat.deadtime", 5, 2, 300, "seconds")
    warntime = r.integer(hb, "warntime", "heartbeat.warntime", 3, 1, 300, "seconds")
    initdead = r.integer(hb, "initdead", "heartbeat.initdead", 20, 4, 900, "seconds")
    auto_failback = r.boolean(hb, "autoFailback", "heartbeat.autoFailback", True)
    udp_port = r.integer(hb, "udpPort", "heartbeat.udpPort", 694, 1, 65535)
    if keepalive and deadtime and deadtime < 2 * keepalive:
        r.fail("heartbeat.deadtime", f"must be at least twice heartbeat.keepalive ({keepalive} s), or one lost "
               "heartbeat declares the peer dead", deadtime)
    elif deadtime and warntime and warntime >= deadtime:
        r.fail("heartbeat.warntime", f"must be below heartbeat.deadtime ({deadtime} s): it warns of a late "
               "heartbeat before the peer is declared dead", warntime)
    if deadtime and initdead and initdead < 2 * deadtime:
        r.fail("heartbeat.initdead", f"must be at least twice heartbeat.deadtime ({deadtime} s), heartbeat's rule "
               "for the first wait at boot", initdead)
    return Heartbeat(keepalive=keepalive or 0, deadtime=deadtime or 0, warntime=warntime or 0,
                     initdead=initdead or 0, auto_failback=auto_failback, udp_port=udp_port or 0)


def _check_receive(r: _Reader, health: HealthCheck, given: bool, servers: list[RealServer]) -> None:
    """ldirectord's receive: a regexp (Perl; Python's re is close enough to catch mistakes) inside quotes in
    ldirectord.cf that every real server's health page ("<name> ok") matches."""
    if health.type != "HTTP_GET":
        if given:
            r.fail("healthCheck.receive", f"is only used with healthCheck.type HTTP_GET (ldirectord's negotiate "
                   f"check); {health.type} only connects", health.receive)
        return
    if not health.receive or any(c in health.receive for c in '"\n'):
        r.fail("healthCheck.receive", "must be a non-empty regexp without double quotes or newlines (ldirectord.cf "
               "quotes it)", health.receive)
        return
    try:
        pattern = re.compile(health.receive)
    except re.error as exc:
        r.fail("healthCheck.receive", f"must be a valid regexp ({exc})", health.receive)
        return
    missed = [s.name for s in servers if not pattern.search(s.name + HEALTH_PAGE_SUFFIX)]
    if missed:
        r.fail("healthCheck.receive", f"must match every real server's health page '<name>{HEALTH_PAGE_SUFFIX}': "
               f"ldirectord would keep {', '.join(missed)} out of the table", health.receive)
