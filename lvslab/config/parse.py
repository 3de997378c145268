"""Stack config -> typed LabConfig: every mistake reported at once, one line each, naming the key and the bad
value and saying what is allowed, before a single resource is declared (nothing half-built is left behind by
a typo). Kinds, defaults and limits come from the schema; the rules across keys are the small functions
below, each skipped when a key it reads already has a problem (one mistake, one message)."""

from __future__ import annotations

import difflib
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from lvslab.config.model import (
    PROJECT,
    ConfigError,
    Director,
    Heartbeat,
    LabConfig,
    LvsTimeouts,
    RealServer,
    Verify,
    Vm,
    Vrrp,
)
from lvslab.config.reader import Reader, read, section
from lvslab.config.rules import (
    BRIDGE_RE,
    NAME_RE,
    check_advert_int,
    check_auth_pass,
    check_director_states,
    check_image,
    check_libvirt_uri,
    check_nginx_weight,
    check_topology_keys,
    health_check,
    heartbeat_timing,
    nginx_check,
)
from lvslab.config.schema import KEYS, SKIPPABLE_STEPS, children
from lvslab.faults import CLOUD_INIT_FAULTS
from lvslab.lab.topology import TOPOLOGIES

KNOWN_KEYS = children("")


@dataclass
class _Parse:
    """What the sections share while one stack is read: the problems, the addresses and names taken so far."""

    r: Reader
    subnet: ipaddress.IPv4Network | None = None
    used: dict[ipaddress.IPv4Address, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)

    def host_in_subnet(self, value: Any, key: str, within: ipaddress.IPv4Network | None = None,
                       within_key: str = "network.subnet", default_subnet: bool = True) -> str:
        """A host address inside the subnet (checked only when the subnet itself is valid: one mistake, one
        message), not its network or broadcast address, not used twice."""
        if default_subnet and within is None:
            within = self.subnet
        addr = self.r.address(value, key)
        if addr is None:
            return str(value)
        if within is not None and addr not in within:
            self.r.fail(key, f"must be inside {within_key} {within}", str(addr))
        elif within is not None and addr in (within.network_address, within.broadcast_address):
            self.r.fail(key, f"must not be the network or broadcast address of {within}", str(addr))
        if addr in self.used:
            self.r.fail(key, f"duplicates the address of {self.used[addr]}", str(addr))
        else:
            self.used[addr] = key
        return str(addr)

    def node_name(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not NAME_RE.fullmatch(value):
            self.r.fail(key, "must be a host name: a lowercase letter, then lowercase letters, digits and '-', "
                        "not ending in '-', at most 31 characters", value)
            return str(value)
        if value in self.names:
            self.r.fail(key, f"duplicates the name of {self.names[value]}", value)
        self.names[value] = key
        return value


def parse_config(raw: dict[str, Any], stack: str, auth_pass: str | None = None,
                 auth_pass_is_secret: bool = True, foreign: dict[str, Any] | None = None) -> LabConfig:
    """Parse and validate the stack's config (keys without the project prefix); raise ConfigError with one
    line per mistake. `foreign`: config keys of other namespaces ("ns:key"), checked for a misspelt
    project namespace (their values would be silently ignored otherwise)."""
    p = _Parse(Reader())
    r = p.r
    _unknown_keys(r, raw, foreign or {})
    topology = read(r, raw, "topology")
    if topology not in TOPOLOGIES:
        # Reported; nothing else is checked: which keys are allowed and what they mean depends on it, so
        # any further message would be about keys the user may have written right.
        raise ConfigError(r.problems)
    topo = TOPOLOGIES[topology]
    raw = check_topology_keys(r, raw, topo)

    libvirt_uri = read(r, raw, "libvirtUri")
    check_libvirt_uri(r, libvirt_uri)
    domain_type = read(r, raw, "domainType")
    net = section(r, raw.get("network", {}), "network")
    bridge = read(r, net, "network.bridge")
    if bridge and not BRIDGE_RE.fullmatch(bridge):
        r.fail("network.bridge", "must be 1-15 characters of letters, digits, '_', '.', '-' (Linux IFNAMSIZ)",
               bridge)
    p.subnet = _subnet(r, net.get("subnet"), "network.subnet",
                       "must be an IPv4 network in CIDR form with no host bits, e.g. 10.77.0.0/24")
    # The forwarding method first: it decides which subnet the VIP belongs to.
    lvs = section(r, raw.get("lvs", {}), "lvs")
    lb_kind = read(r, lvs, "lvs.lbKind")
    if topo.heartbeat and lb_kind in KEYS["lvs.lbKind"].choices and lb_kind != "DR":
        r.fail("lvs.lbKind", "must be DR with topology lvs-heartbeat (seed 003's LVS-DR: ldirectord's gate)", lb_kind)
        lb_kind = "DR"
    client_subnet = _client_subnet(p, net, lvs, lb_kind)
    host_address = p.host_in_subnet(net.get("hostAddress"), "network.hostAddress")
    client_address, vip = _client_and_vip(p, raw, net, lb_kind, client_subnet)
    port = read(r, raw, "port")

    vr = section(r, raw.get("vrrp", {}), "vrrp")
    preempt = read(r, vr, "vrrp.preempt")
    directors, complete = _directors(p, raw, topo.heartbeat, preempt)
    servers = _real_servers(p, raw, not topo.uses_ipvs)
    gateway_vip = ""
    if lb_kind == "NAT" and p.subnet is not None:
        # Default: the subnet's last host address (the usual gateway spot).
        gateway_vip = p.host_in_subnet(lvs.get("gatewayVip", str(p.subnet.broadcast_address - 1)), "lvs.gatewayVip")
    sorry_server = read(r, lvs, "lvs.sorryServer")
    sync_daemon = read(r, lvs, "lvs.syncDaemon")
    tmo = section(r, lvs.get("timeouts", {}), "lvs.timeouts")
    timeouts = LvsTimeouts(tcp=read(r, tmo, "lvs.timeouts.tcp") or 0, tcp_fin=read(r, tmo, "lvs.timeouts.tcpFin") or 0,
                           udp=read(r, tmo, "lvs.timeouts.udp") or 0, configured=bool(tmo))
    lb_algo = read(r, lvs, "lvs.lbAlgo")
    persistence = read(r, lvs, "lvs.persistenceTimeout")
    health = health_check(r, section(r, raw.get("healthCheck", {}), "healthCheck"), lvs, topo.heartbeat, servers)

    vrrp = _vrrp(r, vr, preempt)
    # authPass is optional: without it the lab generates one (a secret kept in the state).
    check_auth_pass(r, auth_pass, auth_pass_is_secret, vrrp.version, topo.heartbeat)
    image, package_source = check_image(r, raw)
    vm = _vm(r, raw)
    verify = _verify(r, raw, preempt, topo.steps)
    faults = _faults(r, raw)
    nginx = nginx_check(r, section(r, raw.get("nginxCheck", {}), "nginxCheck"))
    if not topo.uses_ipvs and nginx.weight and len(directors) == 2 and complete:
        check_nginx_weight(r, nginx, directors, preempt)
    heartbeat = heartbeat_timing(r, raw.get("heartbeat", {})) if topo.heartbeat else Heartbeat()

    if r.problems:
        raise ConfigError(r.problems)
    assert p.subnet is not None and port is not None and persistence is not None
    return LabConfig(
        stack=stack, libvirt_uri=libvirt_uri, domain_type=domain_type, bridge=bridge, subnet=p.subnet,
        host_address=host_address, vip=vip, port=port, directors=tuple(directors),
        real_servers=tuple(servers), lb_algo=lb_algo, lb_kind=lb_kind, persistence_timeout=persistence,
        health_check=health, vrrp=vrrp, image=image, vm=vm, package_source=package_source,
        verify=verify, faults=tuple(faults), sorry_server=sorry_server, sync_daemon=sync_daemon,
        timeouts=timeouts, client_subnet=client_subnet, client_address=client_address, gateway_vip=gateway_vip,
        topology=topology, nginx_check=nginx, heartbeat=heartbeat,
    )


def _unknown_keys(r: Reader, raw: dict[str, Any], foreign: dict[str, Any]) -> None:
    """A misspelt project namespace (its keys would be silently ignored), and unknown top-level keys."""
    for full, value in sorted(foreign.items()):
        ns, _, key = full.partition(":")
        if ns != PROJECT and difflib.SequenceMatcher(None, ns.lower(), PROJECT).ratio() >= 0.7:
            hint = f"{PROJECT}:{key}" if key in KNOWN_KEYS else f"a key of {PROJECT}"
            r.problems.append(f"{full}: unknown namespace '{ns}'; did you mean '{hint}'? (got {value!r})")
    for unknown in sorted(set(raw) - KNOWN_KEYS):
        r.unknown(unknown, unknown, KNOWN_KEYS, raw[unknown])


def _subnet(r: Reader, value: Any, key: str, invalid: str) -> ipaddress.IPv4Network | None:
    """An IPv4 network without host bits, /29 or larger; None (reported) otherwise."""
    try:
        if not isinstance(value, str):
            raise TypeError(value)  # ipaddress would read an integer (or true) as a /32
        subnet = ipaddress.IPv4Network(value, strict=True)
    except (ValueError, TypeError):
        r.fail(key, invalid, value)
        return None
    if subnet.prefixlen > 29:
        r.fail(key, "must be /29 or larger", value)
        return None
    return subnet


def _client_subnet(p: _Parse, net: dict[str, Any], lvs: dict[str, Any],
                   lb_kind: str) -> ipaddress.IPv4Network | None:
    """LVS-NAT: the VIP's and the client's subnet (required, apart from network.subnet); the NAT-only keys
    are refused with DR and TUN."""
    r, nat = p.r, lb_kind == "NAT"
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
        client_subnet = _subnet(r, net.get("clientSubnet"), "network.clientSubnet",
                                "is required with lvs.lbKind NAT: the VIP's and the client's IPv4 subnet on the same "
                                "bridge, in CIDR form without host bits, e.g. 10.177.0.0/24")
        if client_subnet is not None and p.subnet is not None and client_subnet.overlaps(p.subnet):
            r.fail("network.clientSubnet", f"must not overlap network.subnet {p.subnet} (with NAT the client "
                   "must be in another subnet, or the real servers would answer it directly)", net.get("clientSubnet"))
            return None
        return client_subnet
    return None


def _client_and_vip(p: _Parse, raw: dict[str, Any], net: dict[str, Any], lb_kind: str,
                    client_subnet: ipaddress.IPv4Network | None) -> tuple[str, str]:
    """(the client's address with NAT, else "", the VIP): NAT puts both in network.clientSubnet."""
    if lb_kind == "NAT" and client_subnet is not None:
        client_address = p.host_in_subnet(net.get("clientAddress", str(next(client_subnet.hosts()))),
                                          "network.clientAddress", client_subnet, "network.clientSubnet")
        return client_address, p.host_in_subnet(raw.get("vip"), "vip", client_subnet,
                                                "network.clientSubnet (lvs.lbKind NAT)")
    if lb_kind == "NAT":
        return "", str(raw.get("vip"))  # its subnet is already reported
    return "", p.host_in_subnet(raw.get("vip"), "vip")


def _vrrp(r: Reader, vr: dict[str, Any], preempt: bool) -> Vrrp:
    version = read(r, vr, "vrrp.version")
    advert_int = read(r, vr, "vrrp.advertInt")
    vrrp_id = read(r, vr, "vrrp.virtualRouterId") or 0
    vrrp = Vrrp(virtual_router_id=vrrp_id, advert_int=advert_int if advert_int is not None else 1,
                version=version or 2, preempt=preempt, unicast_peers=read(r, vr, "vrrp.unicastPeers"))
    check_advert_int(r, advert_int, version)
    return vrrp


def _directors(p: _Parse, raw: dict[str, Any], heartbeat_ha: bool, preempt: bool) -> tuple[list[Director], bool]:
    """The two directors, and whether every field of them was valid (only then do the rules across them run)."""
    r = p.r
    directors: list[Director] = []
    raw_dirs = raw.get("directors")
    if not isinstance(raw_dirs, list) or len(raw_dirs) != 2:
        r.fail("directors", "must be a list of exactly two directors", raw_dirs)
        raw_dirs = raw_dirs if isinstance(raw_dirs, list) else []
    complete = True
    for i, d in enumerate(raw_dirs):
        key = f"directors[{i}]"
        d = section(r, d, "directors[]", key)
        before = len(r.problems)
        priority = read(r, d, "directors[].priority", f"{key}.priority")
        directors.append(Director(
            name=p.node_name(d.get("name"), f"{key}.name"),
            address=p.host_in_subnet(d.get("address"), f"{key}.address"),
            priority=priority or 0,
            state=read(r, d, "directors[].state", f"{key}.state"),
        ))
        complete = complete and len(r.problems) == before
    if len(directors) == 2 and complete:
        check_director_states(r, directors, heartbeat_ha, preempt)
    return directors, complete


def _real_servers(p: _Parse, raw: dict[str, Any], nginx_ha: bool) -> list[RealServer]:
    r = p.r
    servers: list[RealServer] = []
    raw_rs = raw.get("realServers", [] if nginx_ha else None)
    if not nginx_ha and (not isinstance(raw_rs, list) or not raw_rs):
        r.fail("realServers", "must be a list of at least one real server", raw_rs)
        raw_rs = []
    for i, s in enumerate(raw_rs):
        key = f"realServers[{i}]"
        s = section(r, s, "realServers[]", key)
        weight = read(r, s, "realServers[].weight", f"{key}.weight")
        servers.append(RealServer(
            name=p.node_name(s.get("name"), f"{key}.name"),
            address=p.host_in_subnet(s.get("address"), f"{key}.address"),
            weight=-1 if weight is None else weight,
        ))
    if servers and all(s.weight == 0 for s in servers):
        r.fail("realServers", "at least one real server needs a weight above 0 (weight 0 takes no new "
               "connections)", [s.weight for s in servers])
    return servers


def _vm(r: Reader, raw: dict[str, Any]) -> Vm:
    vmr = section(r, raw.get("vm", {}), "vm")
    return Vm(vcpus=read(r, vmr, "vm.vcpus") or 0, memory_mib=read(r, vmr, "vm.memoryMib") or 0,
              tb_cache_mib=read(r, vmr, "vm.tbCacheMib") or 0, boots_at_once=read(r, vmr, "vm.bootsAtOnce"))


def _verify(r: Reader, raw: dict[str, Any], preempt: bool, steps: tuple[str, ...]) -> Verify:
    ve = section(r, raw.get("verify", {}), "verify")
    skip = _choice_list(r, ve.get("skip", []), "verify.skip", "step", SKIPPABLE_STEPS)
    for i, step in enumerate(skip):
        if step in SKIPPABLE_STEPS and step not in steps:
            r.fail(f"verify.skip[{i}]", f"not a step of this topology; its steps: {', '.join(steps[1:])}", step)
    if "failover" in skip and "failback" not in skip:
        r.fail("verify.skip", "failover skipped but not failback: failback starts from the VIP failover moved "
               "(skip both)", skip)
    verify = Verify(enabled=read(r, ve, "verify.enabled"),
                    requests_per_server=read(r, ve, "verify.requestsPerServer") or 0,
                    failover_mode=read(r, ve, "verify.failoverMode"),
                    ready_timeout=read(r, ve, "verify.readyTimeout") or 0, nonce=str(ve.get("nonce", "")),
                    skip=tuple(s for s in skip if isinstance(s, str)))
    if not preempt and verify.failover_mode == "hard":
        r.fail("verify.failoverMode", "hard cannot show nopreempt (vrrp.preempt false): a frozen MASTER resumes "
               "as MASTER and takes the VIP back by priority; use clean (keepalived stopped and started)",
               verify.failover_mode)
    return verify


def _faults(r: Reader, raw: dict[str, Any]) -> list[str]:
    return _choice_list(r, raw.get("faults", []), "faults", "fault", tuple(CLOUD_INIT_FAULTS))


def _choice_list(r: Reader, value: Any, key: str, noun: str, choices: tuple[str, ...]) -> list[str]:
    """A list whose items are names from a table (faults, steps): one message per unknown item."""
    if not isinstance(value, list):
        r.fail(key, "must be a list", value)
        return []
    for i, item in enumerate(value):
        if not isinstance(item, str) or item not in choices:
            r.fail(f"{key}[{i}]", f"unknown {noun}; expected one of {', '.join(choices)}", item)
    return value
