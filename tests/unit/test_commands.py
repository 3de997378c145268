"""The shell commands of the lab's command resources, run for real: seed ISOs that cloud-init accepts, deletes
that are idempotent and safe to run concurrently with their siblings, credentials in the expected shape."""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lvslab.commands import (
    PASSWORD_COMMAND,
    SEED_ISO_COMMAND,
    SEED_ISO_DELETE,
    SSH_KEY_COMMAND,
    host_dirs_commands,
    split_key_pair,
)

pytestmark = pytest.mark.tools  # genisoimage, isoinfo, ssh-keygen


def sh(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/bin/sh", "-c", script], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=60)


def test_seed_iso_holds_the_three_files_and_reports_its_digest(tmp_path: Path) -> None:
    iso = tmp_path / "web1-seed.iso"
    out = sh(SEED_ISO_COMMAND, SEED_ISO=str(iso), USER_DATA="#cloud-config\nhostname: web1\n",
             META_DATA="instance-id: x\n", NETWORK_CONFIG="version: 2\n")
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.strip()) == 64 and oct(iso.stat().st_mode & 0o777) == "0o600"
    listing = subprocess.run(["isoinfo", "-i", str(iso), "-J", "-f"], capture_output=True, text=True).stdout.split()
    assert sorted(listing) == ["/meta-data", "/network-config", "/user-data"]
    label = subprocess.run(["isoinfo", "-i", str(iso), "-d"], capture_output=True, text=True).stdout
    assert "Volume id: cidata" in label
    user_data = subprocess.run(["isoinfo", "-i", str(iso), "-J", "-x", "/user-data"], capture_output=True,
                               text=True).stdout
    assert user_data == "#cloud-config\nhostname: web1\n"
    # The same content gives the same digest (no replacement); other content another one.
    again = sh(SEED_ISO_COMMAND, SEED_ISO=str(iso), USER_DATA="#cloud-config\nhostname: web1\n",
               META_DATA="instance-id: x\n", NETWORK_CONFIG="version: 2\n")
    other = sh(SEED_ISO_COMMAND, SEED_ISO=str(iso), USER_DATA="#cloud-config\nhostname: web2\n",
               META_DATA="instance-id: x\n", NETWORK_CONFIG="version: 2\n")
    assert again.stdout != other.stdout


def test_parallel_node_deletes_are_idempotent_and_never_race(tmp_path: Path) -> None:
    """Many nodes deleted at once, over and over (as `pulumi destroy` does), each delete twice, with the
    lab's directory delete among them: every command succeeds and nothing is left."""
    seeds, consoles = tmp_path / "seeds", tmp_path / "consoles"
    create_dirs, delete_dirs = host_dirs_commands(str(consoles), str(seeds))
    for _ in range(10):
        assert sh(create_dirs).returncode == 0
        isos = [seeds / f"node{i}-seed.iso" for i in range(12)]
        for iso in isos:
            iso.write_text("x")
            (consoles / f"{iso.stem}.log").write_text("console")
        jobs = [(SEED_ISO_DELETE, {"SEED_ISO": str(iso)}) for iso in isos for _ in range(2)] + [(delete_dirs, {})]
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            results = list(pool.map(lambda job: sh(job[0], **job[1]), jobs))
        assert [r.returncode for r in results] == [0] * len(jobs), [r.stderr for r in results if r.returncode]
        assert sh(delete_dirs).returncode == 0  # again: idempotent
        assert not seeds.exists() and not consoles.exists()


def test_generated_credentials() -> None:
    key = sh(SSH_KEY_COMMAND, KEY_COMMENT="lvs-lab-test")
    assert key.returncode == 0, key.stderr
    public, private = split_key_pair(key.stdout)
    assert public.startswith("ssh-ed25519 ") and public.endswith(" lvs-lab-test")
    assert private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    passwords = {sh(PASSWORD_COMMAND).stdout for _ in range(5)}
    assert len(passwords) == 5 and all(len(p) == 8 and p.isalnum() for p in passwords)
    with pytest.raises(ValueError):
        split_key_pair("not a key")


@pytest.mark.parametrize("broken", [False, True])
def test_keepalived_push_checks_before_it_replaces(dev_raw: dict[str, Any], tmp_path: Path, broken: bool) -> None:
    """The director's push command run for real (keepalived --config-test of the host, a recording
    systemctl): a valid file replaces the old one and keepalived is started (reloaded once it runs); a file
    keepalived refuses leaves the running configuration alone and fails with keepalived's complaint."""
    from lvslab.commands import keepalived_push_script
    from lvslab.config import parse_config
    from lvslab.model import derive
    from lvslab.render import keepalived_conf

    if not shutil.which("keepalived"):
        pytest.fail("keepalived not installed: run tools/host.sh packages")
    cfg = parse_config(dev_raw, "dev")
    text = keepalived_conf(cfg, derive(cfg).directors[0], "s3cret")
    if broken:
        text = text.replace("lb_kind DR", "lb_kind XX")
    conf = tmp_path / "keepalived.conf"
    conf.write_text("# the running configuration\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/systemctl.log\n'
                                       '[ "$1 $2" != "-q is-active" ] || [ -e ' f'{tmp_path}/active ]\n')
    (bin_dir / "systemctl").chmod(0o755)
    script = keepalived_push_script("true", conf=str(conf))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    proc = subprocess.run(["sh", "-c", script], input=text, capture_output=True, text=True, env=env)
    if broken:
        assert proc.returncode == 1 and "keepalived refused the new configuration" in proc.stderr, proc.stderr
        assert conf.read_text() == "# the running configuration\n" and not (tmp_path / "keepalived.conf.new").exists()
        return
    assert proc.returncode == 0 and proc.stdout.strip() == "keepalived started", proc.stdout + proc.stderr
    assert conf.read_text() == text and oct(conf.stat().st_mode & 0o777) == "0o600"
    (tmp_path / "active").touch()
    proc = subprocess.run(["sh", "-c", script], input=text, capture_output=True, text=True, env=env)
    assert proc.stdout.strip() == "keepalived reloaded"
    assert (tmp_path / "systemctl.log").read_text().splitlines() == [
        "-q is-active keepalived", "restart keepalived", "-q is-active keepalived", "reload keepalived"]
