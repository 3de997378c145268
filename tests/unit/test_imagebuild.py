"""Pure parts of the image/repository builder: cache keys, dependency closure, sources, command."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from lvslab.imagebuild import (
    ImageSpec,
    cache_key,
    mmdebstrap_command,
    mmdebstrap_sources,
    parse_control_stanzas,
    parse_depends,
    unsatisfied_dependencies,
)


def test_cache_key_is_stable_and_input_sensitive() -> None:
    spec = ImageSpec()
    assert cache_key(spec) == cache_key(ImageSpec())
    assert cache_key(replace(spec, repo_packages=("nginx",))) != cache_key(spec)
    assert cache_key(replace(spec, suite="trixie")) != cache_key(spec)
    assert cache_key(replace(spec, builder_version="x")) != cache_key(spec)


def test_sources_include_updates_and_security() -> None:
    assert mmdebstrap_sources(ImageSpec()) == [
        "deb http://deb.debian.org/debian bookworm bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    ]


def test_parse_depends() -> None:
    assert parse_depends("libc6 (>= 2.34), perl:any, awk | mawk, libssl3 [amd64]") == [
        ["libc6"], ["perl"], ["awk", "mawk"], ["libssl3"]]
    with pytest.raises(ValueError):
        parse_depends("Not A Package!")


REPO = """Package: keepalived
Depends: libc6 (>= 2.34), libnl-3-200, ipvsadm | nothing

Package: libnl-3-200
Depends: libc6

Package: ipvsadm
Depends: libc6, libpopt0
"""

BASE = """Package: libc6
Status: install ok installed

