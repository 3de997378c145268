"""The toolchain as the project's environment sees it: the pinned CLI, the real Python language host, the
two resource plugins at their pinned versions (the PyPI SDK pins agree), and a preview of a tiny program
using both providers, offline, with automatic plugin downloads disabled."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

# Runs the real pulumi CLI of the toolchain (tools/toolchain.sh).
pytestmark = pytest.mark.tools

ROOT = Path(__file__).resolve().parents[2]
PINS = {line.split("==")[0].split("[")[0].lower(): line.split("==")[1].strip()  # name without [extras]
        for line in (ROOT / "requirements.txt").read_text().splitlines() if "==" in line and not line.startswith("#")}
VERSIONS = dict(line.split("=", 1) for line in (ROOT / "toolchain" / "versions.env").read_text().splitlines()
                if "=" in line and not line.startswith("#"))


# The project's environment (tools/env.sh): plugins live in the checkout's PULUMI_HOME unless overridden.
PROJECT_ENV = {**os.environ, "PULUMI_HOME": os.environ.get("PULUMI_HOME") or str(ROOT / ".lvslab" / "pulumi-home")}


def pulumi(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / ".lvslab" / "bin" / "pulumi"), *args], cwd=cwd, env=env or PROJECT_ENV,
                          capture_output=True, text=True, timeout=180)


def test_cli_version_is_the_pin(tmp_path: Path) -> None:
    assert pulumi("version", cwd=tmp_path).stdout.strip() == f"v{PINS['pulumi']}" == f"v{VERSIONS['PULUMI_VERSION']}"


def test_plugins_are_installed_at_the_pinned_versions(tmp_path: Path) -> None:
    """`pulumi plugin ls` in the project's environment (tools/env.sh: PULUMI_HOME of the checkout)."""
    out = pulumi("plugin", "ls", "--json", cwd=ROOT)
    assert out.returncode == 0, out.stderr
    plugins = {(p["kind"], p["name"]): p["version"] for p in json.loads(out.stdout)}
    assert plugins[("resource", "libvirt")] == PINS["pulumi-libvirt"] == VERSIONS["LIBVIRT_PLUGIN_VERSION"] == "0.5.4"
    assert plugins[("resource", "command")] == PINS["pulumi-command"] == VERSIONS["COMMAND_PLUGIN_VERSION"] == "1.2.1"


def test_lock_holds_every_direct_pin() -> None:
    lock = {line.split("==")[0].lower().replace("_", "-"): line.split("==")[1].strip()
            for line in (ROOT / "requirements.lock").read_text().splitlines() if "==" in line}
    for name, version in PINS.items():
        assert lock[name.replace("_", "-")] == version, name


def test_upstream_lock_names_each_archive_once() -> None:
    rows = [line.split() for line in (ROOT / "toolchain" / "upstream.lock").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert all(len(r) == 2 and len(r[0]) == 64 for r in rows)
    names = [r[1] for r in rows]
    assert len(names) == len(set(names)) == 4


def test_preview_of_a_tiny_program_offline(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text(textwrap.dedent(f"""\
        name: tiny
        runtime:
          name: python
          options:
            virtualenv: {ROOT / '.lvslab' / 'venv'}
        """))
    (tmp_path / "__main__.py").write_text(textwrap.dedent("""\
        import pulumi
        import pulumi_command as command
        import pulumi_libvirt as libvirt
        # The libvirt plugin is loaded and configured; no libvirt resource, so no libvirtd is needed.
        hv = libvirt.Provider("hv", uri="qemu:///system")
        hello = command.local.Command("hello", create="echo hello")
        pulumi.export("uri", hv.uri)
        """))
    env = {**PROJECT_ENV, "PULUMI_BACKEND_URL": f"file://{tmp_path}", "PULUMI_CONFIG_PASSPHRASE": "test",
           "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true", "PULUMI_SKIP_UPDATE_CHECK": "true",
           "PATH": f"{ROOT / '.lvslab' / 'bin'}:{os.environ['PATH']}"}
    assert pulumi("stack", "init", "t", cwd=tmp_path, env=env).returncode == 0
    out = pulumi("preview", "--stack", "t", "--non-interactive", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "+ 3 to create" in out.stdout, out.stdout
    assert "warning" not in out.stdout.lower(), out.stdout  # no language host fallback, no deprecation
