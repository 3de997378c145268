"""Committed stack files stay clean: the salt the passphrase provider writes is undone, a user's own edits
and files with secrets are left alone; checked against the real pulumi CLI writing a salt."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from lvslab.stackfile import unchanged_by_pulumi, without_added_salt
from tests.conftest import committed_text

# Runs the real pulumi CLI of the toolchain (tools/toolchain.sh).
pytestmark = pytest.mark.tools

ROOT = Path(__file__).resolve().parents[2]
BASE = "config:\n  lvs-lab:vip: 10.77.0.100\n"


def test_only_an_added_salt_is_undone() -> None:
    assert without_added_salt(BASE, BASE + "encryptionsalt: v1:abc\n") == BASE
    assert without_added_salt(BASE, BASE) is None
    assert without_added_salt(BASE, BASE + "  lvs-lab:port: 8080\nencryptionsalt: v1:abc\n") is None  # user edit
    secret = BASE + "  lvs-lab:authPass:\n    secure: v1:xyz\n"
    assert without_added_salt(secret, secret + "encryptionsalt: v1:abc\n") is None  # the salt is needed
    salted = BASE + "encryptionsalt: v1:old\n"
    assert without_added_salt(salted, BASE + "encryptionsalt: v1:new\n") is None  # the user's own salt


def test_real_cli_salt_is_undone_and_the_stack_still_works(tmp_path: Path) -> None:
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "stacks").mkdir()
    committed = committed_text("stacks/Pulumi.dev.yaml")
    stack_file = tmp_path / "stacks" / "Pulumi.dev.yaml"
    stack_file.write_text(committed)
    env = {**os.environ, "PULUMI_BACKEND_URL": f"file://{tmp_path / 'state'}", "PULUMI_CONFIG_PASSPHRASE": "pw",
           "PULUMI_HOME": str(tmp_path / "home"), "PULUMI_SKIP_UPDATE_CHECK": "true"}
    (tmp_path / "state").mkdir()
    cli = str(ROOT / ".lvslab" / "bin" / "pulumi")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([cli, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    with unchanged_by_pulumi(stack_file):
        assert run("stack", "init", "dev").returncode == 0
        assert "encryptionsalt:" in stack_file.read_text()  # what pulumi does
    assert stack_file.read_text() == committed
    out = run("config", "get", "vip", "--stack", "dev")  # the stack still reads its config without the salt
    assert out.returncode == 0 and out.stdout.strip() == "10.77.0.100", out.stderr
