"""The one table of test-only faults. Each breaks the lab in one way so a verification step can be shown to
catch it. Cloud-init faults (`lvs-lab:faults` in a stack) are rendered into the nodes' first boot; runtime
faults (`tools/lvslab.py fault`) are injected into a running lab, paired with the check that must catch
them and the repair that puts the lab back."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from lvslab.lab.vip import DROP_VIP, HOLDS_VIP_TEST


@dataclass(frozen=True)
class RenderFlags:
    """What the rendered files see of the cloud-init faults: features on or off, never a fault's name."""

    arp_sysctls: bool = True  # real servers: arp_ignore=1 / arp_announce=2 (DR, TUN)
    vip_on_real_servers: bool = True  # real servers: the VIP on lo (DR) or tunl0 (TUN)
    real_server_nginx: bool = True  # real servers: nginx left running after the first boot
    keepalived_running: bool = True  # directors: keepalived left running after its first start
    backup_vrid_offset: int = 0  # added to the BACKUP's virtual_router_id (modulo 255)
    sorry_server_line: bool = True  # keepalived.conf / ldirectord.cf: the sorry server (lvs.sorryServer)


@dataclass(frozen=True)
class CloudInitFault:
    breaks: str  # what it breaks, in words
    flags: dict[str, bool | int]  # RenderFlags it changes


# `lvs-lab:faults` in a stack: rendered into the nodes' first boot through render_flags().
CLOUD_INIT_FAULTS: dict[str, CloudInitFault] = {
    "rs-no-arp-sysctls": CloudInitFault("real servers keep the default ARP sysctls (they answer ARP for the VIP)",
                                        {"arp_sysctls": False}),
    "rs-no-vip": CloudInitFault("real servers do not hold the VIP on lo (DR replies cannot come from the VIP)",
                                {"vip_on_real_servers": False}),
    "nginx-down-all": CloudInitFault("nginx stopped on every real server", {"real_server_nginx": False}),
    "keepalived-down-all": CloudInitFault("keepalived stopped on both directors", {"keepalived_running": False}),
    "backup-wrong-vrid": CloudInitFault("the BACKUP director uses another virtual_router_id (both become MASTER)",
                                        {"backup_vrid_offset": 1}),
    "no-sorry-server": CloudInitFault("keepalived.conf without the sorry_server line (lvs.sorryServer: true)",
                                      {"sorry_server_line": False}),
}


def render_flags(faults: Iterable[str]) -> RenderFlags:
    """The one place a cloud-init fault becomes what the templates and commands see."""
    flags = RenderFlags()
    for name in faults:
        flags = replace(flags, **CLOUD_INIT_FAULTS[name].flags)
    return flags


@dataclass(frozen=True)
class Fault:
    name: str
    targets: str  # "real_servers", "one_real_server", "last_real_server", "directors", "master" or "backup"
    inject: str   # shell run as root on each target
    repair: str   # shell run as root on each target; {vip} {port} {algo} {persistence} {timeouts} {gateway}: the lab's
    steps: tuple[str, ...]  # the verification steps to run, in order
    assertion: str  # the assertion id (lvslab.verify.assertions) that must fail; {kind}: lvs.lbKind, lower case
    settle: str = ""  # what to wait for after injecting, before the steps run: a key of SETTLES
    verify: tuple[tuple[str, int], ...] = ()  # VerifySpec fields the steps run with instead of the lab's

    def expected(self, lb_kind: str) -> str:
        """The assertion this fault must make fail on a lab forwarding by `lb_kind`."""
        return self.assertion.format(kind=lb_kind.lower())


# What a fault waits for between its inject and its steps: the daemon that must react to it first.
SETTLES = {
    "": "nothing: the steps see the fault at once",
    "vrrp": "the VRRP failover bound (the BACKUP takes the VIP from a MASTER that stopped or was killed)",
    "health-check": "the health checker taking each target real server out of the VIP holder's IPVS table "
                    "(within its removal window)",
}

ARP_SYSCTLS = " ".join(f"net.ipv4.conf.{i}.arp_ignore=0 net.ipv4.conf.{i}.arp_announce=0"
                       for i in ("all", "default", "lo", "eth0"))

