"""The engine: one async facade over every HYPR service.

Front ends never import the services directly; they go through `HyprClient`
(client.py), which embeds this engine or talks to `hyprd`.

Locking: `hyprd` holds the data directory's lock exclusively; embedded engines
hold it shared, so several CLI invocations can work at once (they coordinate
through SQLite transactions and per-VM operation locks) while a daemon and an
embedded engine never run against the same data directory.
"""

from __future__ import annotations

import fcntl
import os

from hypr_engine import __version__
from hypr_engine.errors import Locked
from hypr_engine.images import ImageService
from hypr_engine.models import ImageDiskUsage, ImagePruneReport
from hypr_engine.paths import Layout
from hypr_engine.state.db import Database
from hypr_engine.vmm import probe
from hypr_engine.vms import VmService
from hypr_engine.system import SystemService
from hypr_engine.volumes import VolumeService


class Engine:
    def __init__(self, layout: Layout, db: Database, lock_fd: int, mode: str) -> None:
        self.layout = layout
        self.db = db
        self._lock_fd = lock_fd
        self.mode = mode
        self.images = ImageService(db, layout)
        self.vms = VmService(db, layout, self.images)
        self.volumes = VolumeService(db, layout)
        from hypr_engine.net.networks import NetworkService

        self.networks = NetworkService(db, layout, self.vms)
        self.system = SystemService(db, layout, self.images, self.vms, self.volumes, self.networks)

    @classmethod
    async def open(cls, layout: Layout | None = None, *, exclusive: bool = False) -> "Engine":
        layout = layout or Layout.default()
        layout.ensure()
        fd = os.open(layout.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            who = "another engine is using" if exclusive else "hyprd holds"
            raise Locked(f"{who} the data directory {layout.data}") from None
        try:
            db = await Database.open(layout.db)
        except BaseException:
            os.close(fd)
            raise
        return cls(layout, db, fd, "daemon" if exclusive else "embedded")

    @property
    def registry(self):
        """Pull, push, login, logout (hypr_engine/oci/registry), imported on first use."""
        if getattr(self, "_registry", None) is None:
            from hypr_engine.oci.registry.service import RegistryService

            self._registry = RegistryService(self.images, self.layout.data)
        return self._registry

    async def close(self) -> None:
        await self.db.close()
        os.close(self._lock_fd)

    async def system_info(self) -> dict:
        accel = probe.probe_accelerator()
        info: dict = {
            "version": __version__,
            "mode": self.mode,
            "data_dir": str(self.layout.data),
            "runtime_dir": str(self.layout.runtime),
            "accelerator": {"name": accel.value, "reason": accel.reason},
        }
        try:
            art = probe.find_guest_artifacts()
            info["kernel"] = {"path": str(art.kernel), "kind": art.kernel_kind, "reason": art.kernel_reason}
            info["initramfs"] = {"path": str(art.initramfs), "reason": art.initramfs_reason}
        except Exception as exc:  # reported, not raised: info must work on a half-set-up machine
            info["kernel"] = {"error": str(exc)}
        try:
            info["qemu"] = probe.find_qemu()
        except Exception as exc:
            info["qemu"] = f"missing: {exc}"
        vms = await self.vms.list()
        info["vms"] = {"total": len(vms), "running": sum(v.state == "running" for v in vms)}
        info["images"] = len(await self.images.list())
        info["networking"] = await self.networks.host_status()
        return info

    # --- image store (called by `system prune` and `system df` too) -------------------------

    async def prune_images(self, all: bool = False) -> ImagePruneReport:
        """Dangling images (no tag, no VM); with `all`, every image no VM uses. Blobs and
        root filesystems still needed by a remaining image or a VM survive."""
        return await self.images.prune(all=all)

    async def image_disk_usage(self) -> ImageDiskUsage:
        """Bytes of the content store and the squashfs cache, and what `prune_images(all=True)` would free."""
        return await self.images.disk_usage()
