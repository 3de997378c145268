"""tools/host.sh on a host whose libvirtd it did not start (a workstation's, run by systemd): it says so in
one line, uses that daemon as it is (qemu.conf untouched, no namespace), runs commands on this host, and
refuses a private daemon beside it. A stand-in "managed" libvirtd of the test's own is started here (its own
mount and network namespaces, so the test runs beside any other libvirtd and never skips). (Private mode,
lvs-lab's own daemon in a namespace, is what every end-to-end test runs on.)"""

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


# Mounted empty in the stand-in's mount namespace: its sockets and state, and lvs-lab's own daemon records, so
# neither a libvirtd already running on this host (lvs-lab's own after `make up`, say) nor its domains are seen.
PRIVATE_DIRS = ["/run/libvirt", "/run/lvs-lab", "/etc/libvirt/qemu", "/etc/libvirt/storage", "/var/lib/libvirt"]


def libvirt_answers(inside: list[str]) -> bool:
    return subprocess.run([*inside, "virsh", "-c", "qemu:///system", "version"], capture_output=True).returncode == 0


@pytest.fixture
def managed_libvirtd(tmp_path: Path) -> Iterator[list[str]]:
    """A stand-in for a workstation's libvirtd, owned by the test: started in a mount namespace of its own (the
    directories above empty there) and a network namespace of its own, so it runs whatever else runs on this
    host. Yields the command prefix that runs a command beside it (in its mount namespace)."""
    if os.geteuid() != 0 or not shutil.which("libvirtd"):
        pytest.fail("needs root and libvirtd (tools/host.sh packages)")
    for group in ("kvm", "libvirt-qemu"):  # libvirt 9 refuses to start without them (as tools/host.sh knows)
        subprocess.run(["sh", "-c", f"getent group {group} || groupadd -r {group}"], capture_output=True)
    subprocess.run(["sh", "-c", "id libvirt-qemu || useradd -r -g libvirt-qemu -G kvm -s /usr/sbin/nologin "
                    "libvirt-qemu"], capture_output=True)
    ns, pid_file = f"lvslab-managed-{os.getpid()}", tmp_path / "libvirtd.pid"
    subprocess.run(["ip", "netns", "add", ns], check=True)  # first: the mount namespace gets a copy of its mount
    mounts = " && ".join(f"mkdir -p {d} && mount -t tmpfs lvslab-test {d}" for d in PRIVATE_DIRS)
    holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                               f"{mounts} && echo ready && exec sleep infinity"], stdout=subprocess.PIPE, text=True)
    inside = ["nsenter", "-t", str(holder.pid), "-m", "--"]
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready", "mount namespace"
        assert not libvirt_answers(inside), "a libvirtd answers inside the stand-in's own mount namespace"
        subprocess.run([*inside, "ip", "netns", "exec", ns, "libvirtd", "--daemon", "--pid-file", str(pid_file)],
                       check=True)
        deadline = time.monotonic() + 20
        while not libvirt_answers(inside):
            assert time.monotonic() < deadline, "stand-in libvirtd did not come up"
            time.sleep(0.2)
        yield inside
    finally:
        if pid_file.exists():
            pid = int(pid_file.read_text())
            os.kill(pid, 15)
            for _ in range(50):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.1)
        holder.kill()  # its sleep: the mount namespace goes with it
        holder.wait()
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "absent"


def test_managed_libvirtd_is_used_as_it_is(managed_libvirtd: list[str]) -> None:
    conf_before = digest(QEMU_CONF)
    ns = "lvslab-mode-test"
    out = subprocess.run([*managed_libvirtd, HOST, "start", ns], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("libvirt mode: managed") == 1 and "private" not in out.stderr
    assert digest(QEMU_CONF) == conf_before  # its configuration untouched
    assert not Path(f"/run/netns/{ns}").exists()  # no namespace: the bridge is in the root namespace
    here = os.readlink("/proc/self/ns/net")
    ran = subprocess.run([*managed_libvirtd, HOST, "exec", ns, "--", "readlink", "/proc/self/ns/net"],
                         capture_output=True, text=True)
    assert ran.returncode == 0 and ran.stdout.strip() == here  # commands run on this host


def test_private_daemon_is_refused_beside_a_managed_one(managed_libvirtd: list[str]) -> None:
    out = subprocess.run([*managed_libvirtd, HOST, "start", "lvslab-mode-test"], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "LVSLAB_PRIVATE_LIBVIRTD": "1"})
    assert out.returncode != 0
    assert "asks for a private libvirtd, but the host's own libvirtd answers" in out.stderr
    assert not Path("/run/netns/lvslab-mode-test").exists()
