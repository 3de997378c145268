"""Where a VM's boot time goes: systemd-analyze and cloud-init's event log, read from the guest once it is
ready and reduced to numbers (the readiness step reports them per node; `make bench` and README's
performance table sum them up). Pure parsing; the script runs over SSH (lvslab.guest).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

PROFILE_SCRIPT = (
    "echo '### analyze'; systemd-analyze 2>&1; "
    "echo '### blame'; systemd-analyze blame --no-pager 2>&1 | head -n 12; "
    # cloud-init's own start/finish events (what `cloud-init analyze` reads, without starting Python twice
    # on a busy emulated CPU): parsed here.
    "echo '### ci-events'; grep -E 'handlers.py\\[DEBUG\\]: (start|finish): |Cloud-init v\\. \\S+ running ' "
    "/var/log/cloud-init.log"
)

# The systemd unit that runs each cloud-init stage: unit time - stage time = what the stage spends outside
# its modules (Python start-up and imports, waiting for the CPU).
STAGE_UNITS = {
    "init-local": "cloud-init-local.service",
    "init-network": "cloud-init.service",
    "modules-config": "cloud-config.service",
    "modules-final": "cloud-final.service",
}

_SPAN_PART = re.compile(r"(\d+(?:\.\d+)?)(min|ms|us|s|h)")
_SPAN_FACTOR = {"h": 3600.0, "min": 60.0, "s": 1.0, "ms": 0.001, "us": 0.000001}


def parse_timespan(text: str) -> float:
    """systemd's '1min 45.920s' / '721ms' / '3.5s' -> seconds."""
    parts = _SPAN_PART.findall(text.replace(" ", ""))
    if not parts:
        raise ValueError(f"not a systemd time span: {text!r}")
    return round(sum(float(n) * _SPAN_FACTOR[u] for n, u in parts), 3)


def _sections(output: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current = None
    for line in output.splitlines():
        if line.startswith("### "):
            current = line[4:].strip()
            sections[current] = []
        elif current is not None and line.strip():
            sections[current].append(line)
    return sections


_STARTUP = re.compile(r"Startup finished in (.+?) \(kernel\) \+ (?:(.+?) \(initrd\) \+ )?(.+?) \(userspace\)")
_BLAME = re.compile(r"^\s*(.+?s)\s+(\S+)$")
# A stage's start is the "running '<mode>'" line (its own start event comes before logging is set up).
_STAMP = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) - "
_STAGE_START = re.compile(_STAMP + r"util\.py\[DEBUG\]: Cloud-init v\. \S+ running '([^']+)'")
_MODE_STAGE = {"init-local": "init-local", "init": "init-network", "modules:config": "modules-config",
               "modules:final": "modules-final"}
_EVENT = re.compile(_STAMP + r"handlers\.py\[DEBUG\]: (start|finish): ([^:\s]+):")


def event_durations(lines: list[str]) -> dict[str, float]:
    """cloud-init's start/finish events -> seconds per stage ("modules-final") and per module
    ("modules-final/config-runcmd"), first start to first finish after it."""
    started: dict[str, float] = {}
    durations: dict[str, float] = {}
    for line in lines:
        stage = _STAGE_START.match(line)
        m = stage or _EVENT.match(line)
        if not m:
            continue
        stamp = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp() + int(m.group(2)) / 1000
        name = _MODE_STAGE.get(m.group(3), m.group(3)) if stage else m.group(4)
        if stage or m.group(3) == "start":
            started.setdefault(name, stamp)
        elif name in started and name not in durations:
            durations[name] = round(stamp - started[name], 3)
    return durations


def parse_profile(output: str, top: int = 6) -> dict[str, Any]:
    """The PROFILE_SCRIPT's output -> kernel/userspace seconds, the slowest units, each cloud-init stage's
    own time next to its unit's time, and the slowest cloud-init modules."""
    sec = _sections(output)
    profile: dict[str, Any] = {}
    startup = _STARTUP.search(" ".join(sec.get("analyze", [])))
    if startup:
        profile["kernel_s"] = parse_timespan(startup.group(1))
        if startup.group(2):
            profile["initrd_s"] = parse_timespan(startup.group(2))
        profile["userspace_s"] = parse_timespan(startup.group(3))
    units: dict[str, float] = {}
    for line in sec.get("blame", []):
        m = _BLAME.match(line)
        if m:
            try:
                units[m.group(2)] = parse_timespan(m.group(1))
            except ValueError:
                continue
    profile["slowest_units_s"] = dict(list(units.items())[:top])
    events = event_durations(sec.get("ci-events", []))
    stages = {}
    for stage, unit in STAGE_UNITS.items():
        if stage in events:
            unit_s = units.get(unit)
            stages[stage] = {"stage_s": round(events[stage], 2), "unit_s": unit_s,
                             "outside_modules_s": None if unit_s is None else round(max(unit_s - events[stage], 0), 2)}
    profile["cloud_init_stages"] = stages
    modules = {name.split("/", 1)[1].removeprefix("config-"): round(s, 2)
               for name, s in sorted(events.items(), key=lambda kv: -kv[1]) if "/" in name}
    profile["slowest_modules_s"] = dict(list(modules.items())[:top])
    return profile


def summarise(profiles: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Mean seconds per VM for the breakdown table: kernel, each cloud-init stage's modules and what the
    stage spends outside them, the package install, the rest of userspace."""
    keys: dict[str, list[float]] = {}

    def add(key: str, value: float | None) -> None:
        if value is not None:
            keys.setdefault(key, []).append(value)

    for p in profiles.values():
        add("kernel + initrd", p.get("kernel_s", 0) + p.get("initrd_s", 0) if "kernel_s" in p else None)
        accounted = 0.0
        for stage, s in p.get("cloud_init_stages", {}).items():
            add(f"cloud-init {stage}: modules", s["stage_s"])
            add(f"cloud-init {stage}: outside modules (Python start-up, CPU wait)", s["outside_modules_s"])
            accounted += s["unit_s"] or 0
        add("  of which package installs", p.get("slowest_modules_s", {}).get("package-update-upgrade-install"))
        if "userspace_s" in p:
            add("other userspace (systemd units before/beside cloud-init)", max(p["userspace_s"] - accounted, 0))
    return {k: round(sum(v) / len(v), 1) for k, v in keys.items()}
