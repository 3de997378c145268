"""The lab's storage pool with the base image, boot files and package repository, shared by all nodes."""

from __future__ import annotations

import pulumi
import pulumi_libvirt as libvirt

from lvslab.host import ImageFiles
from lvslab.model import LabFacts

FIXED_NAME = pulumi.ResourceOptions(delete_before_replace=True)  # libvirt names are unique: old one first


class Storage(pulumi.ComponentResource):
    """One directory pool per lab; nodes get copy-on-write overlays of `base`."""

    pool: libvirt.Pool
    base: libvirt.Volume
    kernel: libvirt.Volume | None
    initrd: libvirt.Volume | None
    repo: libvirt.Volume | None

    def __init__(self, name: str, facts: LabFacts, files: ImageFiles,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("lvslab:index:Storage", name, None, opts)
        self.pool = libvirt.Pool(f"{name}-pool", name=facts.pool, type="dir",
                                 target=libvirt.PoolTargetArgs(path=facts.pool_path),
                                 opts=pulumi.ResourceOptions.merge(FIXED_NAME, pulumi.ResourceOptions(parent=self)))

        def upload(suffix: str, source: str, fmt: str) -> libvirt.Volume:
            return libvirt.Volume(f"{name}-{suffix}", name=facts.volume(suffix), pool=self.pool.name, source=source,
                                  format=fmt, opts=pulumi.ResourceOptions.merge(FIXED_NAME, pulumi.ResourceOptions(
                                      parent=self, replacement_trigger=files.digest)))

        self.base = upload("base.qcow2", files.image, "qcow2")
        self.kernel = upload("vmlinuz", files.kernel, "raw") if files.kernel else None
        self.initrd = upload("initrd.img", files.initrd, "raw") if files.initrd else None
        self.repo = (upload("repo.iso", files.repo, "iso")
                     if files.repo and facts.cfg.package_source == "local" else None)
        self.register_outputs({"pool": self.pool.name, "path": facts.pool_path})
