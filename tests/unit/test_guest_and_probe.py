"""The guest side of readiness (cloud-init done, the ready command and its boot profile, run for real in a
shell) and the probe's SSH helpers (the table watcher's timing, one shared connection per node)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest


def test_readiness_retries_an_ssh_attempt_that_times_out(dev_raw: dict[str, Any]) -> None:
    """Many VMs booting on two cores: one SSH attempt may hang past its timeout; readiness asks again."""
    from dataclasses import replace

    import lvslab.verify.steps.state as checks
    from lvslab.config import parse_config
    from lvslab.model import derive, verify_spec
    from lvslab.verify.context import StepContext

    spec = verify_spec(derive(parse_config(dev_raw, "dev")))
    spec = replace(spec, directors=(), real_servers=(replace(spec.real_servers[0], console_log="/nonexistent"),))
    calls: list[str] = []

    def fake_ssh(_key: object, address: str, script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        calls.append(address)
        if len(calls) == 1:
            raise subprocess.TimeoutExpired(["ssh"], timeout)
        return subprocess.CompletedProcess(["ssh"], 0, "cloud-init done on web1, ready marker 1700000000\n", "")

    ctx = StepContext(spec, SimpleNamespace(path="/dev/null"), run_ssh=fake_ssh)  # type: ignore[arg-type]
    result = checks.check_readiness(ctx)
    assert result["passed"] and len(calls) == 2


def test_readiness_out_of_time_says_what_cloud_init_is_doing(dev_raw: dict[str, Any]) -> None:
    """A node whose cloud-init never finishes: each SSH wait is cut to the time left, and the failure quotes
    `cloud-init status` on that node (fault cloud-init-unfinished shows it on VMs)."""
    from dataclasses import replace

    import lvslab.verify.steps.state as checks
    from lvslab.config import parse_config
    from lvslab.model import derive, verify_spec
    from lvslab.verify.context import StepContext
    from lvslab.verify.failure import CheckFailed

    spec = verify_spec(derive(parse_config(dev_raw, "dev")))
    spec = replace(spec, directors=(), ready_timeout=20,
                   real_servers=(replace(spec.real_servers[0], console_log="/nonexistent"),))
    clock = [0.0]
    waits: list[float] = []

    def fake_ssh(_key: object, address: str, script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        if "cloud-init status --long" in script:
            return subprocess.CompletedProcess(["ssh"], 0, "status: running detail: DataSourceNoCloud\n", "")
        waits.append(timeout)
        clock[0] += timeout
        raise subprocess.TimeoutExpired(["ssh"], timeout)

    ctx = StepContext(spec, SimpleNamespace(path="/dev/null"), run_ssh=fake_ssh,  # type: ignore[arg-type]
                      monotonic=lambda: clock[0], sleep=lambda s: None)
    with pytest.raises(CheckFailed) as caught:
        checks.check_readiness(ctx)
    assert caught.value.assertion == "readiness.in-time" and waits == [8, 12]  # the quick ask, then the rest
    assert "web1 ready within 20 s" in str(caught.value)
    assert "on web1: cloud-init status --long: status: running" in str(caught.value)


def _cloud_init_files(run: Path, status_errors: list[str], result_errors: list[str] | None) -> None:
    """status.json/result.json as cloud-init 22.4 writes them (atomic_helper.json_dumps: indent=1)."""
    def dump(data: object) -> str:
        return json.dumps(data, indent=1, sort_keys=True, separators=(",", ": "))

    run.mkdir(exist_ok=True)
    stage = {"errors": status_errors, "finished": 2.0, "start": 1.0}
    (run / "status.json").write_text(dump({"v1": {"datasource": "DataSourceNoCloud", "init": stage, "stage": None}}))
    if result_errors is not None:
        (run / "result.json").write_text(dump({"v1": {"datasource": "DataSourceNoCloud", "errors": result_errors}}))


@pytest.mark.parametrize("status_errors,result_errors,code,said", [
    ([], [], 0, "cloud-init done on web1, ready marker 1700000000"),
    ([], ["('scripts-user', RuntimeError('runparts failed'))"], 1, "runparts failed"),
    (["('package-update-upgrade-install', 'apt failed')"], None, 1, "apt failed"),  # stops waiting at once
    ([], None, None, ""),  # still running: keeps waiting
])
def test_cloud_init_done_script(tmp_path: Path, status_errors: list[str], result_errors: list[str] | None,
                                code: int | None, said: str) -> None:
    """The shell the readiness waits run on each node (no Python in the booting guest), against files
    written the way cloud-init writes them."""
    from lvslab.guest import cloud_init_done_script

    _cloud_init_files(tmp_path / "run", status_errors, result_errors)
    (tmp_path / "ready").write_text("1700000000\n")
    script = cloud_init_done_script("web1", run_dir=str(tmp_path / "run"), marker=str(tmp_path / "ready"))
    try:
        proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=3)
    except subprocess.TimeoutExpired:
        assert code is None
        return
    assert proc.returncode == code and said in (proc.stdout + proc.stderr), proc
    if code:
        assert proc.stderr.startswith("check readiness failed: expected cloud-init done on web1; observed")


def test_ready_returns_at_cloud_init_done_and_the_profile_follows(tmp_path: Path) -> None:
    """The ready command (which the next VM's boot waits for) returns as soon as cloud-init is done; the boot
    profile is taken in the background once systemd's boot is over, and the readiness step waits for it."""
    import os
    import time

    from lvslab.guest import readiness_script, ready_script

    _cloud_init_files(tmp_path / "run", [], [])
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "systemctl").write_text("#!/bin/sh\nsleep 2\n")  # the boot is over 2 s after cloud-init
    (fake / "systemd-analyze").write_text("#!/bin/sh\necho 'Startup finished in 1.5s (kernel) + 20s (userspace)'\n")
    for tool in ("systemctl", "systemd-analyze"):
        (fake / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    profile = tmp_path / "boot-profile.txt"
    t0 = time.monotonic()
    ready = subprocess.run(["sh", "-c", ready_script("web1", str(tmp_path / "run"), str(profile))], env=env,
                           capture_output=True, text=True, timeout=10)
    assert ready.returncode == 0 and "cloud-init done on web1" in ready.stdout
    assert time.monotonic() - t0 < 1.5 and not profile.exists()
    readiness = subprocess.run(["sh", "-c", readiness_script("web1", str(tmp_path / "run"), str(profile))],
                               env=env, capture_output=True, text=True, timeout=10)
    assert readiness.returncode == 0 and "Startup finished in 1.5s (kernel)" in readiness.stdout
    assert time.monotonic() - t0 >= 2 and profile.exists()


@pytest.mark.parametrize("action_s,expect_after", [(0.3, 1.2), (2.0, 0.0)])
def test_ssh_watch_times_from_the_end_of_the_action(monkeypatch: pytest.MonkeyPatch, action_s: float,
                                                    expect_after: float) -> None:
    """The slow SSH round trip of the action is reported, not counted: 'done' 1.5 s after 'watching'
    is 1.2 s after a 0.3 s action, and 0 s after an action that outlasted it."""
    import time

    from lvslab.verify import probe

    real_popen = subprocess.Popen

    def local_shell(argv: list[str], **kwargs: Any) -> subprocess.Popen[str]:
        return real_popen(["sh", "-c", argv[-1]], **kwargs)

    monkeypatch.setattr(probe.subprocess, "Popen", local_shell)
    key = probe.SshKey("not a key")
    after, took, output = probe.ssh_watch(key, "192.0.2.1", "echo watching; sleep 1.5; echo done",  # type: ignore[arg-type]
                                          lambda: time.sleep(action_s), timeout=10)
    assert after is not None and abs(after - expect_after) < 0.4
    assert abs(took - action_s) < 0.2 and output.split() == ["watching", "done"]
    missing, _, output = probe.ssh_watch(key, "192.0.2.1", "echo watching; echo timeout",  # type: ignore[arg-type]
                                         lambda: None, timeout=10)
    assert missing is None and output.split() == ["watching", "timeout"]
    key.close()


def test_ssh_key_shares_one_connection_per_node_and_ends_its_masters(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ssh of one SshKey goes through a ControlMaster socket in the key's own 0700 directory; close()
    asks each master still running to exit and removes the key."""
    from lvslab.verify import probe

    key = probe.SshKey("secret key")
    argv = probe._ssh_argv(key, "10.77.0.21", "true")
    assert argv[-2:] == ["root@10.77.0.21", "true"] and "ControlMaster=auto" in argv
    assert f"ControlPath={key.control_dir}/%C" in argv and any(a.startswith("ControlPersist=") for a in argv)
    assert os.stat(key.control_dir).st_mode & 0o777 == 0o700 and os.stat(key.path).st_mode & 0o777 == 0o600
    for name in ("a1b2", "c3d4"):  # two masters' sockets
        Path(key.control_dir, name).touch()
    exits: list[list[str]] = []
    monkeypatch.setattr(probe.subprocess, "run", lambda argv, **_: exits.append(argv))
    key.close()
    assert sorted(a[2] for a in exits) == [f"ControlPath={key.control_dir}/{n}" for n in ("a1b2", "c3d4")]
    assert all(a[3:5] == ["-O", "exit"] for a in exits) and not os.path.exists(key.control_dir)
