"""Image service: load, import, list, resolve and remove images.

Blobs live in the content store; the images table records what each image is
(config, layers, tags). Root filesystems are built lazily, on first run, by
the rootfs builder and cached by chain ID.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from hypr_engine.crash import crash_point
from hypr_engine.errors import Conflict, InvalidArgument, NotFound
from hypr_engine.models import ImageInfo
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

        loaded = await asyncio.to_thread(load_archive, archive, self.store)
        crash_point("load.after_blobs")
        return [await self._record(img) for img in loaded]

    async def import_rootfs(self, tarball: Path, ref: str | None) -> ImageInfo:
        if not tarball.exists():
            raise NotFound(f"tarball {tarball} does not exist")
        tag = parse_reference(ref).familiar() if ref else None
        from hypr_engine.oci.archive import import_rootfs

        loaded = await asyncio.to_thread(import_rootfs, tarball, self.store)
        if ref:
            loaded.repo_tags = [str(parse_reference(ref))]
        del tag
        return await self._record(loaded)

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

    async def remove(self, name: str, *, force: bool, in_use: set[str]) -> list[str]:
        """Untag (if a tag was named) or delete the image; returns what happened, Docker-style."""
        image, ref = await self.resolve(name)
        tags = await self._db.fetchall("SELECT ref FROM image_tags WHERE image_id=?", (image.id,))
        untagged: list[str] = []
        if ref != image.id and len(tags) > 1:
            await self._db.execute("DELETE FROM image_tags WHERE ref=?", (ref,))
            return [f"Untagged: {parse_reference(ref).familiar()}"]
        if image.id in in_use and not force:
            raise Conflict(
                f"unable to remove image {image.short_id}: it is used by a VM (stop and remove the VM, or use -f)"
            )
        untagged = [f"Untagged: {parse_reference(t['ref']).familiar()}" for t in tags]
        await self._db.transaction([
            ("DELETE FROM image_tags WHERE image_id=?", (image.id,)),
            ("DELETE FROM images WHERE id=?", (image.id,)),
        ])
        await self._collect_blobs()
        return untagged + [f"Deleted: {image.id}"]

    async def _collect_blobs(self) -> None:
        """Delete blobs and root filesystems no remaining image refers to."""
        keep: set[str] = set()
        chains: list[list[str]] = []
        for row in await self._db.fetchall("SELECT id, manifest_digest, layers_json, diff_ids_json FROM images"):
            keep.add(row["id"])
            keep.add(row["manifest_digest"])
            keep.update(l["digest"] for l in json.loads(row["layers_json"]))
            chains.append(json.loads(row["diff_ids_json"]))

        def sweep() -> None:
            for digest in list(self.store.digests()):
                if digest not in keep:
                    self.store.delete(digest)
            self.rootfs.prune(keep_chains=chains)

        await asyncio.to_thread(sweep)

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
