"""`hypr load` and `hypr import`: images from docker-archive / oci-archive tars, OCI layouts, rootfs tarballs.

Accepted inputs (compressed or not, from a path or a stream such as stdin):

* docker-archive, as `docker save` writes it: `manifest.json` naming a config
  `<hex>.json` and `<id>/layer.tar` files (duplicate layers may be symlinks);
* Docker >= 25's `docker save`, which also puts an OCI layout in the tar (`index.json`,
  `oci-layout`, `blobs/sha256/...`): the OCI layout is preferred (it keeps the real
  manifest digests) and `manifest.json`'s RepoTags are merged in;
* oci-archive (an OCI layout in a tar) and an OCI layout directory. Names come from
  `io.containerd.image.name`, else from `org.opencontainers.image.ref.name` when that
  is a full reference (a bare tag such as `latest` names no repository, so the image
  loads untagged, as Docker does). A multi-platform index resolves to the host's
  platform (else the first runnable one whose blobs are present).

Every blob is hashed while staged and must match its digest and size; every layer's
uncompressed content must match its config diff_id (checked here at load: free for the
uncompressed layers of docker-archives, one decompression for compressed ones; the
rootfs build checks again as it reads). Blobs are staged and committed only once every
image of the archive has checked out, so a corrupt or truncated archive raises
CorruptData and leaves the store exactly as it was. For a docker-archive (which has no
manifest) an OCI manifest is synthesised and stored, so save/push work later.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from hypr_engine.errors import CorruptData, InvalidArgument, NotFound
from hypr_engine.oci.compression import DECOMPRESS_ERRORS, detect, open_decompressed, read_all_checked
from hypr_engine.oci.content import ContentStore, Staging
from hypr_engine.oci.descriptor import (
    ANNOTATION_CONTAINERD_NAME,
    ANNOTATION_REF_NAME,
    CONFIG_TYPES,
    INDEX_TYPES,
    LAYER_TYPE_FOR_COMPRESSION,
    MANIFEST_TYPES,
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    Descriptor,
)
from hypr_engine.oci.flatten import LayerInput, plan_layers
from hypr_engine.oci.image_config import ImageConfig
from hypr_engine.oci.manifest import (
    MAX_MANIFEST_SIZE,
    build_manifest,
    choose_platform,
    host_platform,
    parse_index,
    parse_manifest,
    sniff_media_type,
)
from hypr_engine.oci.reference import parse_reference
from hypr_engine.oci.tarstream import StrictTarReader

MAX_CONFIG_SIZE = 16 << 20
MAX_METADATA_SIZE = 16 << 20  # manifest.json, index.json, repositories
_MAX_INDEX_DEPTH = 4


@dataclass
class LoadedImage:
    """An image now present in the content store."""

    config_digest: str  # the image ID
    manifest_digest: str
    repo_tags: list[str]  # normalised, e.g. docker.io/library/busybox:latest
    layers: list[Descriptor]  # as stored: gzip, zstd or uncompressed
    diff_ids: list[str]
    config: ImageConfig
    manifest: bytes
    manifest_media_type: str = OCI_MANIFEST
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.config_digest

    @property
    def size(self) -> int:
        """Bytes of layer blobs (as stored)."""
        return sum(layer.size for layer in self.layers)


# ----------------------------------------------------------------------------- helpers


def _member_name(name: str) -> str:
    """Archive member names compare after dropping `./`, leading `/` and `a/../` detours."""
    norm = posixpath.normpath("/" + name).lstrip("/")
    return norm


def _add_tags(image: LoadedImage, tags: list[str]) -> None:
    for tag in tags:
        if tag not in image.repo_tags:
            image.repo_tags.append(tag)


def _normalise_tag(tag: object, where: str) -> str:
    if not isinstance(tag, str):
        raise CorruptData(f"{where}: image name must be a string")
    try:
        return str(parse_reference(tag))
    except InvalidArgument as exc:
        raise CorruptData(f"{where}: invalid image name {tag!r}: {exc.message}") from None


def _names_from_annotations(annotations: dict[str, str] | None, where: str) -> list[str]:
    if not annotations:
        return []
    name = annotations.get(ANNOTATION_CONTAINERD_NAME)
    if name:
        return [_normalise_tag(name, where)]
    ref = annotations.get(ANNOTATION_REF_NAME)
    if ref and any(c in ref for c in "/:@"):
        return [_normalise_tag(ref, where)]
    return []  # a bare tag names no repository


def _check_sha256(desc: Descriptor, where: str) -> None:
    if not desc.digest.startswith("sha256:"):
        raise CorruptData(f"{where}: unsupported digest algorithm in {desc.digest}")


def _layer_media_type(staging: Staging, digest: str) -> str:
    with staging.open(digest) as f:
        compression = detect(f.read(8))
    if compression not in LAYER_TYPE_FOR_COMPRESSION:
        raise CorruptData(f"layer {digest} is {compression}-compressed; layers must be plain, gzip or zstd tars")
    return LAYER_TYPE_FOR_COMPRESSION[compression]


def _verify_diff_ids(staging: Staging, layers: list[Descriptor], diff_ids: list[str], seen: dict[str, str]) -> None:
    """Each layer's uncompressed bytes must hash to its diff_id (the blob digest, if uncompressed)."""
    if len(layers) != len(diff_ids):
        raise CorruptData(f"image has {len(layers)} layers but its config lists {len(diff_ids)} diff_ids")
    for desc, diff_id in zip(layers, diff_ids):
        actual = seen.get(desc.digest)
        if actual is None:
            with staging.open(desc.digest) as f:
                compression, stream = open_decompressed(f)
                if compression is None:
                    actual = desc.digest
                else:
                    h = hashlib.sha256()
                    try:
                        read_all_checked(stream, h.update)
                    except CorruptData as exc:
                        raise CorruptData(f"layer {desc.digest}: {exc.message}") from None
                    actual = "sha256:" + h.hexdigest()
            seen[desc.digest] = actual
        if actual != diff_id:
            raise CorruptData(f"layer {desc.digest}: uncompressed content is {actual}, but the config says {diff_id}")


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptData(f"{what} is not valid JSON: {exc}") from None


