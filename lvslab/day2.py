"""Day-2 changes to a running lab, read from Pulumi's engine events (pure; the runner feeds them): which
resource does what, whether a director's VM would be touched, and how the VIP fared during the change."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# Engine operations that create, rebuild or remove a resource (a director's VM must see none of them).
REBUILDING = {"create", "delete", "replace", "create-replacement", "delete-replaced"}


def resource_name(urn: str) -> str:
    """The resource's own name: the last part of its URN."""
    return urn.rsplit("::", 1)[-1]


def plan(steps: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """(op, urn) of each engine step -> {op: sorted resource names}, without the unchanged ones."""
    out: dict[str, set[str]] = {}
    for op, urn in steps:
        if op != "same":
            out.setdefault(op, set()).add(resource_name(urn))
    return {op: sorted(names) for op, names in sorted(out.items())}


def director_rebuilds(changes: dict[str, list[str]], directors: Iterable[str]) -> list[str]:
    """The directors' resources (their VM, disks, seed, keepalived.conf command) that a plan would create,
    replace or delete: must be empty for a day-2 change."""
    prefixes = tuple(f"{d}-" for d in directors)
    return sorted(f"{op} {name}" for op, names in changes.items() if op in REBUILDING
                  for name in names if name.startswith(prefixes))


def vip_during(events: list[Any], start: float, end: float) -> dict[str, Any]:
    """The VIP polls between `start` and `end` (the change, before the verification began): how many,
    how many failed, and who answered."""
    window = [e for e in events if start <= e.t < end]
    answered: dict[str, int] = {}
    for e in window:
        if e.ok:
            answered[e.server or "?"] = answered.get(e.server or "?", 0) + 1
    return {"requests": len(window), "failed": sum(not e.ok for e in window), "answered_by": answered,
            "seconds": round(end - start, 1)}
