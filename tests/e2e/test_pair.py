"""Two ephemeral labs side by side (stacks/Pulumi.{ci,weighted}.yaml): full verification, idempotency, the
runtime faults of their features, then a leak-free destroy of each."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lvslab.faults import RUNTIME_FAULTS
from lvslab.model import mac_for
from tests.e2e.conftest import ROOT, run_in, start_in
from tests.e2e.labs import (
    SORRY,
    assert_fault_caught,
    assert_verified,
    destroy_kept,
    fault_batch,
    fault_result,
    kept_labs,
    up,
)

# name -> (template, the steps it adds to the base steps)
LABS = {
    "a": ("ci", [SORRY]),  # rr, HTTP_GET, sorry server, clean failover
    "b": ("weighted", ["connection-sync"]),  # wrr 3:1, TCP_CHECK, hard failover, sync daemon
}


@pytest.fixture(scope="module")
def pair(netns: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    with kept_labs(netns, tmp_path_factory.mktemp("pair"), {k: t for k, (t, _) in LABS.items()}) as labs:
        yield labs


def test_labs_side_by_side(pair: dict[str, dict[str, Any]]) -> None:
    print(json.dumps({k: (lab["code"], lab["seconds"]) for k, lab in pair.items()}))
    a, b = up(pair["a"]), up(pair["b"])
    assert a["slot"] != b["slot"] and a["stack"] != b["stack"]
    assert_verified(a, {"web1": 4, "web2": 4}, "web2", LABS["a"][1], boots_at_once=pair["a"]["boots_at_once"])
    sorry = a["verification"][SORRY]
    assert sorry["sorry_answered_by"] == "sorry-director1" and sorry["normal_answered_by"] == "web1"
    # wrr 3:1 over 40 fresh connections: exactly 30/10 (IPVS's wrr is deterministic for one client);
    # the TCP_CHECK removal of the weight-1 server is decided from the IPVS table, not from client shares.
    assert_verified(b, {"web1": 30, "web2": 10}, "web2", LABS["b"][1], boots_at_once=pair["b"]["boots_at_once"])
    assert pair["a"]["boots_at_once"] == pair["b"]["boots_at_once"] == max(1, len(os.sched_getaffinity(0)) // 2)
    # connection sync: the download went on while the BACKUP held the VIP and after the MASTER resumed
    sync = b["verification"]["connection-sync"]
    assert sync["synced_to_backup"] and sync["error"] is None
    assert sync["bytes_total"] >= sync["bytes_before_freeze"] + sync["bytes_while_backup_held_vip"] + \
        sync["bytes_after_master_took_vip_back"]
    assert a["verification"]["failover"]["mode"] == "clean" and b["verification"]["failover"]["mode"] == "hard"
    assert all("destroy" not in r["phases"] for r in (a, b))  # kept for the fault tests


# (lab, runtime fault, the assertion it must make fail): a's run one after another, b's beside them.
FAULTS = [
    ("a", "rs-no-arp-sysctls", "real-server-config.dr"),
    ("a", "rs-no-vip", "real-server-config.dr"),
    ("a", "keepalived-down-all", "vip-state.on-master"),
    ("a", "sorry-server-down", "sorry-server.answers"),
    ("a", "keepalived-kill9-master", "split-brain.one-holder"),
    ("a", "check-tcp-only", "health-check.removed"),  # HTTP_GET notices a 503 on an open port, TCP_CHECK does not
    ("a", "nginx-wont-start-sorry", "sorry-server.normal-again"),
    ("a", "backup-sorry-only", "failover.vip-moved"),  # only the BACKUP's sorry page after the failover
    ("a", "nopreempt-on", "failback.returns"),  # the MASTER does not take the VIP back
    ("a", "keepalived-stop-kills", "failover.backup-only"),  # the stopped MASTER keeps the VIP
    ("a", "goodbye-advert-lost", "failover.gap"),  # no priority-0 advert: the BACKUP waits its master-down timer
    ("a", "rs-no-vip-checked", "health-check.answers"),  # back in the table, but it drops what the VIP sends it
    ("a", "unchecked-local-server-on-restart", "failback.failed-requests"),  # the returning MASTER flaps
    ("a", "backup-announces-vip", "sorry-server.of-holder"),  # the client reaches the BACKUP's IPVS
    ("a", "slow-check-on-restart", "failback.gap"),  # the returning MASTER's sorry page until a 4 s check passes
    ("b", "sync-daemon-off", "connection-sync.stream-kept"),
    ("b", "nginx-down-all", "ipvs.all-in-table"),
    ("b", "scheduler-rr", "round-robin.split"),  # wrr 3:1 becomes 20/20
    ("b", "backup-answers-arp", "vip-arp.master-only"),
    ("b", "ipvs-timeouts-changed", "ipvs-settings.timeouts-sync"),
    ("b", "cloud-init-error", "readiness.cloud-init"),
    ("b", "master-down-before-failover", "failover.master-held"),
    ("b", "master-down-at-restore", "restore.master-only"),
    ("b", "nginx-wont-start", "health-check.readded"),
    ("b", "nginx-down-at-restore", "ipvs.all-in-table"),
    ("b", "keepalived-down-backup", "connection-sync.vip-moved"),
    ("b", "backup-priority-higher", "connection-sync.vip-back"),
    ("b", "unchecked-local-server-backup", "failover.failed-requests"),  # the BACKUP flaps after taking over
    ("b", "cloud-init-unfinished", "readiness.in-time"),  # readyTimeout 20 s: cloud-init status says "running"
]


CAPTURED: dict[str, Path] = {}  # lab -> the pcap `capture` wrote on its bridge while its faults ran


@pytest.fixture(scope="module")
def fault_runs(pair: dict[str, dict[str, Any]], request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The selected fault tests' runs: each lab's faults one after another, the two labs at the same time
    (a fault touches only its own lab). {fault: its `tools/lvslab.py fault` process}."""
    def run_all(lab: str) -> dict[str, Any]:  # one process per lab: the lab is loaded once
        return fault_batch(pair[lab], request, [(fault, assertion) for name, fault, assertion in FAULTS if name == lab])

    # `capture` on lab a's bridge for as long as the faults run (their failovers included): see the capture test.
    pcap = tmp_path_factory.mktemp("capture") / "lab-a.pcap"
    capturing = start_in(pair["a"]["netns"], "capture", "--stack", up(pair["a"])["stack"], "--filter", "lvs",
                         "--seconds", "3600", "--pcap", str(pcap), log=pcap.with_suffix(".log"))
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(LABS)) as pool:
            runs = list(pool.map(run_all, sorted(LABS)))
    finally:
        capturing.send_signal(signal.SIGINT)
        try:
            capturing.wait(timeout=60)
        except subprocess.TimeoutExpired:  # the test below then finds what it wrote so far
            capturing.kill()
            capturing.wait()
    CAPTURED["a"] = pcap
    # What each fault costs (--durations shows only this fixture's total), on the terminal whatever the outcome.
    terminal = request.config.pluginmanager.getplugin("terminalreporter")
    capture = request.config.pluginmanager.getplugin("capturemanager")  # a fixture's output is captured otherwise
    for lab, run in zip(sorted(LABS), runs, strict=True):
        for fault, proc in run.items():
            result = fault_result(proc, fault)
            with capture.global_and_fixture_disabled():
                terminal.write_line(f"fault {fault} on lab {lab}: {result.get('failed_assertion')} failed after "
                                    f"{result.get('until_caught_s')} s, {result.get('seconds')} s in all")
    return {fault: proc for run in runs for fault, proc in run.items()}


