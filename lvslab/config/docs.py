"""README's configuration table and Pulumi.yaml's config block, generated from the schema (one declaration per
key): `python -m lvslab.config.docs --write` rewrites both; tests/unit/test_config_docs.py fails when they
drift from the schema."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lvslab.config.schema import DERIVED, REQUIRED, SCHEMA, Key

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PULUMI_YAML = ROOT / "Pulumi.yaml"
TABLE_BEGIN = "<!-- config-table: generated from lvslab/config/schema.py by `python -m lvslab.config.docs --write` -->"
TABLE_END = "<!-- config-table end -->"
# Top-level keys Pulumi's CLI can type-check itself (scalars; a key without default is required by it).
PULUMI_TYPES = {"string": "string", "choice": "string", "address": "string", "integer": "integer"}


def _default(k: Key) -> str:
    if k.default is REQUIRED:
        return "required"
    if k.default is DERIVED:
        return "derived"
    if k.default is None or k.default == () or k.default == "":
        return "-"
    if isinstance(k.default, bool):
        return str(k.default).lower()
    return f"`{k.default}`"


def config_table() -> str:
    """The README table: one row per key (sections and list items by their path)."""
    rows = ["| key | allowed | default | meaning |", "|---|---|---|---|"]
    for k in SCHEMA:
        if k.kind == "object":
            continue
        allowed = k.limits().replace("|", "\\|")
        if k.kind == "list" and k.choices:
            allowed = "list of: " + ", ".join(k.choices)
        meaning = k.description + (f" (only: {k.only})" if k.only else "")
        rows.append(f"| `{k.path}` | {allowed} | {_default(k)} | {meaning} |")
    return "\n".join(rows)


def pulumi_config_block() -> str:
    """Pulumi.yaml's `config:` block: the top-level scalars the CLI checks by type before the program runs."""
    lines = ["config:"]
    for k in SCHEMA:
        if "." in k.path or "[" in k.path or k.kind not in PULUMI_TYPES or k.default in (None, DERIVED):
            continue
        lines += [f"  {k.path}:", f"    type: {PULUMI_TYPES[k.kind]}", f"    description: {json.dumps(k.description)}"]
        if k.default is not REQUIRED:
            value = k.default if k.kind == "integer" else json.dumps(k.default)
            lines.append(f"    default: {value}")
    return "\n".join(lines) + "\n"


def readme_with_table(text: str) -> str:
    head, sep, rest = text.partition(TABLE_BEGIN)
    assert sep, f"README.md has no {TABLE_BEGIN!r} marker"
    _, sep, tail = rest.partition(TABLE_END)
    assert sep, f"README.md has no {TABLE_END!r} marker"
    return f"{head}{TABLE_BEGIN}\n{config_table()}\n{TABLE_END}{tail}"


def pulumi_yaml_with_block(text: str) -> str:
    head, sep, _ = text.partition("\nconfig:\n")
    assert sep, "Pulumi.yaml has no top-level config: block (it must be the file's last)"
    return f"{head}\n{pulumi_config_block()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite README.md's table and Pulumi.yaml's block")
    args = parser.parse_args(argv)
    if not args.write:
        print(config_table())
        print(pulumi_config_block())
        return 0
    README.write_text(readme_with_table(README.read_text()))
    PULUMI_YAML.write_text(pulumi_yaml_with_block(PULUMI_YAML.read_text()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
