"""Reading typed values out of the stack config's nested dicts, recording one problem per mistake (key,
what is allowed, the value) instead of raising; `read` takes a key's kind, default and limits from the schema."""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
from typing import Any

from lvslab.config.model import PROJECT
from lvslab.config.schema import BOOTS_AT_ONCE_WORDS, DERIVED, KEYS, REQUIRED, children

VALUE_SHOWN = 200  # a bad value is quoted up to this many characters


class Reader:
    """Reads typed values out of nested config dicts, recording problems instead of raising."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, key: str, message: str, value: Any) -> None:
        shown = repr(value)
        if len(shown) > VALUE_SHOWN:
            shown = f"{shown[:VALUE_SHOWN]}... ({len(shown)} characters)"
        self.problems.append(f"{PROJECT}:{key}: {message} (got {shown})")

    def unknown(self, key: str, name: str, allowed: set[str] | frozenset[str], value: Any) -> None:
        """An unknown key, with the nearest valid one when there is a likely typo."""
        near = difflib.get_close_matches(name, sorted(allowed), n=1, cutoff=0.6)
        hint = f"did you mean '{near[0]}'? " if near else ""
        self.fail(key, f"unknown key; {hint}expected one of {', '.join(sorted(allowed))}", value)

    def obj(self, raw: Any, key: str, allowed: set[str]) -> dict[str, Any]:
        """A nested object; unknown keys are reported (typos must not be silently ignored)."""
        sub = raw
        if not isinstance(sub, dict):
            self.fail(key, "must be an object", sub)
            return {}
        for unknown in sorted(set(sub) - allowed):
            self.unknown(f"{key}.{unknown}", unknown, allowed, sub[unknown])
        return sub

    def integer(self, raw: dict[str, Any], name: str, key: str, default: int | None, lo: int, hi: int,
                unit: str = "") -> int | None:
        """An integer in [lo, hi]; None when missing (no default) or invalid, so no follow-up check uses it."""
        value = raw.get(name, default)
        allowed = f"between {lo} and {hi}{' ' + unit if unit else ''}"
        if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value.strip()):  # ASCII digits only
            value = int(value)
        if value is None:
            self.fail(key, f"is required: an integer {allowed}", value)
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"must be an integer {allowed}", value)
            return None
        if not lo <= value <= hi:
            self.fail(key, f"must be {allowed}", value)
            return None
        return value

    def number(self, raw: dict[str, Any], name: str, key: str, default: float) -> float | None:
        """A finite number (not a boolean); None when invalid."""
        value = raw.get(name, default)
        if isinstance(value, bool):
            self.fail(key, "must be a number, not true/false", value)
            return None
        try:
            if isinstance(value, str) and not value.isascii():
                raise ValueError(value)  # float() would read other scripts' digits
            number = float(value)
        except (TypeError, ValueError):
            self.fail(key, "must be a number", value)
            return None
        if not math.isfinite(number):
            self.fail(key, "must be a finite number", value)
            return None
        return number

    def string(self, raw: dict[str, Any], name: str, key: str, default: str | None,
               choices: tuple[str, ...] | None = None) -> str:
        value = raw.get(name, default)
        if not isinstance(value, str) or (default is None and not value):
            self.fail(key, "must be a non-empty string", value)
            return default or ""
        if choices and value not in choices:
            self.fail(key, f"must be one of {', '.join(choices)}", value)
        return value

    def boolean(self, raw: dict[str, Any], name: str, key: str, default: bool) -> bool:
        value = raw.get(name, default)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            self.fail(key, "must be true or false", value)
            return default
        return value

    def address(self, value: Any, key: str) -> ipaddress.IPv4Address | None:
        try:
            if not isinstance(value, str):
                raise TypeError(value)  # ipaddress would read an integer (or true) as an address
            return ipaddress.IPv4Address(value)
        except (ipaddress.AddressValueError, ValueError, TypeError):
            self.fail(key, "must be an IPv4 address", value)
            return None


def boots_at_once(r: Reader, value: Any) -> str | int:
    """vm.bootsAtOnce: auto, all or a whole number of VMs (1-64)."""
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value)
    if value in BOOTS_AT_ONCE_WORDS or (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 64):
        return value
    r.fail("vm.bootsAtOnce", "must be auto (cores of the hypervisor under software emulation, all under KVM), "
           "all, or a number of VMs between 1 and 64", value)
    return "auto"


def read(r: Reader, holder: dict[str, Any], path: str, shown: str | None = None) -> Any:
    """The value of the schema key `path` from `holder` (the dict of its section), checked by its kind with its
    default, limits, unit and choices; `shown`: the key as the message names it (a list item's index)."""
    k = KEYS[path]
    shown = shown or path
    fallback = None if k.default is REQUIRED or k.default is DERIVED else k.default
    if k.kind == "integer":
        assert k.lo is not None and k.hi is not None
        return r.integer(holder, k.name, shown, fallback, int(k.lo), int(k.hi), k.unit)
    if k.kind == "number":
        return r.number(holder, k.name, shown, fallback)
    if k.kind == "boolean":
        return r.boolean(holder, k.name, shown, fallback)
    if k.kind in ("string", "choice"):
        return r.string(holder, k.name, shown, fallback, k.choices or None)
    if k.kind == "bootsAtOnce":
        return boots_at_once(r, holder.get(k.name, fallback))
    raise AssertionError(f"{path}: kind {k.kind} has no plain reader")


def section(r: Reader, raw: Any, path: str, shown: str | None = None) -> dict[str, Any]:
    """A section's dict (an object; its unknown keys reported against the schema's names for it)."""
    return r.obj(raw, shown or path, children(path))
