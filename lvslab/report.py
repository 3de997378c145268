"""Readable summaries of a lab's verification results (pure; used by the program and the runner)."""

from __future__ import annotations

import json
from typing import Any

from lvslab.checks import STEPS

# Bulky or per-node detail left out of the one-line-per-step summary.
_OMITTED = ("passed", "sequence", "ipvsadm_stats", "nodes")


def summary(results: dict[str, dict[str, Any]]) -> str:
    """One line per step, in run order (stack outputs come back key-sorted)."""
    lines = ["lvs-lab verification:"]
    ordered = [s for s in STEPS if s in results] + [s for s in results if s not in STEPS]
    for step in ordered:
        r = results[step]
        detail = {k: v for k, v in r.items() if k not in _OMITTED}
        if "nodes" in r:
            detail["boot_to_ready_s"] = {n: v.get("boot_to_ready_s") for n, v in r["nodes"].items()}
        lines.append(f"  {'PASS' if r.get('passed') else 'FAIL'} {step:<13} {json.dumps(detail)}")
    return "\n".join(lines)