UNMASK_NGINX = "systemctl unmask nginx && systemctl start nginx"
# Wait (at most 60 s) until the director's IPVS table holds no real server with a weight above 0 (DR Route, NAT
# Masq, TUN Tunnel; a quiescent one stays at weight 0): only the sorry server (127.0.0.1, shown as Route in a DR
# lab, seen in CI) serves once its health checks have failed. On timeout the table is printed (the fault's error
# shows it) and the exit status is 1.
_SERVING = ("ipvsadm -Ln | awk '$1==\"->\" && $2 !~ /^127\\./ && $3 ~ /Route|Masq|Tunnel/ && $4>0 {{f=1}} "
            "END {{exit f?0:1}}'")


def _wait_on_director(loop: str) -> str:
    """`while`/`until` _SERVING, for at most 60 s; then the table and exit status 1 (braces doubled: the
    script goes through str.format)."""
    return (f"{{{{ end=$(( $(date +%s) + 60 )); {loop} {_SERVING}; do [ $(date +%s) -lt $end ] || "
            "{{ ipvsadm -Ln; exit 1; }}; sleep 1; done; }}")


NO_REAL_SERVER_LEFT = _wait_on_director("while")
REAL_SERVER_BACK = _wait_on_director("until")
KEEPALIVED_CONF = "/etc/keepalived/keepalived.conf"
KEEPALIVED_DROPIN_DIR = "/etc/systemd/system/keepalived.service.d"
KEEPALIVED_DROPIN = f"{KEEPALIVED_DROPIN_DIR}/lvslab-fault.conf"
KEEPALIVED_RESTORE = f"mv {KEEPALIVED_CONF}.lvslab-fault {KEEPALIVED_CONF} && systemctl reload keepalived"
CLOUD_INIT_RESULT = "/run/cloud-init/result.json"
# nginx-ha: keepalived's vrrp_script looks for the wrong process (keepalived itself, always running).
CHECK_WRONG_PROCESS = f"sed -i.lvslab-fault 's|pgrep -x nginx\"|pgrep -x keepalived\"|' {KEEPALIVED_CONF}"
# A real_server entry for the director's own nginx (127.0.0.1: its sorry page, or nothing listening), with no
# health check: keepalived puts it in the rotation and never takes it out. `wait`: until IPVS lists it.
UNCHECKED_LOCAL_SERVER = ("sed -i.lvslab-fault 's/^\\( *\\)lb_kind .*$/&\\n\\1real_server 127.0.0.1 {port} {{\\n"
                          "\\1    weight 1\\n\\1}}/' " + KEEPALIVED_CONF)
LOCAL_SERVER_LISTED = ("{{ end=$(( $(date +%s) + 60 )); until ipvsadm -Ln | grep -q '^  -> 127.0.0.1:'; do "
                       "[ $(date +%s) -lt $end ] || {{ ipvsadm -Ln; exit 1; }}; sleep 1; done; }}")
# A slow MISC_CHECK (4 s, no warmup) beside each real server's check: with alpha a real server joins the table only
# once every check of it passed, so a restarted keepalived serves its sorry page for those 4 s. (Check scripts need
# keepalived's script security: root runs them, only root may change them.)
SLOW_CHECK = ("sed -i.lvslab-fault -e 's/^global_defs {{$/&\\n    script_user root\\n    enable_script_security/' "
              "-e 's/^\\( *\\)real_server .* {{$/&\\n\\1    MISC_CHECK {{\\n\\1        misc_path "
              "\"\\/bin\\/sleep 4\"\\n\\1        misc_timeout 10\\n\\1        warmup 0\\n\\1    }}/' "
              + KEEPALIVED_CONF)