# ----------------------------------------------------------------------------- blob sources


class _Blobs:
    """Blobs reachable by descriptor: staged (verified) or, for a layout directory, ingestible."""

    def __init__(self, staging: Staging, layout_dir: Path | None = None) -> None:
        self.staging = staging
        self.layout_dir = layout_dir

    def _path(self, desc: Descriptor) -> Path | None:
        if self.layout_dir is None:
            return None
        alg, _, hexpart = desc.digest.partition(":")
        return self.layout_dir / "blobs" / alg / hexpart

    def available(self, desc: Descriptor) -> bool:
        if self.staging.has(desc.digest):
            return True
        path = self._path(desc)
        return path is not None and path.is_file()

    def ensure(self, desc: Descriptor, where: str) -> None:
        """Make the blob staged (verifying digest and size) or raise CorruptData."""
        _check_sha256(desc, where)
        if not self.staging.has(desc.digest):
            path = self._path(desc)
            if path is None or not path.is_file():
                raise CorruptData(f"{where}: blob {desc.digest} is missing from the archive")
            self.staging.ingest(path, desc.digest, desc.size, media_type=desc.media_type)
        size = self.staging.size(desc.digest)
        if size != desc.size:
            raise CorruptData(f"{where}: blob {desc.digest} is {size} bytes, its descriptor says {desc.size}")

    def read(self, desc: Descriptor, where: str, max_size: int) -> bytes:
        self.ensure(desc, where)
        return self.staging.read(desc.digest, max_size=max_size)


# ----------------------------------------------------------------------------- OCI layout


def _load_oci(index_bytes: bytes, layout_version: bytes | None, blobs: _Blobs, what: str) -> dict[str, LoadedImage]:
    if layout_version is not None:
        version = _json(layout_version, f"{what} oci-layout")
        if not isinstance(version, dict) or not isinstance(version.get("imageLayoutVersion"), str):
            raise CorruptData(f"{what}: oci-layout has no imageLayoutVersion")
    index = parse_index(index_bytes, what=f"{what} index.json")
    images: dict[str, LoadedImage] = {}
    seen_layers: dict[str, str] = {}
    for entry in index.manifests:
        names = _names_from_annotations(entry.annotations, f"{what} index.json")
        manifest_desc = _resolve(entry, blobs, what, 0)
        if manifest_desc is None:
            continue  # not a container image (signature, attestation, artifact)
        image = images.get(manifest_desc.digest)
        if image is None:
            image = _load_oci_image(manifest_desc, blobs, what, seen_layers)
            if image is None:
                continue
            images[manifest_desc.digest] = image
        _add_tags(image, names)
    if not images:
        raise CorruptData(f"{what}: index.json lists no container image")
    return images


