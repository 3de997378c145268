"""The ephemeral runner's config rewrite (tools/lvslab.py): every stack template moves to its own slot and
stays valid, NAT's second subnet included."""

from __future__ import annotations

import importlib.util
import ipaddress
import re
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from lvslab.config import parse_config

ROOT = Path(__file__).resolve().parents[2]


def runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lvslab_runner", ROOT / "tools" / "lvslab.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The stack templates in the repository (not the git-ignored stacks of running ephemeral labs, ciN-xxxxxx).
TEMPLATES = sorted(name for name in (p.name.split(".")[1] for p in (ROOT / "stacks").glob("Pulumi.*.yaml"))
                   if not re.fullmatch(r"ci\d+-[0-9a-f]{6}", name))


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_template_moves_to_its_slot_and_stays_valid(template: str) -> None:
    raw = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{template}.yaml").read_text())["config"]
    moved = runner().ephemeral_config(raw, 7, [], None)
    cfg = parse_config({k.split(":", 1)[1]: v for k, v in moved.items()}, "ci7")
    assert cfg.bridge == "lvsci7" and cfg.subnet == ipaddress.IPv4Network("10.200.7.0/24")
    nodes = [*cfg.directors, *cfg.real_servers]
    assert all(ipaddress.IPv4Address(n.address) in cfg.subnet for n in nodes)
    if cfg.lb_kind == "NAT":
        assert cfg.client_subnet == ipaddress.IPv4Network("10.201.7.0/24")
        assert ipaddress.IPv4Address(cfg.vip) in cfg.client_subnet and cfg.client == "10.201.7.1"
        assert ipaddress.IPv4Address(cfg.gateway_vip) in cfg.subnet and cfg.gateway_vip.endswith(".254")
    else:
        assert ipaddress.IPv4Address(cfg.vip) in cfg.subnet and cfg.client == cfg.host_address


def test_a_kept_labs_slot_is_not_handed_out_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lab kept with --keep outlives its runner: its slot (bridge, subnet) must stay taken until destroy,
    while a slot whose runner died without keeping is reclaimed."""
    cli = runner()
    monkeypatch.setattr(cli, "SLOTS", tmp_path)
    for slot, kept in ((1, True), (2, False)):
        (tmp_path / str(slot)).mkdir()
        (tmp_path / str(slot) / "pid").write_text("999999999")  # no such process
        if kept:
            (tmp_path / str(slot) / "kept").write_text("ci1-abcdef")
    assert cli.reserve_slot() == 3  # 1 is kept; 2 is stale: removed (free for the next runner)
    assert (tmp_path / "1" / "kept").exists() and not (tmp_path / "2").exists()
    assert cli.reserve_slot() == 2


def test_ready_time_is_domain_start_plus_the_guests_uptime_at_cloud_init_done() -> None:
    """make bench's 'up start -> all nodes ready': from the Domain's create event and the console's uptime,
    not from when the ready command ended (SSH dial cadence, boot profile)."""
    cli = runner()
    started = {}
    for line in ["+  libvirt:index:Domain web1-node-domain creating (0s)",
                 "+  libvirt:index:Domain web1-node-domain created (0.51s)",
                 "+  libvirt:index:Domain director1-node-domain created (0.83s)"]:
        found = cli.DOMAIN_CREATED.search(line)
        if found:
            started[found.group(1)] = {"web1": 7.5, "director1": 8.0}[found.group(1)]
    verification = {"readiness": {"nodes": {"web1": {"boot_to_ready_s": 90.25},
                                            "director1": {"boot_to_ready_s": 111.0},
                                            "web2": {"boot_to_ready_s": 95.0}}}}  # no create event seen
    assert cli.ready_after_up_start(started, verification) == {"web1": 97.8, "director1": 119.0}
    assert cli.ready_after_up_start(started, None) == {}
