"""CI slots on this host: each ephemeral lab gets a slot (its bridge, /24 and VRRP router id) and a
hypervisor; a template is moved to its slot."""

from __future__ import annotations

import dataclasses
import fcntl
import ipaddress
import os
import shutil
from pathlib import Path
from typing import Any

from lvslab.config import PROJECT, LabConfig, RealServer, parse_config
from lvslab.config.serialize import to_raw
from lvslab.hypervisor import parse_uri, place
from lvslab.stackfile import project_config

EPHEMERAL_READY_TIMEOUT_S = 1800
SLOTS = Path(os.environ.get("LVSLAB_RUN_DIR", "/run/lvs-lab")) / "ci-slots"
SLOT_NUMBERS = range(1, 200)  # lvsci<slot>, 10.200.<slot>.0/24: this host's slot files and the fleet store alike


# --- ephemeral CI environments -----------------------------------------------------------------------

def reserve_slot() -> int:
    """A slot number no other runner on this host holds: it picks the bridge name and subnet."""
    SLOTS.mkdir(parents=True, exist_ok=True)
    for slot in SLOT_NUMBERS:
        try:
            (SLOTS / str(slot)).mkdir()
            (SLOTS / str(slot) / "pid").write_text(str(os.getpid()))
            return slot
        except FileExistsError:
            pid_file = SLOTS / str(slot) / "pid"
            if (SLOTS / str(slot) / "kept").exists():
                continue  # a lab kept with --keep still uses this bridge and subnet (destroy frees it)
            if pid_file.exists() and not Path(f"/proc/{pid_file.read_text().strip()}").exists():
                shutil.rmtree(SLOTS / str(slot), ignore_errors=True)  # stale: its runner is gone
    raise RuntimeError("no free CI slot")


def choose_hypervisor(slot: int, candidates: list[str], default: str) -> str:
    """Place the lab of `slot` on one of the candidate libvirt URIs ("local" = the template's own) round-robin
    by the labs the other slots hold (lvslab.hypervisor.place), and record the choice in the slot."""
    uris = candidate_uris(candidates, default)
    with open(SLOTS / ".placement.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        in_use = [f.read_text() for f in SLOTS.glob("*/hypervisor") if f.parent.name != str(slot)]
        uri = place(uris, in_use)
        (SLOTS / str(slot) / "hypervisor").write_text(uri)
    return uri


def candidate_uris(candidates: list[str], default: str) -> list[str]:
    """The --hypervisors list as libvirt URIs ("local": the template's own); a bad URI stops the run here,
    before any resource."""
    uris = [default if c == "local" else c for c in candidates] or [default]
    for uri in uris:
        parse_uri(uri)
    return uris


def ephemeral_config(template: dict[str, Any], slot: int, faults: list[str],
                     real_servers: int | None, failover_mode: str | None = None,
                     boots_at_once: int | None = None) -> dict[str, Any]:
    """A template's stack config (keys with the namespace) moved to its slot, so several labs run side by
    side: parsed, relocated as typed config (relocate), written back (lvslab.config.serialize)."""
    cfg = parse_config(project_config(template), "template", auth_pass=None)
    moved = relocate(cfg, slot, faults, real_servers, failover_mode)
    if boots_at_once:  # labs booting side by side share the cores (ephemeral --boots-at-once)
        moved = dataclasses.replace(moved, vm=dataclasses.replace(moved.vm, boots_at_once=boots_at_once))
    return {f"{PROJECT}:{k}": v for k, v in to_raw(moved).items()}


def relocate(cfg: LabConfig, slot: int, faults: list[str], real_servers: int | None,
             failover_mode: str | None = None) -> LabConfig:
    """The lab on bridge lvsci<slot> and 10.200.<slot>.0/24 (NAT: the VIP and the client in 10.201.<slot>.0/24),
    every address at the same offset as in the template, its own VRRP router id (100 + slot mod 150; heartbeat
    labs have none), the CI's faults, a ready timeout for labs booting side by side."""
    new = ipaddress.IPv4Network(f"10.200.{slot}.0/24")

    def move(addr: str, old: ipaddress.IPv4Network = cfg.subnet, to: ipaddress.IPv4Network = new) -> str:
        return str(to.network_address + (int(ipaddress.IPv4Address(addr)) - int(old.network_address)))

    nat: dict[str, Any] = {"vip": move(cfg.vip)}
    if cfg.client_subnet is not None:  # LVS-NAT: the VIP and the client in a second subnet, moved alike
        client = ipaddress.IPv4Network(f"10.201.{slot}.0/24")
        nat = {"client_subnet": client, "client_address": move(cfg.client_address, cfg.client_subnet, client),
               "vip": move(cfg.vip, cfg.client_subnet, client), "gateway_vip": move(cfg.gateway_vip)}
    servers = tuple(dataclasses.replace(s, address=move(s.address)) for s in cfg.real_servers)
    if real_servers and cfg.real_servers:
        servers = tuple(RealServer(f"web{i}", move(str(cfg.subnet.network_address + 20 + i)), 1)
                        for i in range(1, real_servers + 1))
    vrrp = (dataclasses.replace(cfg.vrrp, virtual_router_id=100 + slot % 150) if cfg.topo.uses_vrrp else cfg.vrrp)
    # Ephemeral labs boot next to each other (CI runs two at once on two emulated cores): allow for it.
    verify = dataclasses.replace(cfg.verify, ready_timeout=max(cfg.verify.ready_timeout, EPHEMERAL_READY_TIMEOUT_S),
                                 failover_mode=failover_mode or cfg.verify.failover_mode)
    return dataclasses.replace(
        cfg, bridge=f"lvsci{slot}", subnet=new, host_address=move(cfg.host_address),
        directors=tuple(dataclasses.replace(d, address=move(d.address)) for d in cfg.directors),
        real_servers=servers, vrrp=vrrp, verify=verify, faults=tuple(faults) or cfg.faults, **nat)
