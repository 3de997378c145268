"""Derived facts: names, MACs and paths computed once; the verification spec's JSON round trip; the kernel
command line in the shape pulumi-libvirt reads back."""

from __future__ import annotations

from typing import Any

import pytest

from lvslab.config import parse_config
from lvslab.model import VerifySpec, boot_after, boots_at_once, derive, kernel_cmdlines, mac_for, verify_spec


def test_names_and_paths(dev_raw: dict[str, Any]) -> None:
    facts = derive(parse_config(dev_raw, "dev"), pool_root="/pools", log_root="/logs")
    assert facts.prefix == "lvs-lab-dev" and facts.network == "lvs-lab-dev-net" and facts.pool == "lvs-lab-dev-pool"
    assert facts.pool_path == "/pools/lvs-lab-dev" and facts.console_dir == "/logs/lvs-lab-dev"
    web1 = facts.node("web1")
    assert (web1.domain, web1.disk_volume, web1.seed_volume, web1.console_log) == (
        "lvs-lab-dev-web1", "lvs-lab-dev-web1.qcow2", "lvs-lab-dev-web1-seed.iso", "/logs/lvs-lab-dev/web1.log")
    assert web1.role == "real-server" and web1.weight == 1 and web1.mac == mac_for("dev", "web1")
    assert facts.master.name == "director1" and facts.master.priority == 150 and facts.backup.state == "BACKUP"
    assert len({n.mac for n in facts.nodes} | {facts.bridge_mac}) == len(facts.nodes) + 1
    assert facts.volume("repo.iso") == "lvs-lab-dev-repo.iso"


def test_two_stacks_share_no_name(dev_raw: dict[str, Any]) -> None:
    a, b = (derive(parse_config(dev_raw, s)) for s in ("a", "b"))
    names = lambda f: {f.network, f.pool, f.pool_path, f.console_dir, f.bridge_mac} | {  # noqa: E731
        x for n in f.nodes for x in (n.domain, n.disk_volume, n.seed_volume, n.console_log, n.mac)}
    assert not names(a) & names(b)


@pytest.mark.parametrize("cmdline,shape", [
    ("root=LABEL=rootfs ro console=ttyS0 net.ifnames=0 mitigations=off quiet",
     [{"console": "ttyS0", "mitigations": "off", "net.ifnames": "0", "root": "LABEL=rootfs"}, {"_": "quiet ro"}]),
    ("ro", [{"_": "ro"}]),
    ("a=1", [{"a": "1"}]),
])
def test_kernel_cmdlines_shape(cmdline: str, shape: list[dict[str, str]]) -> None:
    assert kernel_cmdlines(cmdline) == shape


def test_verify_spec_round_trip(dev_raw: dict[str, Any]) -> None:
    spec = verify_spec(derive(parse_config(dev_raw, "dev")))
    again = VerifySpec.from_json(spec.to_json())
    assert again == spec and again.master.name == "director1" and again.health_check.window() == (8, 4)
    assert spec.failover_bound_s == pytest.approx(3.609375)


def test_verify_spec_rejects_unknown_or_missing_keys(dev_raw: dict[str, Any]) -> None:
    text = verify_spec(derive(parse_config(dev_raw, "dev"))).to_json()
    with pytest.raises(ValueError, match="unknown \\['extra'\\]"):
        VerifySpec.from_json(text[:-1] + ', "extra": 1}')
    with pytest.raises(ValueError, match="missing \\['vip'\\]"):
        VerifySpec.from_json(text.replace('"vip"', '"vip_"'))


def test_extra_clients_are_free_addresses_of_the_subnet(dev_raw: dict[str, Any]) -> None:
    from lvslab.model import extra_clients

    cfg = parse_config(dev_raw, "dev")
    clients = extra_clients(cfg)
    used = {cfg.vip, cfg.host_address, cfg.gateway_vip, cfg.client,
            *(n.address for n in (*cfg.directors, *cfg.real_servers))}
    assert len(clients) == 6 and not used & set(clients)
    assert clients[0] == str(cfg.subnet.broadcast_address - 1)


def test_boot_after_lets_at_most_n_first_boots_share_the_cpu() -> None:
    names = ("director1", "director2", "web1", "web2", "web3")
    assert boot_after(names, 2) == {"director1": None, "director2": None, "web1": "director1", "web2": "director2",
                                     "web3": "web1"}
    assert boot_after(names, 1) == {"director1": None, "director2": "director1", "web1": "director2",
                                     "web2": "web1", "web3": "web2"}
    assert set(boot_after(names, 5).values()) == {None} == set(boot_after(names, 9).values())


@pytest.mark.parametrize("setting,domain_type,cpus,vcpus,expected", [
    ("auto", "qemu", 2, 1, 2),   # this machine: two cores, one vCPU each
    ("auto", "qemu", 8, 2, 4),
    ("auto", "qemu", 1, 2, 1),   # never zero
    ("auto", "kvm", 2, 1, 5),    # KVM guests wait on I/O: all at once
    ("all", "qemu", 2, 1, 5),
    (3, "qemu", 2, 1, 3),
    (3, "kvm", 2, 1, 3),
])
def test_boots_at_once(setting: str | int, domain_type: str, cpus: int, vcpus: int, expected: int) -> None:
    assert boots_at_once(setting, domain_type, cpus, vcpus, nodes=5) == expected