# One real server announcing the VIP (gratuitous ARP from eth0 every 0.5 s for at most 120 s, as an `arping -U`
# in its network setup would): clients send to it directly, past the director.
ANNOUNCE_VIP = ("setsid python3 -c 'import socket as s, time; k = s.socket(s.AF_PACKET, s.SOCK_RAW); "
                "k.bind((\"eth0\", 0)); m = bytes.fromhex(open(\"/sys/class/net/eth0/address\").read().strip()"
                ".replace(\":\", \"\")); v = s.inet_aton(\"{vip}\"); "
                "[(k.send(b\"\\xff\" * 6 + m + b\"\\x08\\x06\\x00\\x01\\x08\\x00\\x06\\x04\\x00\\x01\" + m + v + "
                "b\"\\x00\" * 6 + v), time.sleep(0.5)) for _ in range(240)]' >/dev/null 2>&1 </dev/null & "
                "echo $! > /run/lvslab-fault-garp.pid; sleep 2")
STOP_ANNOUNCING = "kill $(cat /run/lvslab-fault-garp.pid) 2>/dev/null; rm -f /run/lvslab-fault-garp.pid"
LDIRECTORD_CF = "/etc/ha.d/ldirectord.cf"
# ldirectord re-reads its config on HUP (reload); on the director without the VIP it does not run (exit 1).
LDIRECTORD_RELOAD = "(/usr/sbin/ldirectord ldirectord.cf reload || true)"

