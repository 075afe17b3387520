"""`system df` and `system prune`: where the data directory's space goes, and getting it back.

Every figure is *allocated* host space (st_blocks, as `du`), not apparent size: a
volume or writable layer is a sparse disk image whose apparent size (8 GiB by
default) says nothing about what it takes. `df -v` shows both for volumes.

Images are pruned by the image store (`ImageService.prune`: mark and sweep, so a
blob or squashfs another image needs survives). Networks: user networks no VM
is attached to (`NetworkService.prune`).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hypr_engine.errors import HyprError
from hypr_engine.images import ImageService
from hypr_engine.oci.rootfs import ROOTFS_SUFFIX
from hypr_engine.paths import Layout
from hypr_engine.state.db import Database
from hypr_engine.state.machine import ACTIVE_STATES
from hypr_engine.vms import VmService
from hypr_engine.volumes import VolumeService, allocated_bytes

if TYPE_CHECKING:
    from hypr_engine.net.networks import NetworkService

LOG_NAMES = ("log", "console.log", "supervisor.log")   # plus rotated log.N
STALE_TMP_SECONDS = 3600.0


def _vm_files(vm_dir: Path) -> tuple[int, int]:
    """(writable layer and other VM files, logs) allocated bytes of one VM directory."""
    layer = logs = 0
    if not vm_dir.is_dir():
        return 0, 0
    for entry in vm_dir.iterdir():
        size = allocated_bytes(entry)
        if entry.name in LOG_NAMES or entry.name.startswith("log."):
            logs += size
        else:
            layer += size
    return layer, logs


class SystemService:
    def __init__(self, db: Database, layout: Layout, images: ImageService, vms: VmService,
                 volumes: VolumeService, networks: "NetworkService") -> None:
        self._db = db
        self._layout = layout
        self._images = images
        self._vms = vms
        self._volumes = volumes
        self._networks = networks

    # --- df -------------------------------------------------------------------------

    async def df(self) -> dict[str, Any]:
        """Rows Images, VMs, Volumes, Cache, Logs: count, active, size, reclaimable (bytes)
        and the items behind each (for -v)."""
        vms = await self._vms.list(all=True)
        active_states = {s.value for s in ACTIVE_STATES}
        used_images = {v.image_id for v in vms}
        images = await self._images.list()
        image_items = [{"id": i.id, "tags": i.tags, "size": i.size, "vms": sum(v.image_id == i.id for v in vms)}
                       for i in images]
        blobs = allocated_bytes(self._layout.blobs)
        unused_image_bytes = sum(i.size for i in images if i.id not in used_images)
        vm_items, vm_logs = [], 0
        for v in vms:
            layer, logs = _vm_files(self._layout.vm_dir(v.id))
            vm_logs += logs
            vm_items.append({"id": v.id, "name": v.name, "state": v.state, "size": layer, "logs": logs,
                             "image": v.image})
        volumes = await self._volumes.list()
        cache_items = [{"path": str(p), "size": allocated_bytes(p)}
                       for p in (self._layout.rootfs_cache, self._layout.tmp) if p.exists()]
        cache_size = sum(c["size"] for c in cache_items)
        return {
            "figures": "allocated bytes on the host (sparse disk images count what they really take)",
            "images": {"count": len(images), "active": len([i for i in images if i.id in used_images]),
                       "size": blobs, "reclaimable": min(blobs, unused_image_bytes), "items": image_items},
            "vms": {"count": len(vms), "active": sum(v.state in active_states for v in vms),
                    "size": sum(i["size"] for i in vm_items),
                    "reclaimable": sum(i["size"] for i in vm_items if i["state"] not in active_states),
                    "items": vm_items},
            "volumes": {"count": len(volumes), "active": sum(bool(v.used_by) for v in volumes),
                        "size": sum(v.allocated_bytes for v in volumes),
                        "reclaimable": sum(v.allocated_bytes for v in volumes if not v.used_by),
                        "items": [{"name": v.name, "size": v.allocated_bytes, "apparent_size": v.size_bytes,
                                   "used_by": v.used_by, "anonymous": v.anonymous} for v in volumes]},
            "cache": {"count": len(cache_items), "active": 0, "size": cache_size,
                      "reclaimable": cache_size, "items": cache_items},
            "logs": {"count": len(vms), "active": sum(v.state in active_states for v in vms), "size": vm_logs,
                     "reclaimable": sum(i["logs"] for i in vm_items if i["state"] not in active_states),
                     "items": [{"name": i["name"], "size": i["logs"]} for i in vm_items]},
        }

    # --- prune ------------------------------------------------------------------------

    async def prune(self, *, all: bool = False, volumes: bool = False) -> dict[str, Any]:
        """Docker's `system prune`: stopped VMs, dangling images (every unused one with all),
        unused networks, caches; with volumes, every volume no VM uses."""
        report: dict[str, Any] = {"vms": [], "images": [], "volumes": [], "networks": [], "caches": [],
                                  "reclaimed": 0, "notes": []}
        active_states = {s.value for s in ACTIVE_STATES}
        for v in await self._vms.list(all=True):
            if v.state in active_states:
                continue
            layer, logs = _vm_files(self._layout.vm_dir(v.id))
            await self._vms.remove(v.id)
            report["vms"].append(v.id)
            report["reclaimed"] += layer + logs
        removed, reclaimed = await self.prune_images(all=all)
        report["images"], report["reclaimed"] = removed, report["reclaimed"] + reclaimed
        report["networks"] = await self.prune_networks()
        if volumes:
            removed, reclaimed = await self._volumes.prune(all=True)
            report["volumes"], report["reclaimed"] = removed, report["reclaimed"] + reclaimed
        caches, reclaimed = await self.prune_caches()
        report["caches"], report["reclaimed"] = caches, report["reclaimed"] + reclaimed
        return report

    async def prune_images(self, *, all: bool = False) -> tuple[list[str], int]:
        """Dangling images (every image no VM uses, with all): removed ids and bytes reclaimed."""
        report = await self._images.prune(all=all)
        return report.deleted, report.bytes_reclaimed

    async def prune_networks(self) -> list[str]:
        """User networks no VM is attached to (`network prune`); `default` always stays."""
        return await self._networks.prune()

    async def prune_caches(self) -> tuple[list[str], int]:
        """Root filesystems no active VM has open (rebuilt on the next start that needs one)
        and stale temporary files."""
        active = [v for v in await self._vms.list(all=True) if v.state in {s.value for s in ACTIVE_STATES}]
        in_use: set[str] = set()
        for v in active:   # the root filesystem each running VM's QEMU has open
            try:
                image = await self._images.get(v.image_id)
            except HyprError:  # cannot tell what a running VM uses: keep every cache entry
                return [], 0
            in_use.add(str(self._images.rootfs.path_for(image.config.get("rootfs", {}).get("diff_ids", []))))
        removed, reclaimed = [], 0
        cache = self._layout.rootfs_cache
        for entry in sorted(cache.iterdir()) if cache.is_dir() else []:
            # Only finished root filesystems: builds in progress and their locks stay.
            if str(entry) in in_use or entry.name.startswith(".") or not entry.name.endswith(ROOTFS_SUFFIX):
                continue
            size = allocated_bytes(entry)
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(str(entry))
            reclaimed += size
        tmp = self._layout.tmp
        for entry in tmp.iterdir() if tmp.is_dir() else []:
            try:
                if time.time() - entry.lstat().st_mtime < STALE_TMP_SECONDS:
                    continue
            except OSError:
                continue
            reclaimed += allocated_bytes(entry)
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
            removed.append(str(entry))
        return removed, reclaimed
