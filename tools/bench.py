"""Benchmark of the ephemeral cycle (a script, not a timed test): toolchain bootstrap, image build, the
hand-driven baseline (one VM booted with plain QEMU, lvslab/handboot.py), the 4-VM lab from `up` start to
every node ready, per-VM boot breakdown (systemd-analyze and cloud-init analyze from the guests), QEMU CPU
seconds per VM, host idle share while the lab boots, each verification step, failover/failback next to
the VRRP bound, destroy, peak host memory and per-VM QEMU RSS; the targets of issue 11 as ratios. Writes
JSON and a readable table.

  make bench                      (warm caches)
  make bench BENCH_ARGS=--cold    (toolchain and image rebuilt into a temporary cache first)

Runs on the host (the builds need the network); the lab cycle runs inside the lab's namespace.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CLK_TCK = os.sysconf("SC_CLK_TCK")

from lvslab.bootprofile import summarise  # noqa: E402

PY = str(ROOT / ".lvslab" / "venv" / "bin" / "python")

# Measured by hand without Pulumi on this kind of machine (issue 6).
HAND_CYCLE_S = (337, 403)
RSS_TARGET_MIB = 700
# Issue 11's targets on this machine: the 4-VM lab from `up` start to all nodes ready, the whole ephemeral
# cycle, one VM ready.
TARGET_LAB_READY_S = 120
TARGET_CYCLE_S = 180
TARGET_ONE_VM_S = 45


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.monotonic()
    subprocess.run(cmd, cwd=ROOT, check=True, env=env, stdout=subprocess.DEVNULL)
    return round(time.monotonic() - t0, 1)


class MemorySampler:
    """Peak host memory in use and peak RSS of every QEMU process, sampled every second."""

    def __init__(self) -> None:
        self.peak_used_mib = 0.0
        self.qemu_rss_mib: dict[int, float] = {}
        self.qemu_cpu_s: dict[int, float] = {}
        self.cpu_samples: list[tuple[float, int, int]] = []  # (monotonic, idle ticks, total ticks)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
            used = (int(info["MemTotal"].split()[0]) - int(info["MemAvailable"].split()[0])) / 1024
            self.peak_used_mib = max(self.peak_used_mib, used)
            ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
            self.cpu_samples.append((time.monotonic(), ticks[3] + ticks[4], sum(ticks)))
            for proc in Path("/proc").glob("[0-9]*"):
                try:
                    if (proc / "comm").read_text().strip().startswith("qemu-system"):
                        rss = next(int(ln.split()[1]) for ln in (proc / "status").read_text().splitlines()
                                   if ln.startswith("VmRSS:")) / 1024
                        self.qemu_rss_mib[int(proc.name)] = max(self.qemu_rss_mib.get(int(proc.name), 0), rss)
                        fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                        self.qemu_cpu_s[int(proc.name)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
                except (OSError, StopIteration, ValueError):
                    continue
            self._stop.wait(1)

    def idle_share(self, start: float, end: float) -> float | None:
        """Share of host CPU time idle between two monotonic times (None without samples)."""
        inside = [s for s in self.cpu_samples if start <= s[0] <= end]
        if len(inside) < 2:
            return None
        (_, idle0, total0), (_, idle1, total1) = inside[0], inside[-1]
        return round((idle1 - idle0) / max(total1 - total0, 1), 3)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="also time a cold toolchain + image build")
    parser.add_argument("--out", default=str(ROOT / "artefacts" / "bench"))
    parser.add_argument("--netns", default="lvslab", help="network namespace with libvirtd (tools/host.sh start)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result, report, code = measure(args, out)
    (out / "bench.json").write_text(json.dumps(result, indent=2))
    text = tables(result, report)
    (out / "bench.md").write_text(text)
    print(text)
    return code


def measure(args: argparse.Namespace, out: Path) -> tuple[dict[str, Any], dict[str, Any], int]:
    """(the measurements, the ephemeral run's report, its exit status)."""
    result: dict[str, Any] = {"host": os.uname().nodename, "cpus": os.cpu_count()}

    if args.cold:
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "LVSLAB_CACHE": cache, "GOCACHE": os.path.join(cache, "go-build")}
            result["toolchain_cold_s"] = timed(["tools/toolchain.sh"], env)
            result["image_cold_s"] = timed([PY, "-m", "lvslab.imagebuild", "--cache", cache], env)
        subprocess.run(["tools/toolchain.sh"], cwd=ROOT, check=True)  # relink the checkout to the real cache
    result["toolchain_warm_s"] = timed(["tools/toolchain.sh"])
    result["image_warm_s"] = timed([PY, "-m", "lvslab.imagebuild"])

    # The hand-driven baseline first, on an idle host: one VM, plain QEMU, same image and templates.
    hand = subprocess.run(["ip", "netns", "exec", args.netns, PY, "-m", "lvslab.handboot", "dev"], cwd=ROOT,
                          check=True, capture_output=True, text=True)
    result["hand_one_vm"] = json.loads(hand.stdout)

    report_path = out / "ephemeral.json"
    t0 = time.monotonic()
    with MemorySampler() as mem:
        code = subprocess.run(["ip", "netns", "exec", args.netns, PY, "tools/lvslab.py", "ephemeral", "--keep",
                               "--json", str(report_path)], cwd=ROOT).returncode
    up_s = time.monotonic() - t0
    report = json.loads(report_path.read_text())
    # The lab kept: paused and resumed (issue 26's goals), verified again, then destroyed like the cycle does.
    result["resume"] = pause_and_resume(args.netns, report["stack"]) if code == 0 else None
    report["phases"]["destroy"] = timed(["ip", "netns", "exec", args.netns, PY, "tools/lvslab.py", "destroy",
                                         "--stack", report["stack"], "--rm"])
    result["cycle_s"] = round(up_s + report["phases"]["destroy"], 1)
    result["ephemeral_exit"] = code
    result["phases_s"] = report["phases"]
    verification = report.get("verification") or {}
    result["boot_to_ready_s"] = {n: r.get("boot_to_ready_s")
                                 for n, r in verification.get("readiness", {}).get("nodes", {}).items()}
    result["steps_s"] = {step: r.get("duration_s") for step, r in verification.items()}
    result["failover"] = verification.get("failover")
    result["failback"] = verification.get("failback")
    ready_at = report.get("ready_after_up_start_s") or {}
    result["lab_ready_after_up_start_s"] = max(ready_at.values()) if ready_at else None
    result["host_idle_share_during_up"] = mem.idle_share(t0, t0 + (report["phases"].get("up") or 0))
    nodes = verification.get("readiness", {}).get("nodes", {})
    profiles = {n: r.get("boot_profile") or {} for n, r in nodes.items()}
    result["boot_profiles"] = profiles
    result["boot_breakdown_mean_s"] = summarise(profiles)
    result["qemu_cpu_s"] = sorted(round(v) for v in mem.qemu_cpu_s.values())
    result["peak_host_used_mib"] = round(mem.peak_used_mib)
    result["qemu_rss_mib"] = sorted(round(v) for v in mem.qemu_rss_mib.values())
    result["targets"] = {"hand_cycle_s": HAND_CYCLE_S, "cycle_limit_s": round(HAND_CYCLE_S[1] * 1.15),
                         "rss_limit_mib": RSS_TARGET_MIB}
    return result, report, code


