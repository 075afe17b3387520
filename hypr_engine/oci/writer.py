"""Write images: layer tars from entry lists, OCI layouts, oci-archives and docker-archives.

Tests craft images with it (whiteouts, hard links, devices, xattrs, hostile paths:
names are written exactly as given, never cleaned), the busybox image is built with
it, and `hypr save`/build reuse the same writers. Output is deterministic (sorted
members, zero timestamps in archive and gzip headers), so the same input always gives
the same digests.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import os
import posixpath
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

import zstandard

from hypr_engine.errors import InvalidArgument
from hypr_engine.oci.descriptor import (
    ANNOTATION_CONTAINERD_NAME,
    ANNOTATION_REF_NAME,
    LAYER_TYPE_FOR_COMPRESSION,
    OCI_CONFIG,
    OCI_LAYER,
    OCI_LAYOUT_VERSION,
    OCI_MANIFEST,
    Descriptor,
)
from hypr_engine.oci.digest import CHUNK, digest_hex
from hypr_engine.oci.manifest import build_index, build_manifest, host_platform
from hypr_engine.oci.reference import parse_reference

LayerCompression = Literal["gzip", "zstd", "none"]
LayerSource = bytes | Path

# ----------------------------------------------------------------------------- layer tars

_KIND_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "chardev": tarfile.CHRTYPE,
    "blockdev": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}
_DEFAULT_MODES = {"file": 0o644, "dir": 0o755, "symlink": 0o777, "hardlink": 0o644}


@dataclass
class TarEntry:
    """One member of a layer tar. `path` and `target` are written verbatim (no cleaning)."""

    path: str
    kind: str = "file"
    data: bytes = b""
    target: str = ""
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    uname: str = ""
    gname: str = ""
    mtime: float = 0
    major: int = 0
    minor: int = 0
    xattrs: dict[str, bytes | str] = field(default_factory=dict)

    def tarinfo(self) -> tarfile.TarInfo:
        if self.kind not in _KIND_TYPES:
            raise InvalidArgument(f"unknown tar entry kind {self.kind!r}")
        info = tarfile.TarInfo(self.path)
        info.type = _KIND_TYPES[self.kind]
        info.mode = self.mode if self.mode is not None else _DEFAULT_MODES.get(self.kind, 0o644)
        info.uid, info.gid, info.uname, info.gname = self.uid, self.gid, self.uname, self.gname
        info.mtime = self.mtime
        info.size = len(self.data) if self.kind == "file" else 0
        info.linkname = self.target
        info.devmajor, info.devminor = self.major, self.minor
        for key, value in self.xattrs.items():
            if isinstance(value, bytes):
                value = value.decode("utf-8", "surrogateescape")
            info.pax_headers["SCHILY.xattr." + key] = value
        return info


def file(path: str, data: bytes | str = b"", *, mode: int = 0o644, **kw: Any) -> TarEntry:
    """A regular file."""
    return TarEntry(path, "file", data.encode() if isinstance(data, str) else data, mode=mode, **kw)


def directory(path: str, *, mode: int = 0o755, **kw: Any) -> TarEntry:
    return TarEntry(path, "dir", mode=mode, **kw)


def symlink(path: str, target: str, **kw: Any) -> TarEntry:
    return TarEntry(path, "symlink", target=target, **kw)


def hardlink(path: str, target: str, **kw: Any) -> TarEntry:
    """A hard link to `target` (a path inside the image, this layer or a lower one)."""
    return TarEntry(path, "hardlink", target=target, **kw)


def chardev(path: str, major: int, minor: int, *, mode: int = 0o666, **kw: Any) -> TarEntry:
    return TarEntry(path, "chardev", major=major, minor=minor, mode=mode, **kw)


def blockdev(path: str, major: int, minor: int, *, mode: int = 0o660, **kw: Any) -> TarEntry:
    return TarEntry(path, "blockdev", major=major, minor=minor, mode=mode, **kw)


def fifo(path: str, *, mode: int = 0o644, **kw: Any) -> TarEntry:
    return TarEntry(path, "fifo", mode=mode, **kw)


def whiteout(path: str, **kw: Any) -> TarEntry:
    """Deletes `path` (and everything under it) from the layers below."""
    parent, name = posixpath.split(path.rstrip("/"))
    return TarEntry(posixpath.join(parent, ".wh." + name), "file", mode=0o600, **kw)


def opaque(path: str, **kw: Any) -> TarEntry:
    """Hides everything the layers below put in directory `path` (the directory itself stays)."""
    return TarEntry(posixpath.join(path.rstrip("/"), ".wh..wh..opq"), "file", mode=0o600, **kw)


def write_layer_tar(entries: Iterable[TarEntry], dest: BinaryIO | Path) -> None:
    """Write entries, in order, as a PAX tar to a stream or a file."""
    if isinstance(dest, Path):
        with open(dest, "wb") as f:
            write_layer_tar(entries, f)
        return
    with tarfile.open(fileobj=dest, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8") as tf:
        for entry in entries:
            info = entry.tarinfo()
            tf.addfile(info, io.BytesIO(entry.data) if info.size else None)


def layer_tar(entries: Iterable[TarEntry]) -> bytes:
    """Entries as an uncompressed layer tar, in memory (for tests and tiny images)."""
    buf = io.BytesIO()
    write_layer_tar(entries, buf)
    return buf.getvalue()


# ----------------------------------------------------------------------------- blobs


class _HashingWriter:
    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self._out.write(data)

    def flush(self) -> None:
        self._out.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


def _open_source(source: LayerSource) -> BinaryIO:
    return open(source, "rb") if isinstance(source, Path) else io.BytesIO(source)


def _hash_source(source: LayerSource) -> str:
    h = hashlib.sha256()
    with _open_source(source) as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _compress(src: BinaryIO, out: BinaryIO, compression: LayerCompression) -> None:
    if compression == "none":
        shutil.copyfileobj(src, out, CHUNK)
    elif compression == "gzip":
        with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=6) as gz:
            shutil.copyfileobj(src, gz, CHUNK)
    elif compression == "zstd":
        zstandard.ZstdCompressor(level=3).copy_stream(src, out, read_size=CHUNK, write_size=CHUNK)
    else:
        raise InvalidArgument(f"unknown layer compression {compression!r} (use gzip, zstd or none)")


class _BlobDir:
    """`blobs/sha256/` of an OCI layout being written."""

    def __init__(self, layout: Path) -> None:
        self.dir = layout / "blobs" / "sha256"
        self.dir.mkdir(parents=True, exist_ok=True)

    def put_bytes(self, data: bytes, media_type: str) -> Descriptor:
        desc = Descriptor(media_type, "sha256:" + hashlib.sha256(data).hexdigest(), len(data))
        path = self.dir / digest_hex(desc.digest)
        if not path.exists():
            _atomic_write(path, data)
        return desc

    def put_layer(self, source: LayerSource, compression: LayerCompression) -> tuple[Descriptor, str]:
        """Store a layer blob; returns (descriptor, diff_id)."""
        diff_id = _hash_source(source)
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as raw, _open_source(source) as src:
                out = _HashingWriter(raw)
                _compress(src, out, compression)  # type: ignore[arg-type]
            media_type = LAYER_TYPE_FOR_COMPRESSION[None if compression == "none" else compression]
            desc = Descriptor(media_type, out.digest, out.size)
            os.replace(tmp, self.dir / digest_hex(desc.digest))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return desc, diff_id


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _finish_config(config: dict[str, Any], diff_ids: list[str]) -> bytes:
    """Config JSON with rootfs.diff_ids filled in from the layers actually written."""
    cfg = copy.deepcopy(config)
    plat = host_platform()
    cfg.setdefault("architecture", plat["architecture"])
    cfg.setdefault("os", plat["os"])
    cfg["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    return _dump(cfg)


# ----------------------------------------------------------------------------- images


@dataclass
class ImageSpec:
    """An image to write: uncompressed layer tars (bytes or files), a config, and its names."""

    layers: Sequence[LayerSource]
    config: dict[str, Any]
    repo_tags: Sequence[str] = ()
    ref_name: str | None = None


@dataclass
class WrittenImage:
    """Digests of what was written (the config digest is the image ID)."""

    manifest_digest: str
    manifest: bytes
    config_digest: str
    config: bytes
    layers: list[Descriptor]
    diff_ids: list[str]


def write_oci_layout(
    directory: Path,
    layers: Sequence[LayerSource],
    config: dict[str, Any],
    ref_name: str | None = None,
    compression: LayerCompression = "gzip",
    *,
    image_name: str | None = None,
    annotations: dict[str, str] | None = None,
) -> WrittenImage:
    """Write one image into an OCI layout directory (created, or appended to if it exists).

    `ref_name` becomes `org.opencontainers.image.ref.name`, `image_name` becomes
    `io.containerd.image.name` (what Docker and containerd name images by).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    blobs = _BlobDir(directory)
    layer_descs: list[Descriptor] = []
    diff_ids: list[str] = []
    for source in layers:
        desc, diff_id = blobs.put_layer(source, compression)
        layer_descs.append(desc)
        diff_ids.append(diff_id)
    config_bytes = _finish_config(config, diff_ids)
    config_desc = blobs.put_bytes(config_bytes, OCI_CONFIG)
    manifest = build_manifest(config_desc, layer_descs)
    manifest_desc = blobs.put_bytes(manifest, OCI_MANIFEST)

    ann = dict(annotations or {})
    if ref_name is not None:
        ann[ANNOTATION_REF_NAME] = ref_name
    if image_name is not None:
        ann[ANNOTATION_CONTAINERD_NAME] = image_name
    entry = Descriptor(OCI_MANIFEST, manifest_desc.digest, manifest_desc.size, ann or None)
    _append_index(directory, [entry])
    return WrittenImage(manifest_desc.digest, manifest, config_desc.digest, config_bytes, layer_descs, diff_ids)


