"""The one table of test-only faults. Each breaks the lab in one way so a verification step can be shown to
catch it. Cloud-init faults (`lvs-lab:faults` in a stack) are rendered into the nodes' first boot; runtime
faults (`tools/lvslab.py fault`) are injected into a running lab, paired with the check that must catch
them and the repair that puts the lab back."""

from __future__ import annotations

from dataclasses import dataclass

# name -> what it breaks (templates in cloud-init/ and lvslab/render.py test for these names).
CLOUD_INIT_FAULTS: dict[str, str] = {
    "rs-no-arp-sysctls": "real servers keep the default ARP sysctls (they answer ARP for the VIP)",
    "rs-no-vip": "real servers do not hold the VIP on lo (DR replies cannot come from the VIP)",
    "nginx-down-all": "nginx stopped on every real server",
    "keepalived-down-all": "keepalived stopped on both directors",
    "backup-wrong-vrid": "the BACKUP director uses another virtual_router_id (both become MASTER)",
    "no-sorry-server": "keepalived.conf without the sorry_server line (lvs.sorryServer: true)",
}


@dataclass(frozen=True)
class Fault:
    name: str
    targets: str  # "real_servers", "one_real_server", "directors" or "master"
    inject: str   # shell run as root on each target
    repair: str   # shell run as root on each target; {vip} is the lab's VIP
    step: str     # the verification step to run
    check: str    # the check name that must fail
    settle: bool = False  # wait the VRRP failover bound after injecting (the BACKUP must react first)


ARP_SYSCTLS = " ".join(f"net.ipv4.conf.{i}.arp_ignore=0 net.ipv4.conf.{i}.arp_announce=0"
                       for i in ("all", "default", "lo", "eth0"))

RUNTIME_FAULTS = {
    f.name: f for f in (
        Fault("rs-no-arp-sysctls", "real_servers", f"sysctl -q -w {ARP_SYSCTLS}",
              "sysctl -q -p /etc/sysctl.d/90-lvslab-arp.conf", "lvs-state", "real-server-config"),
        Fault("rs-no-vip", "one_real_server", "systemctl stop lvslab-vip.service",
              "systemctl start lvslab-vip.service", "lvs-state", "real-server-config"),
        Fault("nginx-down-all", "real_servers", "systemctl stop nginx", "systemctl start nginx",
              "round-robin", "round-robin"),
        Fault("keepalived-down-all", "directors", "systemctl stop keepalived", "systemctl start keepalived",
              "lvs-state", "vip-state"),
        Fault("sorry-server-down", "directors", "systemctl stop nginx", "systemctl start nginx",
              "sorry-server", "sorry-server"),
        # Seed 001's warning: keepalived killed with -9 cannot remove its VIP; the BACKUP takes it too.
        Fault("keepalived-kill9-master", "master", "kill -9 $(pidof keepalived)",
              "ip addr del {vip}/32 dev eth0 2>/dev/null; systemctl restart keepalived", "lvs-state",
              "split-brain", settle=True),
    )
}
