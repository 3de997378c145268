"""A remote hypervisor (qemu+ssh): the URI's SSH endpoint, config errors, placement over a hypervisor list,
the graph under Pulumi mocks (node connections hop through the hypervisor, the console directory is made
there), and the relay that runs a verification step on the hypervisor, run for real with a local python3."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lvslab import host, hypervisor
from lvslab.config import ConfigError, parse_config
from lvslab.hypervisor import Hypervisor, HypervisorError, parse_uri, pinned_host_key, place, relay
from lvslab.imports import ROOT
from lvslab.verify.run import KEY_VARIABLE
from tests.unit.test_graph import LOCAL, REMOTE, image_dir, is_secret, run_program  # noqa: F401

URI = "qemu+ssh://root@10.254.1.2/system?keyfile=/k/id_ed25519&knownhosts=/k/known_hosts"


def test_local_uris_are_not_remote() -> None:
    for uri in ("qemu:///system", "qemu:///session", "qemu+unix:///system?socket=/run/x.sock"):
        hv = parse_uri(uri)
        assert not hv.remote and hv.name == "local" and hv.local_uri == uri
        assert hv.command(["virsh", "list"]) == ["virsh", "list"] and hv.jump_options() == []


def test_ssh_uri_names_the_ssh_endpoint() -> None:
    hv = parse_uri("qemu+ssh://admin@hv.example:2222/system?keyfile=/k/id&knownhosts=/k/kh&socket=/s/sock")
    assert (hv.host, hv.user, hv.port, hv.keyfile, hv.known_hosts) == ("hv.example", "admin", 2222, "/k/id", "/k/kh")
    assert hv.local_uri == "qemu:///system?socket=/s/sock"  # what virsh on the hypervisor itself uses
    argv = hv.command(["virsh", "-c", hv.local_uri, "list", "--name"])
    assert argv[0] == "ssh" and argv[-2] == "admin@hv.example"
    assert argv[-1] == "virsh -c 'qemu:///system?socket=/s/sock' list --name"  # one shell word per argument
    opts = " ".join(argv[1:-2])
    assert "-p 2222" in opts and "-i /k/id" in opts and "UserKnownHostsFile=/k/kh" in opts
    assert "StrictHostKeyChecking=yes" in opts and "BatchMode=yes" in opts
    jump = hv.jump_options()
    assert jump[0] == "-o" and jump[1].startswith("ProxyCommand=ssh ") and jump[1].endswith("-W %h:%p admin@hv.example")
    assert parse_uri("qemu+ssh://hv/system").user == "root" and parse_uri("qemu+ssh://hv/system").port == 22


@pytest.mark.parametrize("uri,message", [
    ("qemu+tcp://hv/system", "transport 'qemu+tcp' is not supported"),
    ("qemu+tls://hv/system", "transport 'qemu+tls' is not supported"),
    ("qemu+ssh:///system", "a qemu+ssh URI needs a host"),
])
def test_unsupported_uris(uri: str, message: str) -> None:
    with pytest.raises(HypervisorError, match=re.escape(message)):
        parse_uri(uri)


@pytest.mark.parametrize("uri,problem", [
    ("qemu+ssh://root@hv/system", "lvs-lab:libvirtUri: a remote hypervisor needs keyfile=PATH in the URI"),
    ("qemu+tcp://hv/system", "lvs-lab:libvirtUri: transport 'qemu+tcp' is not supported for a remote hypervisor"),
])
def test_config_refuses_unusable_remote_uris(dev_raw: dict[str, Any], uri: str, problem: str) -> None:
    dev_raw["libvirtUri"] = uri
    with pytest.raises(ConfigError) as err:
        parse_config(dev_raw, "dev")
    assert len(err.value.problems) == 1 and err.value.problems[0].startswith(problem)
    assert f"(got '{uri}')" in err.value.problems[0]


def test_pinned_host_key() -> None:
    known = ("# comment\nother ssh-ed25519 AAAAother\n10.254.1.2,hv ssh-ed25519 AAAAright lvs-lab\n"
             "[10.254.1.2]:2222 ssh-ed25519 AAAAport\n")
    assert pinned_host_key(known, parse_uri("qemu+ssh://10.254.1.2/system")) == "ssh-ed25519 AAAAright"
    assert pinned_host_key(known, parse_uri("qemu+ssh://hv/system")) == "ssh-ed25519 AAAAright"
    assert pinned_host_key(known, parse_uri("qemu+ssh://10.254.1.2:2222/system")) == "ssh-ed25519 AAAAport"
    assert pinned_host_key(known, parse_uri("qemu+ssh://10.9.9.9/system")) is None


def test_placement_is_round_robin_one_lab_per_hypervisor() -> None:
    hvs = ["qemu:///system", "qemu+ssh://a/system", "qemu+ssh://b/system"]
    in_use: list[str] = []
    for _ in range(6):
        in_use.append(place(hvs, in_use))
    assert in_use == hvs + hvs
    # a lab destroyed on b frees b first
    assert place(hvs, [hvs[0], hvs[1], hvs[0], hvs[1], hvs[2]]) == hvs[2]
    assert place(hvs, [hvs[1]]) == hvs[0]
    with pytest.raises(HypervisorError):
        place([], [])


def test_remote_lab_graph(dev_raw: dict[str, Any], image_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    """The provider gets the qemu+ssh URI; every node command hops through the hypervisor with its key (a
    secret) and pinned host key; the console-log directory is made on the hypervisor, the seeds' here;
    domainType auto means qemu there (KVM is probed only locally)."""
    key = tmp_path / "id"
    key.write_text("HYPERVISOR PRIVATE KEY\n")
    (tmp_path / "kh").write_text("10.254.1.2 ssh-ed25519 AAAAhostkey\n")
    uri = f"qemu+ssh://root@10.254.1.2/system?keyfile={key}&knownhosts={tmp_path / 'kh'}"
    dev_raw["libvirtUri"] = uri
    mocks = run_program(dev_raw)
    provider = next(r for r in mocks.resources if r.typ == "pulumi:providers:libvirt")
    assert provider.inputs["uri"] == uri
    assert {r.inputs["type"] for r in mocks.resources if r.typ == "libvirt:index/domain:Domain"} == {"qemu"}
    remote = mocks.of(REMOTE)
    # Connections carrying a private key reach the engine as secrets as a whole.
    assert all(is_secret(r.inputs["connection"]) for r in remote)
    conns = {r.name: r.inputs["connection"]["value"] for r in remote}
    to_nodes = {name: c for name, c in conns.items() if c["host"] != "10.254.1.2"}
    assert len(to_nodes) == 4 + 2  # readiness per node, keepalived.conf per director
    for c in to_nodes.values():
        proxy = c["proxy"]
        assert (proxy["host"], proxy["user"], proxy["port"]) == ("10.254.1.2", "root", 22)
        assert proxy["hostKey"] == "ssh-ed25519 AAAAhostkey" and proxy["privateKey"] == "HYPERVISOR PRIVATE KEY\n"
    dirs = next(r for r in remote if r.name.endswith("-hypervisor-dirs"))
    conn = conns[dirs.name]
    assert conn["host"] == "10.254.1.2" and conn["hostKey"] == "ssh-ed25519 AAAAhostkey" and "proxy" not in conn
    assert dirs.inputs["create"] == "mkdir -p '/var/log/lvs-lab/lvs-lab-dev'"
    local_dirs = next(r for r in mocks.of(LOCAL) if r.name.endswith("-host-dirs"))
    assert local_dirs.inputs["create"] == "mkdir -p '/var/lib/lvs-lab/seeds/lvs-lab-dev'"


def test_local_lab_has_no_proxy(dev_raw: dict[str, Any], image_dir: Path) -> None:  # noqa: F811
    mocks = run_program(dev_raw)
    assert all("proxy" not in r.inputs["connection"]["value"] for r in mocks.of(REMOTE))
    assert not [r for r in mocks.of(REMOTE) if r.name.endswith("-hypervisor-dirs")]


@pytest.mark.parametrize("problem,expected", [
    ("no-key", "lvs-lab:libvirtUri: keyfile {dir}/missing cannot be read"),
    ("unknown-host", "lvs-lab:libvirtUri: knownhosts {dir}/kh has no key for 10.254.1.2"),
])
def test_remote_lab_with_unreadable_access_stops_before_any_resource(
        dev_raw: dict[str, Any], image_dir: Path, tmp_path: Path, problem: str, expected: str) -> None:  # noqa: F811
    (tmp_path / "id").write_text("k")
    (tmp_path / "kh").write_text("10.9.9.9 ssh-ed25519 AAAA\n")
    keyfile = tmp_path / ("missing" if problem == "no-key" else "id")
    dev_raw["libvirtUri"] = f"qemu+ssh://root@10.254.1.2/system?keyfile={keyfile}&knownhosts={tmp_path / 'kh'}"
    with pytest.raises(SystemExit) as stop:
        run_program(dev_raw)
    assert str(stop.value).startswith(expected.format(dir=tmp_path))


# --- the relay, run for real: "ssh" replaced by running the hypervisor's side here, in an empty directory ---

@pytest.fixture
def here(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Hypervisor:
    """A 'remote' hypervisor whose commands run on this machine, from a directory without the checkout (so
    the package can only come from the relayed zip)."""
    python3 = shutil.which("python3")
    assert python3
    monkeypatch.setattr(Hypervisor, "command",
                        lambda self, argv: ["env", "-C", str(tmp_path), "PYTHONSAFEPATH=1", python3, *argv[1:]])
    return parse_uri(URI)


def test_relay_runs_the_package_from_the_zip_with_its_stdin_and_environment(
        here: Hypervisor, capfd: pytest.CaptureFixture[str]) -> None:
    proc = relay(here, "lvslab.verify", ["readiness"], stdin="{}", env={KEY_VARIABLE: "SECRET-KEY"})
    err = capfd.readouterr().err
    # The key arrived (no "is not set"), stdin arrived (the empty spec is refused), from the zip.
    assert proc.returncode == 1 and "verification spec keys differ" in err, err
    assert "lvslab.zip/lvslab/verify/__main__.py" in err
    assert "SECRET-KEY" not in " ".join(proc.args)  # the secret travels on stdin only
    proc = relay(here, "lvslab.verify", ["readiness"], stdin="{}", env={})
    assert proc.returncode == 2 and f"{KEY_VARIABLE} is not set" in capfd.readouterr().err


def test_relay_usage_error_and_exit_status(here: Hypervisor, capfd: pytest.CaptureFixture[str]) -> None:
    proc = relay(here, "lvslab.verify", ["no-such-step"], stdin="", env={})
    assert proc.returncode == 2 and "usage: python -m lvslab.verify" in capfd.readouterr().err


def test_package_zip_holds_only_stdlib_modules() -> None:
    """What the hypervisor's plain python3 imports must not need the project's venv."""
    import zipfile
    from io import BytesIO

    names = zipfile.ZipFile(BytesIO(hypervisor.package_zip())).namelist()
    assert "lvslab/verify/__main__.py" in names and "lvslab/verify/steps/failover.py" in names
    third_party = subprocess.run(
        ["grep", "-lE", r"^(import|from) (yaml|jinja2|pulumi|pulumi_libvirt|pulumi_command)\b",
         *[str(ROOT / n) for n in names]], capture_output=True, text=True).stdout
    assert third_party == "", third_party
    assert "lvslab/render.py" not in names and not [n for n in names if n.startswith("components/")]


def test_leftover_paths_are_listed_alike_here_and_on_a_hypervisor(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    """The leak check's file listing: the shell version (run on a remote hypervisor) and the local one agree."""
    from lvslab.inventory import existing_paths

    (tmp_path / "pool" / "sub").mkdir(parents=True)
    (tmp_path / "pool" / "sub" / "disk.qcow2").write_text("x")
    (tmp_path / "seed.iso").write_text("x")
    paths = [str(tmp_path / "pool"), str(tmp_path / "seed.iso"), str(tmp_path / "gone")]
    local = existing_paths(parse_uri("qemu:///system"), paths)
    assert local == [f"{tmp_path}/pool/", f"{tmp_path}/pool/sub/disk.qcow2", f"{tmp_path}/seed.iso"]
    monkeypatch.setattr(Hypervisor, "command", lambda self, argv: argv)  # "remote": the same shell, here
    assert existing_paths(parse_uri(URI), paths) == local


