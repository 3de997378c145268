"""The thin libvirt layer: Pulumi dynamic resources for networks, pools, volumes, seed disks, domains.

Why dynamic providers: the pulumi-libvirt and pulumi-command plugins cannot be built here (the Go
module proxy refuses github.com/pulumi/pulumi-libvirt/provider and .../pulumi-command/provider at every
version), so lvs-lab talks to libvirt through `virsh` with XML it renders itself. Everything that knows
libvirt lives in this module: moving to another provider later replaces this file only.

Each resource is replaced (deleted first: names are fixed) when any input changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, ResourceProvider


class LibvirtError(RuntimeError):
    pass


def virsh(uri: str, *args: str, input_text: str | None = None, check: bool = True) -> str:
    """Run one virsh command against URI; raise LibvirtError with virsh's own message on failure."""
    proc = subprocess.run(["virsh", "-q", "-c", uri, *args], input=input_text, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise LibvirtError(f"virsh {' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def _with_xml_file(uri: str, verb: str, xml: str) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".xml") as f:
        f.write(xml)
        f.flush()
        return virsh(uri, verb, f.name)


_INFO = {"dom": "dominfo", "net": "net-info", "pool": "pool-info"}


def _exists(uri: str, kind: str, name: str) -> bool:
    return subprocess.run(["virsh", "-q", "-c", uri, _INFO[kind], name], capture_output=True).returncode == 0


_VERBS = {"net": ("net-define", "net-start", "net-undefine"), "dom": ("define", "start", "undefine")}
_KINDS = {"net": "network", "dom": "domain"}


def _define_and_start(uri: str, kind: str, name: str, xml: str) -> None:
    """Define from XML and start; a start failure undefines again, so nothing half-made is left."""
    define, start, undefine = _VERBS[kind]
    if _exists(uri, kind, name):
        raise LibvirtError(f"libvirt {_KINDS[kind]} {name} already exists (left over from another run?)")
    _with_xml_file(uri, define, xml)
    try:
        virsh(uri, start, name)
    except LibvirtError:
        virsh(uri, undefine, name, check=False)
        raise


class _ReplaceOnChange(ResourceProvider):
    """Any input change replaces the object; names are fixed, so the old one goes first."""

    outputs: tuple[str, ...] = ()  # computed by create(): never a reason to replace

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        keys = {k for k in set(olds) | set(news) if not k.startswith("__") and k not in self.outputs}
        changed = sorted(k for k in keys if olds.get(k) != news.get(k))
        return DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=True)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, props)


# --- network ---------------------------------------------------------------------------------------

class _NetworkProvider(_ReplaceOnChange):
    def create(self, props: dict[str, Any]) -> CreateResult:
        uri, name = props["uri"], props["name"]
        _define_and_start(uri, "net", name, props["xml"])
        return CreateResult(id_=name, outs=props)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        uri = props["uri"]
        virsh(uri, "net-destroy", id_, check=False)
        if _exists(uri, "net", id_):
            virsh(uri, "net-undefine", id_)


