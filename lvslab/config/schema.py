"""The stack config's schema as data: one declaration per key (kind, limits or choices, default, unit, what it
means). The parser reads defaults, limits, units and the allowed keys of every section from here; README's
configuration table and Pulumi.yaml's config block are generated from it (lvslab.config.docs; a unit test
fails when they drift). Cross-field rules stay small named functions in lvslab.config.parse."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lvslab.faults import CLOUD_INIT_FAULTS
from lvslab.lab.scheduler import DEFAULT_SCHEDULER, SCHEDULERS
from lvslab.lab.topology import DEFAULT_TOPOLOGY, TOPOLOGIES

# Every topology's steps but readiness (the gate the others start from), in the order they run.
SKIPPABLE_STEPS = tuple(dict.fromkeys(s for t in TOPOLOGIES.values() for s in t.steps if s != "readiness"))

REQUIRED = object()  # no default: the stack must set it
DERIVED = object()  # no fixed default: the parser derives it from other keys (its description says how)
# keepalived's limits: persistence_timeout at most 31 days; VRRPv2 advert_int fits one byte of seconds.
MAX_PERSISTENCE_S = 2678400
MAX_ADVERT_INT_V2 = 255
# IPVS connection timeouts (ipvsadm --set tcp tcpfin udp; keepalived's lvs_timeouts): the kernel's defaults.
KERNEL_LVS_TIMEOUTS = {"tcp": 900, "tcpFin": 120, "udp": 300}
KERNEL_CMDLINE = "console=ttyS0 net.ifnames=0 mitigations=off quiet cloud-init=enabled"
BOOTS_AT_ONCE_WORDS = ("auto", "all")


@dataclass(frozen=True)
class Key:
    """One config key. path: dotted, `[]` for the items of a list ("directors[].priority"). kind: string,
    integer, number, boolean, choice, address (IPv4), network (IPv4 CIDR), secret, list, object, or a
    special reader's name (bootsAtOnce)."""

    path: str
    kind: str
    description: str
    default: Any = REQUIRED
    lo: float | None = None
    hi: float | None = None
    unit: str = ""
    choices: tuple[str, ...] = ()
    only: str = ""  # the topology or setting it belongs to, for the docs ("" = every lab)
    attr: str = ""  # where LabConfig keeps it, when not by the convention (model_attr)

    @property
    def model_attr(self) -> str:
        """The dotted attribute of LabConfig that holds the value: `attr`, else the path in snake case
        ("healthCheck.delayLoop" -> "health_check.delay_loop")."""
        return self.attr or ".".join(_snake(part) for part in self.path.split("."))

    @property
    def section(self) -> str:
        return self.path.rpartition(".")[0]

    @property
    def name(self) -> str:
        return self.path.rpartition(".")[2]

    def limits(self) -> str:
        """The allowed values, as the docs say them."""
        if self.choices:
            return ", ".join(self.choices)
        if self.lo is not None and self.hi is not None:
            return f"{self.lo:g}–{self.hi:g}" + (f" {self.unit.split(' (')[0]}" if self.unit else "")
        return {"boolean": "true/false", "address": "IPv4 address", "network": "IPv4 CIDR"}.get(self.kind, self.kind)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def _timeout(name: str) -> Key:
    return Key(f"lvs.timeouts.{name}", "integer", f"IPVS's {name} connection timeout (keepalived's lvs_timeouts, "
               "as `ipvsadm --set`); checked by lvs-state", KERNEL_LVS_TIMEOUTS[name], 1, 86400,
               "seconds (unset: the kernel's default)", attr=f"timeouts.{_snake(name)}")


