"""CI slots on this host: each ephemeral lab gets a slot (its bridge, /24 and VRRP router id) and a
hypervisor; a template is moved to its slot."""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import shutil
from pathlib import Path
from typing import Any

from lvslab.config import PROJECT
from lvslab.hypervisor import parse_uri, place
from lvslab.lab.topology import DEFAULT_TOPOLOGY, TOPOLOGIES

EPHEMERAL_READY_TIMEOUT_S = 1800
SLOTS = Path(os.environ.get("LVSLAB_RUN_DIR", "/run/lvs-lab")) / "ci-slots"


# --- ephemeral CI environments -----------------------------------------------------------------------

def reserve_slot() -> int:
    """A slot number no other runner on this host holds: it picks the bridge name and subnet."""
    SLOTS.mkdir(parents=True, exist_ok=True)
    for slot in range(1, 200):
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
    uris = [default if c == "local" else c for c in candidates] or [default]
    for uri in uris:
        parse_uri(uri)  # a bad URI stops the run here, before any resource
    with open(SLOTS / ".placement.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        in_use = [f.read_text() for f in SLOTS.glob("*/hypervisor") if f.parent.name != str(slot)]
        uri = place(uris, in_use)
        (SLOTS / str(slot) / "hypervisor").write_text(uri)
    return uri


def ephemeral_config(template: dict[str, Any], slot: int, faults: list[str],
                     real_servers: int | None, failover_mode: str | None = None) -> dict[str, Any]:
    """Template config moved to its own bridge and /24 so several labs can run side by side."""
    cfg = json.loads(json.dumps(template))
    ns = f"{PROJECT}:"
    old = ipaddress.IPv4Network(cfg[ns + "network"]["subnet"])
    new = ipaddress.IPv4Network(f"10.200.{slot}.0/24")

    def move(addr: str) -> str:
        return str(new.network_address + (int(ipaddress.IPv4Address(addr)) - int(old.network_address)))

    network = cfg[ns + "network"]
    cfg[ns + "network"] = {"bridge": f"lvsci{slot}", "subnet": str(new), "hostAddress": move(network["hostAddress"])}
    if "clientSubnet" in network:  # LVS-NAT: the VIP and the client in a second subnet, moved alike
        old_client = ipaddress.IPv4Network(network["clientSubnet"])
        new_client = ipaddress.IPv4Network(f"10.201.{slot}.0/24")

        def move_client(addr: str) -> str:
            return str(new_client.network_address + (int(ipaddress.IPv4Address(addr)) -
                                                     int(old_client.network_address)))

        cfg[ns + "network"]["clientSubnet"] = str(new_client)
        if "clientAddress" in network:
            cfg[ns + "network"]["clientAddress"] = move_client(network["clientAddress"])
        cfg[ns + "vip"] = move_client(cfg[ns + "vip"])
        lvs = cfg[ns + "lvs"]
        if "gatewayVip" in lvs:
            lvs["gatewayVip"] = move(lvs["gatewayVip"])
    else:
        cfg[ns + "vip"] = move(cfg[ns + "vip"])
    for d in cfg[ns + "directors"]:
        d["address"] = move(d["address"])
    if ns + "realServers" in cfg:  # (topology nginx-ha has none)
        servers = cfg[ns + "realServers"]
        if real_servers:
            servers = [{"name": f"web{i}", "address": move(str(old.network_address + 20 + i)), "weight": 1}
                       for i in range(1, real_servers + 1)]
        else:
            for s in servers:
                s["address"] = move(s["address"])
        cfg[ns + "realServers"] = servers
    if TOPOLOGIES[cfg.get(ns + "topology", DEFAULT_TOPOLOGY)].uses_vrrp:  # (else heartbeat moves its VIP)
        cfg[ns + "vrrp"] = {**cfg.get(ns + "vrrp", {}), "virtualRouterId": 100 + slot % 150}
    if faults:
        cfg[ns + "faults"] = faults
    verify = dict(cfg.get(ns + "verify", {}))
    # Ephemeral labs boot next to each other (CI runs two at once on two emulated cores): allow for it.
    verify["readyTimeout"] = max(int(verify.get("readyTimeout", 0)), EPHEMERAL_READY_TIMEOUT_S)
    if failover_mode:
        verify["failoverMode"] = failover_mode
    cfg[ns + "verify"] = verify
    return cfg
