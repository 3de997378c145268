"""A lab placed on the test hypervisor (tools/hypervisor.sh, qemu+ssh): the labs' namespace has no route to
its bridge, so the provider went over SSH, the node commands hopped through the hypervisor and the checks
ran on it."""

from __future__ import annotations

import subprocess
from typing import Any

from lvslab.hypervisor import parse_uri


def assert_on_remote_hypervisor(report: dict[str, Any], netns: str, remote_uri: str) -> None:
    remote = parse_uri(remote_uri)
    lab = report["lab"]
    assert report["hypervisor"] == remote.host and lab["hypervisor"] == remote.host, report["hypervisor"]
    bridge, vip = lab["network"]["bridge"], lab["vipUrl"].split("/")[2].split(":")[0]
    assert subprocess.run(["ip", "-n", netns, "link", "show", bridge], capture_output=True).returncode != 0
    route = subprocess.run(["ip", "-n", netns, "route", "get", vip], capture_output=True, text=True)
    assert route.returncode != 0 and "unreachable" in route.stderr, (route.stdout, route.stderr)
    there = subprocess.run(["ip", "netns", "exec", netns, *remote.command(["ip", "-br", "link", "show", bridge])],
                           capture_output=True, text=True)
    assert there.returncode == 0 and there.stdout.startswith(bridge), there.stderr