def _append_index(directory: Path, entries: list[Descriptor]) -> None:
    index_path = directory / "index.json"
    manifests: list[Descriptor] = []
    if index_path.exists():
        existing = json.loads(index_path.read_bytes())
        manifests = [Descriptor.from_dict(m) for m in existing.get("manifests", [])]
    _atomic_write(index_path, build_index(manifests + entries))
    _atomic_write(directory / "oci-layout", _dump({"imageLayoutVersion": OCI_LAYOUT_VERSION}))


def write_oci_archive(
    path: Path,
    layers: Sequence[LayerSource],
    config: dict[str, Any],
    ref_name: str | None = None,
    compression: LayerCompression = "gzip",
    **kw: Any,
) -> WrittenImage:
    """An OCI layout packed as a tar (`oci-archive:` in skopeo's terms)."""
    with tempfile.TemporaryDirectory(dir=Path(path).parent) as tmp:
        written = write_oci_layout(Path(tmp), layers, config, ref_name, compression, **kw)
        tar_tree(Path(tmp), Path(path))
    return written


def tar_tree(src: Path, dest: Path) -> None:
    """Tar a directory tree deterministically (sorted names, zero mtimes and owners)."""
    tmp = dest.with_name(f".tmp-{dest.name}-{os.getpid()}")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
        for root, dirs, files in os.walk(src):
            dirs.sort()
            rel_root = os.path.relpath(root, src)
            for name in sorted(dirs):
                _add_dir(tf, posixpath.normpath(posixpath.join(rel_root, name)))
            for name in sorted(files):
                if name.startswith(".tmp-"):
                    continue
                _add_path(tf, posixpath.normpath(posixpath.join(rel_root, name)), Path(root) / name)
    os.replace(tmp, dest)


