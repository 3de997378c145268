"""Readable summaries of a lab's verification results (pure; used by the program and the runner)."""

from __future__ import annotations

import json
from typing import Any

from lvslab.lab.vip import HOLDS_VIP_TEST
from lvslab.verify.registry import STEPS

# Bulky or per-node detail left out of the one-line-per-step summary.
_OMITTED = ("passed", "sequence", "ipvsadm_stats", "nodes", "timeline")


def summary(results: dict[str, dict[str, Any]], skipped: tuple[str, ...] = ()) -> str:
    """One line per step, in run order (stack outputs come back key-sorted); the steps verify.skip left out."""
    lines = ["lvs-lab verification:"]
    ordered = [s for s in STEPS if s in results] + [s for s in results if s not in STEPS]
    for step in ordered:
        r = results[step]
        detail = {k: v for k, v in r.items() if k not in _OMITTED}
        if "nodes" in r:
            detail["boot_to_ready_s"] = {n: v.get("boot_to_ready_s") for n, v in r["nodes"].items()}
        lines.append(f"  {'PASS' if r.get('passed') else 'FAIL'} {step:<13} {json.dumps(detail)}")
    lines += [f"  SKIP {step:<13} (verify.skip)" for step in skipped]
    return "\n".join(lines)


# What `tools/lvslab.py status` asks each node over SSH (one connection): does it hold the VIP on eth0, and
# the state of the lab's services.
NODE_STATUS_SCRIPT = (f"echo vip $({HOLDS_VIP_TEST} && echo 1 || echo 0); "
                      "for s in keepalived heartbeat nginx; do "
                      "echo service $s $(systemctl is-active $s 2>/dev/null); done")


def parse_node_status(text: str) -> tuple[bool, dict[str, str]]:
    """NODE_STATUS_SCRIPT's output -> (holds the VIP, {service: systemd state})."""
    vip, services = False, {}
    for line in text.splitlines():
        word = line.split()
        if word[:1] == ["vip"] and len(word) == 2:
            vip = word[1] != "0"
        elif word[:1] == ["service"] and len(word) >= 2:
            services[word[1]] = word[2] if len(word) > 2 else "unknown"
    return vip, services


def vrrp_state(role: str, holds_vip: bool, daemon_state: str, daemon: str = "keepalived") -> str:
    """The HA column: a director holding the VIP is the MASTER, one whose HA daemon (keepalived, or heartbeat
    with topology lvs-heartbeat) runs without it the BACKUP; the daemon not running says so (a VIP held then
    is a stale one, as after kill -9)."""
    if role != "director":
        return "-"
    if daemon_state != "active":
        return f"{daemon} {daemon_state}" + (" (VIP held!)" if holds_vip else "")
    return "MASTER" if holds_vip else "BACKUP"


def services_column(role: str, services: dict[str, str], daemon: str = "keepalived") -> str:
    """The services column: a real server's nginx; a director's HA daemon, and its nginx only where it
    runs (the sorry server or fallback, topology nginx-ha)."""
    if role != "director":
        return f"nginx {services.get('nginx', 'unknown')}"
    shown = [f"{daemon} {services.get(daemon, 'unknown')}"]
    if services.get("nginx") not in (None, "inactive", "unknown"):
        shown.append(f"nginx {services['nginx']}")
    return ", ".join(shown)


def status_table(rows: list[dict[str, str]], columns: tuple[str, ...]) -> str:
    """A boxed table like `containerlab inspect`: one row per node."""
    widths = [max(len(c), *(len(r.get(c, "")) for r in rows)) for c in columns]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(values: list[str]) -> str:
        return "|" + "|".join(f" {v:<{w}} " for v, w in zip(values, widths, strict=True)) + "|"

    body = [line([r.get(c, "") for c in columns]) for r in rows]
    return "\n".join([rule, line(list(columns)), rule, *body, rule])
