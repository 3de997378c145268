"""Benchmark of the ephemeral cycle (a script, not a timed test): toolchain bootstrap, image build, per-VM
boot-to-ready, whole up, each verification step, failover/failback next to the VRRP bound, destroy,
peak host memory and per-VM QEMU RSS. Writes JSON and a readable table.

  make bench                      (warm caches)
  make bench BENCH_ARGS=--cold    (toolchain and image rebuilt into a temporary cache first)

Runs on the host (the builds need the network); the lab cycle runs inside the lab's namespace.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".lvslab" / "venv" / "bin" / "python")

# Measured by hand without Pulumi on this kind of machine (issue 6): the targets.
HAND_CYCLE_S = (337, 403)
RSS_TARGET_MIB = 700


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.monotonic()
    subprocess.run(cmd, cwd=ROOT, check=True, env=env, stdout=subprocess.DEVNULL)
    return round(time.monotonic() - t0, 1)


class MemorySampler:
    """Peak host memory in use and peak RSS of every QEMU process, sampled every second."""

    def __init__(self) -> None:
        self.peak_used_mib = 0.0
        self.qemu_rss_mib: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
            used = (int(info["MemTotal"].split()[0]) - int(info["MemAvailable"].split()[0])) / 1024
            self.peak_used_mib = max(self.peak_used_mib, used)
            for proc in Path("/proc").glob("[0-9]*"):
                try:
                    if (proc / "comm").read_text().strip().startswith("qemu-system"):
                        rss = next(int(ln.split()[1]) for ln in (proc / "status").read_text().splitlines()
                                   if ln.startswith("VmRSS:")) / 1024
                        self.qemu_rss_mib[int(proc.name)] = max(self.qemu_rss_mib.get(int(proc.name), 0), rss)
                except (OSError, StopIteration, ValueError):
                    continue
            self._stop.wait(1)

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
    result: dict[str, Any] = {"host": os.uname().nodename, "cpus": os.cpu_count()}

    if args.cold:
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "LVSLAB_CACHE": cache, "GOCACHE": os.path.join(cache, "go-build")}
            result["toolchain_cold_s"] = timed(["tools/toolchain.sh"], env)
            result["image_cold_s"] = timed([PY, "-m", "lvslab.imagebuild", "--cache", cache], env)
        subprocess.run(["tools/toolchain.sh"], cwd=ROOT, check=True)  # relink the checkout to the real cache
    result["toolchain_warm_s"] = timed(["tools/toolchain.sh"])
    result["image_warm_s"] = timed([PY, "-m", "lvslab.imagebuild"])

    report_path = out / "ephemeral.json"
    t0 = time.monotonic()
    with MemorySampler() as mem:
        code = subprocess.run(["ip", "netns", "exec", args.netns, PY, "tools/lvslab.py", "ephemeral",
                               "--json", str(report_path)], cwd=ROOT).returncode
    result["cycle_s"] = round(time.monotonic() - t0, 1)
    report = json.loads(report_path.read_text())
    result["ephemeral_exit"] = code
    result["phases_s"] = report["phases"]
    verification = report.get("verification") or {}
    result["boot_to_ready_s"] = {n: r.get("boot_to_ready_s")
                                 for n, r in verification.get("readiness", {}).get("nodes", {}).items()}
    result["steps_s"] = {step: r.get("duration_s") for step, r in verification.items()}
    result["failover"] = verification.get("failover")
    result["failback"] = verification.get("failback")
    result["peak_host_used_mib"] = round(mem.peak_used_mib)
    result["qemu_rss_mib"] = sorted(round(v) for v in mem.qemu_rss_mib.values())
    result["targets"] = {"hand_cycle_s": HAND_CYCLE_S, "cycle_limit_s": round(HAND_CYCLE_S[1] * 1.15),
                         "rss_limit_mib": RSS_TARGET_MIB}
    (out / "bench.json").write_text(json.dumps(result, indent=2))

    rows = [("toolchain cold / warm", f"{result.get('toolchain_cold_s', '-')} / {result['toolchain_warm_s']} s"),
            ("image cold / warm", f"{result.get('image_cold_s', '-')} / {result['image_warm_s']} s"),
            ("per-VM boot-to-ready", ", ".join(f"{n} {s} s" for n, s in result["boot_to_ready_s"].items())),
            ("up (incl. verification)", f"{report['phases'].get('up')} s"),
            *((f"  step {k}", f"{v} s") for k, v in result["steps_s"].items()),
            ("failover gap / VRRP bound", f"{(result['failover'] or {}).get('service_gap_s')} s / "
                                          f"{(result['failover'] or {}).get('vrrp_bound_s')} s"),
            ("failback (VIP returned)", f"{(result['failback'] or {}).get('vip_returned_after_s')} s"),
            ("destroy", f"{report['phases'].get('destroy')} s"),
            ("whole cycle", f"{result['cycle_s']} s (target <= {result['targets']['cycle_limit_s']} s)"),
            ("peak host memory used", f"{result['peak_host_used_mib']} MiB"),
            ("QEMU RSS per VM", f"{result['qemu_rss_mib']} MiB (target < {RSS_TARGET_MIB})")]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    (out / "bench.md").write_text("| measure | value |\n|---|---|\n" + table + "\n")
    print("| measure | value |\n|---|---|\n" + table)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