def _add_dir(tf: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    tf.addfile(info)


def _add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tf.addfile(info, io.BytesIO(data))


def _add_path(tf: tarfile.TarFile, name: str, path: Path) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = path.stat().st_size, 0o644
    with open(path, "rb") as f:
        tf.addfile(info, f)


def _add_source(tf: tarfile.TarFile, name: str, source: LayerSource) -> None:
    if isinstance(source, Path):
        _add_path(tf, name, source)
    else:
        _add_bytes(tf, name, source)


def write_docker_archive(
    path: Path,
    layers: Sequence[LayerSource],
    config: dict[str, Any],
    repo_tags: Sequence[str] = (),
    *,
    oci_layout: bool = False,
) -> WrittenImage:
    """One image as `docker save` writes it; see `write_docker_archive_images`."""
    return write_docker_archive_images(path, [ImageSpec(layers, config, repo_tags)], oci_layout=oci_layout)[0]


def write_docker_archive_images(
    path: Path, images: Sequence[ImageSpec], *, oci_layout: bool = False
) -> list[WrittenImage]:
    """Write images as a docker-archive tar (layers uncompressed, as Docker writes them).

    Classic layout (Docker < 25): `manifest.json`, `repositories`, `<config hex>.json`,
    `<diff_id hex>/layer.tar`. With `oci_layout` (Docker >= 25): the same manifest.json
    pointing into an OCI layout (`blobs/sha256/...`, `index.json` with
    `io.containerd.image.name`, `oci-layout`) in the same tar.
    """
    written: list[WrittenImage] = []
    members: dict[str, LayerSource] = {}
    manifest_json: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    index_entries: list[Descriptor] = []

    for spec in images:
        diff_ids = [_hash_source(layer) for layer in spec.layers]
        config_bytes = _finish_config(spec.config, diff_ids)
        config_digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
        layer_descs = []
        layer_names = []
        for layer, diff_id in zip(spec.layers, diff_ids):
            size = layer.stat().st_size if isinstance(layer, Path) else len(layer)
            layer_descs.append(Descriptor(OCI_LAYER, diff_id, size))
            name = f"blobs/sha256/{digest_hex(diff_id)}" if oci_layout else f"{digest_hex(diff_id)}/layer.tar"
            members.setdefault(name, layer)
            layer_names.append(name)
        config_name = f"blobs/sha256/{digest_hex(config_digest)}" if oci_layout else f"{digest_hex(config_digest)}.json"
        members[config_name] = config_bytes
        manifest = build_manifest(Descriptor(OCI_CONFIG, config_digest, len(config_bytes)), layer_descs)
        manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        tags = [parse_reference(t) for t in spec.repo_tags]
        manifest_json.append(
            {"Config": config_name, "RepoTags": [t.familiar() for t in tags] or None, "Layers": layer_names}
        )
        for ref in tags:
            top = digest_hex(diff_ids[-1]) if diff_ids else digest_hex(config_digest)
            repositories.setdefault(ref.familiar_name(), {})[ref.tag or "latest"] = top
        if oci_layout:
            members[f"blobs/sha256/{digest_hex(manifest_digest)}"] = manifest
            for ref in tags or [None]:
                ann = {ANNOTATION_CONTAINERD_NAME: str(ref), ANNOTATION_REF_NAME: ref.tag or ""} if ref else None
                index_entries.append(Descriptor(OCI_MANIFEST, manifest_digest, len(manifest), ann))
        written.append(WrittenImage(manifest_digest, manifest, config_digest, config_bytes, layer_descs, diff_ids))

    members["manifest.json"] = _dump(manifest_json)
    if repositories:
        members["repositories"] = _dump(repositories)
    if oci_layout:
        members["index.json"] = build_index(index_entries)
        members["oci-layout"] = _dump({"imageLayoutVersion": OCI_LAYOUT_VERSION})

    write_archive_members(Path(path), members)
    return written


def write_archive_members(path: Path, members: dict[str, LayerSource]) -> None:
    """A tar of `members` (name -> bytes or file), sorted, parent directories first,
    written under a temporary name and renamed into place when complete."""
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
            dirs_done: set[str] = set()
            for name in sorted(members):
                parent = posixpath.dirname(name)
                parts = parent.split("/") if parent else []
                for i in range(1, len(parts) + 1):
                    d = "/".join(parts[:i])
                    if d not in dirs_done:
                        dirs_done.add(d)
                        _add_dir(tf, d)
                _add_source(tf, name, members[name])
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
