"""The schema is the one place a key is declared: README's configuration table and Pulumi.yaml's config block
are generated from it and must not drift (regenerate: python -m lvslab.config.docs --write); every key the
parser reads is declared, and the typed model's defaults are the schema's."""

from __future__ import annotations

import dataclasses

import yaml

from lvslab.config import docs
from lvslab.config.model import HealthCheck, Heartbeat, NginxCheck, Verify, Vm, Vrrp
from lvslab.config.schema import KEYS, REQUIRED, SCHEMA, children


def test_readme_table_is_generated_from_the_schema() -> None:
    text = docs.README.read_text()
    assert docs.readme_with_table(text) == text, "README.md drifted: python -m lvslab.config.docs --write"


def test_pulumi_yaml_config_block_is_generated_from_the_schema() -> None:
    text = docs.PULUMI_YAML.read_text()
    assert docs.pulumi_yaml_with_block(text) == text, "Pulumi.yaml drifted: python -m lvslab.config.docs --write"
    block = yaml.safe_load(text)["config"]
    assert block["port"] == {"type": "integer", "description": KEYS["port"].description, "default": 80}
    assert "default" not in block["vip"]  # required: the CLI refuses a stack without it


def test_drift_is_caught() -> None:
    text = docs.README.read_text().replace("| `port` | 1–65535 | `80` |", "| `port` | 1–65535 | `8080` |")
    assert docs.readme_with_table(text) != text


def test_keys_are_declared_once_and_sections_exist() -> None:
    assert len({k.path for k in SCHEMA}) == len(SCHEMA)
    for k in SCHEMA:
        if k.section:
            parent = KEYS.get(k.section) or KEYS.get(k.section.removesuffix("[]"))
            assert parent is not None and parent.kind in ("object", "list"), k.path
        if k.kind == "integer":
            assert k.lo is not None and k.hi is not None and k.lo <= k.hi, k.path
            assert k.default is REQUIRED or k.lo <= k.default <= k.hi, k.path
        if k.kind == "choice":
            assert k.default is REQUIRED or k.default in k.choices, k.path
    assert children("") == {"libvirtUri", "domainType", "network", "vip", "port", "directors", "realServers", "lvs",
                            "healthCheck", "vrrp", "authPass", "image", "vm", "packageSource", "verify", "faults",
                            "topology", "nginxCheck", "heartbeat"}


def test_model_defaults_are_the_schemas() -> None:
    pairs = {HealthCheck: "healthCheck", Vrrp: "vrrp", NginxCheck: "nginxCheck", Heartbeat: "heartbeat",
             Verify: "verify", Vm: "vm"}
    for cls, section in pairs.items():
        instance = cls()
        for f in dataclasses.fields(cls):
            camel = "".join(w if i == 0 else w.capitalize() for i, w in enumerate(f.name.split("_")))
            path = f"{section}.{camel}" if f"{section}.{camel}" in KEYS else f"lvs.{camel}"
            assert getattr(instance, f.name) == KEYS[path].default, path