def _media_type_of(desc: Descriptor, blobs: _Blobs, what: str) -> str:
    if desc.media_type:
        return desc.media_type
    return sniff_media_type(blobs.read(desc, what, MAX_MANIFEST_SIZE)) or ""


def _resolve(desc: Descriptor, blobs: _Blobs, what: str, depth: int) -> Descriptor | None:
    """Follow nested indexes down to one image manifest for this platform."""
    media_type = _media_type_of(desc, blobs, what)
    if media_type in MANIFEST_TYPES:
        return desc
    if media_type not in INDEX_TYPES:
        return None
    if depth >= _MAX_INDEX_DEPTH:
        raise CorruptData(f"{what}: image indexes nested more than {_MAX_INDEX_DEPTH} deep")
    index = parse_index(blobs.read(desc, what, MAX_MANIFEST_SIZE), what=f"{what} index {desc.digest}")
    present = [d for d in index.manifests if blobs.available(d)]
    chosen = choose_platform(present)
    if chosen is None:
        if index.manifests:
            raise CorruptData(f"{what}: none of the manifests of index {desc.digest} is in the archive")
        return None
    return _resolve(chosen, blobs, what, depth + 1)


def _load_oci_image(
    desc: Descriptor, blobs: _Blobs, what: str, seen_layers: dict[str, str]
) -> LoadedImage | None:
    data = blobs.read(desc, what, MAX_MANIFEST_SIZE)
    raw = _json(data, f"{what} manifest {desc.digest}")
    config = raw.get("config") if isinstance(raw, dict) else None
    if isinstance(config, dict) and config.get("mediaType") not in (None, *CONFIG_TYPES):
        return None  # an OCI artifact (e.g. a signature), not an image
    manifest = parse_manifest(data, what=f"{what} manifest {desc.digest}")
    config_bytes = blobs.read(manifest.config, what, MAX_CONFIG_SIZE)
    config = ImageConfig.from_json(config_bytes)
    for layer in manifest.layers:
        blobs.ensure(layer, what)
    _verify_diff_ids(blobs.staging, manifest.layers, config.diff_ids, seen_layers)
    return LoadedImage(
        config_digest=manifest.config.digest,
        manifest_digest=desc.digest,
        repo_tags=[],
        layers=list(manifest.layers),
        diff_ids=list(config.diff_ids),
        config=config,
        manifest=data,
        manifest_media_type=manifest.media_type,
        annotations=dict(manifest.annotations or {}),
    )


# ----------------------------------------------------------------------------- docker-archive


class _ArchiveMembers:
    """Regular files of a tar archive, each staged under its digest, plus its symlinks/hard links."""

    def __init__(self, staging: Staging) -> None:
        self.staging = staging
        self.files: dict[str, str] = {}
        self.links: dict[str, str] = {}

    def digest_of(self, name: str, where: str) -> str:
        name = _member_name(name)
        for _ in range(16):
            if name in self.files:
                return self.files[name]
            if name not in self.links:
                break
            name = self.links[name]
        raise CorruptData(f"{where}: {name!r} is missing from the archive")

    def read(self, name: str, where: str, max_size: int) -> bytes:
        digest = self.digest_of(name, where)
        size = self.staging.size(digest)
        if size > max_size:
            raise CorruptData(f"{where}: {name!r} is larger than {max_size} bytes")
        return self.staging.read(digest, max_size=max_size)

    def has(self, name: str) -> bool:
        return name in self.files or name in self.links


