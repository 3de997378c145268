"""The config reader never ends in a traceback: 10,000 seeded mutations of every committed stack (wrong types,
unicode digits, huge and non-finite numbers, empty values, deleted and unknown keys) either parse, derive and
render, or raise ConfigError whose every line names a key of the project and quotes a bounded value."""

from __future__ import annotations

import copy
import random
import traceback
from collections.abc import Iterator
from typing import Any

import pytest

from lvslab import render
from lvslab.config import PROJECT, ConfigError, parse_config
from lvslab.config.reader import VALUE_SHOWN
from lvslab.model import derive, verify_spec
from lvslab.stackfile import STACKS, load_config

SEED = 20261204
INPUTS = 10_000
VALUES: list[Any] = [
    None, "", " ", "x", "١٢", "１２", "12", "-1", "1e9", "nan", "inf", 0, -1, 1, 2, 255, 256, 65536, 10**30, -10**30,
    0.5, 1.5, float("nan"), float("inf"), -0.0, True, False, [], [1], ["a"], {}, {"a": 1}, "a" * 5000, "\n", "é",
    "qemu:///system", "qemu+ssh://u@h/system?keyfile=/x", "10.0.0.1", "10.0.0.0/24", "::1", "MASTER", "BACKUP",
    "rr", "HTTP_GET", "lvs-heartbeat", "nginx-ha", "lvs-keepalived", {"secure": "abc"},
]


def stacks() -> dict[str, dict[str, Any]]:
    return {p.name.removeprefix("Pulumi.").removesuffix(".yaml"): load_config(
        p.name.removeprefix("Pulumi.").removesuffix(".yaml")) for p in sorted(STACKS.glob("Pulumi.*.yaml"))}


def paths(obj: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from paths(v, (*prefix, i))


def mutate(rng: random.Random, raw: dict[str, Any]) -> dict[str, Any]:
    """1-3 changes: a value replaced by one of VALUES, a key deleted, or an unknown key added."""
    raw = copy.deepcopy(raw)
    for _ in range(rng.randint(1, 3)):
        path = rng.choice([p for p in paths(raw) if p])
        parent: Any = raw
        for k in path[:-1]:
            parent = parent[k]
        op = rng.random()
        if op < 0.7:
            parent[path[-1]] = copy.deepcopy(rng.choice(VALUES))
        elif op < 0.85 and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[rng.choice(["unknownKey", "x", "", "١"])] = copy.deepcopy(rng.choice(VALUES))
    return raw


def parse_derive_render(raw: dict[str, Any], stack: str) -> None:
    cfg = parse_config(raw, stack)
    lab = derive(cfg)
    verify_spec(lab)
    for d in lab.directors:
        render.director_user_data(cfg, d, "ssh-ed25519 AAAA", "s3cret")
        if cfg.topo.pushed:
            render.pushed_file(cfg, d, "s3cret")
    for rs in lab.real_servers:
        render.real_server_user_data(cfg, rs, "ssh-ed25519 AAAA")


def test_no_input_ends_in_a_traceback() -> None:
    rng = random.Random(SEED)
    bases = stacks()
    assert len(bases) >= 10
    tracebacks: dict[str, str] = {}
    outcomes = {"parsed": 0, "refused": 0}
    for _ in range(INPUTS):
        stack = rng.choice(sorted(bases))
        raw = mutate(rng, bases[stack])
        try:
            parse_derive_render(raw, stack)
            outcomes["parsed"] += 1
        except ConfigError as exc:
            outcomes["refused"] += 1
            for line in exc.problems:
                assert line.split(":", 1)[0] in (PROJECT, "lvs_lab") and "(got " in line, line
                assert len(line) < 800 + VALUE_SHOWN, line[:300]
        except Exception as exc:  # noqa: BLE001 (what this test exists to find)
            where = traceback.extract_tb(exc.__traceback__)[-1]
            tracebacks.setdefault(f"{type(exc).__name__} at {where.filename}:{where.lineno}", repr(raw)[:400])
    assert tracebacks == {}
    assert outcomes["parsed"] > 100 and outcomes["refused"] > 5000, outcomes


def test_a_planted_crash_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness itself: a reader that crashes on one value is caught as a traceback."""
    import lvslab.config.parse as parse

    original = parse.read

    def crashing(r: Any, section: Any, key: str, *rest: Any) -> Any:
        if key == "port" and section.get("port") == 65536:
            raise IndexError("planted")
        return original(r, section, key, *rest)

    monkeypatch.setattr(parse, "read", crashing)
    raw = load_config("dev") | {"port": 65536}
    with pytest.raises(IndexError):
        parse_derive_render(raw, "dev")


def test_heartbeat_auth_pass_must_be_a_secret() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(load_config("heartbeat"), "heartbeat", auth_pass="plain", auth_pass_is_secret=False)
    assert err.value.problems == ["lvs-lab:authPass: must be stored as a secret (pulumi config set --secret authPass "
                                  "...): it becomes heartbeat's authkeys (got '<plaintext>')"]


@pytest.mark.parametrize("key,value,message", [
    ("port", "١٢", "lvs-lab:port: must be an integer between 1 and 65535 (got '١٢')"),  # Arabic-Indic digits
    ("port", "８０", "lvs-lab:port: must be an integer between 1 and 65535 (got '８０')"),  # full-width digits
    ("vip", True, "lvs-lab:vip: must be an IPv4 address (got True)"),  # not 0.0.0.1
    ("vip", 167772161, "lvs-lab:vip: must be an IPv4 address (got 167772161)"),  # not 10.0.0.1
])
def test_values_only_python_would_read_are_refused(key: str, value: Any, message: str) -> None:
    raw = load_config("dev") | {key: value}
    with pytest.raises(ConfigError) as err:
        parse_config(raw, "dev")
    assert err.value.problems == [message]


def test_a_long_value_is_quoted_shortened() -> None:
    raw = load_config("dev") | {"vip": "a" * 5000}
    with pytest.raises(ConfigError) as err:
        parse_config(raw, "dev")
    (line,) = err.value.problems
    assert line.startswith("lvs-lab:vip: must be an IPv4 address (got 'aaa") and line.endswith("... (5002 characters))")
    assert len(line) < 300


@pytest.mark.parametrize("password", ["pass wd", "pa#ss", "pa!ss", 'pa"ss', "pa{ss", "pässwd"])
def test_auth_pass_the_daemons_would_cut_is_refused(password: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(load_config("dev"), "dev", auth_pass=password, auth_pass_is_secret=True)
    assert err.value.problems == [
        "lvs-lab:authPass: must be printable ASCII without blanks, quotes, braces, '#' or '!': keepalived.conf (and "
        f"heartbeat's authkeys) would cut it there (got '<secret of {len(password)} characters>')"]
    assert password not in str(err.value)
