"""Offline base image and package repository for lab VMs, built from Debian's apt mirror.

Why: these hosts (and air-gapped CI) have no cloud images and the VMs have no route to a mirror. One
mmdebstrap run produces the root filesystem (no nginx/keepalived/ipvsadm: installing them is
cloud-init's job) and, from the same package state, the .debs those packages need on top of it. The
repository is delivered to VMs as a read-only ISO volume (label LVSREPO): no host service, no route.

Usage: python -m lvslab.imagebuild [--cache DIR] [--force]   (prints the artefact directory)
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

BUILDER_VERSION = "6"  # bump when the build steps change in a way the inputs below do not show
REPO_LABEL = "LVSREPO"
# Files copied over the root filesystem (data, each with its reason): cloud-init's module lists, module
# blacklist, dpkg/apt/sshd settings. Their contents are part of the cache key.
OVERLAY = Path(__file__).resolve().parent.parent / "image" / "overlay"
ROOTFS_LABEL = "rootfs"


@dataclass(frozen=True)
class ImageSpec:
    """Everything that determines the artefacts; its hash is the cache key."""

    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    security_mirror: str = "http://deb.debian.org/debian-security"
    kernel: str = "linux-image-cloud-amd64"
    base_packages: tuple[str, ...] = (
        "systemd-sysv", "udev", "kmod", "initramfs-tools", "cloud-init", "openssh-server",
        "ifupdown", "iproute2", "curl", "netbase", "procps", "ca-certificates", "python3-yaml",
    )
    repo_packages: tuple[str, ...] = ("nginx", "keepalived", "ipvsadm", "heartbeat", "ldirectord")
    initrd_modules: tuple[str, ...] = ("virtio_pci", "virtio_blk", "virtio_net", "ext4", "isofs")
    # Units a lab VM never needs; masked, they cost nothing at boot (each measured 0.3-2 s under emulation).
    masked_units: tuple[str, ...] = (
        "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "e2scrub_reap.service",
        "fstrim.timer", "man-db.timer", "dpkg-db-backup.timer", "systemd-binfmt.service",
        "proc-sys-fs-binfmt_misc.automount", "sys-kernel-debug.mount", "sys-kernel-tracing.mount",
        "sys-fs-fuse-connections.mount", "sys-kernel-config.mount", "dev-hugepages.mount",
        "systemd-pstore.service", "modprobe@dm_mod.service", "modprobe@efi_pstore.service",
        "modprobe@fuse.service", "modprobe@loop.service", "modprobe@configfs.service", "getty@tty1.service",
        "cloud-init-hotplugd.socket", "systemd-pcrphase-sysinit.service", "systemd-pcrphase.service",
        "systemd-repart.service", "systemd-firstboot.service",
        # cloud-init's config stage: its modules run in the final stage (overlay 91_lvslab_modules.cfg).
        "cloud-config.service",
        # cloud-init's local stage: the network stage finds the NoCloud seed itself, renders the network
        # config and brings eth0 up (ifup); one Python start-up less per VM.
        "cloud-init-local.service",
    )
    # systemd runs every generator at boot and at each daemon-reload (package installs do several): each
    # is a process start of 0.3-0.7 s under emulation. These have nothing to generate on a lab VM.
    masked_generators: tuple[str, ...] = (
        "systemd-cryptsetup-generator", "systemd-debug-generator", "systemd-gpt-auto-generator",
        "systemd-hibernate-resume-generator", "systemd-integritysetup-generator", "systemd-rc-local-generator",
        "systemd-run-generator", "systemd-system-update-generator", "systemd-veritysetup-generator",
    )
    disk_size_mib: int = 3072
    builder_version: str = BUILDER_VERSION
    overlay_digest: str = ""  # of OVERLAY's files (default_spec())

    def suites(self) -> list[str]:
        """bookworm alone misses security fixes: include -updates and -security."""
        return [self.suite, f"{self.suite}-updates"]


def overlay_digest(root: Path = OVERLAY) -> str:
    """Hash of the overlay's relative paths and contents: an edited file means a new image."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(root)}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def default_spec() -> ImageSpec:
    """The lab's image: mirrors from the environment (LVSLAB_DEBIAN_MIRROR, ..._SECURITY_MIRROR), overlay
    as checked out."""
    return ImageSpec(
        mirror=os.environ.get("LVSLAB_DEBIAN_MIRROR", ImageSpec.mirror),
        security_mirror=os.environ.get("LVSLAB_DEBIAN_SECURITY_MIRROR", ImageSpec.security_mirror),
        overlay_digest=overlay_digest(),
    )