def pause_and_resume(netns: str, stack: str) -> dict[str, Any]:
    """`pause`, `resume` (to the VIP answering: its own figure) and a whole `verify` after it, each timed."""
    def runner(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", netns, PY, "tools/lvslab.py", *args, "--stack", stack],
                              cwd=ROOT, capture_output=True, text=True)

    t0 = time.monotonic()
    paused = runner("pause")
    t1 = time.monotonic()
    resumed = runner("resume")
    t2 = time.monotonic()
    verified = runner("verify")
    t3 = time.monotonic()
    line = next((ln for ln in resumed.stdout.splitlines() if ln.startswith("resume: ")), "resume: {}")
    took = json.loads(line.split(": ", 1)[1])
    return {"pause_s": round(t1 - t0, 1), "pause_exit": paused.returncode, "resume_s": round(t2 - t1, 1),
            "resume_exit": resumed.returncode, "serving_after_s": took.get("serving_after_s"),
            "verify_s": round(t3 - t2, 1), "verify_exit": verified.returncode,
            "verified_after_s": round(t3 - t1, 1)}


def tables(result: dict[str, Any], report: dict[str, Any]) -> str:
    """bench.md: the targets, the boot breakdown and every measure, as markdown tables."""

    def ratio(value: float | None, target: float) -> str:
        return "-" if value is None else f"{value} s = {value / target:.2f} x target {target} s"

    hand_s = result["hand_one_vm"]["wall_to_ready_s"]
    targets = [("one VM ready (hand-driven baseline, plain QEMU)", ratio(hand_s, TARGET_ONE_VM_S)),
               ("4-VM lab: up start -> all nodes ready",
                ratio(result["lab_ready_after_up_start_s"], TARGET_LAB_READY_S)),
               ("whole ephemeral cycle", ratio(result["cycle_s"], TARGET_CYCLE_S)),
               ("lab ready / one VM by hand", "-" if not result["lab_ready_after_up_start_s"] else
                f"{result['lab_ready_after_up_start_s'] / hand_s:.2f}"),
               ("QEMU RSS per VM", f"max {max(result['qemu_rss_mib'] or [0])} MiB (target <= {RSS_TARGET_MIB})")]
    resume = result.get("resume") or {}
    steps_total = round(sum(v or 0 for v in result["steps_s"].values()), 1)
    if resume:  # issue 26: resume-to-serving <= 0.1 x one VM by hand; resume-to-verified <= verification + that
        targets += [("resume -> VIP serving", ratio(resume["serving_after_s"], round(0.1 * hand_s, 1))),
                    ("resume -> verified (make verify after resume)",
                     ratio(resume["verified_after_s"], round(steps_total + 0.1 * hand_s, 1))),
                    ("rebuild -> verified (up: boots + verification)", f"{report['phases'].get('up')} s"),
                    ("pause (suspend all, managed save each)", f"{resume['pause_s']} s")]
    breakdown = [(k, f"{v} s") for k, v in result["boot_breakdown_mean_s"].items()]
    breakdown += [("QEMU CPU seconds per VM (whole cycle)", f"{result['qemu_cpu_s']}"),
                  ("host CPU idle while `up` ran", f"{(result['host_idle_share_during_up'] or 0) * 100:.0f} %")]
    rows = [("toolchain cold / warm", f"{result.get('toolchain_cold_s', '-')} / {result['toolchain_warm_s']} s"),
            ("image cold / warm", f"{result.get('image_cold_s', '-')} / {result['image_warm_s']} s"),
            ("per-VM boot-to-ready", ", ".join(f"{n} {s} s" for n, s in result["boot_to_ready_s"].items())),
            ("up (incl. verification)", f"{report['phases'].get('up')} s"),
            *((f"  step {k}", f"{v} s") for k, v in result["steps_s"].items()),
            ("failover gap / VRRP bound", f"{(result['failover'] or {}).get('service_gap_s')} s / "
                                          f"{(result['failover'] or {}).get('vrrp_bound_s')} s"),
            ("failback (VIP returned)", f"{(result['failback'] or {}).get('vip_returned_after_s')} s"),
            ("destroy", f"{report['phases'].get('destroy')} s"),
            ("whole cycle", f"{result['cycle_s']} s (by hand, issue 6: {HAND_CYCLE_S[0]}-{HAND_CYCLE_S[1]} s)"),
            ("peak host memory used", f"{result['peak_host_used_mib']} MiB"),
            ("QEMU RSS per VM", f"{result['qemu_rss_mib']} MiB (target < {RSS_TARGET_MIB})")]

    def md(title: str, lines: list[tuple[str, str]]) -> str:
        return f"| {title} | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in lines) + "\n"

    return (md("target (issue 11)", targets) + "\n" + md("boot breakdown, mean per VM", breakdown) + "\n"
            + md("measure", rows))


if __name__ == "__main__":
    raise SystemExit(main())