class Network(Resource):
    """A libvirt network (the lab's L2 bridge)."""

    name: pulumi.Output[str]

    def __init__(self, resource_name: str, uri: str, name: str, xml: str,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(_NetworkProvider(), resource_name, {"uri": uri, "name": name, "xml": xml}, opts)


# --- storage pool ----------------------------------------------------------------------------------

class _PoolProvider(_ReplaceOnChange):
    def create(self, props: dict[str, Any]) -> CreateResult:
        uri, name, path = props["uri"], props["name"], props["path"]
        if _exists(uri, "pool", name):
            raise LibvirtError(f"libvirt pool {name} already exists (left over from another run?)")
        virsh(uri, "pool-define-as", name, "dir", "--target", path)
        virsh(uri, "pool-build", name)
        virsh(uri, "pool-start", name)
        return CreateResult(id_=name, outs=props)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        uri = props["uri"]
        if _exists(uri, "pool", id_):
            virsh(uri, "pool-start", id_, check=False)  # an inactive pool (e.g. after a host restart)
            # Volumes are separate resources and normally gone by now.
            left = virsh(uri, "vol-list", id_, check=False).split()
            if left:
                pulumi.log.warn(f"pool {id_} still holds {left[::2]}; deleting them")
                for vol in left[::2]:
                    virsh(uri, "vol-delete", vol, "--pool", id_, check=False)
            virsh(uri, "pool-destroy", id_, check=False)
            shutil.rmtree(props["path"], ignore_errors=True)
            virsh(uri, "pool-undefine", id_)
        shutil.rmtree(props["path"], ignore_errors=True)


class StoragePool(Resource):
    """A directory pool holding every volume of one lab."""

    name: pulumi.Output[str]
    path: pulumi.Output[str]

    def __init__(self, resource_name: str, uri: str, name: str, path: str,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(_PoolProvider(), resource_name, {"uri": uri, "name": name, "path": path}, opts)


# --- volumes ---------------------------------------------------------------------------------------

def _vol_path(uri: str, pool: str, name: str) -> str:
    return virsh(uri, "vol-path", name, "--pool", pool).strip()


class _VolumeProvider(_ReplaceOnChange):
    """A volume uploaded from a local file, or a qcow2 copy-on-write overlay of another volume."""

    outputs = ("path",)

    def create(self, props: dict[str, Any]) -> CreateResult:
        uri, pool, name = props["uri"], props["pool"], props["name"]
        if props.get("source"):
            src = props["source"]
            fmt = props.get("format") or "raw"
            size = str(os.path.getsize(src))
            virsh(uri, "vol-create-as", pool, name, size, "--format", fmt)
            virsh(uri, "vol-upload", name, src, "--pool", pool)
        else:
            virsh(uri, "vol-create-as", pool, name, f"{int(props['size_mib'])}M", "--format", "qcow2",
                  "--backing-vol", props["backing_path"], "--backing-vol-format", "qcow2")
        outs = {**props, "path": _vol_path(uri, pool, name)}
        return CreateResult(id_=f"{pool}/{name}", outs=outs)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        virsh(props["uri"], "vol-delete", props["name"], "--pool", props["pool"], check=False)


class Volume(Resource):
    """Give `source` (a local file) to upload it, or `backing_path` + `size_mib` for an overlay."""

    path: pulumi.Output[str]

    def __init__(self, resource_name: str, uri: str, pool: pulumi.Input[str], name: str,
                 source: str | None = None, source_digest: str | None = None, fmt: str | None = None,
                 backing_path: pulumi.Input[str] | None = None, size_mib: int | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props = {"uri": uri, "pool": pool, "name": name, "source": source, "source_digest": source_digest,
                 "format": fmt, "backing_path": backing_path, "size_mib": size_mib, "path": None}
        super().__init__(_VolumeProvider(), resource_name, props, opts)


# --- cloud-init seed disk --------------------------------------------------------------------------

def seed_digest(user_data: str, meta_data: str, network_config: str) -> str:
    """Content hash: part of the seed volume's name, so changed user-data means a new volume."""
    blob = "\0".join((user_data, meta_data, network_config)).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


class _SeedProvider(_ReplaceOnChange):
    outputs = ("path",)

    def create(self, props: dict[str, Any]) -> CreateResult:
        uri, pool, name = props["uri"], props["pool"], props["name"]
        with tempfile.TemporaryDirectory() as tmp:
            for fname, key in (("user-data", "user_data"), ("meta-data", "meta_data"),
                               ("network-config", "network_config")):
                Path(tmp, fname).write_text(props[key])
            iso = Path(tmp, "seed.iso")
            subprocess.run(["genisoimage", "-quiet", "-output", str(iso), "-volid", "cidata", "-joliet",
                            "-rock", *(str(Path(tmp, f)) for f in ("user-data", "meta-data", "network-config"))],
                           check=True, capture_output=True)
            virsh(uri, "vol-create-as", pool, name, str(iso.stat().st_size), "--format", "raw")
            virsh(uri, "vol-upload", name, str(iso), "--pool", pool)
        return CreateResult(id_=f"{pool}/{name}", outs={**props, "path": _vol_path(uri, pool, name)})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        virsh(props["uri"], "vol-delete", props["name"], "--pool", props["pool"], check=False)


class SeedDisk(Resource):
    """NoCloud seed (ISO9660, label cidata) built with genisoimage on the machine running Pulumi."""

    path: pulumi.Output[str]

    def __init__(self, resource_name: str, uri: str, pool: pulumi.Input[str], name: str,
                 user_data: pulumi.Input[str], meta_data: str, network_config: str,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props = {"uri": uri, "pool": pool, "name": name, "user_data": user_data, "meta_data": meta_data,
                 "network_config": network_config, "path": None}
        super().__init__(_SeedProvider(), resource_name, props, opts)


# --- domain ----------------------------------------------------------------------------------------

class _DomainProvider(_ReplaceOnChange):
    outputs = ("started_at",)

    def create(self, props: dict[str, Any]) -> CreateResult:
        uri, name = props["uri"], props["name"]
        Path(props["console_log"]).parent.mkdir(parents=True, exist_ok=True)
        Path(props["console_log"]).unlink(missing_ok=True)
        _define_and_start(uri, "dom", name, props["xml"])
        return CreateResult(id_=name, outs={**props, "started_at": time.time()})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        uri = props["uri"]
        virsh(uri, "destroy", id_, check=False)
        if _exists(uri, "dom", id_):
            virsh(uri, "undefine", id_)
        log = Path(props["console_log"])
        log.unlink(missing_ok=True)
        if log.parent.exists() and not any(log.parent.iterdir()):
            log.parent.rmdir()


class Domain(Resource):
    """A libvirt domain defined from rendered XML and started."""

    name: pulumi.Output[str]
    started_at: pulumi.Output[float]

    def __init__(self, resource_name: str, uri: str, name: str, xml: pulumi.Input[str], console_log: str,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props = {"uri": uri, "name": name, "xml": xml, "console_log": console_log, "started_at": None}
        super().__init__(_DomainProvider(), resource_name, props, opts)


# --- inventory (leak checks) -----------------------------------------------------------------------

def objects_with_prefix(uri: str, prefix: str) -> dict[str, list[str]]:
    """Every libvirt domain, network, pool and volume whose name starts with prefix."""
    found: dict[str, list[str]] = {
        "domains": [n for n in virsh(uri, "list", "--all", "--name").split() if n.startswith(prefix)],
        "networks": [n for n in virsh(uri, "net-list", "--all", "--name").split() if n.startswith(prefix)],
        "pools": [n for n in virsh(uri, "pool-list", "--all", "--name").split() if n.startswith(prefix)],
        "volumes": [],
    }
    for pool in virsh(uri, "pool-list", "--name").split():
        for line in virsh(uri, "vol-list", pool, check=False).splitlines():
            parts = line.split()
            if parts and (parts[0].startswith(prefix) or pool.startswith(prefix)):
                found["volumes"].append(f"{pool}/{parts[0]}")
    return found
