"""Diagnostics of a failed run, collected before the teardown: console logs, daemons' journals, IPVS tables."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from pulumi import automation as auto

from lvslab.hypervisor import parse_uri
from lvslab.model import derive
from lvslab.runner.guard import log
from lvslab.runner.stacks import lab_config, private_key_of


def collect_artefacts(stack: auto.Stack, name: str, dest: Path, extra: dict[str, str]) -> None:
    """Diagnostics before destroy: consoles, cloud-init logs, the HA daemon's journal and ipvsadm, event log."""
    from lvslab.verify.probe import SshKey, ssh

    dest.mkdir(parents=True, exist_ok=True)
    for fname, text in extra.items():
        (dest / fname).write_text(text)
    facts = derive(lab_config(stack, name))
    hv = parse_uri(facts.cfg.libvirt_uri)
    if hv.remote:  # the console logs are on the hypervisor
        (dest / "consoles").mkdir(exist_ok=True)
        for node in facts.nodes:
            out = subprocess.run(hv.command(["cat", node.console_log]), capture_output=True)
            if out.returncode == 0:
                (dest / "consoles" / os.path.basename(node.console_log)).write_bytes(out.stdout)
    elif os.path.isdir(facts.console_dir):
        shutil.copytree(facts.console_dir, dest / "consoles", dirs_exist_ok=True)
    try:
        key_text = private_key_of(stack)
    except auto.errors.CommandError as exc:
        (dest / "outputs-error.txt").write_text(str(exc))
        return
    if not key_text:
        return
    with SshKey(key_text, hv.jump_options()) as key:
        for node in facts.nodes:
            journal = facts.cfg.topo.ha_log_command  # the HA daemon's log (keepalived's, heartbeat's)
            role_script = (f"{journal}; ipvsadm -Ln; ipvsadm -Ln --stats; ip addr"
                           if node.role == "director" else
                           "systemctl status nginx --no-pager; ip addr; sysctl -a 2>/dev/null | grep arp_")
            script = ("cloud-init status --long; systemd-analyze; systemd-analyze blame | head -25; "
                      "cat /var/log/cloud-init-output.log; " + role_script)
            try:
                out = ssh(key, node.address, script, timeout=60)
                (dest / f"{node.name}.txt").write_text(out.stdout + out.stderr)
            except subprocess.TimeoutExpired:
                (dest / f"{node.name}.txt").write_text("ssh timed out")
    log(f"artefacts in {dest}")
