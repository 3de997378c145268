"""The systems lvs-lab builds (the seeds' tutorials), one row each: which daemon moves the VIP, whether IPVS
and VRRP are in play, the directors' user-data, the file pushed to them after boot, the steps that verify it,
the keys it refuses and how its failover bound is computed. A new topology is a row here (plus its
templates and tests), not a string compared across the code."""

from __future__ import annotations

from dataclasses import dataclass, field

KEEPALIVED, HEARTBEAT, NGINX_HA = "lvs-keepalived", "lvs-heartbeat", "nginx-ha"
LDIRECTORD = "ldirectord"


@dataclass(frozen=True)
class PushedFile:
    """A director's configuration pushed by a command resource after boot and reloaded, so day-2 changes (real
    servers, weights, scheduler, health check) update it in place instead of replacing the VM."""

    name: str  # the file, as the resource suffix names it: <director>-<suffix>
    resource_suffix: str


@dataclass(frozen=True)
class Topology:
    name: str
    seeds: str  # the tutorials it follows
    ha_daemon: str  # the unit that moves the VIP
    failover_stops: str  # what a clean failover stops on the MASTER
    uses_vrrp: bool  # keepalived's VRRP moves the VIP (vrrp.* applies)
    uses_ipvs: bool  # directors balance real servers with IPVS (realServers, lvs, healthCheck apply)
    ipvs_manager: str | None  # who writes the IPVS table and health-checks the real servers
    director_template: str  # the directors' user-data (cloud-init/)
    director_role: str  # the role the user-data template is rendered for
    pushed: PushedFile | None
    steps: tuple[str, ...]  # the verification steps, in order (optional ones run where the lab has the feature)
    failover_bound: str  # "vrrp", "vrrp-script" (+ the nginx check's detection) or "heartbeat" (deadtime)
    ha_log_command: str  # the HA daemon's log, for the artefacts
    # The HA daemon starts the IPVS manager on the new holder at each takeover (heartbeat's haresources start
    # ldirectord): its first check round follows the VIP, so real servers may leave and rejoin the new table once.
    ipvs_starts_at_takeover: bool = False
    # keys it refuses: dotted key -> why (the parser's message)
    refused: dict[str, str] = field(default_factory=dict)

    @property
    def heartbeat(self) -> bool:
        """heartbeat moves the VIP (seed 003): its timing, its settling, its takeover."""
        return self.ha_daemon == "heartbeat"


TOPOLOGIES: dict[str, Topology] = {t.name: t for t in (
    Topology(
        name=KEEPALIVED, seeds="000-002", ha_daemon="keepalived", failover_stops="keepalived", uses_vrrp=True,
        uses_ipvs=True, ipvs_manager="keepalived", director_template="director.yaml.j2", director_role="director",
        pushed=PushedFile("keepalived.conf", "keepalived-conf"),
        steps=("readiness", "lvs-state", "round-robin", "health-check", "persistence", "sorry-server",
               "connection-sync", "vrrp-unicast", "failover", "failback", "restore"),
        failover_bound="vrrp", ha_log_command="journalctl -u keepalived --no-pager"),
    Topology(
        name=HEARTBEAT, seeds="003", ha_daemon="heartbeat", failover_stops="heartbeat", uses_vrrp=False,
        uses_ipvs=True, ipvs_manager=LDIRECTORD, director_template="heartbeat.yaml.j2", director_role="director",
        pushed=PushedFile("ldirectord.cf", "ldirectord-conf"),
        steps=("readiness", "lvs-state", "round-robin", "health-check", "persistence", "sorry-server", "freeze",
               "failover", "failback", "restore"),
        failover_bound="heartbeat", ipvs_starts_at_takeover=True,
        # (heartbeat and ldirectord log to syslog; the resource scripts under tags such as "IPaddr2(IPaddr2_VIP)")
        ha_log_command="journalctl --no-pager -o short-monotonic | grep -E "
                       "'heartbeat|ResourceManager|IPaddr2|ldirectord|harc|ip-request' | grep -v ': debug: '",
        refused={
            "vrrp": "heartbeat, not VRRP, moves the VIP: set its timing under heartbeat",
            "lvs.syncDaemon": "ldirectord does not run IPVS's connection sync daemon",
            "lvs.timeouts": "ldirectord does not set IPVS's connection timeouts",
            "healthCheck.delayBeforeRetry": "ldirectord retries every checkinterval (healthCheck.delayLoop)",
            "healthCheck.expectStatus": "ldirectord's negotiate check accepts any 2xx answer whose page matches "
                                        "healthCheck.receive",
        }),
    Topology(
        name=NGINX_HA, seeds="004", ha_daemon="keepalived", failover_stops="nginx", uses_vrrp=True, uses_ipvs=False,
        ipvs_manager=None, director_template="nginx-ha.yaml.j2", director_role="nginx-ha", pushed=None,
        steps=("readiness", "vip-state", "vrrp-unicast", "failover", "failback", "restore"),
        failover_bound="vrrp-script", ha_log_command="journalctl -u keepalived --no-pager"),
)}
DEFAULT_TOPOLOGY = KEEPALIVED
