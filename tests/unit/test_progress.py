"""Boot progress: the stage read from a console log as cloud-init 22.4 writes it (lines taken from a CI run's
console), said once per change per node; pulumi-command's dial retries left out of what is shown."""

from __future__ import annotations

from pathlib import Path

from lvslab.progress import BootProgress, console_stage, is_dial_retry

INIT = b"[   40.975992] cloud-init[235]: Cloud-init v. 22.4.2 running 'init' at Sat, 05 Dec 2026 06:17:02 +0000. " \
       b"Up 40.45 seconds.\r\n"
FINAL = b"web1 login: [   64.433756] cloud-init[319]: Cloud-init v. 22.4.2 running 'modules:final' at Sat, 05 Dec " \
        b"2026 06:17:25 +0000. Up 63.48 seconds.\r\n"
DONE = b"[   90.333589] cloud-init[319]: Cloud-init v. 22.4.2 finished at Sat, 05 Dec 2026 06:17:51 +0000. " \
       b"Datasource DataSourceNoCloudNet [seed=/dev/vdb][dsmode=net].  Up 90.06 seconds\r\n"


def test_console_stage_follows_cloud_init() -> None:
    assert console_stage(b"") is None
    assert console_stage(b"SeaBIOS (version 1.16.2)\r\n") == "booting (console output)"
    assert console_stage(INIT) == "cloud-init: network (init) (uptime 40 s)"
    assert console_stage(INIT + FINAL) == "cloud-init: final modules (packages, services) (uptime 63 s)"
    assert console_stage(INIT + FINAL + DONE) == "ready: cloud-init finished (uptime 90 s)"


def test_each_change_said_once_and_a_running_node_is_not_news(tmp_path: Path) -> None:
    said: list[str] = []
    web1, web2 = tmp_path / "web1.log", tmp_path / "web2.log"
    web2.write_bytes(INIT + FINAL + DONE)  # already running (a day-2 up): its old stage is not said
    progress = BootProgress({"web1": str(web1), "web2": str(web2)}, said.append)
    progress.domain_started("web1")
    progress.poll()  # no console yet
    web1.write_bytes(INIT)
    progress.poll()
    progress.poll()
    web1.write_bytes(INIT + FINAL + DONE)
    progress.poll()
    stages = [line.rsplit(" (", 1)[0] for line in said]
    assert stages == ["web1: domain started", "web1: cloud-init: network (init) (uptime 40 s)",
                      "web1: ready: cloud-init finished (uptime 90 s)"]
    progress.domain_started("web3")  # not a node of this lab: nothing
    assert len(said) == 3


def test_dial_retries_are_recognised() -> None:
    assert is_dial_retry(" +  command:remote:Command director1-node-ready creating (6s) Dial 2/360 failed: retrying")
    assert not is_dial_retry(" +  command:remote:Command director1-node-ready created (93s)")
    assert not is_dial_retry("Dial 2/360 failed: permission denied")  # a real error stays visible
