"""The plain pulumi CLI, run as README's "Using pulumi directly" says (tools/env.sh sourced), on a committed stack
file leaves `git status` clean: pulumi writes its `encryptionsalt:` line there, the filter `make setup` installs
(.gitattributes) leaves that line out of what git compares, and env.sh's wrapper refreshes git's index entry.
Run in a throwaway clone with its own file backend: the real CLI, the real git, the real env.sh."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PULUMI_BIN = ROOT / ".lvslab" / "bin"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


@pytest.mark.tools
def test_plain_pulumi_leaves_the_checkout_clean(tmp_path: Path) -> None:
    if not (PULUMI_BIN / "pulumi").exists():
        pytest.fail("the pulumi CLI is not built: run make setup")
    repo = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(repo)], check=True)
    subprocess.run(["make", "-s", "-C", str(repo), "gitfilter"], check=True)
    env = {**os.environ, "PULUMI_BACKEND_URL": f"file://{tmp_path / 'state'}", "PULUMI_HOME": str(tmp_path / "home"),
           "PULUMI_CONFIG_PASSPHRASE": "team secret", "PATH": f"{PULUMI_BIN}:{os.environ['PATH']}"}
    env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
    (tmp_path / "state").mkdir()

    def shell(command: str) -> subprocess.CompletedProcess[str]:
        """A user's shell in the clone: env.sh sourced, then the command (`pulumi` as the user types it)."""
        return subprocess.run(["bash", "-c", f"source tools/env.sh && {command}"], cwd=repo, env=env,
                              capture_output=True, text=True, timeout=120)

    def pulumi(*args: str) -> subprocess.CompletedProcess[str]:
        return shell(shlex.join(["pulumi", *args, "--non-interactive"]))

    stack_file = repo / "stacks" / "Pulumi.dev.yaml"
    assert pulumi("stack", "init", "dev").returncode == 0
    assert "encryptionsalt: " in stack_file.read_text()  # written by the CLI, kept: the next call reuses it
    assert git(repo, "status", "--porcelain") == ""
    secret = pulumi("config", "set", "--secret", "lvs-lab:note", "s3cret", "-s", "dev")
    assert secret.returncode == 0, secret.stderr
    # a value set by hand is a real change and shows; the salt line does not
    assert git(repo, "status", "--porcelain") == " M stacks/Pulumi.dev.yaml\n"
    assert "encryptionsalt" not in git(repo, "diff") and "lvs-lab:note" in git(repo, "diff")
    assert pulumi("config", "rm", "lvs-lab:note", "-s", "dev").returncode == 0
    assert git(repo, "status", "--porcelain") == ""
    read = pulumi("config", "get", "lvs-lab:vip", "-s", "dev")
    assert read.returncode == 0 and read.stdout.strip() == "10.77.0.100", read.stderr
    # the binary alone (no wrapper) on another stack: git sees the size change; without the filter, the line too
    assert shell("command pulumi stack init tun --non-interactive").returncode == 0
    assert git(repo, "status", "--porcelain") == " M stacks/Pulumi.tun.yaml\n"
    assert git(repo, "diff") == ""
    unfiltered = git(repo, "-c", "filter.lvslab-salt.clean=cat", "diff")
    assert "b/stacks/Pulumi.tun.yaml" in unfiltered and "+encryptionsalt: " in unfiltered
