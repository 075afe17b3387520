"""The image commands: `images`, `rmi`, `tag`, `save`, `image inspect|history|prune`.

Handlers of actions.py (named there as "images_cli:cmd_x"), plus the Docker-shaped
documents and rows they print, which the dashboard's image actions reuse
(hypr_tui/tui/image_actions.py). Everything goes through HyprClient.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from hypr_tui import formatting as fmt
from hypr_tui.commands import UsageError, for_each, inspect_each, print_lines


# --- documents and rows (shared with the dashboard) --------------------------------------------

def _repo_and_tag(tag: str) -> tuple[str, str]:
    repo, _, t = tag.rpartition(":")
    if not repo or "/" in t:  # no tag, or a registry port
        return tag, "<none>"
    return repo, t


def image_rows(img, *, digests: bool = False) -> list[list[str]]:
    """`docker images` rows: one per tag (`<none>` for an untagged image)."""
    out = []
    for row in fmt.image_rows(img):
        if digests:
            row = row[:2] + [img.manifest_digest or "<none>"] + row[2:]
        out.append(row)
    return out


def image_row_json(img) -> dict[str, Any]:
    row = fmt.image_row_json(img)
    row["ManifestDigest"] = img.manifest_digest
    return row


def inspect_document(img) -> dict[str, Any]:
    """`docker image inspect`'s shape, from what the engine keeps about the image."""
    config = img.config or {}
    repos = sorted({_repo_and_tag(t)[0] for t in img.tags})
    return {
        "Id": img.id,
        "RepoTags": list(img.tags),
        "RepoDigests": [f"{repo}@{img.manifest_digest}" for repo in repos] if img.manifest_digest else [],
        "Parent": "",
        "Comment": config.get("comment", ""),
        "Created": img.created,
        "Author": config.get("author", ""),
        "Config": config.get("config") or {},
        "Architecture": config.get("architecture", ""),
        "Variant": config.get("variant"),
        "Os": config.get("os", ""),
        "Size": img.size,
        "RootFS": {"Type": (config.get("rootfs") or {}).get("type", "layers"),
                   "Layers": list((config.get("rootfs") or {}).get("diff_ids") or [])},
        # Docker has no such key; HYPR adds the stored blobs (digest, media type, size).
        "Layers": [{"Digest": l["digest"], "MediaType": l["media_type"], "Size": l["size"]} for l in img.layers],
        "Metadata": {"LastTagTime": _rfc3339(img.added_at)},
        "ManifestDigest": img.manifest_digest,
    }


def _rfc3339(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _created_ago(created: str | None) -> str:
    if not created:
        return "<missing>" if created is None else ""
    try:
        return fmt.ago(dt.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return created


def history_rows(entries, *, human: bool = True, no_trunc: bool = False) -> list[list[str]]:
    """`docker history` rows: IMAGE, CREATED, CREATED BY, SIZE, COMMENT."""
    rows = []
    for e in entries:
        image = e.id if e.id == "<missing>" or no_trunc else e.id.split(":", 1)[-1][:12]
        created_by = e.created_by if no_trunc or len(e.created_by) <= 45 else e.created_by[:44] + "…"
        size = fmt.human_size(e.size) if human else str(e.size)
        rows.append([image, _created_ago(e.created) if human else (e.created or ""), created_by, size, e.comment])
    return rows


def history_json(entry) -> dict[str, Any]:
    return {"ID": entry.id, "CreatedAt": entry.created, "CreatedBy": entry.created_by, "Size": entry.size,
            "Comment": entry.comment, "EmptyLayer": entry.empty_layer, "LayerDigest": entry.layer_digest}


# --- commands ------------------------------------------------------------------------------------

async def cmd_images(client, args) -> int:
    images = await client.list_images()
    if args.quiet:
        for img in images:
            print(img.short_id)
    elif args.format == "json":
        for img in images:
            print(json.dumps(image_row_json(img)))
    else:
        headers = ["REPOSITORY", "TAG", *(["DIGEST"] if args.digests else []), "IMAGE ID", "CREATED", "SIZE"]
        rows = [row for img in images for row in image_rows(img, digests=args.digests)]
        print(fmt.table(headers, rows))
    return 0


async def cmd_rmi(client, args) -> int:
    return await for_each(args.images, lambda ref: client.remove_image(ref, force=args.force), print_lines)


async def cmd_tag(client, args) -> int:
    await client.tag_image(args.source, args.target)
    return 0


async def cmd_save(client, args) -> int:
    if not args.output:
        raise UsageError("save writes to a file: give -o FILE")
    await client.save_images(args.images, Path(args.output).expanduser().absolute())
    return 0


async def cmd_image_inspect(client, args) -> int:
    async def document(ref: str) -> dict:
        return inspect_document(await client.get_image(ref))

    return await inspect_each(args.images, document)


async def cmd_image_history(client, args) -> int:
    entries = await client.image_history(args.image)
    if args.quiet:
        for e in entries:
            print(e.id if e.id == "<missing>" or args.no_trunc else e.id.split(":", 1)[-1][:12])
    elif args.format == "json":
        for e in entries:
            print(json.dumps(history_json(e)))
    else:
        rows = history_rows(entries, human=args.human == "true", no_trunc=args.no_trunc)
        print(fmt.table(["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], rows))
    return 0


async def cmd_image_prune(client, args) -> int:
    if not args.force:
        what = "all images without at least one VM associated to them" if args.all else "all dangling images"
        print(f"WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ", end="", flush=True)
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            return 0
    report = await client.prune_images(all=args.all)
    if report.untagged or report.deleted:
        print("Deleted Images:")
        for ref in report.untagged:
            print(f"untagged: {ref}")
        for image_id in report.deleted:
            print(f"deleted: {image_id}")
        print()
    print(f"Total reclaimed space: {fmt.human_size(report.bytes_reclaimed)}")
    return 0
