"""The lab's storage pool with the base image, boot files and package repository, shared by all nodes."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pulumi

from lvslab.config import LabConfig
from providers import libvirt


@dataclass(frozen=True)
class ImageFiles:
    """Host files the pool is filled from (the built image, or a user's cloud image)."""

    image: str
    kernel: str | None
    initrd: str | None
    repo: str | None
    digest: str


class BaseImage(pulumi.ComponentResource):
    """One pool per lab; nodes get copy-on-write overlays of `base_path`."""

    pool_name: pulumi.Output[str]
    base_path: pulumi.Output[str]

    def __init__(self, name: str, cfg: LabConfig, files: ImageFiles, pool_dir: str,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("lvslab:index:BaseImage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        uri = cfg.libvirt_uri
        self.pool = libvirt.StoragePool(f"{name}-pool", uri=uri, name=f"{cfg.prefix}-pool",
                                        path=os.path.join(pool_dir, cfg.prefix), opts=child)
        in_pool = pulumi.ResourceOptions(parent=self, depends_on=[self.pool])
        self.pool_name = self.pool.name

        def upload(suffix: str, source: str, fmt: str) -> libvirt.Volume:
            return libvirt.Volume(f"{name}-{suffix}", uri=uri, pool=self.pool.name, name=f"{cfg.prefix}-{suffix}",
                                  source=source, source_digest=files.digest, fmt=fmt, opts=in_pool)

        self.base = upload("base.qcow2", files.image, "qcow2")
        self.base_path = self.base.path
        self.kernel_path: pulumi.Output[str] | None = None
        self.initrd_path: pulumi.Output[str] | None = None
        self.repo_path: pulumi.Output[str] | None = None
        if files.kernel:
            self.kernel_path = upload("vmlinuz", files.kernel, "raw").path
        if files.initrd:
            self.initrd_path = upload("initrd.img", files.initrd, "raw").path
        if files.repo and cfg.package_source == "local":
            self.repo_path = upload("repo.iso", files.repo, "raw").path
        self.register_outputs({"pool": self.pool_name, "basePath": self.base_path})