def _load_docker(members: _ArchiveMembers, what: str, images: dict[str, LoadedImage]) -> None:
    """Read manifest.json; add images (synthesised manifests) or, if already loaded via OCI, their tags."""
    staging = members.staging
    entries = _json(members.read("manifest.json", what, MAX_METADATA_SIZE), f"{what} manifest.json")
    if not isinstance(entries, list):
        raise CorruptData(f"{what}: manifest.json must be a list")
    by_config = {img.config_digest: img for img in images.values()}
    seen_layers: dict[str, str] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise CorruptData(f"{what}: manifest.json entries must be objects")
        config_name, layer_names, tags = entry.get("Config"), entry.get("Layers"), entry.get("RepoTags") or []
        if not isinstance(config_name, str):
            raise CorruptData(f"{what}: manifest.json entry has no Config")
        if not isinstance(layer_names, list) or not all(isinstance(n, str) for n in layer_names):
            raise CorruptData(f"{what}: manifest.json Layers must be a list of file names")
        if not isinstance(tags, list):
            raise CorruptData(f"{what}: manifest.json RepoTags must be a list")
        repo_tags = [_normalise_tag(t, f"{what} manifest.json") for t in tags]
        config_digest = members.digest_of(config_name, f"{what} manifest.json")
        if config_digest in by_config:
            _add_tags(by_config[config_digest], repo_tags)
            continue
        config_bytes = members.read(config_name, f"{what} manifest.json", MAX_CONFIG_SIZE)
        config = ImageConfig.from_json(config_bytes)
        layers = []
        for name in layer_names:
            digest = members.digest_of(name, f"{what} manifest.json")
            layers.append(Descriptor(_layer_media_type(staging, digest), digest, staging.size(digest)))
        _verify_diff_ids(staging, layers, config.diff_ids, seen_layers)
        manifest = build_manifest(Descriptor(OCI_CONFIG, config_digest, len(config_bytes)), layers)
        manifest_desc = staging.ingest(manifest, media_type=OCI_MANIFEST)
        image = images.get(manifest_desc.digest)
        if image is None:
            image = LoadedImage(
                config_digest=config_digest,
                manifest_digest=manifest_desc.digest,
                repo_tags=[],
                layers=layers,
                diff_ids=list(config.diff_ids),
                config=config,
                manifest=manifest,
            )
            images[manifest_desc.digest] = image
            by_config[config_digest] = image
        _add_tags(image, repo_tags)


# ----------------------------------------------------------------------------- entry points


@contextlib.contextmanager
def _open_input(source: Path | BinaryIO, what: str) -> Iterator[BinaryIO]:
    if isinstance(source, (str, os.PathLike)):
        try:
            f = open(source, "rb")
        except FileNotFoundError:
            raise NotFound(f"{source}: no such file") from None
        except IsADirectoryError:
            raise InvalidArgument(f"{source} is a directory, expected a {what}") from None
        with f:
            yield f
    else:
        yield source


def _commit(staging: Staging, images: list[LoadedImage]) -> None:
    keep: set[str] = set()
    for image in images:
        keep.update([image.manifest_digest, image.config_digest, *(layer.digest for layer in image.layers)])
    staging.commit(only=keep)


def load_archive(source: Path | BinaryIO, store: ContentStore) -> list[LoadedImage]:
    """Load every image of a docker-archive / oci-archive tar (path or stream) or OCI layout directory.

    All or nothing: on any error (CorruptData with one line saying what is wrong) the
    store is left as it was.
    """
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        return _load_layout_dir(Path(source), store)
    what = f"archive {os.fspath(source)}" if isinstance(source, (str, os.PathLike)) else "archive"
    with store.stage() as staging, _open_input(source, "tar archive") as raw:
        members = _ArchiveMembers(staging)
        try:
            _, stream = open_decompressed(raw)
        except DECOMPRESS_ERRORS as exc:
            raise CorruptData(f"{what} is corrupt: {exc}") from None
        reader = StrictTarReader(stream, what)
        for member in reader:
            name = _member_name(member.name)
            if member.issym():
                members.links[name] = _member_name(posixpath.join(posixpath.dirname(name), member.linkname))
            elif member.islnk():
                members.links[name] = _member_name(member.linkname)
            elif member.isreg():
                expected = None
                parts = name.split("/")
                if len(parts) == 3 and parts[0] == "blobs" and parts[1] == "sha256":
                    expected = "sha256:" + parts[2]
                    try:
                        store.check_digest(expected)
                    except InvalidArgument:
                        raise CorruptData(f"{what}: blob file {name!r} is not named by a sha256 digest") from None
                try:
                    desc = staging.ingest(reader.extractfile(member), expected, member.size)
                except CorruptData as exc:
                    raise CorruptData(f"{what}: {name}: {exc.message}") from None
                members.files[name] = desc.digest
        if not members.files:
            raise CorruptData(f"{what} is empty or not a tar archive")

        images: dict[str, LoadedImage] = {}
        if members.has("index.json"):
            layout = members.read("oci-layout", what, 4096) if members.has("oci-layout") else None
            index_bytes = members.read("index.json", what, MAX_METADATA_SIZE)
            images = _load_oci(index_bytes, layout, _Blobs(staging), what)
        if members.has("manifest.json"):
            _load_docker(members, what, images)
        elif not images:
            raise CorruptData(f"{what} is not a docker-archive or OCI archive (no manifest.json or index.json)")
        result = list(images.values())
        _commit(staging, result)
        return result