@pytest.mark.parametrize("lab,fault,assertion", FAULTS)
def test_runtime_fault_fails_its_assertion(fault_runs: dict[str, Any], lab: str, fault: str, assertion: str) -> None:
    proc = fault_runs[fault]
    print(json.dumps(fault_result(proc, fault), indent=1))
    assert_fault_caught(proc, assertion, fault)
    message = fault_result(proc, fault)["message"]
    if assertion == "readiness.in-time":  # the node named, with what cloud-init itself says there
        assert "web1 ready within 20 s" in message and "status: running" in message, message
    if assertion == "split-brain.one-holder":  # both holders and both ARP answers named, and the way out
        assert "['director1', 'director2']" in message and message.count("52:54:00:") == 2, message
        assert "repair: on director1" in message, message


def test_exec_and_the_ssh_config(pair: dict[str, dict[str, Any]]) -> None:
    """`exec` runs one command on the directors at once (output prefixed per node, exit status the worst) and
    leaves the lab's ssh config, which plain OpenSSH uses from outside the lab's network namespace."""
    stack = up(pair["a"])["stack"]
    vip = up(pair["a"])["lab"]["vip"]
    proc = run_in(pair["a"]["netns"], "exec", "--stack", stack, "--role", "directors", "--",
                  "ip -4 -o addr show dev eth0")
    assert proc.returncode == 0, proc.stdout[-3000:]
    holders = [line.split(" |")[0].strip() for line in proc.stdout.splitlines() if f" {vip}/" in line]
    assert holders == ["director1"], proc.stdout[-3000:]
    failing = run_in(pair["a"]["netns"], "exec", "--stack", stack, "--nodes", "web1,director2", "--",
                     "test $(hostname) = web1")
    assert failing.returncode == 1 and "failed on director2 (1)" in failing.stdout, failing.stdout[-3000:]
    config = ROOT / ".lvslab" / "ssh" / stack / "config"
    plain = subprocess.run(["ssh", "-F", str(config), "-o", "BatchMode=yes", "web2", "hostname"],
                           capture_output=True, text=True, timeout=60)  # run here, outside the namespace
    assert plain.returncode == 0 and plain.stdout.strip() == "web2", plain