S = "seconds"
SCHEMA: tuple[Key, ...] = (
    Key("topology", "choice", "what the lab builds: LVS directors with keepalived (seeds 000-002), with heartbeat + "
        "ldirectord (seed 003), or two nginx nodes sharing a VIP (seed 004)", DEFAULT_TOPOLOGY,
        choices=tuple(TOPOLOGIES)),
    Key("libvirtUri", "string", "libvirt URI of the QEMU driver: qemu:///system or /session, or a remote hypervisor "
        "qemu+ssh://user@host/system?keyfile=PATH[&knownhosts=PATH]", "qemu:///system"),
    Key("domainType", "choice", "auto (KVM when a guest really runs under it, else QEMU emulation), kvm or qemu",
        "auto", choices=("auto", "kvm", "qemu")),
    Key("network", "object", "the lab's one L2 segment"),
    Key("network.bridge", "string", "bridge name: 1-15 of letters, digits, _ . - (Linux IFNAMSIZ)", attr="bridge"),
    Key("network.subnet", "network", "the lab's IPv4 subnet without host bits, /29 or larger", attr="subnet"),
    Key("network.hostAddress", "address", "the host's address on the bridge (the lab's client with DR/TUN)",
        attr="host_address"),
    Key("network.clientSubnet", "network", "the VIP's and the client's subnet on the same bridge, not overlapping "
        "network.subnet", only="lvs.lbKind NAT", attr="client_subnet"),
    Key("network.clientAddress", "address", "the host's address in network.clientSubnet (default: its first "
        "host)", DERIVED, only="lvs.lbKind NAT", attr="client_address"),
    Key("vip", "address", "the virtual IP address the directors hold and balance (NAT: inside "
        "network.clientSubnet)"),
    Key("port", "integer", "TCP port of the virtual service and of nginx on the real servers", 80, 1, 65535),
    Key("directors", "list", "exactly two directors: one MASTER with the higher priority and one BACKUP, or both "
        "BACKUP with vrrp.preempt false"),
    Key("directors[].name", "string", "host name: a lowercase letter, then a-z 0-9 -, not ending in -, at most 31"),
    Key("directors[].address", "address", "inside network.subnet"),
    Key("directors[].priority", "integer", "VRRP priority; the two differ", REQUIRED, 1, 254),
    Key("directors[].state", "choice", "initial VRRP state", REQUIRED, choices=("MASTER", "BACKUP")),
    Key("realServers", "list", "at least one real server (nginx)", only="lvs-*"),
    Key("realServers[].name", "string", "host name, unique", only="lvs-*"),
    Key("realServers[].address", "address", "inside network.subnet", only="lvs-*"),
    Key("realServers[].weight", "integer", "IPVS weight; at least one above 0", 1, 0, 65535, only="lvs-*"),
    Key("lvs", "object", "the IPVS virtual service", only="lvs-*"),
    Key("lvs.lbAlgo", "choice", "IPVS scheduler (keepalived's lb_algo)", DEFAULT_SCHEDULER,
        choices=tuple(SCHEDULERS), only="lvs-*", attr="lb_algo"),
    Key("lvs.lbKind", "choice", "forwarding method: DR (VIP on the real servers' lo), NAT (replies cross the "
        "director, real servers route via lvs.gatewayVip), TUN (IPIP, VIP on tunl0)", "DR",
        choices=("DR", "NAT", "TUN"), only="lvs-*", attr="lb_kind"),
    Key("lvs.persistenceTimeout", "integer", "persistence_timeout: one client sticks to one real server",
        0, 0, MAX_PERSISTENCE_S, "seconds (0 = off; keepalived's maximum is 31 days)", only="lvs-*",
        attr="persistence_timeout"),
    Key("lvs.sorryServer", "boolean", "the directors' own nginx answers while every real server is out of the "
        "table (keepalived's sorry_server, ldirectord's fallback); adds the sorry-server step", False, only="lvs-*",
        attr="sorry_server"),
    Key("lvs.syncDaemon", "boolean", "keepalived's lvs_sync_daemon (connections survive a failover); adds the "
        "connection-sync step", False, only="lvs-keepalived", attr="sync_daemon"),
    Key("lvs.timeouts", "object", "IPVS connection timeouts", only="lvs-keepalived"),
    _timeout("tcp"), _timeout("tcpFin"), _timeout("udp"),
    Key("lvs.gatewayVip", "address", "the real servers' default gateway, a second VIP in network.subnet moved "
        "with the VIP (default: the subnet's last host address)", DERIVED, only="lvs.lbKind NAT", attr="gateway_vip"),
    Key("lvs.quiescent", "boolean", "ldirectord's quiescent: a failed real server stays in the table with "
        "weight 0", False, only="lvs-heartbeat", attr="health_check.quiescent"),
    Key("healthCheck", "object", "how the directors check the real servers", only="lvs-*"),
    Key("healthCheck.type", "choice", "HTTP_GET (ldirectord: negotiate) or TCP_CHECK (connect)", "HTTP_GET",
        choices=("TCP_CHECK", "HTTP_GET"), only="lvs-*"),
    Key("healthCheck.path", "string", "absolute URL path of A-Z a-z 0-9 . _ ~ / - the real servers serve", "/",
        only="lvs-*"),
    Key("healthCheck.expectStatus", "integer", "the HTTP status HTTP_GET expects", 200, 100, 599,
        only="lvs-keepalived"),
    Key("healthCheck.connectTimeout", "integer", "connect (and negotiate) timeout", 2, 1, 3600, S, only="lvs-*"),
    Key("healthCheck.retry", "integer", "retries before a real server is removed (ldirectord: failurecount - 1)",
        1, 0, 100, "retries", only="lvs-*"),
    Key("healthCheck.delayBeforeRetry", "integer", "pause between retries", 1, 0, 3600, S, only="lvs-keepalived"),
    Key("healthCheck.delayLoop", "integer", "interval between checks (ldirectord: checkinterval)", 2, 1, 3600, S,
        only="lvs-*"),
    Key("healthCheck.receive", "string", "ldirectord's receive regexp, which every real server's health page "
        "('<name> ok') must match", "ok", only="lvs-heartbeat"),
    Key("vrrp", "object", "keepalived's VRRP", only="lvs-keepalived, nginx-ha"),
    Key("vrrp.virtualRouterId", "integer", "VRRP router id (NAT's gateway instance uses the next one)", 61, 1, 255),
    Key("vrrp.advertInt", "number", "advert interval: whole 1-255 seconds with VRRP 2, 0.01-40.95 with VRRP 3", 1),
    Key("vrrp.version", "integer", "VRRP version", 2, 2, 3),
    Key("vrrp.preempt", "boolean", "the returning higher priority takes the VIP back; false (nopreempt) needs "
        "verify.failoverMode clean", True),
    Key("vrrp.unicastPeers", "boolean", "adverts by unicast to the other director; adds the vrrp-unicast step and "
        "runs failover/failback with multicast VRRP dropped on the bridge", False),
    Key("authPass", "secret", "VRRP PASS authentication (1-8 characters; VRRP 2) or heartbeat's authkeys; a "
        "Pulumi secret, generated if absent", None),
    Key("image", "object", "where the VM disk comes from and how it boots"),
    Key("image.source", "string", "local (the image lvs-lab builds) or an absolute path to a qcow2 file here",
        "local"),
    Key("image.bootMethod", "choice", "kernel (direct kernel boot) or bootloader (a custom image only)", "kernel",
        choices=("kernel", "bootloader")),
    Key("image.kernel", "string", "absolute path to the kernel of a custom image (bootMethod kernel)", ""),
    Key("image.initrd", "string", "absolute path to its initrd", ""),
    Key("image.kernelCmdline", "string", "the kernel command line (direct kernel boot)", KERNEL_CMDLINE),
    Key("vm", "object", "the VMs' size"),
    Key("vm.vcpus", "integer", "vCPUs per VM", 1, 1, 64, "vCPUs"),
    Key("vm.memoryMib", "integer", "memory per VM", 448, 256, 65536, "MiB"),
    Key("vm.tbCacheMib", "integer", "QEMU TCG translation cache (its 1 GiB default triples RSS)", 256, 32, 4096,
        "MiB"),
    Key("vm.bootsAtOnce", "bootsAtOnce", "first boots at a time: auto (the hypervisor's cores under emulation, all "
        "under KVM), all, or 1-64", "auto", choices=(*BOOTS_AT_ONCE_WORDS, "1-64")),
    Key("packageSource", "choice", "local (the lab's repository volume, no network needed; image.source local) or "
        "mirror (the distribution mirror)", "local", choices=("local", "mirror")),
    Key("verify", "object", "the verification steps"),
    Key("verify.enabled", "boolean", "run the verification as part of up", True),
    Key("verify.requestsPerServer", "integer", "fresh requests per real server in round-robin", 4, 1, 1000,
        "requests"),
    Key("verify.failoverMode", "choice", "clean (the HA daemon stopped) or hard (the MASTER's VM frozen)", "clean",
        choices=("clean", "hard")),
    Key("verify.readyTimeout", "integer", "how long a node may take to boot", 900, 30, 7200, S),
    Key("verify.nonce", "string", "any string; a new one re-runs the verification", ""),
    Key("verify.skip", "list", "steps left out while iterating (not readiness; failback only with failover; the "
        "report lists them)", (), choices=SKIPPABLE_STEPS),
    Key("faults", "list", "test-only faults rendered into the first boot (lvslab/faults.py)", (),
        choices=tuple(CLOUD_INIT_FAULTS)),
    Key("nginxCheck", "object", "keepalived's vrrp_script that checks nginx on each node", only="nginx-ha"),
    Key("nginxCheck.interval", "integer", "run every", 2, 1, 60, S, only="nginx-ha"),
    Key("nginxCheck.fall", "integer", "failed runs before the priority changes", 2, 1, 10, "failed runs",
        only="nginx-ha"),
    Key("nginxCheck.rise", "integer", "good runs that undo it", 1, 1, 10, "good runs", only="nginx-ha"),
    Key("nginxCheck.weight", "integer", "0: the instance goes FAULT; else the priority changes by it (must be able "
        "to move the VIP)", 0, -253, 253, "(0: the instance goes FAULT; else the priority changes by it)",
        only="nginx-ha"),
    Key("nginxCheck.process", "string", "the process the script looks for (pgrep -x)", "nginx", only="nginx-ha"),
    Key("heartbeat", "object", "heartbeat's ha.cf timing", only="lvs-heartbeat"),
    Key("heartbeat.keepalive", "integer", "interval between heartbeats", 1, 1, 60, S, only="lvs-heartbeat"),
    Key("heartbeat.deadtime", "integer", "a silent peer is dead after it; at least twice keepalive", 5, 2, 300, S,
        only="lvs-heartbeat"),
    Key("heartbeat.warntime", "integer", "late-heartbeat warning; below deadtime", 3, 1, 300, S,
        only="lvs-heartbeat"),
    Key("heartbeat.initdead", "integer", "first wait at boot; at least twice deadtime", 20, 4, 900, S,
        only="lvs-heartbeat"),
    Key("heartbeat.autoFailback", "boolean", "the resources go back to the MASTER when it returns", True,
        only="lvs-heartbeat"),
    Key("heartbeat.udpPort", "integer", "heartbeat's UDP port (unicast to the peer)", 694, 1, 65535,
        only="lvs-heartbeat"),
)
KEYS: dict[str, Key] = {k.path: k for k in SCHEMA}


def key(path: str) -> Key:
    return KEYS[path]


def default(path: str) -> Any:
    """A key's default, for the typed model's dataclasses (one place for each default)."""
    value = KEYS[path].default
    assert value is not REQUIRED and value is not DERIVED, f"{path} has no fixed default"
    return value


def children(section: str) -> set[str]:
    """The names allowed directly under a section ("" = the top level, "directors[]" = a director)."""
    return {k.name for k in SCHEMA if k.section == section}