RUNTIME_FAULTS = {
    f.name: f for f in (
        Fault("rs-no-arp-sysctls", "real_servers", f"sysctl -q -w {ARP_SYSCTLS}",
              "sysctl -q -p /etc/sysctl.d/90-lvslab-arp.conf", ("lvs-state",), "real-server-config.{kind}"),
        Fault("rs-no-vip", "one_real_server", "systemctl stop lvslab-vip.service",
              "systemctl start lvslab-vip.service", ("lvs-state",), "real-server-config.{kind}"),
        Fault("nginx-down-all", "real_servers", "systemctl stop nginx", "systemctl start nginx",
              ("round-robin",), "ipvs.all-in-table"),
        Fault("keepalived-down-all", "directors", "systemctl stop keepalived", "systemctl start keepalived",
              ("lvs-state",), "vip-state.on-master"),
        Fault("sorry-server-down", "directors", "systemctl stop nginx", "systemctl start nginx",
              ("sorry-server",), "sorry-server.answers"),
        # Seed 001's warning: keepalived killed with -9 cannot remove its VIP; the BACKUP takes it too. All its
        # processes are stopped first, then killed: killed one by one, the parent respawns a child it just
        # lost before it dies itself (seen: an orphan that kept the unit 'deactivating' for systemd's 90 s
        # stop timeout), and a parent killed first makes the VRRP child remove the VIP on its way out
        # (keepalived's children get SIGTERM when the parent dies), which is not the failure shown here.
        Fault("keepalived-kill9-master", "master", "pids=$(pidof keepalived); kill -STOP $pids; kill -9 $pids",
              f"{DROP_VIP} 2>/dev/null; systemctl restart keepalived", ("lvs-state",),
              "split-brain.one-holder", settle="vrrp"),
        # Persistence off on both directors (ipvsadm -E without -p): the client spreads over the servers.
        Fault("persistence-off", "directors", "ipvsadm -E -t {vip}:{port} -s {algo}",
              "ipvsadm -E -t {vip}:{port} -s {algo} -p {persistence}", ("persistence",), "persistence.one-server"),
        # Persistence six times longer than configured on both directors: one client still sticks, but its
        # template's timer shows the longer timeout.
        Fault("persistence-long", "directors", "ipvsadm -E -t {vip}:{port} -s {algo} -p {persistence_long}",
              "ipvsadm -E -t {vip}:{port} -s {algo} -p {persistence}", ("persistence",),
              "persistence.template-timer"),
        # The scheduler switched to rr behind keepalived's back: lc/wlc no longer avoid the loaded server, sh
        # no longer keeps a client address on one server.
        Fault("scheduler-rr", "directors", "ipvsadm -E -t {vip}:{port} -s rr",
              "ipvsadm -E -t {vip}:{port} -s {algo}", ("round-robin",), "round-robin.split"),
        # Sync daemons stopped: the BACKUP has no entry for the running connection when it takes over.
        # (keepalived restarts the daemon of a director whose VRRP state changes: the repair starts only
        # what is missing.)
        Fault("sync-daemon-off", "directors", "ipvsadm --stop-daemon master; ipvsadm --stop-daemon backup; true",
              f"if {HOLDS_VIP_TEST}; then role=master; else role=backup; fi; "
              "ipvsadm -L --daemon | grep -q \"$role sync daemon\" || "
              "ipvsadm --start-daemon $role --mcast-interface eth0 "
              "--syncid $(awk '/lvs_sync_daemon/ {{print $NF}}' /etc/keepalived/keepalived.conf)", ("connection-sync",),
              "connection-sync.stream-kept"),
        # nopreempt removed (keepalived reloaded): the returning higher priority takes the VIP back.
        Fault("preempt-on", "directors", "sed -i.lvslab-fault '/^ *nopreempt$/d' /etc/keepalived/keepalived.conf "
              "&& systemctl reload keepalived",
              "mv /etc/keepalived/keepalived.conf.lvslab-fault /etc/keepalived/keepalived.conf && "
              "systemctl reload keepalived", ("failover", "failback"), "failback.stays"),
        # vrrp.unicastPeers removed (keepalived reloaded): the directors advertise by multicast again, which
        # the vrrp-unicast step drops on the bridge: the BACKUP stops hearing the MASTER and takes the VIP.
        Fault("unicast-off", "directors", "sed -i.lvslab-fault '/unicast_src_ip/d; /unicast_peer/,/^ *}}$/d' "
              "/etc/keepalived/keepalived.conf && systemctl reload keepalived",
              "mv /etc/keepalived/keepalived.conf.lvslab-fault /etc/keepalived/keepalived.conf && "
              "systemctl reload keepalived", ("vrrp-unicast",), "vrrp-unicast.master-only"),
        # LVS-TUN: strict reverse-path filtering on the real servers drops the packets tunl0 unwraps (they
        # come from the client, whose route is via eth0): nothing is answered.
        Fault("rp-filter-strict", "real_servers", "sysctl -q -w net.ipv4.conf.all.rp_filter=1 "
              "net.ipv4.conf.tunl0.rp_filter=1", "sysctl -q -p /etc/sysctl.d/90-lvslab-tun.conf",
              ("round-robin",), "round-robin.split"),
        # LVS-TUN: the real servers' route to the clients loses its advmss: clients send full-size segments
        # that no longer fit once the director wraps them (it answers with ICMP "fragmentation needed",
        # or they vanish); the round-robin step's tunnel check fails. The repair re-runs the VIP unit.
        Fault("mss-unclamped", "real_servers", "ip route replace $(ip -4 route show dev eth0 proto kernel | "
              "head -1 | sed 's/ advmss [0-9]*//') dev eth0 && ip route flush cache",
              "systemctl restart lvslab-vip.service", ("round-robin",), "round-robin.tunnel-mtu"),
        # nginx-ha: keepalived's script checks the wrong process (keepalived itself, always running), so a
        # MASTER whose nginx stopped keeps the VIP: nothing answers (seed 004's check script mistake).
        Fault("check-wrong-process", "directors", f"{CHECK_WRONG_PROCESS} && systemctl reload keepalived",
              KEEPALIVED_RESTORE, ("failover", "failback"), "failover.vip-moved"),
        # The same on the MASTER, whose nginx is down already: the VIP stays where nothing answers.
        Fault("nginx-down-unwatched", "master", f"{CHECK_WRONG_PROCESS} && systemctl reload keepalived && "
              "systemctl stop nginx", f"{KEEPALIVED_RESTORE} && systemctl start nginx", ("vip-state",),
              "vip-state.served-by-master"),
        # lvs-heartbeat: ldirectord only connects (checktype=connect, config reloaded where it runs): a real
        # server whose health page stops matching `receive` still answers TCP, so it stays in the table.
        Fault("check-connect-only", "directors", "sed -i.lvslab-fault 's/checktype=negotiate/checktype=connect/' "
              f"{LDIRECTORD_CF} && {LDIRECTORD_RELOAD}",
              f"mv {LDIRECTORD_CF}.lvslab-fault {LDIRECTORD_CF} && {LDIRECTORD_RELOAD}", ("health-check",),
              "health-check.removed"),
        # lvs-heartbeat: heartbeat down on both directors: nobody holds the VIP.
        Fault("heartbeat-down-all", "directors", "systemctl stop heartbeat", "systemctl start heartbeat",
              ("lvs-state",), "heartbeat.settled"),
        # lvs-heartbeat: heartbeat down on the BACKUP: nobody would take over from the MASTER (the freeze finds
        # the BACKUP without heartbeat before it freezes the MASTER's VM; failover alike before its stop).
        Fault("heartbeat-down-backup", "backup", "systemctl stop heartbeat", "systemctl start heartbeat",
              ("freeze",), "heartbeat.settled"),
        # LVS-NAT: the BACKUP's gateway instance loses its address (keepalived reloaded): at failover the VIP
        # moves but the real servers' gateway VIP does not, so their replies go nowhere.
        Fault("gateway-vip-stays", "backup", "sed -i.lvslab-fault '/ label eth0:gw$/d' "
              "/etc/keepalived/keepalived.conf && systemctl reload keepalived",
              "mv /etc/keepalived/keepalived.conf.lvslab-fault /etc/keepalived/keepalived.conf && "
              "systemctl reload keepalived", ("failover", "failback"), "gateway.with-vip"),
        # keepalived's HTTP_GET turned into a TCP_CHECK (url block removed, keepalived reloaded): the health path
        # answering 503 while nginx listens goes unnoticed, the server stays in the table.
        Fault("check-tcp-only", "directors",
              "sed -i.lvslab-fault '/^ *url {{$/,/^ *}}$/d; s/HTTP_GET {{/TCP_CHECK {{/' "
              f"{KEEPALIVED_CONF} && systemctl reload keepalived", KEEPALIVED_RESTORE, ("health-check",),
              "health-check.removed"),
        # The BACKUP owns the VIP on lo too (arp_ignore 0 there): it answers ARP for it beside the MASTER.
        Fault("backup-answers-arp", "backup", "ip addr add {vip}/32 dev lo", "ip addr del {vip}/32 dev lo",
              ("lvs-state",), "vip-arp.master-only"),
        # IPVS connection timeouts changed behind keepalived's back on both directors.
        Fault("ipvs-timeouts-changed", "directors", "ipvsadm --set 1234 99 321", "ipvsadm --set {timeouts}",
              ("lvs-state",), "ipvs-settings.timeouts-sync"),
        # cloud-init still running on one real server (its result.json, written when the last stage ends, moved
        # away): readiness waits for it until verify.readyTimeout (here 20 s instead of the lab's), then says what
        # `cloud-init status` reports there.
        Fault("cloud-init-unfinished", "one_real_server", f"mv {CLOUD_INIT_RESULT} {CLOUD_INIT_RESULT}.lvslab-fault",
              f"mv {CLOUD_INIT_RESULT}.lvslab-fault {CLOUD_INIT_RESULT}", ("readiness",), "readiness.in-time",
              verify=(("ready_timeout", 20),)),
        # cloud-init's result on one real server lists an error (as a failed module would).
        Fault("cloud-init-error", "one_real_server", "sed -i.lvslab-fault 's/\"errors\": \\[\\]/\"errors\": "
              "[\"lvs-lab fault\"]/' " + CLOUD_INIT_RESULT,
              f"mv {CLOUD_INIT_RESULT}.lvslab-fault {CLOUD_INIT_RESULT}", ("readiness",),
              "readiness.cloud-init"),
        # keepalived stopped on the MASTER before a failover: the VIP is already on the BACKUP.
        Fault("master-down-before-failover", "master", "systemctl stop keepalived", "systemctl start keepalived",
              ("failover", "failback"), "failover.master-held", settle="vrrp"),
        # The same at the end of the checks: the lab is not back in its initial state.
        Fault("master-down-at-restore", "master", "systemctl stop keepalived", "systemctl start keepalived",
              ("restore",), "restore.master-only", settle="vrrp"),
        # Both directors start as BACKUP with nopreempt (keepalived reloaded): the MASTER does not take the VIP
        # back when it returns.
        Fault("nopreempt-on", "directors", "sed -i.lvslab-fault 's/^\\( *\\)state MASTER$/\\1state BACKUP/; "
              "s/^\\( *\\)priority \\(.*\\)$/\\1priority \\2\\n\\1nopreempt/' "
              f"{KEEPALIVED_CONF} && systemctl reload keepalived", KEEPALIVED_RESTORE, ("failover", "failback"),
              "failback.returns", settle="vrrp"),
        # systemd's stop of keepalived on the MASTER made a hard kill (a drop-in whose ExecStop freezes, then kills
        # every keepalived process, as keepalived-kill9-master does: KillSignal=SIGKILL alone let the VRRP child,
        # told of its parent's death, remove the VIP, seen in CI): the clean failover's stop leaves the VIP on its
        # eth0 (seed 001's kill -9 warning), so the BACKUP's takeover makes two holders.
        Fault("keepalived-stop-kills", "master", f"mkdir -p {KEEPALIVED_DROPIN_DIR} && printf '[Service]\\nExecStop="
              "/bin/sh -c \"pids=$$(pidof keepalived); kill -STOP $$pids; kill -9 $$pids\"\\n' > "
              f"{KEEPALIVED_DROPIN} && systemctl daemon-reload",
              f"rm -f {KEEPALIVED_DROPIN} && systemctl daemon-reload && ({DROP_VIP} 2>/dev/null; true) && "
              "systemctl restart keepalived", ("failover", "failback"), "failover.backup-only"),
        # The MASTER's priority-0 advert (keepalived's goodbye on a clean stop) dropped on its way out (tc u32: IP
        # protocol 112, the VRRP priority byte at offset 20 + 2 = 0): the BACKUP waits out its master-down timer
        # as after a hard failure, so the clean hand-over's gap bound (skew + 1 s) is exceeded.
        Fault("goodbye-advert-lost", "master", "tc qdisc add dev eth0 root handle 1: prio && tc filter add dev eth0 "
              "parent 1: protocol ip prio 1 u32 match ip protocol 112 0xff match u8 0 0xff at 22 action drop",
              "tc qdisc del dev eth0 root", ("failover", "failback"), "failover.gap"),
        # The VIP gone from lo on the last real server (the one the health-check step takes out and back): it
        # returns to the table (its health page answers on its own address) but drops what the VIP sends it.
        Fault("rs-no-vip-checked", "last_real_server", "systemctl stop lvslab-vip.service",
              "systemctl start lvslab-vip.service", ("health-check",), "health-check.answers"),
        # nopreempt: keepalived stopped on the MASTER, the BACKUP took the VIP; the lab-state step's hand-over
        # (restarting the BACKUP's keepalived) finds nobody to hand it to.
        Fault("master-down-nopreempt", "master", "systemctl stop keepalived", "systemctl start keepalived",
              ("lvs-state",), "vip-state.handover", settle="vrrp"),
        # The BACKUP's own nginx in its rotation, unchecked (keepalived reloaded): after the failover every few
        # requests get the sorry page (or nothing): the service flaps between real servers and that.
        Fault("unchecked-local-server-backup", "backup", f"{UNCHECKED_LOCAL_SERVER} && systemctl reload keepalived "
              f"&& {LOCAL_SERVER_LISTED}", KEEPALIVED_RESTORE, ("failover", "failback"), "failover.failed-requests"),
        # The same entry written into the MASTER's keepalived.conf but not loaded: the failover's stop and the
        # failback's start load it, so the returning MASTER flaps.
        Fault("unchecked-local-server-on-restart", "master", UNCHECKED_LOCAL_SERVER, KEEPALIVED_RESTORE,
              ("failover", "failback"), "failback.failed-requests"),
        # The slow check written into the MASTER's keepalived.conf but not loaded: the failback's start loads it,
        # the returning MASTER takes the VIP at once and answers with its sorry page until the checks pass.
        Fault("slow-check-on-restart", "master", SLOW_CHECK, KEEPALIVED_RESTORE, ("failover", "failback"),
              "failback.gap"),
        # Persistence per /24 (ipvsadm -M, keepalived's persistence_granularity): the client's template is its
        # network's, not its own.
        Fault("persistence-per-network", "directors", "ipvsadm -E -t {vip}:{port} -s {algo} -p {persistence} "
              "-M 255.255.255.0", "ipvsadm -E -t {vip}:{port} -s {algo} -p {persistence} -M 255.255.255.255",
              ("persistence",), "persistence.template"),
        # One real server announces the VIP: the client's requests reach it directly, the director counts none.
        Fault("rs-announces-vip", "one_real_server", ANNOUNCE_VIP, STOP_ANNOUNCING, ("round-robin",),
              "round-robin.ipvs-counts"),
        # The BACKUP holds the VIP on lo too and announces it: the client's requests reach the BACKUP's IPVS
        # while VRRP has the VIP on the MASTER, so with every real server down the BACKUP's sorry page answers.
        Fault("backup-announces-vip", "backup", "ip addr add {vip}/32 dev lo && " + ANNOUNCE_VIP,
              STOP_ANNOUNCING + "; ip addr del {vip}/32 dev lo 2>/dev/null; true", ("sorry-server",),
              "sorry-server.of-holder"),
        # keepalived stopped on the BACKUP: nobody takes the VIP (or the streamed connection) from a frozen MASTER.
        Fault("keepalived-down-backup", "backup", "systemctl stop keepalived", "systemctl start keepalived",
              ("connection-sync",), "connection-sync.vip-moved"),
        # The BACKUP's priority raised above the MASTER's (keepalived reloaded): it takes the VIP, and keeps it when
        # the frozen MASTER resumes.
        Fault("backup-priority-higher", "backup", "sed -i.lvslab-fault 's/^\\( *priority \\).*$/\\1253/' "
              f"{KEEPALIVED_CONF} && systemctl reload keepalived", KEEPALIVED_RESTORE, ("connection-sync",),
              "connection-sync.vip-back", settle="vrrp"),
        # The BACKUP's health checks pointed at a page nobody serves (HTTP_GET) or a closed port (TCP_CHECK),
        # keepalived reloaded: its table holds only the sorry server, so after a failover the VIP answers with
        # the BACKUP's sorry page, not a real server.
        Fault("backup-sorry-only", "backup", "sed -i.lvslab-fault 's|^\\( *path \\).*$|\\1/lvslab-no-such-page|; "
              "s|^\\( *connect_port \\).*$|\\11|' " f"{KEEPALIVED_CONF} && systemctl reload keepalived && "
              f"{NO_REAL_SERVER_LEFT}", f"{KEEPALIVED_RESTORE} && {REAL_SERVER_BACK}", ("failover", "failback"),
              "failover.vip-moved"),
        # nginx masked on every real server (the running ones keep running): the health-check step's `systemctl
        # start nginx` on its victim fails, so the server never returns to the table.
        Fault("nginx-wont-start", "real_servers", "systemctl mask nginx", UNMASK_NGINX, ("health-check",),
              "health-check.readded"),
        # The same during the sorry-server step: the real server it starts again never answers.
        Fault("nginx-wont-start-sorry", "real_servers", "systemctl mask nginx", UNMASK_NGINX, ("sorry-server",),
              "sorry-server.normal-again"),
        # nginx stopped on one real server when the checks end: the lab is not back in its initial state.
        Fault("nginx-down-at-restore", "one_real_server", "systemctl stop nginx", "systemctl start nginx",
              ("restore",), "ipvs.all-in-table", settle="health-check"),
        # Source hashing instead of rr on both directors, persistence kept: after its template expired the client
        # hashes to the same server again, every time.
        Fault("scheduler-sh", "directors", "ipvsadm -E -t {vip}:{port} -s sh -p {persistence}",
              "ipvsadm -E -t {vip}:{port} -s {algo} -p {persistence}", ("persistence",), "persistence.expiry"),
        # LVS-NAT: a real server's default route no longer via the gateway VIP.
        Fault("rs-no-gateway", "one_real_server", "ip route del default",
              "ip route replace default via {gateway} dev eth0", ("lvs-state",), "real-server-config.nat"),
    )
}
