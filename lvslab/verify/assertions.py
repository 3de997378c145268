"""Every assertion a verification step makes, by id: what must hold (the bound as a formula where there is
one) and how a user repairs a lab that fails it. A step raises CheckFailed with one of these ids; a fault
(lvslab.faults) names the id it must make fail, and README's assertion table is generated from this one."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Assertion:
    id: str  # "<check>.<aspect>": the check (the group README and the reports show) and what of it failed
    holds: str  # what must hold; bounds as formulas of the config's keys and named constants
    repair: str  # what to look at or do when it fails
    # True: the step could not observe or act (SSH, ipvsadm, its own break/stop command), not a property of the lab
    # the stack describes; README lists these apart and no lab fault is expected to show them
    harness: bool = False

    @property
    def check(self) -> str:
        return self.id.split(".", 1)[0]


_ROWS = (
    # readiness
    Assertion("readiness.cloud-init", "cloud-init finished on every node with an empty error list",
              "read the node's console log and /var/log/cloud-init-output.log (make ssh NODE=...)"),
    Assertion("readiness.in-time", "every node ready within verify.readyTimeout",
              "raise verify.readyTimeout or vm.bootsAtOnce; check the node's console log"),
    # lvs-state / vip-state
    Assertion("vip-state.on-master", "VIP on the MASTER only, within failoverBound + 2 s after the check starts "
              "(heartbeat: 2 x its takeover allowance + 2 s, as its resource scripts run after it says 'local')",
              "look at `ip -4 addr show eth0` and the HA daemon's log on both directors"),
    Assertion("vip-state.served-by-master", "all 2 x requestsPerServer requests to the VIP answered by the "
              "MASTER's nginx (nginx-ha)", "check nginx and keepalived's vrrp_script on the MASTER"),
    Assertion("vip-state.handover", "nopreempt: the VIP on the MASTER within failoverBound + 20 s of the HA "
              "daemon's restart on the BACKUP", "restart the HA daemon on the director holding the VIP"),
    Assertion("vip-state.ssh", "every director answers SSH", "make status; the director's console log",
              harness=True),
    Assertion("split-brain.one-holder", "the VIP on one director only",
              "drop the stale VIP and restart the HA daemon where it does not run (the message names it)"),
    Assertion("vip-arp.master-only", "ARP for the VIP answered by the MASTER's MAC only",
              "real servers: arp_ignore=1/arp_announce=2; directors: only the holder may own the VIP"),
    Assertion("real-server-config.dr", "DR: VIP/32 on lo, arp_ignore=1, arp_announce=2 on every real server",
              "systemctl restart lvslab-vip.service; sysctl -p /etc/sysctl.d/90-lvslab-arp.conf"),
    Assertion("real-server-config.tun", "TUN: VIP/32 on tunl0, arp_ignore=1, arp_announce=2, rp_filter not "
              "strict on every real server", "systemctl restart lvslab-vip.service; sysctl -p "
              "/etc/sysctl.d/90-lvslab-tun.conf"),
    Assertion("real-server-config.nat", "NAT: default route via the gateway VIP and no VIP on every real "
              "server", "systemctl restart lvslab-vip.service (it sets the route)"),
    Assertion("ipvs-settings.timeouts-sync", "ipvsadm -L --timeout = lvs.timeouts and the sync daemon of each "
              "director's role (lvs.syncDaemon) with one sync id", "systemctl restart keepalived"),
    Assertion("ipvs.list", "ipvsadm -Ln answers on the director", "is ip_vs loaded? systemctl status keepalived",
              harness=True),
    Assertion("ipvs.all-in-table", "every real server of weight > 0 in the VIP holder's IPVS table within "
              "3 x delay_loop + 30 s: the gate before round-robin, persistence, health-check, sorry-server and "
              "restore measure, and after a fault's repair", "the health checker's log; the real server's nginx"),
    Assertion("gateway.with-vip", "NAT: the gateway VIP on the VIP's holder only (one vrrp_sync_group): at "
              "vip-state, after failover, failback and restore", "vrrp_sync_group in keepalived.conf"),
    Assertion("heartbeat.settled", "heartbeat: cl_status rscstatus on each director settled (holder local/all or "
              "all, the other local/none) within initdead + failoverBound + 20 s, or 5 s once a director's "
              "heartbeat unit is not running: before lvs-state, failover and failback act, and after them",
              "heartbeat's log (ha-log) on both directors"),
    # round-robin
    Assertion("round-robin.split", "N = requestsPerServer x servers fresh connections: |count - N x w / sum(w)| "
              "<= 1 per server (rr: w = 1); persistence/sh: all on one server",
              "ipvsadm -Ln on the holder: the scheduler and the weights"),
    Assertion("round-robin.ipvs-counts", "ipvsadm --stats connection counts = the client's counts",
              "another client used the VIP meanwhile, or the director is not the holder"),
    Assertion("round-robin.tunnel-mtu", "TUN: a 6000-byte request and a 1 MiB response get through; no path "
              "MTU learned for the VIP (advmss = MTU - 40 - 20)", "systemctl restart lvslab-vip.service"),
    Assertion("round-robin.least-connection", "lc/wlc: with 3 connections held on one server every fresh "
              "connection goes to the others", "ipvsadm -Ln: the scheduler is lc/wlc"),
    Assertion("round-robin.source-hash", "sh: each client address always on one server; the addresses on "
              "more than one", "ipvsadm -Ln: the scheduler is sh"),
    # persistence
    Assertion("persistence.one-server", "2 x servers + 2 fresh connections of one client on one server",
              "ipvsadm -Ln: -p (persistence_timeout) on the virtual server"),
    Assertion("persistence.template", "one template client:0 -> that server in ipvsadm -Lnc",
              "ipvsadm -Ln: -p (persistence_timeout) on the virtual server"),
    Assertion("persistence.template-timer", "the template's timer T0 (ipvsadm -Lnc expire, whole seconds) "
              "with P - age - 1 <= T0 <= P, P = persistenceTimeout, age = seconds since the last request",
              "ipvsadm -Ln: the persistence timeout is lvs.persistenceTimeout"),
    # One assertion for the end of persistence: the template going (the kernel's timer, no lab setting can move
    # it but the timeout template-timer checks) and its effect, the client scheduled anew.
    Assertion("persistence.expiry", "template gone by T0 + 60 x k + 2 s after listing, k = smallest k >= 0 "
              "with T0 + 60 k >= C (C = longest expire of its connections: the kernel re-arms a template "
              "that still controls one for 60 s, ip_vs_conn_expire; 2 s = whole-second display + 1 s poll); "
              "then the client is scheduled anew (rr: to another server within 3 schedulings)",
              "ipvsadm -Lnc: which connections keep it; lvs.timeouts tcpfin; ipvsadm -Ln: the scheduler rotates"),
    # health checks
    Assertion("health-check.break", "the break command ran on the real server", "SSH to the real server",
              harness=True),
    Assertion("health-check.removed", "out of the table within remove = delay_loop x retry + connect_timeout "
              "(+ the scheduling allowance)", "the check type (HTTP_GET/TCP_CHECK/negotiate) and its path/status"),
    Assertion("health-check.readded", "back in the table within add = delay_loop (+ the scheduling allowance)",
              "the checker's log on the holder"),
    Assertion("health-check.answers", "the re-added server answers through the VIP", "ipvsadm -Ln weights"),
    Assertion("sorry-server.answers", "the sorry page through the VIP within the remove window (+ allowance) "
              "of every real server failing", "sorry_server in keepalived.conf / fallback in ldirectord.cf"),
    Assertion("sorry-server.of-holder", "the sorry page comes from the director holding the VIP",
              "nginx on the directors (the sorry server listens on the VIP's port)"),
    Assertion("sorry-server.normal-again", "a real server answers within the add window (+ allowance) of its "
              "nginx starting", "the health checker's log"),
    # connection sync
    Assertion("connection-sync.vip-moved", "the VIP answers through the BACKUP within failoverBound of the "
              "MASTER freezing", "keepalived on the BACKUP"),
    Assertion("connection-sync.stream-kept", "the download goes on while the BACKUP holds the VIP and after "
              "the MASTER takes it back", "lvs.syncDaemon: ipvsadm -L --daemon on both directors"),
    Assertion("connection-sync.vip-back", "the MASTER answers for the VIP again within failoverBound + 1 s of "
              "its resume (it never left state MASTER)", "keepalived on the MASTER"),
    # unicast VRRP
    # the step's own instruments: its probe sender and the bridge filter it installs
    Assertion("vrrp-unicast.probe-sent", "3 probe packets to 224.0.0.18 sent from the MASTER", "SSH, python3",
              harness=True),
    Assertion("vrrp-unicast.multicast-dropped", "the 3 probes counted as dropped on the bridge",
              "nftables on the hypervisor (the step's table)", harness=True),
    Assertion("vrrp-unicast.master-only", "the VIP on the MASTER only after 3 x advert_int + 2 s without "
              "multicast, keepalived running on the BACKUP throughout, and at least 3 unicast adverts crossed the "
              "bridge in that window", "unicast_src_ip / unicast_peer in keepalived.conf"),
    # failover / failback / freeze / restore
    Assertion("failover.master-held", "the VIP on the MASTER only before it is taken away",
              "the lab did not start from its initial state: the restore step's repair"),
    Assertion("failover.stop", "the HA daemon (nginx for nginx-ha) stopped on the MASTER", "SSH to the MASTER",
              harness=True),
    Assertion("failover.vip-moved", "a real answer (not a sorry page) through the BACKUP's MAC within "
              "failoverBound + allowance", "the BACKUP's HA daemon log"),
    Assertion("failover.backup-only", "the VIP on the BACKUP only (clean) / on the BACKUP (hard)",
              "the MASTER's HA daemon log: did it give the VIP up?"),
    Assertion("failover.gap", "service gap <= failoverBound (clean: hand-over; hard: 3 x advert + skew; "
              "heartbeat: deadtime + takeover)",
              "advertInterval, priorities; CPU load on the hypervisor"),
    Assertion("failover.failed-requests", "one outage only: polls not served by a real server (an error or a "
              "sorry page) from the stop to 1 s after service returned <= floor(gap / 0.1 s) + 1, none after it "
              "returned (heartbeat: reported, not failed: ldirectord's first check rounds after a takeover flap); "
              "hey (10 requests/s, -t 1, the whole step): errors <= ceil(gap bound x 10) + 1, only status 200",
              "the poller's timeline in the report: whose answers came between the real servers'? (ipvsadm -Ln "
              "on the new holder)"),
    Assertion("failback.returns", "preempt: the VIP back on the MASTER only within failoverBound + 20 s "
              "(+ ARP expiry after a heartbeat freeze)", "nopreempt must be off; the MASTER's priority"),
    Assertion("failback.gap", "service gap <= the failover gap bound while the MASTER returns",
              "the poller's timeline"),
    Assertion("failback.failed-requests", "one outage only: polls not served by a real server from the "
              "MASTER's return to 1 s after it answered <= floor(gap / 0.1 s) + 1, none after it returned; hey: "
              "errors <= ceil(gap bound x 10) + 1, only status 200",
              "the poller's timeline: whose answers came between the real servers'? (ipvsadm -Ln on the MASTER)"),
    Assertion("failback.stays", "nopreempt: the VIP stays on the BACKUP", "nopreempt in keepalived.conf"),
    Assertion("restore.master-only", "the VIP on the MASTER only within failoverBound + 20 s after the checks",
              "restart the HA daemon on the BACKUP"),
)

ASSERTIONS: dict[str, Assertion] = {a.id: a for a in _ROWS}


def assertion(assertion_id: str) -> Assertion:
    """The row of an id; an unknown id is a programming error that still reads as a failed check."""
    return ASSERTIONS.get(assertion_id) or Assertion(assertion_id, "(unknown assertion)", "report this as a bug")