def _load_layout_dir(directory: Path, store: ContentStore) -> list[LoadedImage]:
    what = f"OCI layout {directory}"
    index_path = directory / "index.json"
    if not index_path.is_file():
        raise CorruptData(f"{what}: no index.json (not an OCI image layout)")
    layout_path = directory / "oci-layout"
    if index_path.stat().st_size > MAX_METADATA_SIZE:
        raise CorruptData(f"{what}: index.json is too large")
    layout = layout_path.read_bytes()[:4096] if layout_path.is_file() else None
    with store.stage() as staging:
        images = list(_load_oci(index_path.read_bytes(), layout, _Blobs(staging, directory), what).values())
        _commit(staging, images)
        return images


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def import_rootfs(
    source: Path | BinaryIO,
    store: ContentStore,
    *,
    ref: str | None = None,
    changes: dict[str, Any] | None = None,
    message: str | None = None,
    created: str | None = None,
    platform: dict[str, str] | None = None,
) -> LoadedImage:
    """`hypr import`: a rootfs tarball (plain, gzip, xz, bzip2 or zstd) becomes a one-layer image.

    Like `docker import`: the layer is stored uncompressed (its digest is its diff_id),
    the config is fresh (`changes` is its `config` section, e.g. from `--change`
    instructions; Cmd stays empty unless given). The tarball is checked as the rootfs
    build would check it (paths, links) before anything is stored.
    """
    repo_tags = [str(parse_reference(ref))] if ref else []
    if changes is not None and not isinstance(changes, dict):
        raise InvalidArgument("import changes must be a mapping of config fields")
    created = created or _now()
    plat = platform or host_platform()
    what = f"rootfs tarball {os.fspath(source)}" if isinstance(source, (str, os.PathLike)) else "rootfs tarball"
    with store.stage() as staging:
        with _open_input(source, "rootfs tarball") as raw:
            writer = staging.writer(media_type=OCI_LAYER)
            try:
                _, stream = open_decompressed(raw)
                read_all_checked(stream, writer.write)
            except BaseException as exc:
                writer.abort()
                if isinstance(exc, CorruptData):
                    raise CorruptData(f"{what}: {exc.message}") from None
                if isinstance(exc, DECOMPRESS_ERRORS):
                    raise CorruptData(f"{what} is corrupt: {exc}") from None
                raise
            layer = writer.commit()
        if layer.size == 0:
            raise CorruptData(f"{what} is empty")
        plan_layers([LayerInput(open=lambda: staging.open(layer.digest), name=what, diff_id=layer.digest)])

        config_obj: dict[str, Any] = {
            "architecture": plat["architecture"],
            "os": plat["os"],
            "created": created,
            "config": dict(changes or {}),
            "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
            "history": [{"created": created, "created_by": "hypr import", **({"comment": message} if message else {})}],
        }
        if message:
            config_obj["comment"] = message
        try:
            config = ImageConfig.from_dict(config_obj)
        except CorruptData as exc:
            raise InvalidArgument(f"invalid import changes: {exc.message}") from None
        config_bytes = json.dumps(config_obj, separators=(",", ":")).encode()
        config_desc = staging.ingest(config_bytes, media_type=OCI_CONFIG)
        manifest = build_manifest(config_desc, [layer])
        manifest_desc = staging.ingest(manifest, media_type=OCI_MANIFEST)
        image = LoadedImage(
            config_digest=config_desc.digest,
            manifest_digest=manifest_desc.digest,
            repo_tags=repo_tags,
            layers=[layer],
            diff_ids=[layer.digest],
            config=config,
            manifest=manifest,
        )
        _commit(staging, [image])
        return image
