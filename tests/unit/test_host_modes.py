"""tools/host.sh on a host whose libvirtd it did not start (a workstation's, run by systemd): it says so in
one line, uses that daemon as it is (qemu.conf untouched, no namespace), runs commands on this host, and
refuses a private daemon beside it. A stand-in "managed" libvirtd is started here for the test. (Private
mode, lvs-lab's own daemon in a namespace, is what every end-to-end test runs on.)"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HOST = str(ROOT / "tools" / "host.sh")
QEMU_CONF = Path("/etc/libvirt/qemu.conf")

pytestmark = pytest.mark.tools


def libvirt_answers() -> bool:
    return subprocess.run(["virsh", "-c", "qemu:///system", "version"], capture_output=True).returncode == 0


@pytest.fixture
def managed_libvirtd(tmp_path: Path) -> Iterator[None]:
    if os.geteuid() != 0 or not shutil.which("libvirtd"):
        pytest.fail("needs root and libvirtd (tools/host.sh packages)")
    if libvirt_answers():
        pytest.skip("a libvirtd already runs on this host; this test starts its own stand-in")
    for group in ("kvm", "libvirt-qemu"):  # libvirt 9 refuses to start without them (as tools/host.sh knows)
        subprocess.run(["sh", "-c", f"getent group {group} || groupadd -r {group}"], capture_output=True)
    subprocess.run(["sh", "-c", "id libvirt-qemu || useradd -r -g libvirt-qemu -G kvm -s /usr/sbin/nologin "
                    "libvirt-qemu"], capture_output=True)
    ns, pid_file = f"lvslab-managed-{os.getpid()}", tmp_path / "libvirtd.pid"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "libvirtd", "--daemon", "--pid-file", str(pid_file)], check=True)
        deadline = time.monotonic() + 20
        while not libvirt_answers():
            assert time.monotonic() < deadline, "stand-in libvirtd did not come up"
            time.sleep(0.2)
        yield
    finally:
        if pid_file.exists():
            pid = int(pid_file.read_text())
            os.kill(pid, 15)
            for _ in range(50):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.1)
        subprocess.run(["ip", "netns", "del", ns], check=False)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "absent"


def test_managed_libvirtd_is_used_as_it_is(managed_libvirtd: None) -> None:
    conf_before = digest(QEMU_CONF)
    ns = "lvslab-mode-test"
    out = subprocess.run([HOST, "start", ns], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("libvirt mode: managed") == 1 and "private" not in out.stderr
    assert digest(QEMU_CONF) == conf_before  # its configuration untouched
    assert not Path(f"/run/netns/{ns}").exists()  # no namespace: the bridge is in the root namespace
    here = os.readlink("/proc/self/ns/net")
    ran = subprocess.run([HOST, "exec", ns, "--", "readlink", "/proc/self/ns/net"], capture_output=True, text=True)
    assert ran.returncode == 0 and ran.stdout.strip() == here  # commands run on this host


def test_private_daemon_is_refused_beside_a_managed_one(managed_libvirtd: None) -> None:
    out = subprocess.run([HOST, "start", "lvslab-mode-test"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "LVSLAB_PRIVATE_LIBVIRTD": "1"})
    assert out.returncode != 0
    assert "asks for a private libvirtd, but the host's own libvirtd answers" in out.stderr
    assert not Path("/run/netns/lvslab-mode-test").exists()
