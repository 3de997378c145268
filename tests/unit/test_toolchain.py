"""The offline toolchain works end to end: the pinned CLI, the Python language host and the dynamic
provider plugin run a preview of a tiny program using both of lvs-lab's provider modules, with
automatic plugin downloads disabled and no network."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIN = next(line.split("==")[1].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
           if line.startswith("pulumi=="))


def pulumi(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / ".lvslab" / "bin" / "pulumi"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_version_is_the_pin(tmp_path: Path) -> None:
    out = pulumi("version", cwd=tmp_path, env=dict(os.environ))
    assert out.stdout.strip() == f"v{PIN}"


def test_preview_of_a_tiny_program_offline(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text(textwrap.dedent(f"""\
        name: tiny
        runtime:
          name: python
          options:
            virtualenv: {ROOT / '.lvslab' / 'venv'}
        """))
    (tmp_path / "__main__.py").write_text(textwrap.dedent(f"""\
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        import pulumi
        from providers import command, libvirt
        pool = libvirt.StoragePool("pool", uri="qemu:///system", name="tiny-pool", path="/nonexistent/tiny")
        password = command.Password("pw", length=8)
        pulumi.export("pool", pool.name)
        """))
    env = {**os.environ, "PULUMI_BACKEND_URL": f"file://{tmp_path}", "PULUMI_CONFIG_PASSPHRASE": "test",
           "PULUMI_HOME": str(tmp_path / "home"), "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
           "PULUMI_SKIP_UPDATE_CHECK": "true", "PYTHONPATH": str(ROOT),  # the provider process imports providers/
           "PATH": f"{ROOT / '.lvslab' / 'venv' / 'bin'}:{ROOT / '.lvslab' / 'bin'}:{os.environ['PATH']}"}
    assert pulumi("stack", "init", "t", cwd=tmp_path, env=env).returncode == 0
    out = pulumi("preview", "--stack", "t", "--non-interactive", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "+ 3 to create" in out.stdout, out.stdout
    assert "warning" not in out.stdout.lower(), out.stdout  # no "language host from $PATH" fallback
