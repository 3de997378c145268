"""The bounds the checks compare observations with: each a formula of the lab's config and the daemons'
documented semantics, with every allowance named (README's assertion table quotes them). Pure functions,
unit-tested with exact values, so a loosened bound fails a test."""

from __future__ import annotations

import math

from lvslab.config.model import HEARTBEAT_TAKEOVER_S
from lvslab.model import HealthCheckSpec, VerifySpec

# IPVS (net/netfilter/ipvs/ip_vs_conn.c, ip_vs_conn_expire): a persistence template whose timer fires while it
# still controls a connection is re-armed for 60 s ("expire_later": cp->timeout = 60*HZ).
IPVS_TEMPLATE_DEFER_S = 60
# `ipvsadm -Lnc` shows a timer's remaining time in whole seconds, truncated.
IPVS_DISPLAY_GRANULARITY_S = 1
# keepalived's checker thread and ldirectord wake on an emulated, busy guest late by up to this, and the
# table watcher on the director polls every 0.2 s (measured on CI: removal <= 3.4 s of an 8 s window,
# re-adding <= 3.4 s of a 4 s window).
CHECKER_ALLOWANCE_S = 2.0
# A clean VRRP hand-over: the MASTER's priority-0 advert reaches the BACKUP, which becomes MASTER after its
# skew time ((256 - priority) / 256 s, RFC 3768 5.3.7), adds the VIP and sends gratuitous ARP. Allowance for
# the BACKUP's keepalived being scheduled and the poller's 0.3 s timeout (measured gaps 0.6-0.9 s, skew 0.61 s).
HANDOVER_ALLOWANCE_S = 1.0
# Any other failover (master-down interval, vrrp_script, heartbeat deadtime): the poller's last failed poll.
GAP_ALLOWANCE_S = 1.0


def template_timer_ok(expire_s: int, persistence_s: int, age_s: float) -> bool:
    """The client's template was re-armed to persistence_timeout by its last connection, `age_s` ago:
    P - age - granularity <= T0 <= P."""
    return persistence_s - age_s - IPVS_DISPLAY_GRANULARITY_S <= expire_s <= persistence_s


def template_deferrals(template_expire_s: int, controlled_expires_s: list[int]) -> int:
    """k: how often the template's timer fires while a connection it controls is still listed. Displayed
    values are truncated, so a connection shown with the template's value may outlive it (counted)."""
    longest = max(controlled_expires_s, default=-1)
    if longest < template_expire_s:
        return 0
    return math.ceil((longest - template_expire_s + 1) / IPVS_TEMPLATE_DEFER_S)


def persistence_expiry_bound(template_expire_s: int, controlled_expires_s: list[int]) -> int:
    """Seconds after the listing that showed T0 (template) and C (its connections) by which the template
    is gone: T0 + 60 k + 1, k = template_deferrals(T0, C)."""
    k = template_deferrals(template_expire_s, controlled_expires_s)
    return template_expire_s + IPVS_TEMPLATE_DEFER_S * k + IPVS_DISPLAY_GRANULARITY_S


def health_windows(hc: HealthCheckSpec) -> tuple[float, float]:
    """(remove, add) bounds: keepalived removes after delay_loop + (retry + 1) x (connect_timeout +
    delay_before_retry) and re-adds within delay_loop + connect_timeout (HealthCheckSpec.window), each plus
    CHECKER_ALLOWANCE_S."""
    remove, add = hc.window()
    return remove + CHECKER_ALLOWANCE_S, add + CHECKER_ALLOWANCE_S


def all_in_table_wait(hc: HealthCheckSpec) -> float:
    """How long a step waits for every real server in the table before it measures: 3 x delay_loop + 30 s (the
    checker's next rounds after nginx or keepalived (re)started, plus half a minute of an emulated guest starting
    nginx after a previous step or a fault's repair)."""
    return hc.delay_loop * 3 + 30


def failover_gap_bound(spec: VerifySpec, mode: str) -> float:
    """The longest service gap a failover may cause. Clean keepalived stop (priority-0 advert): the BACKUP's
    skew time + HANDOVER_ALLOWANCE_S; otherwise the lab's failover bound (3 x advert_int + skew, the
    vrrp_script's detection, or heartbeat's deadtime + takeover) + GAP_ALLOWANCE_S."""
    if mode == "clean" and spec.topo.failover_bound == "vrrp":
        skew = spec.failover_bound_s - 3 * spec.advert_int
        return round(skew + HANDOVER_ALLOWANCE_S, 2)
    return round(spec.failover_bound_s + GAP_ALLOWANCE_S, 2)


def failed_polls_bound(gap_s: float, interval_s: float) -> int:
    """One outage of `gap_s` seen by a poller that starts a request every `interval_s`: at most
    floor(gap / interval) + 1 failed polls (more means the service flapped)."""
    return math.floor(gap_s / interval_s) + 1



def vip_on_master_wait(spec: VerifySpec) -> float:
    """How long lvs-state waits for the VIP on the MASTER. keepalived: an election still running, the failover
    bound + 2 s. heartbeat: `cl_status rscstatus` says "local" once heartbeat has decided, before its resource
    scripts ran; at boot they run twice (every resource's status, then the takegroup's status + start), each
    round at most a takeover's HEARTBEAT_TAKEOVER_S: 2 x HEARTBEAT_TAKEOVER_S + 2 s. (Measured on a quiet host:
    the VIP 15.6 s and ldirectord 35 s after "local resource transition completed".)"""
    if spec.topo.heartbeat:
        return 2 * HEARTBEAT_TAKEOVER_S + 2
    return spec.failover_bound_s + 2
