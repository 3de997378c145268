"""The Pulumi program: read and validate the stack config, then declare the Lab (importable for tests)."""

from __future__ import annotations

import json

import pulumi

from components.lab import Lab
from lvslab import host
from lvslab.config import PROJECT, ConfigError, LabConfig, parse_config
from lvslab.host import ImageFiles
from lvslab.model import derive


def raw_config() -> tuple[dict[str, object], set[str], dict[str, object]]:
    """This project's config keys (without the prefix) with JSON values decoded, the secret ones, and the keys
    of every other namespace (checked for a misspelt project namespace)."""
    from pulumi.runtime import config as rc

    merged = {**rc.get_config_env(), **rc.CONFIG.get()}
    secret = set(rc.get_config_secret_keys_env()) | set(rc._SECRET_KEYS.get())
    raw: dict[str, object] = {}
    foreign: dict[str, object] = {}
    for full, value in merged.items():
        ns, _, key = full.partition(":")
        try:
            decoded = json.loads(value) if isinstance(value, str) else value
        except json.JSONDecodeError:
            decoded = value
        if ns == PROJECT:
            raw[key] = decoded
        else:
            foreign[full] = "<secret>" if full in secret else decoded
    return raw, {k.partition(":")[2] for k in secret if k.startswith(PROJECT + ":")}, foreign


def main() -> None:
    raw, secret_keys, foreign = raw_config()
    auth_pass = raw.get("authPass")
    try:
        cfg = parse_config(raw, pulumi.get_stack(), auth_pass=None if auth_pass is None else str(auth_pass),
                           auth_pass_is_secret="authPass" in secret_keys, foreign=foreign)
    except ConfigError as exc:
        raise SystemExit(str(exc)) from None

    try:
        files, domain_type, note = _host_facts(cfg)
    except host.HostError as exc:
        raise SystemExit(str(exc)) from None
    if note:
        pulumi.log.info(note)

    secret_pass = pulumi.Output.secret(str(auth_pass)) if auth_pass is not None else None
    facts = derive(cfg)
    lab = Lab(facts.prefix, facts, files, domain_type, secret_pass)
    for key, value in lab.outputs.items():
        pulumi.export(key, value)


def _host_facts(cfg: LabConfig) -> tuple[ImageFiles, str, str | None]:
    """The image files and the domain type (KVM probed) for this host."""
    if cfg.image.source == "local":
        image_dir = host.local_image_dir()
        files = ImageFiles(image=str(image_dir / "base.qcow2"), kernel=str(image_dir / "vmlinuz"),
                           initrd=str(image_dir / "initrd.img"), repo=str(image_dir / "repo.iso"),
                           digest=image_dir.name)
    else:  # a user's image: direct kernel boot with its kernel, or its own bootloader
        direct = cfg.image.boot_method == "kernel"
        files = ImageFiles(image=cfg.image.source, kernel=cfg.image.kernel if direct else None,
                           initrd=(cfg.image.initrd or None) if direct else None, repo=None, digest=cfg.image.source)
    domain_type, note = host.resolve_domain_type(cfg, files.kernel, files.initrd)
    return files, domain_type, note
