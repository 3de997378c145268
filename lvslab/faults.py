"""Faults injected into a running lab at run time, each paired with the check that must catch it and
the repair that puts the lab back. (The same faults exist as cloud-init settings, `lvs-lab:faults`.)"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    name: str
    targets: str  # "real_servers", "one_real_server" or "directors"
    inject: str   # shell run as root on each target
    repair: str
    step: str     # the verification step to run
    check: str    # the check name that must fail


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
    )
}
