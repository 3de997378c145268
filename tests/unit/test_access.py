"""The way into a lab: the ssh config (read back by OpenSSH itself, `ssh -G`), its key file, node selection and
`exec`'s output and exit status (through a stand-in ssh on PATH)."""

from __future__ import annotations

import argparse
import stat
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from lvslab.runner import access

NODES = [SimpleNamespace(name="director1", address="10.0.0.11", role="director"),
         SimpleNamespace(name="director2", address="10.0.0.12", role="director"),
         SimpleNamespace(name="web1", address="10.0.0.21", role="real-server")]


def resolved(config: Path, host: str) -> dict[str, str]:
    """OpenSSH's own reading of the config for a host (`ssh -G`: nothing is connected)."""
    out = subprocess.run(["ssh", "-F", str(config), "-G", host], capture_output=True, text=True, check=True)
    return {k: v for k, _, v in (line.partition(" ") for line in out.stdout.splitlines())}


@pytest.mark.parametrize("netns,jump,proxy", [
    ("lvslab", [], "ip netns exec lvslab nc %h %p"),
    ("", [], None),  # a bridge on the host's own network (a systemd-run libvirtd): straight there
    ("lvslab", ["-o", "ProxyCommand=ssh -o BatchMode=yes -W %h:%p root@hv2"],
     "ip netns exec lvslab ssh -o BatchMode=yes -W %h:%p root@hv2"),
])
def test_ssh_config_reaches_every_node_as_openssh_reads_it(tmp_path: Path, netns: str, jump: list[str],
                                                           proxy: str | None) -> None:
    key = tmp_path / "key"
    config = tmp_path / "config"
    config.write_text(access.ssh_config_text(NODES, key, netns, jump))
    for node in NODES:
        seen = resolved(config, node.name)
        assert seen["hostname"] == node.address and seen["user"] == "root"
        assert seen["identityfile"] == str(key) and seen["stricthostkeychecking"] == "false"
        assert seen.get("proxycommand") == proxy


def test_config_and_key_written_0600_and_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(access, "current_netns", lambda: "lvslab")
    spec = SimpleNamespace(nodes=NODES, uri="qemu:///system")
    config = access.write_ssh_config("dev", spec, "-----KEY-----", base=tmp_path)
    key = config.parent / "key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and key.read_text() == "-----KEY-----\n"
    assert resolved(config, "web1")["identityfile"] == str(key)
    access.write_ssh_config("dev", spec, "-----NEW-----", base=tmp_path)  # written again after an up
    assert key.read_text() == "-----NEW-----\n"
    access.remove_ssh_config("dev", base=tmp_path)
    assert not (tmp_path / "dev").exists()


def test_nodes_by_name_or_role() -> None:
    spec = SimpleNamespace(nodes=NODES)
    assert [n.name for n in access.select_nodes(spec, [], "directors")] == ["director1", "director2"]
    assert [n.name for n in access.select_nodes(spec, ["web1", "director1"], None)] == ["director1", "web1"]
    with pytest.raises(ValueError, match=r"no node web9 in this lab \(its nodes: director1, director2, web1\)"):
        access.select_nodes(spec, ["web9"], None)


def test_exec_prefixes_each_line_and_exits_with_the_worst(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A stand-in ssh answers per node: director2 fails with 3; exec prints every node's lines prefixed and
    returns 3."""
    fake = tmp_path / "bin" / "ssh"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nfor a; do node=$prev; prev=$a; done\n'  # the node is the argument before the command
                    'echo "ran $prev on $node"\n[ "$node" = director2 ] && { echo oops >&2; exit 3; }\nexit 0\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    spec = SimpleNamespace(nodes=NODES)
    monkeypatch.setattr(access, "_lab_access", lambda stack: (spec, tmp_path / "config"))
    args: Any = argparse.Namespace(stack="dev", nodes=None, role="directors", group=False, timeout=10,
                                   command=["hostname"])
    assert access.cmd_exec(args) == 3
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == ["director1 | ran hostname on director1", "director2 | ran hostname on director2",
                       "director2 | oops"]
    assert out[3].endswith("exec on 2 nodes: failed on director2 (3)")
    args.group, args.nodes, args.role = True, "web1", None
    assert access.cmd_exec(args) == 0
    assert capsys.readouterr().out.splitlines()[:2] == ["=== web1 (exit 0)", "ran hostname on web1"]
