"""lvs-lab's Pulumi program, its composition root: read and validate the stack config, read the host facts
(image files, domain type, the hypervisor's CPUs and access), derive the lab's facts and declare the `Lab`
(components/). Tests load this file under another name and call main() with Pulumi's mocks."""

from __future__ import annotations

import json

import pulumi

from components.connection import HypervisorAccess
from components.lab import Lab, LabArgs
from lvslab import host
from lvslab.config import PROJECT, ConfigError, LabConfig, parse_config
from lvslab.host import ImageFiles
from lvslab.hypervisor import Hypervisor, parse_uri, pinned_host_key
from lvslab.model import boots_at_once, derive


def raw_config() -> tuple[dict[str, object], set[str], dict[str, object]]:
    """This project's config keys (without the prefix) with JSON values decoded, the secret ones, and the keys
    of every other namespace (checked for a misspelt project namespace)."""
    from pulumi.runtime import config as rc

    merged = {**rc.get_config_env(), **rc.CONFIG.get()}
    secret = set(rc.get_config_secret_keys_env()) | {k for k in merged if rc.is_config_secret(k)}
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

    hv = parse_uri(cfg.libvirt_uri)  # validated with the config
    try:
        files, domain_type, note = _host_facts(cfg, hv)
        access = _hypervisor_access(hv) if hv.remote else None
        # vm.bootsAtOnce auto under TCG: the hypervisor's cores (asked only then: over SSH when remote)
        cpus = host.hypervisor_cpus(hv) if cfg.vm.boots_at_once == "auto" and domain_type == "qemu" else 0
    except host.HostError as exc:
        raise SystemExit(str(exc)) from None
    if note:
        pulumi.log.info(note)

    secret_pass = pulumi.Output.secret(str(auth_pass)) if auth_pass is not None else None
    facts = derive(cfg)
    at_once = boots_at_once(cfg.vm.boots_at_once, domain_type, cpus, cfg.vm.vcpus, len(facts.nodes))
    lab = Lab(facts.prefix, LabArgs(facts, files, domain_type, secret_pass, access, boots_at_once=at_once))
    for key, value in lab.outputs.items():
        pulumi.export(key, value)


def _hypervisor_access(hv: Hypervisor) -> HypervisorAccess:
    """The remote hypervisor's SSH key (a secret from here on) and its pinned host key."""
    key = host.read_key_file(hv.keyfile, "libvirtUri", "keyfile")
    pinned = None
    if hv.known_hosts:
        known = host.read_key_file(hv.known_hosts, "libvirtUri", "knownhosts")
        pinned = pinned_host_key(known, hv)
        if pinned is None:
            raise host.HostError(f"lvs-lab:libvirtUri: knownhosts {hv.known_hosts} has no key for {hv.host} "
                                 f"(port {hv.port}): add the hypervisor's host key, or leave knownhosts out")
    return HypervisorAccess(hv=hv, key=pulumi.Output.secret(key), host_key=pinned)


def _host_facts(cfg: LabConfig, hv: Hypervisor) -> tuple[ImageFiles, str, str | None]:
    """The image files and the domain type (KVM probed on a local hypervisor) for this host."""
    if cfg.image.source == "local":
        image_dir = host.local_image_dir()
        files = ImageFiles(image=str(image_dir / "base.qcow2"), kernel=str(image_dir / "vmlinuz"),
                           initrd=str(image_dir / "initrd.img"), repo=str(image_dir / "repo.iso"),
                           digest=image_dir.name)
    else:  # a user's image: direct kernel boot with its kernel, or its own bootloader
        direct = cfg.image.boot_method == "kernel"
        files = ImageFiles(image=cfg.image.source, kernel=cfg.image.kernel if direct else None,
                           initrd=(cfg.image.initrd or None) if direct else None, repo=None, digest=cfg.image.source)
    domain_type, note = host.resolve_domain_type(cfg, files.kernel, files.initrd, remote=hv.remote)
    return files, domain_type, note


if __name__ == "__main__":  # the Pulumi language host runs this file as __main__
    main()