def test_leak_check_never_passes_blind(monkeypatch: pytest.MonkeyPatch, dev_raw: dict[str, Any]) -> None:
    """A hypervisor that cannot be asked (SSH refused, libvirt down) is a failed leak check, not an empty one."""
    from lvslab.inventory import lab_leftovers
    from lvslab.model import derive

    dev_raw["libvirtUri"] = URI
    facts = derive(parse_config(dev_raw, "unit-leak-check"))  # (not "dev": a running dev lab has seeds here)
    refused = "echo 'ssh: connect to host 10.254.1.2: refused' >&2; exit 255"
    monkeypatch.setattr(Hypervisor, "command", lambda self, argv: ["sh", "-c", refused])
    found = lab_leftovers(facts)
    assert list(found) == ["unknown"] and "on hypervisor 10.254.1.2: ssh: connect to host" in found["unknown"][0]
    monkeypatch.setattr(Hypervisor, "command", lambda self, argv: ["true"])  # answers, nothing listed
    assert lab_leftovers(facts) == {}


def test_hypervisor_cpus_here_and_over_ssh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """vm.bootsAtOnce auto needs the hypervisor's CPU count: nproc over its SSH; unreadable, one clear error."""
    assert host.hypervisor_cpus(parse_uri("qemu:///system")) == os.cpu_count()
    remote = parse_uri(f"qemu+ssh://root@10.254.1.2/system?keyfile={tmp_path / 'id'}")
    ran: list[list[str]] = []

    def fake(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        ran.append(argv)
        return subprocess.CompletedProcess(argv, 0, "8\n", "")

    monkeypatch.setattr(host.subprocess, "run", fake)
    assert host.hypervisor_cpus(remote) == 8
    assert ran[0][0] == "ssh" and ran[0][-2:] == ["root@10.254.1.2", "nproc --all"]
    monkeypatch.setattr(host.subprocess, "run",
                        lambda argv, **_: subprocess.CompletedProcess(argv, 255, "", "Connection refused"))
    with pytest.raises(host.HostError, match=r"vm.bootsAtOnce is auto but the CPU count of hypervisor 10.254.1.2 "
                                             r"could not be read \(Connection refused\): set vm.bootsAtOnce"):
        host.hypervisor_cpus(remote)