def cache_key(spec: ImageSpec) -> str:
    """Stable hash of the spec: unchanged inputs mean no rebuild."""
    blob = json.dumps(asdict(spec), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def mmdebstrap_sources(spec: ImageSpec) -> list[str]:
    """One-line apt sources for the build (main suite, updates, security)."""
    return [
        f"deb {spec.mirror} {' '.join(spec.suites())} main",
        f"deb {spec.security_mirror} {spec.suite}-security main",
    ]


_DEP_RE = re.compile(r"^\s*([a-z0-9][a-z0-9+.\-]*)(?::[a-z0-9]+)?\s*(?:\(.*\))?\s*(?:\[.*\])?\s*$")


def parse_depends(field_value: str) -> list[list[str]]:
    """Parse a Depends/Pre-Depends field into groups of alternative package names."""
    groups: list[list[str]] = []
    for group in filter(None, (g.strip() for g in field_value.split(","))):
        names = []
        for alt in group.split("|"):
            match = _DEP_RE.match(alt)
            if not match:
                raise ValueError(f"cannot parse dependency {alt!r}")
            names.append(match.group(1))
        groups.append(names)
    return groups


def parse_control_stanzas(text: str) -> list[dict[str, str]]:
    """Parse deb822 stanzas (dpkg status, Packages files) into dicts; continuation lines are joined."""
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if not line.strip():
            if current:
                stanzas.append(current)
            current, key = {}, None
        elif line[0] in " \t" and key:
            current[key] += " " + line.strip()
        else:
            key, _, value = line.partition(":")
            current[key] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def provided_names(stanzas: list[dict[str, str]]) -> set[str]:
    """Package names plus virtual names they Provide."""
    names: set[str] = set()
    for stanza in stanzas:
        names.add(stanza["Package"])
        for group in parse_depends(stanza.get("Provides", "")):
            names.update(group)
    return names


def unsatisfied_dependencies(repo: list[dict[str, str]], base: list[dict[str, str]]) -> list[str]:
    """Dependencies of repository packages satisfied neither by the repository nor by the base image.

    An empty list means the repository is a complete closure against the base image.
    """
    available = provided_names(repo) | provided_names(
        [s for s in base if "installed" in s.get("Status", "install ok installed")]
    )
    problems = []
    for stanza in repo:
        for fld in ("Pre-Depends", "Depends"):
            for group in parse_depends(stanza.get(fld, "")):
                if not any(name in available for name in group):
                    problems.append(f"{stanza['Package']}: {fld} {' | '.join(group)}")
    return problems


def mmdebstrap_command(spec: ImageSpec, rootfs: Path, out: Path) -> list[str]:
    """The single mmdebstrap call: root filesystem plus the repository's .debs from the same state."""
    masked = " ".join(spec.masked_units)
    generators = " ".join(spec.masked_generators)
    modules = "\\n".join(spec.initrd_modules)
    repo_pkgs = " ".join(spec.repo_packages)
    hooks = [
        # An empty machine-id: each VM generates its own on first boot.
        'truncate -s0 "$1/etc/machine-id"; rm -f "$1/var/lib/dbus/machine-id"',
        # No boot-time fsck (pass 0): the filesystem is fresh and fsck costs seconds under emulation.
        f'echo "LABEL={ROOTFS_LABEL} / ext4 defaults,noatime 0 0" > "$1/etc/fstab"',
        f'cd "{OVERLAY}" && find . -type f -exec install -D -m 0644 {{}} "$1/{{}}" \\;',
        f'systemctl --root="$1" mask {masked}',
        f'mkdir -p "$1/etc/systemd/system-generators" && for g in {generators}; do '
        'ln -sf /dev/null "$1/etc/systemd/system-generators/$g"; done',
        'echo MODULES=list > "$1/etc/initramfs-tools/conf.d/lvslab"',
        f'printf "{modules}\\n" >> "$1/etc/initramfs-tools/modules"',
        'chroot "$1" update-initramfs -u -k all',
        # The repository: exactly what installing these would download on top of this image (the cache
        # still holds the base packages, so empty it first).
        'chroot "$1" apt-get clean',
        f'chroot "$1" apt-get install --download-only -y --no-install-recommends {repo_pkgs}',
        f'mkdir -p "{out}/repo" && cp "$1"/var/cache/apt/archives/*.deb "{out}/repo/"',
        f'cp "$1/var/lib/dpkg/status" "{out}/base-dpkg-status"',
        'chroot "$1" apt-get clean',
        f'cp -L "$1/vmlinuz" "{out}/vmlinuz" && cp -L "$1/initrd.img" "{out}/initrd.img"',
    ]
    cmd = [
        "mmdebstrap", "--quiet", "--variant=minbase", "--mode=root", "--format=directory",
        f"--include={','.join((spec.kernel, *spec.base_packages))}",
        "--aptopt=APT::Install-Recommends \"false\"",
    ]
    cmd += [f"--customize-hook={hook}" for hook in hooks]
    cmd += [spec.suite, str(rootfs)]
    cmd += mmdebstrap_sources(spec)
    return cmd


def _run(label: str, cmd: list[str], **kwargs: object) -> None:
    t0 = time.monotonic()
    print(f"[lvs-lab image] {label} ...", file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, **kwargs)  # type: ignore[arg-type]
    print(f"[lvs-lab image] {label} done in {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)


def build(spec: ImageSpec, cache: Path, force: bool = False) -> Path:
    """Build (or reuse) image + repository; returns the artefact directory. Concurrent builders of the
    same key (two checkouts, a CI run) wait for each other instead of replacing files in use."""
    final = cache / f"image-{spec.suite}-{cache_key(spec)}"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "manifest.json").exists() and not force:
            print(f"[lvs-lab image] cached: {final}", file=sys.stderr)
            return final
        return _build_locked(spec, cache, final)


def _build_locked(spec: ImageSpec, cache: Path, final: Path) -> Path:
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(dir=cache, prefix=".imagebuild.") as tmp:
        work, out = Path(tmp) / "rootfs", Path(tmp) / "out"
        out.mkdir()
        _run("mmdebstrap root filesystem + repository packages", mmdebstrap_command(spec, work, out))
        debs = sorted(p.name for p in (out / "repo").glob("*.deb"))
        packages = subprocess.run(
            ["dpkg-scanpackages", "--multiversion", "."], cwd=out / "repo", check=True,
            capture_output=True, text=True,
        ).stdout
        (out / "repo" / "Packages").write_text(packages)
        problems = unsatisfied_dependencies(
            parse_control_stanzas(packages), parse_control_stanzas((out / "base-dpkg-status").read_text())
        )
        if problems:
            raise SystemExit("repository is not a complete closure:\n  " + "\n  ".join(problems))
        _run("repository ISO", ["genisoimage", "-quiet", "-r", "-J", "-V", REPO_LABEL,
                                "-o", str(out / "repo.iso"), str(out / "repo")])
        raw = out / "rootfs.raw"
        _run("ext4 filesystem from the root directory (mke2fs -d)",
             ["mke2fs", "-q", "-t", "ext4", "-L", ROOTFS_LABEL, "-d", str(work), str(raw),
              f"{spec.disk_size_mib}M"])
        _run("qcow2 conversion", ["qemu-img", "convert", "-O", "qcow2", str(raw), str(out / "base.qcow2")])
        raw.unlink()
        shutil.rmtree(out / "repo")
        manifest = {
            "key": cache_key(spec), "spec": asdict(spec), "repo_debs": debs,
            "build_seconds": round(time.monotonic() - t0, 1),
            "files": {"image": "base.qcow2", "kernel": "vmlinuz", "initrd": "initrd.img", "repo": "repo.iso"},
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
        if final.exists():
            shutil.rmtree(final)
        os.rename(out, final)
    print(f"[lvs-lab image] built {final} in {time.monotonic() - t0:.0f} s ({len(debs)} repository packages)",
          file=sys.stderr)
    return final


def default_cache() -> Path:
    base = os.environ.get("LVSLAB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lvs-lab"
    )
    return Path(base)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=default_cache())
    parser.add_argument("--force", action="store_true", help="rebuild even when cached")
    args = parser.parse_args(argv)
    print(build(default_spec(), args.cache, args.force))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
