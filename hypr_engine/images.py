"""Image service: load, import, list, resolve, tag, remove, prune and save images.

Blobs live in the content store; the images table records what each image is
(config, layers, tags). Root filesystems are built lazily, on first run, by
the rootfs builder and cached by chain ID.

Reclaiming space is mark and sweep, not stored counters: the root set is every image
row, and an image row stays while any VM (running or not) names it, so a blob shared
by two images, or a squashfs shared by two images with the same layer stack, lives as
long as one of them does, and a VM's image and root filesystem are never reclaimed
under it. A sweep recomputes the references from the rows each time, so a crash
between deleting a row and deleting its blobs leaves only garbage for the next sweep,
never a dangling count. (`ContentStore.adding()` keeps a sweep away from blobs a
concurrent load has published but not yet recorded.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator

from hypr_engine.crash import crash_point
from hypr_engine.errors import Conflict, InvalidArgument, NotFound
from hypr_engine.models import ImageDiskUsage, ImageHistoryEntry, ImageInfo, ImagePruneReport
from hypr_engine.oci.content import ContentStore

if TYPE_CHECKING:
    from hypr_engine.oci.archive import LoadedImage
from hypr_engine.oci.reference import parse_reference
from hypr_engine.paths import Layout
from hypr_engine.state.db import Database

HEX_PREFIX = re.compile(r"^(sha256:)?[0-9a-f]{4,64}$")


class ImageService:
    def __init__(self, db: Database, layout: Layout) -> None:
        self._db = db
        self._layout = layout
        self.store = ContentStore(layout.blobs)
        self._rootfs = None

    @property
    def rootfs(self):
        """The squashfs builder, imported on first use: `ps` and `exec` never need it."""
        if self._rootfs is None:
            from hypr_engine.oci.rootfs import RootfsBuilder

            self._rootfs = RootfsBuilder(self._layout.rootfs_cache, self.store)
        return self._rootfs

    async def load(self, archive: Path) -> list[ImageInfo]:
        if not archive.exists():
            raise NotFound(f"archive {archive} does not exist")
        from hypr_engine.oci.archive import load_archive

        async with self.adding():
            loaded = await asyncio.to_thread(load_archive, archive, self.store)
            crash_point("load.after_blobs")
            return [await self._record(img) for img in loaded]

    async def import_rootfs(self, tarball: Path, ref: str | None) -> ImageInfo:
        if not tarball.exists():
            raise NotFound(f"tarball {tarball} does not exist")
        tag = parse_reference(ref).familiar() if ref else None
        from hypr_engine.oci.archive import import_rootfs

        async with self.adding():
            loaded = await asyncio.to_thread(import_rootfs, tarball, self.store)
            if ref:
                loaded.repo_tags = [str(parse_reference(ref))]
            del tag
            return await self._record(loaded)

    @contextlib.asynccontextmanager
    async def adding(self) -> AsyncIterator[None]:
        """`store.adding()` taken in a worker thread: waiting for a sweep must not block the
        event loop (the sweep itself reads the image rows through it)."""
        guard = self.store.adding()
        await asyncio.to_thread(guard.__enter__)
        try:
            yield
        finally:
            guard.__exit__(None, None, None)

    async def _record(self, img: "LoadedImage") -> ImageInfo:
        layers = [{"digest": d.digest, "media_type": d.media_type, "size": d.size} for d in img.layers]
        statements: list[tuple[str, tuple]] = [(
            "INSERT INTO images (id, manifest_digest, config_json, layers_json, diff_ids_json, size, created, added_at) "
            "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(id) DO NOTHING",
            (
                img.config_digest,
                img.manifest_digest,
                self.store.path(img.config_digest).read_text(),
                json.dumps(layers),
                json.dumps(list(img.diff_ids)),
                sum(d.size for d in img.layers),
                img.config.created,
                time.time(),
            ),
        )]
        for tag in img.repo_tags:
            statements.append((
                "INSERT INTO image_tags (ref, image_id) VALUES (?, ?) "
                "ON CONFLICT(ref) DO UPDATE SET image_id=excluded.image_id",
                (str(parse_reference(tag)), img.config_digest),
            ))
        await self._db.transaction(statements)
        return await self.get(img.config_digest)

    async def list(self) -> list[ImageInfo]:
        rows = await self._db.fetchall("SELECT * FROM images ORDER BY added_at DESC")
        tags = await self._tags()
        return [self._info(r, tags.get(r["id"], [])) for r in rows]

    async def _tags(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for row in await self._db.fetchall("SELECT ref, image_id FROM image_tags ORDER BY ref"):
            out.setdefault(row["image_id"], []).append(parse_reference(row["ref"]).familiar())
        return out

    def _info(self, row, tags: list[str]) -> ImageInfo:
        return ImageInfo(
            id=row["id"],
            tags=tags,
            size=row["size"],
            created=row["created"],
            added_at=row["added_at"],
            config=json.loads(row["config_json"]),
            layers=json.loads(row["layers_json"]),
            manifest_digest=row["manifest_digest"],
        )

    async def get(self, image_id: str) -> ImageInfo:
        row = await self._db.fetchone("SELECT * FROM images WHERE id=?", (image_id,))
        if row is None:
            raise NotFound(f"no such image: {image_id}")
        tags = await self._tags()
        return self._info(row, tags.get(image_id, []))

    async def resolve(self, name: str) -> tuple[ImageInfo, str]:
        """An image by reference or ID prefix; returns it and the normalised reference."""
        name = name.strip()
        if not name:
            raise InvalidArgument("image name is empty")
        if HEX_PREFIX.match(name):
            image = await self._by_id_prefix(name)
            if image:
                return image, image.id
        ref = parse_reference(name)
        row = await self._db.fetchone("SELECT image_id FROM image_tags WHERE ref=?", (str(ref),))
        if row is None:
            raise NotFound(f"unable to find image '{name}' locally (load it with `hypr load -i FILE`)")
        return await self.get(row["image_id"]), str(ref)

    async def _by_id_prefix(self, prefix: str) -> ImageInfo | None:
        hexpart = prefix.split(":", 1)[-1]
        rows = await self._db.fetchall("SELECT id FROM images WHERE id LIKE ?", (f"sha256:{hexpart}%",))
        if len(rows) > 1:
            raise InvalidArgument(f"image ID prefix {prefix!r} is ambiguous ({len(rows)} images match)")
        return await self.get(rows[0]["id"]) if rows else None

    async def rootfs_for(self, image: ImageInfo) -> Path:
        from hypr_engine.oci.descriptor import Descriptor

        layers = [Descriptor(media_type=l["media_type"], digest=l["digest"], size=l["size"]) for l in image.layers]
        diff_ids = image.config.get("rootfs", {}).get("diff_ids", [])
        return await asyncio.to_thread(self.rootfs.build, layers, diff_ids)

    # --- tags and removal (Docker's rules) ----------------------------------------------------

    async def tag(self, source: str, target: str) -> str:
        """Name the image `source` resolves to `target` too (moving `target` if it named another)."""
        ref = parse_reference(target)  # malformed: InvalidArgument before anything changes
        if ref.digest:
            raise InvalidArgument(f"refusing to create a tag with a digest reference: {target}")
        image, _ = await self.resolve(source)
        await self._db.execute(
            "INSERT INTO image_tags (ref, image_id) VALUES (?, ?) ON CONFLICT(ref) DO UPDATE SET image_id=excluded.image_id",
            (str(ref), image.id),
        )
        return ref.familiar()

    async def users(self) -> dict[str, list[str]]:
        """Image ID -> names of the VMs (any state) created from it."""
        out: dict[str, list[str]] = {}
        for row in await self._db.fetchall("SELECT image_id, name FROM vms ORDER BY created_at"):
            out.setdefault(row["image_id"], []).append(row["name"])
        return out

    async def remove(self, name: str, *, force: bool) -> list[str]:
        """Untag or delete, as `docker rmi`; returns Docker's lines ("Untagged: ...", "Deleted: ...").

        - A tag of an image that has other tags: only that tag goes, even if VMs use the image.
        - An image ID with several tags needs `force`, which removes them all.
        - An image a VM uses (any state) is refused without `force`; with it, its tags go
          and the image stays untagged (`<none>`) while a VM needs it, so the VM can still
          start and nothing under a running VM is reclaimed. `image prune` takes it once
          the VMs are gone.
        """
        image, ref = await self.resolve(name)
        tags = [r["ref"] for r in await self._db.fetchall("SELECT ref FROM image_tags WHERE image_id=?", (image.id,))]
        by_tag = ref != image.id
        if by_tag and len(tags) > 1:
            await self._db.execute("DELETE FROM image_tags WHERE ref=?", (ref,))
            return [f"Untagged: {parse_reference(ref).familiar()}"]
        if not by_tag and len(tags) > 1 and not force:
            raise Conflict(f"unable to delete {image.short_id} (must be forced): image is referenced in "
                           f"{len(tags)} tags ({', '.join(parse_reference(t).familiar() for t in tags)})")
        vms = (await self.users()).get(image.id, [])
        if vms and not force:
            what = parse_reference(ref).familiar() if by_tag else image.short_id
            more = f" and {len(vms) - 1} more" if len(vms) > 1 else ""
            raise Conflict(f"unable to remove image {what}: it is used by a VM ({vms[0]}{more}); "
                           "remove the VM first, or use -f to untag it")
        untagged = [f"Untagged: {parse_reference(t).familiar()}" for t in tags]
        # The row goes only if no VM names it, checked in the same transaction as the delete.
        await self._db.transaction([
            ("DELETE FROM image_tags WHERE image_id=?", (image.id,)),
            ("DELETE FROM images WHERE id=? AND NOT EXISTS (SELECT 1 FROM vms WHERE vms.image_id=images.id)",
             (image.id,)),
        ])
        if await self._db.fetchone("SELECT 1 FROM images WHERE id=?", (image.id,)):
            return untagged  # kept, untagged, for the VMs that use it
        await self._collect_blobs()
        return untagged + [f"Deleted: {image.id}"]

    async def prune(self, *, all: bool = False) -> ImagePruneReport:
        """Delete dangling images (no tag, no VM); with `all`, every image no VM uses."""
        tags = await self._tags()
        used = await self.users()
        doomed = [
            row["id"] for row in await self._db.fetchall("SELECT id FROM images ORDER BY added_at")
            if row["id"] not in used and (all or not tags.get(row["id"]))
        ]
        deleted: list[str] = []
        untagged: list[str] = []
        for image_id in doomed:
            statements = [
                ("DELETE FROM image_tags WHERE image_id=? AND NOT EXISTS (SELECT 1 FROM vms WHERE vms.image_id=?)",
                 (image_id, image_id)),
                ("DELETE FROM images WHERE id=? AND NOT EXISTS (SELECT 1 FROM vms WHERE vms.image_id=images.id)",
                 (image_id,)),
            ]
            await self._db.transaction(statements)
            if await self._db.fetchone("SELECT 1 FROM images WHERE id=?", (image_id,)) is None:
                deleted.append(image_id)
                untagged += tags.get(image_id, [])
        reclaimed = await self._collect_blobs() if deleted else 0
        return ImagePruneReport(deleted=deleted, untagged=untagged, bytes_reclaimed=reclaimed)

    # --- what the store holds ----------------------------------------------------------------

    async def _roots(self) -> tuple[set[str], list[list[str]]]:
        """Blob digests and layer stacks (diff_id lists) that image rows name."""
        keep: set[str] = set()
        chains: list[list[str]] = []
        for row in await self._db.fetchall("SELECT id, manifest_digest, layers_json, diff_ids_json FROM images"):
            keep.add(row["id"])
            keep.add(row["manifest_digest"])
            keep.update(l["digest"] for l in json.loads(row["layers_json"]))
            chains.append(json.loads(row["diff_ids_json"]))
        return keep, chains

    async def _collect_blobs(self) -> int:
        """Delete blobs and root filesystems no remaining image refers to; returns the bytes freed."""

        def sweep() -> int:
            with self.store.sweeping() as held:
                if not held:
                    return 0  # a long load holds the store; the next sweep takes what is left
                # The roots are read under the lock: a load that finished meanwhile is in them.
                keep, chains = asyncio.run_coroutine_threadsafe(self._roots(), loop).result()
                freed = 0
                for digest in list(self.store.digests()):
                    if digest not in keep:
                        freed += _size(self.store.blob_path(digest))
                        self.store.delete(digest)
                sizes = {p.name: _size(p) for p in self.rootfs.cache_dir.glob("*.squashfs")}
                freed += sum(sizes.get(name, 0) for name in self.rootfs.prune(keep_chains=chains))
                return freed

        loop = asyncio.get_running_loop()
        return await asyncio.to_thread(sweep)

    async def disk_usage(self) -> ImageDiskUsage:
        """Bytes of blobs and cached root filesystems, and what `image prune -a` would free."""
        rows = await self._db.fetchall("SELECT id, manifest_digest, layers_json, diff_ids_json FROM images")
        used = await self.users()

        def measure() -> ImageDiskUsage:
            blob_sizes = {d: _size(self.store.blob_path(d)) for d in self.store.digests()}
            rootfs_sizes = {p.name: _size(p) for p in self.rootfs.cache_dir.glob("*.squashfs")}
            kept_blobs: set[str] = set()
            kept_rootfs: set[str] = set()
            for row in rows:
                if row["id"] in used:
                    kept_blobs.update([row["id"], row["manifest_digest"]])
                    kept_blobs.update(l["digest"] for l in json.loads(row["layers_json"]))
                    kept_rootfs.add(self.rootfs.path_for(json.loads(row["diff_ids_json"])).name)
            reclaimable = sum(n for d, n in blob_sizes.items() if d not in kept_blobs)
            reclaimable += sum(n for f, n in rootfs_sizes.items() if f not in kept_rootfs)
            return ImageDiskUsage(
                images=len(rows), active=sum(1 for r in rows if r["id"] in used),
                blobs_bytes=sum(blob_sizes.values()), rootfs_bytes=sum(rootfs_sizes.values()),
                reclaimable_bytes=reclaimable,
            )

        return await asyncio.to_thread(measure)

    async def history(self, name: str) -> list[ImageHistoryEntry]:
        """The config's history, newest first, each non-empty entry with the size of its layer."""
        image, _ = await self.resolve(name)
        layers = list(image.layers)
        history = image.config.get("history") or [{} for _ in layers]  # Docker invents one per layer
        entries: list[ImageHistoryEntry] = []
        layer_index = 0
        for item in history:
            empty = bool(item.get("empty_layer"))
            layer = None if empty or layer_index >= len(layers) else layers[layer_index]
            if not empty:
                layer_index += 1
            entries.append(ImageHistoryEntry(
                id="<missing>", created=item.get("created"), created_by=item.get("created_by", ""),
                size=layer["size"] if layer else 0, comment=item.get("comment", ""), empty_layer=layer is None,
                layer_digest=layer["digest"] if layer else "",
            ))
        entries.reverse()
        if entries:
            entries[0].id = image.id
        return entries

    # --- save (docker-archive) ------------------------------------------------------------

    async def save(self, names: list[str], output: Path) -> list[str]:
        """Write the images as one docker-archive (`docker save`); returns the image IDs written.

        Every name is resolved and the destination checked before anything is written; the
        archive appears under its name only when complete.
        """
        if not names:
            raise InvalidArgument("save needs at least one image")
        output = Path(output)
        _check_writable_destination(output)
        from hypr_engine.oci.save import SavedImage, save_docker_archive

        picked: dict[str, SavedImage] = {}
        for name in names:
            image, ref = await self.resolve(name)
            saved = picked.setdefault(image.id, SavedImage(
                config=self.store.path(image.id),
                layers=[l["digest"] for l in image.layers],
                diff_ids=list(image.config.get("rootfs", {}).get("diff_ids", [])),
            ))
            if ref != image.id and ref not in saved.repo_tags:
                saved.repo_tags.append(ref)
        await asyncio.to_thread(save_docker_archive, output, list(picked.values()), self.store)
        return list(picked)

    # --- registry pulls and pushes (hypr_engine/oci/registry) ------------------------------

    async def record_pulled(self, img: "LoadedImage") -> ImageInfo:
        """Record an image a pull has put in the store, exactly as `load` records one."""
        return await self._record(img)

    async def manifest_digest(self, image_id: str) -> str:
        """The digest of the manifest stored for an image (what `push` uploads)."""
        row = await self._db.fetchone("SELECT manifest_digest FROM images WHERE id=?", (image_id,))
        if row is None:
            raise NotFound(f"no such image: {image_id}")
        return row["manifest_digest"]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _check_writable_destination(output: Path) -> None:
    """A clear error now rather than a half-written archive later."""
    parent = output.parent if str(output.parent) else Path(".")
    if output.is_dir():
        raise InvalidArgument(f"cannot save to {output}: it is a directory")
    if not parent.is_dir():
        raise InvalidArgument(f"cannot save to {output}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InvalidArgument(f"cannot save to {output}: directory {parent} is not writable")
