"""Pause and resume a lab with libvirt's managed save: the learner closes the laptop and gets the same lab back
in seconds instead of minutes of emulated boots. Every node is suspended before any is saved (no node sees a
peer vanish mid-way: no VRRP failover, no heartbeat takeover), and all are restored, still paused, before any
runs again; then each guest's clock is set from this host's (it stood still while saved). Pulumi's view does
not change: the domains exist and run as declared."""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from typing import Any

from lvslab.hypervisor import parse_uri
from lvslab.runner.guard import log
from lvslab.runner.stacks import LabMissing, running_lab


class VirshError(RuntimeError):
    """A virsh call failed: its command and what it said, in one line."""


def virsh(spec: Any, *args: str, check: bool = True) -> str:
    hv = parse_uri(spec.uri)
    out = subprocess.run(hv.command(["virsh", "-c", hv.local_uri, *args]), capture_output=True, text=True,
                         timeout=300)
    if check and out.returncode != 0:
        raise VirshError(f"virsh {' '.join(args)}: {(out.stderr or out.stdout).strip()[-300:]}")
    return out.stdout.strip()


def pause_lab(spec: Any) -> dict[str, float]:
    """Suspend every node, then managed-save each (its state to disk, the domain stopped, to come back paused)."""
    t0 = time.monotonic()
    for node in spec.nodes:
        if virsh(spec, "domstate", node.domain) == "running":
            virsh(spec, "suspend", node.domain)
    suspended = time.monotonic()
    for node in spec.nodes:
        virsh(spec, "managedsave", node.domain, "--paused")
    return {"suspend_s": round(suspended - t0, 1), "save_s": round(time.monotonic() - suspended, 1),
            "seconds": round(time.monotonic() - t0, 1)}


def clock_script(epoch: float) -> str:
    """Shell that sets a guest's clock to `epoch` (this host's time when the script was sent) and says how far
    off it was."""
    return (f"before=$(date +%s.%N); date -u -s @{epoch:.3f} >/dev/null && "
            f"awk -v now={epoch:.3f} -v before=$before "
            "'BEGIN { printf \"clock was %.1f s behind\\n\", now - before }'")


def resume_lab(spec: Any, key_text: str) -> dict[str, Any]:
    """Restore every node paused, then run them all, then set their clocks (over SSH, at once)."""
    from lvslab.verify.live import parallel
    from lvslab.verify.probe import SshKey, ssh

    t0 = time.monotonic()
    for node in spec.nodes:
        if virsh(spec, "domstate", node.domain) == "shut off":
            virsh(spec, "start", node.domain)  # from its managed save, paused (saved with --paused)
    restored = time.monotonic()
    for node in spec.nodes:
        if virsh(spec, "domstate", node.domain) == "paused":
            virsh(spec, "resume", node.domain)
    running = time.monotonic()
    serving = None if parse_uri(spec.uri).remote else serving_after(spec, t0)  # the clocks do not matter to it
    with SshKey(key_text, parse_uri(spec.uri).jump_options()) as key:
        said = parallel(lambda n: ssh(key, n.address, clock_script(time.time()), timeout=60), spec.nodes)
    clocks = {n.name: (out.stdout.strip() or out.stderr.strip()[-200:]) for n, out in zip(spec.nodes, said,
                                                                                     strict=True)}
    failed = [n.name for n, out in zip(spec.nodes, said, strict=True) if out.returncode != 0]
    if failed:
        raise VirshError(f"clock not set on {', '.join(failed)}: {clocks}")
    return {"restore_s": round(restored - t0, 1), "resume_s": round(running - restored, 1),
            "clocks_s": round(time.monotonic() - running, 1), "seconds": round(time.monotonic() - t0, 1),
            "clocks": clocks, "serving_after_s": serving}


def serving_after(spec: Any, t0: float, limit: float = 120) -> float | None:
    """Seconds from t0 until the VIP answers an HTTP request (None: not within limit)."""
    from lvslab.verify.probe import http_get

    while time.monotonic() - t0 < limit:
        if http_get(spec.vip, spec.port, timeout=1).ok:
            return round(time.monotonic() - t0, 2)
        time.sleep(0.2)
    return None


def cmd_pause(args: argparse.Namespace) -> int:
    try:
        _, spec, _ = running_lab(args.stack)
        took = pause_lab(spec)
    except (LabMissing, VirshError) as exc:
        log(str(exc))
        return 2
    log(f"paused {len(spec.nodes)} nodes of {args.stack} in {took['seconds']} s (suspend {took['suspend_s']} s, "
        f"save {took['save_s']} s): make resume STACK={args.stack}")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    try:
        _, spec, key_text = running_lab(args.stack)
        took = resume_lab(spec, key_text)
    except (LabMissing, VirshError) as exc:
        log(str(exc))
        return 2
    remote = parse_uri(spec.uri).remote
    serving = took["serving_after_s"]
    log(f"resumed {len(spec.nodes)} nodes of {args.stack} in {took['seconds']} s (restore {took['restore_s']} s, "
        f"resume {took['resume_s']} s, clocks {took['clocks_s']} s); the VIP answered "
        + (f"{serving} s after the resume began" if serving is not None else
           "(not asked: a remote lab's VIP is on its hypervisor)" if remote else "NOT within 120 s"))
    for node, said in took["clocks"].items():
        log(f"  {node}: {said}")
    print("resume: " + json.dumps(took))
    return 0 if serving is not None or remote else 1
