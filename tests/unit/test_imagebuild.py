"""Pure parts of the image/repository builder: cache keys, dependency closure, sources, command."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

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
