"""The pictures of a run, written next to its JSON report: the lab's topology (Graphviz, from the stack
outputs the report keeps) and the failover timeline (matplotlib, from the failover step's 100 ms polls).
Why: a report of numbers says that failover took 0.6 s; the timeline shows which poll failed and when the
VIP holder changed, against the VRRP bound."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from lvslab.render import ROOT, template_env

PICTURES_DIR = ROOT / "pictures"
_TEMPLATES = template_env(PICTURES_DIR)


def topology_dot(report: dict[str, Any]) -> str:
    """DOT text of the lab in the report (`lab`: the stack outputs without secrets)."""
    lab = report["lab"]
    network = lab["network"]
    master = lab["master"]
    nodes = lab["nodes"]
    return _TEMPLATES.get_template("topology.dot.j2").render(
        stack=report["stack"], topology=lab.get("topology", "lvs-keepalived"), lb_kind=lab.get("lbKind"),
        vip=lab["vipUrl"].split("//", 1)[1].split(":")[0], master=master, holder=observed_holder(report),
        nodes=nodes,
        directors=[n["name"] for n in nodes if n["role"] == "director"], bridge=network["bridge"],
        subnet=network["subnet"], client_subnet=network.get("clientSubnet"),
        client=network.get("clientAddress") or network["hostAddress"],
    )


def observed_holder(report: dict[str, Any]) -> str:
    """The director the checks saw holding the VIP last (restore, else lvs-state), not the configured MASTER."""
    verification = report.get("verification") or {}
    for step in ("restore", "lvs-state", "vip-state"):
        holder = (verification.get(step) or {}).get("vip_holder")
        if holder:
            return str(holder)
    return "? (not observed: the verification did not get that far)"


def write_topology(report: dict[str, Any], path: Path) -> Path:
    """The topology as PNG (`dot` from the host package graphviz)."""
    subprocess.run(["dot", "-Tpng", "-o", str(path)], input=topology_dot(report), text=True, check=True,
                   capture_output=True)
    return path


def write_failover_timeline(report: dict[str, Any], path: Path) -> Path | None:
    """The failover step's polls as PNG: which server answered each poll (failures in red), which
    director held the VIP, the moment the MASTER was stopped and the VRRP bound. None without a timeline."""
    failover = ((report.get("verification") or {}).get("failover")) or {}
    timeline = failover.get("timeline")
    if not timeline:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [e[0] for e in timeline]
    servers = sorted({e[2] for e in timeline if e[1] and e[2]})
    holders = sorted({str(e[3]) for e in timeline if e[3]})
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 4.8), sharex=True, height_ratios=[3, 1.3])
    ok = [(e[0], servers.index(e[2])) for e in timeline if e[1] and e[2] in servers]
    failed = [e[0] for e in timeline if not e[1]]
    top.scatter([x for x, _ in ok], [y for _, y in ok], s=14, color="#2e7d32", label="answered")
    if failed:
        top.scatter(failed, [-1] * len(failed), s=18, marker="x", color="#c62828", label=f"failed ({len(failed)})")
    top.set_yticks(range(-1, len(servers)), ["failed", *servers])
    top.set_ylabel("answered by")
    bottom.scatter(t, [holders.index(str(e[3])) if e[3] else -1 for e in timeline], s=10, color="#1565c0")
    bottom.set_yticks(range(len(holders)), holders)
    bottom.set_ylabel("VIP at MAC of")
    bottom.set_xlabel(f"seconds from {report['lab']['master']} (holding the VIP: asserted first) being stopped")
    bound = failover.get("gap_bound_s") or failover.get("vrrp_bound_s")
    for ax in (top, bottom):
        ax.axvline(0, color="#555555", linestyle="--", linewidth=1)
        if bound:
            ax.axvline(bound, color="#ef6c00", linewidth=1.5)
        ax.grid(axis="x", alpha=0.3)
    if bound:
        top.set_xlim(right=max(max(t), bound) + 0.6)
        top.text(bound, 0.5, f" gap bound {bound:.2f} s", color="#ef6c00", va="center", fontsize=9,
                 transform=top.get_xaxis_transform())
    title = (f"lvs-lab {report['stack']}: failover ({failover.get('mode')}), service gap "
             f"{failover.get('service_gap_s')} s, {failover.get('failed_requests')} failed polls")
    top.set_title(title, fontsize=11)
    top.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Title": title, "Software": "lvs-lab"})
    plt.close(fig)
    return path


def write_pictures(report: dict[str, Any], stem: Path) -> list[Path]:
    """Both pictures next to `stem` (the JSON report's path without .json): -topology.png, -failover.png."""
    written = []
    if report.get("lab"):
        written.append(write_topology(report, stem.with_name(stem.name + "-topology.png")))
    timeline = write_failover_timeline(report, stem.with_name(stem.name + "-failover.png"))
    if timeline:
        written.append(timeline)
    return written