Package: libpopt0
Status: deinstall ok config-files
"""


def test_closure_finds_missing_dependencies() -> None:
    repo, base = parse_control_stanzas(REPO), parse_control_stanzas(BASE)
    assert unsatisfied_dependencies(repo, base) == ["ipvsadm: Depends libpopt0"]
    repo.append({"Package": "libpopt0", "Depends": "libc6"})
    assert unsatisfied_dependencies(repo, base) == []


def test_virtual_packages_satisfy() -> None:
    repo = parse_control_stanzas("Package: ldirectord\nDepends: perl-api\n\nPackage: perl\nProvides: perl-api\n")
    assert unsatisfied_dependencies(repo, []) == []


def test_image_excludes_lab_services_and_ships_them_in_the_repo() -> None:
    spec = ImageSpec()
    cmd = mmdebstrap_command(spec, Path("/r"), Path("/o"))
    include = next(a for a in cmd if a.startswith("--include="))
    for pkg in ("nginx", "keepalived", "ipvsadm"):
        assert pkg not in include.split("=")[1].split(",")
    assert any("--download-only" in a and "keepalived" in a and "ldirectord" in a for a in cmd)
    assert spec.kernel in include


@pytest.mark.tools
def test_built_repository_is_a_closure() -> None:
    """The image `make test` built (its setup builds it): the repository ISO that VMs install from satisfies
    every dependency of its packages against the image's own package state, and holds the lab's packages."""
    import subprocess

    from lvslab.host import local_image_dir
    from lvslab.imagebuild import parse_control_stanzas, unsatisfied_dependencies

    image = local_image_dir()  # a clear error (run `make image`) when it is missing
    packages = subprocess.run(["isoinfo", "-i", str(image / "repo.iso"), "-R", "-x", "/Packages"],
                              capture_output=True, text=True, check=True).stdout
    repo = parse_control_stanzas(packages)
    base = parse_control_stanzas((image / "base-dpkg-status").read_text())
    assert {"keepalived", "ipvsadm", "nginx", "heartbeat", "ldirectord"} <= {p["Package"] for p in repo}
    assert unsatisfied_dependencies(repo, base) == []
    # ... and the check can fail: without a library keepalived needs (shipped in the repository only).
    missing = unsatisfied_dependencies([p for p in repo if p["Package"] != "libnl-genl-3-200"], base)
    assert any("libnl-genl-3-200" in m for m in missing), missing


# --- the image's overlay: cloud-init runs only the modules the lab's user-data needs -------------------

# Which cloud-init module acts on each top-level user-data key (cloud-init 22.4's module docs).
MODULE_OF_KEY = {
    "hostname": {"set_hostname", "update_hostname"}, "timezone": {"timezone"}, "disable_root": {"ssh"},
    "ssh_genkeytypes": {"ssh"}, "ssh_authorized_keys": {"ssh"}, "bootcmd": {"bootcmd"},
    "apt": {"apt-configure"}, "package_update": {"package-update-upgrade-install"},
    "package_upgrade": {"package-update-upgrade-install"}, "packages": {"package-update-upgrade-install"},
    "write_files": {"write-files", "write-files-deferred"}, "runcmd": {"runcmd", "scripts-user"},
    "ssh_pwauth": {"set-passwords"},
}
# Keys for other images (image.source): the lab's image does the same in its overlay instead.
DONE_BY_OVERLAY = {"ssh_pwauth": ("etc/ssh/sshd_config.d/lvslab.conf", "PasswordAuthentication no")}


def _image_modules() -> set[str]:
    from lvslab.imagebuild import OVERLAY

    cfg = yaml.safe_load((OVERLAY / "etc/cloud/cloud.cfg.d/91_lvslab_modules.cfg").read_text())
    return {m for stage in ("cloud_init_modules", "cloud_config_modules", "cloud_final_modules") for m in cfg[stage]}


@pytest.mark.parametrize("role", ["director", "real-server"])
def test_image_runs_every_module_the_user_data_needs(dev_raw: dict, role: str) -> None:
    from lvslab.config import parse_config
    from lvslab.model import derive
    from lvslab.render import director_user_data, real_server_user_data

    cfg = parse_config(dev_raw, "dev", auth_pass="x" * 8)
    facts = derive(cfg)
    text = (director_user_data(cfg, facts.directors[0], "ssh-ed25519 AAAA k", "x" * 8) if role == "director"
            else real_server_user_data(cfg, facts.real_servers[0], "ssh-ed25519 AAAA k"))
    modules = _image_modules()
    for key in yaml.safe_load(text):
        assert key in MODULE_OF_KEY, f"user-data key {key!r}: which module serves it? (add it here)"
        if key in DONE_BY_OVERLAY:
            path, line = DONE_BY_OVERLAY[key]
            from lvslab.imagebuild import OVERLAY

            assert line in (OVERLAY / path).read_text()
        else:
            assert MODULE_OF_KEY[key] & modules, f"user-data key {key!r} needs one of {MODULE_OF_KEY[key]}"
    # final-message prints the "finished at ... Up N seconds" line the readiness check reads.
    assert "final-message" in modules


def test_overlay_is_part_of_the_cache_key(tmp_path: Path) -> None:
    from lvslab.imagebuild import overlay_digest

    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "a.conf").write_text("one\n")
    before = overlay_digest(tmp_path)
    (tmp_path / "etc" / "a.conf").write_text("two\n")
    assert overlay_digest(tmp_path) != before
    assert cache_key(ImageSpec(overlay_digest=before)) != cache_key(ImageSpec(overlay_digest=overlay_digest(tmp_path)))


def test_masked_generators_are_real_generator_names() -> None:
    """A misspelt name masks nothing: each must name a generator systemd 252 ships (checked on this host's
    systemd when it has one, else against the list of the version the image uses)."""
    shipped = {"systemd-cryptsetup-generator", "systemd-debug-generator", "systemd-fstab-generator",
               "systemd-getty-generator", "systemd-gpt-auto-generator", "systemd-hibernate-resume-generator",
               "systemd-integritysetup-generator", "systemd-rc-local-generator", "systemd-run-generator",
               "systemd-system-update-generator", "systemd-sysv-generator", "systemd-veritysetup-generator"}
    spec = ImageSpec()
    assert set(spec.masked_generators) <= shipped
    assert "systemd-fstab-generator" not in spec.masked_generators  # the root mount needs it
    cmd = " ".join(mmdebstrap_command(spec, Path("/r"), Path("/o")))
    assert "system-generators" in cmd and "systemd-veritysetup-generator" in cmd


def test_the_masked_config_stage_runs_no_modules_and_final_keeps_their_order() -> None:
    """cloud-config.service is masked in the image: its stage must have nothing left to run, and the final
    stage must configure apt before installing and write runcmd's script before running it."""
    from lvslab.imagebuild import OVERLAY

    cfg = yaml.safe_load((OVERLAY / "etc/cloud/cloud.cfg.d/91_lvslab_modules.cfg").read_text())
    assert "cloud-config.service" in ImageSpec().masked_units and cfg["cloud_config_modules"] == []
    final = cfg["cloud_final_modules"]
    assert final.index("apt-configure") < final.index("package-update-upgrade-install")
    assert final.index("runcmd") < final.index("scripts-user") and final[-1] == "final-message"
