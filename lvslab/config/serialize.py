"""LabConfig -> a stack's config (keys without the namespace), the inverse of parse_config: what the runner
writes for an ephemeral lab after editing the typed config. Driven by the schema: a key is written when it is
required or differs from its default (so the stack file holds what a user would write, and a key a topology
refuses, always at its default there, never appears)."""

from __future__ import annotations

import ipaddress
import operator
from dataclasses import asdict
from typing import Any

from lvslab.config.model import LabConfig
from lvslab.config.schema import DERIVED, REQUIRED, SCHEMA, Key

# Written as lists of objects (their items' keys are the schema's "directors[].name" ...).
LISTS = {"directors": "directors", "realServers": "real_servers"}


def to_raw(cfg: LabConfig) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    for key in SCHEMA:
        if key.kind in ("object", "secret") or key.path in LISTS or "[" in key.path or not _applies(key, cfg):
            continue
        value = _plain(operator.attrgetter(key.model_attr)(cfg))
        if key.default in (REQUIRED, DERIVED) or value != _plain(key.default):
            _put(raw, key.path, value)
    for name, attr in LISTS.items():
        items = getattr(cfg, attr)
        if items:
            raw[name] = [{k: v for k, v in asdict(item).items()} for item in items]
    return raw


def _applies(key: Key, cfg: LabConfig) -> bool:
    """NAT's keys only with NAT (empty otherwise); the IPVS timeouts only when the stack set them."""
    if key.path.startswith("lvs.timeouts."):
        return cfg.timeouts.configured
    if key.path in ("network.clientSubnet", "network.clientAddress", "lvs.gatewayVip"):
        return cfg.lb_kind == "NAT"
    return True


def _plain(value: Any) -> Any:
    """YAML-ready: networks as CIDR strings, tuples as lists."""
    if isinstance(value, ipaddress.IPv4Network):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _put(raw: dict[str, Any], path: str, value: Any) -> None:
    *sections, name = path.split(".")
    for section in sections:
        raw = raw.setdefault(section, {})
    raw[name] = value