def test_capture_shows_the_failovers(fault_runs: dict[str, Any], pair: dict[str, dict[str, Any]]) -> None:
    """`capture` ran on lab a's bridge while its faults ran, their failovers included: scapy finds in the pcap the
    BACKUP's VRRP adverts (a BACKUP sends none until it is MASTER), its gratuitous ARP for the VIP, and DR frames
    from a director to a real server's MAC with the VIP as destination IP (the MAC rewrite)."""
    from scapy.all import ARP, IP, TCP, Ether, rdpcap

    failovers = [f for lab, f, _ in FAULTS if lab == "a" and f in fault_runs and "failover" in RUNTIME_FAULTS[f].steps]
    if not failovers:
        pytest.skip("no fault with a failover of lab a selected (-k): nothing to capture")
    stack, vip = up(pair["a"])["stack"], up(pair["a"])["lab"]["vip"]
    pcap = CAPTURED["a"]
    print(pcap.with_suffix(".log").read_text()[-2000:])
    mac = {name: mac_for(stack, name) for name in ("director1", "director2", "web1", "web2")}
    packets = rdpcap(str(pcap))
    adverts = [p for p in packets if IP in p and p[IP].proto == 112 and p[Ether].src == mac["director2"]]
    garps = [p for p in packets if ARP in p and p[Ether].src == mac["director2"] and p[ARP].psrc == vip == p[ARP].pdst]
    rewritten = [p for p in packets if TCP in p and p[IP].dst == vip and p[Ether].dst in (mac["web1"], mac["web2"])
                 and p[Ether].src in (mac["director1"], mac["director2"])]
    print(f"{len(packets)} packets: {len(adverts)} adverts of director2, {len(garps)} gratuitous ARP, "
          f"{len(rewritten)} DR frames")
    assert adverts and garps and rewritten, (len(packets), len(adverts), len(garps), len(rewritten))


def test_pause_and_resume(pair: dict[str, dict[str, Any]]) -> None:
    """`pause` saves every node of lab a, `resume` brings them back: the VIP answers within a tenth of one node's
    boot (its cloud-init finished at that guest uptime, from the lab's own readiness step), and the readiness,
    lab-state and round-robin steps pass right after (the plain pulumi preview that follows expects no changes)."""
    lab = pair["a"]
    report = up(lab)
    assert run_in(lab["netns"], "pause", "--stack", report["stack"]).returncode == 0
    states = subprocess.run(["ip", "netns", "exec", lab["netns"], "virsh", "-c", "qemu:///system", "list", "--all",
                             "--managed-save"], capture_output=True, text=True).stdout
    assert states.count(f"lvs-lab-{report['stack']}-") == 4 and "saved" in states, states
    resumed = run_in(lab["netns"], "resume", "--stack", report["stack"])
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    took = json.loads(resumed.stdout.split("resume: ", 1)[1].splitlines()[0])
    one_boot = min(n["boot_to_ready_s"] for n in report["verification"]["readiness"]["nodes"].values())
    assert took["serving_after_s"] is not None and took["serving_after_s"] <= 0.1 * one_boot, (took, one_boot)
    print(f"resume: serving after {took['serving_after_s']} s (one boot: {one_boot} s); {took}")
    verified = run_in(lab["netns"], "verify", "--stack", report["stack"], "--steps", "readiness,lvs-state,round-robin")
    assert verified.returncode == 0 and "all 3 steps passed" in verified.stdout, verified.stdout[-3000:]


def test_plain_pulumi_on_the_lab(pair: dict[str, dict[str, Any]]) -> None:
    """The plain CLI as README's "Using pulumi directly" runs it (tools/env.sh sourced, in the lab's namespace):
    a preview of the running lab expects no changes, and the checkout stays clean."""
    stack = up(pair["a"])["stack"]
    proc = subprocess.run(["ip", "netns", "exec", pair["a"]["netns"], "bash", "-c",
                           f"source tools/env.sh && pulumi preview -s {stack} --expect-no-changes --non-interactive"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    status = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    assert status == "", status


@pytest.mark.parametrize("lab", sorted(LABS))
def test_kept_lab_destroys_without_leaks(pair: dict[str, dict[str, Any]], lab: str) -> None:
    """After the fault tests: destroy each kept lab and check nothing with its prefix is left (its ssh config
    gone too)."""
    stack = up(pair[lab])["stack"]
    destroy_kept(pair[lab])
    assert not (ROOT / ".lvslab" / "ssh" / stack).exists()
