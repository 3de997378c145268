"""What the tests use to judge the CI reports with third-party tools: Jenkins' junit-10.xsd (from the sdist of
the pytest this project pins, as pytest's own tests use it; fetched once into the cache, checked by its sha256)
and headless chromium's rendering of the HTML page."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTEST_SDIST_SHA256 = "965370d062bce11e73868e0335abac31b4d3de0e82f4007408d242b4f8610761"  # pytest-8.3.4.tar.gz
CACHE = Path(os.environ.get("LVSLAB_CACHE") or Path.home() / ".cache" / "lvs-lab")


def junit_schema() -> Path:
    """junit-10.xsd from the sdist of the pytest this project pins (requirements.lock), checked by its sha256."""
    pinned = next(line.strip() for line in (ROOT / "requirements.lock").read_text().splitlines()
                  if line.startswith("pytest=="))
    target = CACHE / f"junit-10-{pinned.replace('==', '-')}.xsd"
    if target.exists():
        return target
    download = CACHE / "pytest-sdist"
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                    "-d", str(download), pinned], check=True, timeout=300)
    sdist = next(download.glob("pytest-*.tar.gz"))
    assert hashlib.sha256(sdist.read_bytes()).hexdigest() == PYTEST_SDIST_SHA256, sdist
    with tarfile.open(sdist) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("testing/example_scripts/junit-10.xsd"))
        data = tar.extractfile(member)
        assert data is not None
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data.read())
    shutil.rmtree(download, ignore_errors=True)
    return target


def rendered_dom(page: Path) -> str:
    """The page as headless chromium rendered it (its DOM after load)."""
    browser = shutil.which("chromium")
    if browser is None:
        pytest.fail("chromium is not installed: run tools/host.sh packages")
    out = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                          "--user-data-dir=" + str(page.parent / "chromium-profile"), "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


