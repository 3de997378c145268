"""Pause and resume: every node suspended before any is saved, every node restored before any runs (a stand-in
virsh records the order), and the clock script as a guest's shell runs it (a stand-in date)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from lvslab.runner import pause

NODES = [SimpleNamespace(name=n, domain=f"lvs-lab-dev-{n}", address=f"10.0.0.{i}") for i, n in
         enumerate(("director1", "director2", "web1"), start=11)]


@pytest.fixture
def fake_virsh(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """virsh as a state machine over the domains: running -> paused -> shut off (saved) -> paused -> running."""
    state = {n.domain: "running" for n in NODES}
    calls: list[tuple[str, ...]] = []
    moves = {"suspend": ("running", "paused"), "managedsave": ("paused", "shut off"), "start": ("shut off", "paused"),
             "resume": ("paused", "running")}

    def virsh(spec: Any, *args: str, check: bool = True) -> str:
        if args[0] == "domstate":
            return state[args[1]]
        calls.append(args)
        before, after = moves[args[0]]
        assert state[args[1]] == before, (args, state)
        state[args[1]] = after
        return ""

    monkeypatch.setattr(pause, "virsh", virsh)
    return calls


def test_all_suspended_before_any_is_saved(fake_virsh: list[tuple[str, ...]]) -> None:
    spec = SimpleNamespace(nodes=NODES, uri="qemu:///system")
    pause.pause_lab(spec)
    verbs = [c[0] for c in fake_virsh]
    assert verbs == ["suspend"] * 3 + ["managedsave"] * 3
    assert all(c[2:] == ("--paused",) for c in fake_virsh if c[0] == "managedsave")  # to come back paused


def test_all_restored_before_any_runs_then_clocks_set(fake_virsh: list[tuple[str, ...]],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    spec = SimpleNamespace(nodes=NODES, uri="qemu:///system")
    pause.pause_lab(spec)
    fake_virsh.clear()
    scripts: list[str] = []

    def ssh(_key: object, address: str, script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        scripts.append(address)
        return subprocess.CompletedProcess(["ssh"], 0, "clock was 42.0 s behind\n", "")

    monkeypatch.setattr("lvslab.verify.probe.ssh", ssh)
    asked: list[str] = []
    monkeypatch.setattr(pause, "serving_after", lambda spec, t0: asked.append(str(scripts)) or 1.5)
    took = pause.resume_lab(spec, "-----KEY-----\n")
    assert took["serving_after_s"] == 1.5 and asked == ["[]"]  # the VIP asked before any clock was set
    assert [c[0] for c in fake_virsh] == ["start"] * 3 + ["resume"] * 3
    assert sorted(scripts) == sorted(n.address for n in NODES)
    assert took["clocks"] == {n.name: "clock was 42.0 s behind" for n in NODES}


def test_clock_script_sets_the_time_and_says_how_far_off(tmp_path: Path) -> None:
    fake = tmp_path / "date"
    fake.write_text('#!/bin/sh\ncase "$1" in +%s.%N) echo 1699999957.9 ;; *) echo "$*" > ' + str(tmp_path / "set")
                    + " ;; esac\n")
    fake.chmod(0o755)
    out = subprocess.run(["sh", "-c", pause.clock_script(1700000000.123)], capture_output=True, text=True,
                         env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    assert out.returncode == 0 and out.stdout.strip() == "clock was 42.2 s behind", out
    assert (tmp_path / "set").read_text().split() == ["-u", "-s", "@1700000000.123"]
