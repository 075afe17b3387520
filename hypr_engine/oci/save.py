"""Images from the content store -> one docker-archive (`hypr save`), as `docker save` writes it.

The classic layout (Docker < 25), which `docker load`, `hypr load` and
`skopeo copy docker-archive:` all read: `manifest.json`, `repositories`,
`<config hex>.json` (the stored config, byte for byte, so the image ID survives the
round trip) and `<diff_id hex>/layer.tar` (layers uncompressed, as Docker writes them;
the store may hold them gzip or zstd compressed). Each layer is decompressed once into
a temporary file beside the output and checked against its diff_id on the way; the
archive appears under its name only when complete.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypr_engine.errors import CorruptData, InvalidArgument
from hypr_engine.oci.compression import open_decompressed, read_all_checked
from hypr_engine.oci.content import ContentStore
from hypr_engine.oci.digest import digest_hex
from hypr_engine.oci.reference import parse_reference
from hypr_engine.oci.writer import LayerSource, write_archive_members


@dataclass
class SavedImage:
    config: Path                 # the stored config blob
    layers: list[str]            # layer blob digests, as stored
    diff_ids: list[str]          # from the config, one per layer
    repo_tags: list[str] = field(default_factory=list)   # normalised references


def save_docker_archive(output: Path, images: list[SavedImage], store: ContentStore) -> None:
    try:
        with tempfile.TemporaryDirectory(dir=output.parent, prefix=".tmp-hypr-save-") as tmp:
            _write(output, images, store, Path(tmp))
    except OSError as exc:
        raise InvalidArgument(f"cannot save to {output}: {exc.strerror or exc}") from None


def _write(output: Path, images: list[SavedImage], store: ContentStore, tmp: Path) -> None:
    members: dict[str, LayerSource] = {}
    manifest: list[dict] = []
    repositories: dict[str, dict[str, str]] = {}
    for image in images:
        if len(image.layers) != len(image.diff_ids):
            raise CorruptData(f"image {image.config.name[:12]} has {len(image.layers)} layers "
                              f"but {len(image.diff_ids)} diff_ids")
        layer_names = []
        for digest, diff_id in zip(image.layers, image.diff_ids):
            name = f"{digest_hex(diff_id)}/layer.tar"
            if name not in members:
                members[name] = _uncompressed(store, digest, diff_id, tmp)
            layer_names.append(name)
        config_name = f"{image.config.name}.json"
        members[config_name] = image.config
        refs = [parse_reference(t) for t in image.repo_tags]
        manifest.append({"Config": config_name, "RepoTags": [r.familiar() for r in refs] or None,
                         "Layers": layer_names})
        top = digest_hex(image.diff_ids[-1]) if image.diff_ids else image.config.name
        for ref in refs:
            repositories.setdefault(ref.familiar_name(), {})[ref.tag or "latest"] = top
    members["manifest.json"] = json.dumps(manifest, separators=(",", ":")).encode()
    if repositories:
        members["repositories"] = json.dumps(repositories, separators=(",", ":")).encode()
    write_archive_members(output, members)


def _uncompressed(store: ContentStore, digest: str, diff_id: str, tmp: Path) -> Path:
    """The layer's tar, decompressed into `tmp` and verified against its diff_id."""
    dest = tmp / digest_hex(diff_id)
    hasher = hashlib.sha256()
    with store.open(digest) as raw, open(dest, "wb") as out:
        _, stream = open_decompressed(raw)

        def sink(data: bytes) -> None:
            hasher.update(data)
            out.write(data)

        try:
            read_all_checked(stream, sink)
        finally:
            if stream is not raw:
                stream.close()
    if "sha256:" + hasher.hexdigest() != diff_id:
        raise CorruptData(f"layer {digest} does not match its diff_id {diff_id}: the store is damaged")
    return dest



