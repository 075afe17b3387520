"""Merge an image's layers into one tar stream, applying OCI whiteouts, without root.

`tar2sqfs` turns one tar stream into a squashfs but knows nothing of layers; this
module produces that stream. Two passes, never holding a layer in memory:

* Pass 1 (`plan_layers`) reads every layer's headers (decompressing on the fly and
  hashing the uncompressed bytes, so each layer's diff_id is verified for free) and
  builds the merged tree: later layers replace earlier entries, `.wh.NAME` deletes
  NAME from the layers below, `.wh..wh..opq` hides everything the layers below put in
  its directory (OCI image-spec layer.md: whiteouts apply to lower layers only, never
  to entries of their own layer). Only metadata is kept.
* Pass 2 (`write_merged`) emits directories and metadata-only entries first (parents
  before children), then streams the layers again and copies the data of the regular
  files that survived, each followed by its hard links.

Hard links: a tar hard link names the path of its target *as it is when the link is
extracted* (Docker extracts layers in order). Each non-directory gets an inode
identity (layer, member index); a link shares its target's identity, so a link to a
file of an earlier layer keeps that file's content even if a later layer replaces or
deletes the original path. In the output, the first surviving path of an identity
carries the data and the others are hard links to it.

Safety (all CorruptData, raised in pass 1, before any output exists): a `..` path
component, a hard link whose target is absent, outside the tree or a directory, and
any entry (or whiteout) whose parent path goes through a symlink or a non-directory in
the merged tree (layer 1 `evil -> /etc`, layer 2 `evil/passwd`). Leading `/` and `./`
are dropped, as Docker does. Symlink targets are kept verbatim: they are resolved
inside the guest, against the image's own root. Overlayfs' own xattrs
(`trusted.overlay.*`, `user.overlay.*`) are dropped: the squashfs becomes an overlay
lower layer in the guest, where they would be obeyed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from hypr_engine.errors import CorruptData
from hypr_engine.oci.compression import DECOMPRESS_ERRORS, PrefetchReader, open_decompressed
from hypr_engine.oci.tarstream import StrictTarReader, tar_writer

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
_MAX_MTIME = 0xFFFFFFFF  # squashfs stores 32-bit unsigned times

_KINDS = {
    tarfile.REGTYPE: "reg",
    tarfile.AREGTYPE: "reg",
    tarfile.CONTTYPE: "reg",
    tarfile.GNUTYPE_SPARSE: "reg",
    tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "sym",
    tarfile.LNKTYPE: "lnk",
    tarfile.CHRTYPE: "chr",
    tarfile.BLKTYPE: "blk",
    tarfile.FIFOTYPE: "fifo",
}
_OUT_TYPES = {
    "reg": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "sym": tarfile.SYMTYPE,
    "chr": tarfile.CHRTYPE,
    "blk": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}
_DROPPED_XATTR_PREFIXES = ("SCHILY.xattr.trusted.overlay.", "SCHILY.xattr.user.overlay.")


@dataclass
class LayerInput:
    """One layer to merge: how to open its (possibly compressed) blob, and what to call it."""

    open: Callable[[], BinaryIO]
    name: str
    diff_id: str | None = None  # verified against the uncompressed bytes in pass 1 when given


@dataclass(slots=True)
class _Meta:
    """What the output needs of a tar header (TarInfo objects are too heavy to keep per file)."""

    mode: int
    uid: int
    gid: int
    mtime: int
    size: int
    linkname: str
    devmajor: int
    devminor: int
    xattrs: dict[str, str] | None

    @classmethod
    def of(cls, m: tarfile.TarInfo) -> "_Meta":
        xattrs = {
            k: v
            for k, v in m.pax_headers.items()
            if (k.startswith("SCHILY.xattr.") or k.startswith("LIBARCHIVE.xattr."))
            and not k.startswith(_DROPPED_XATTR_PREFIXES)
        }
        return cls(
            mode=m.mode & 0o7777,
            uid=m.uid,
            gid=m.gid,
            mtime=min(max(int(m.mtime), 0), _MAX_MTIME),
            size=m.size if _KINDS.get(m.type) == "reg" else 0,
            linkname=m.linkname,
            devmajor=m.devmajor,
            devminor=m.devminor,
            xattrs=xattrs or None,
        )


# Attributes of a directory no layer declared (created as a parent), as Docker creates it.
_IMPLICIT_DIR = _Meta(mode=0o755, uid=0, gid=0, mtime=0, size=0, linkname="", devmajor=0, devminor=0, xattrs=None)


@dataclass(slots=True)
class _Node:
    kind: str  # reg, dir, sym, chr, blk, fifo
    meta: _Meta | None  # None: a directory no layer declared (written with _IMPLICIT_DIR)
    layer: int  # layer that last declared this node (whiteouts only hide lower layers)
    ident: tuple[int, int] | None = None  # inode identity of non-directories: (layer, member index)
    children: dict[str, "_Node"] | None = None


@dataclass
class MergePlan:
    """Result of pass 1: the merged tree and what pass 2 must emit."""

    root: _Node
    layer_count: int
    entries: int = 0  # tar members read, for stats


def _components(name: str, what: str) -> tuple[str, ...]:
    parts = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise CorruptData(f"{what}: entry {name!r} has a '..' path component")
        parts.append(part)
    return tuple(parts)


class _Merger:
    def __init__(self, layer_count: int) -> None:
        self.root = _Node("dir", None, -1, children={})
        self.layer_count = layer_count
        self.entries = 0

    def _walk(self, parts: tuple[str, ...], layer: int, create: bool, what: str, name: str) -> _Node | None:
        """The directory at `parts`; never follows a symlink (that is the attack), never passes a file."""
        node = self.root
        for i, part in enumerate(parts):
            assert node.children is not None
            child = node.children.get(part)
            if child is None:
                if not create:
                    return None
                child = _Node("dir", None, layer, children={})
                node.children[part] = child
            elif child.kind != "dir":
                where = "/".join(parts[: i + 1])
                if child.kind == "sym":
                    raise CorruptData(f"{what}: entry {name!r} goes through symlink {where!r}")
                raise CorruptData(f"{what}: entry {name!r} goes through {where!r}, which is not a directory")
            node = child
        return node

    def apply(self, layer: int, index: int, m: tarfile.TarInfo, what: str) -> None:
        kind = _KINDS.get(m.type)
        if kind is None:
            raise CorruptData(f"{what}: entry {m.name!r} has unsupported tar type {m.type!r}")
        parts = _components(m.name, what)
        self.entries += 1
        if not parts:
            if kind != "dir":
                raise CorruptData(f"{what}: the root entry {m.name!r} is not a directory")
            self.root.meta, self.root.layer = _Meta.of(m), layer
            return
        parent_parts, base = parts[:-1], parts[-1]

        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(layer, parent_parts, base, m.name, what)
            return

        parent = self._walk(parent_parts, layer, True, what, m.name)
        assert parent is not None and parent.children is not None
        if kind == "lnk":
            target_parts = _components(m.linkname, what)
            target = self._lookup(target_parts, layer, what, m.name) if target_parts else None
            if target is None:
                raise CorruptData(f"{what}: hard link {m.name!r} points to {m.linkname!r}, which does not exist")
            if target.kind == "dir":
                raise CorruptData(f"{what}: hard link {m.name!r} points to directory {m.linkname!r}")
            parent.children[base] = _Node(target.kind, target.meta, layer, target.ident)
            return
        existing = parent.children.get(base)
        if kind == "dir":
            if existing is not None and existing.kind == "dir":
                existing.meta, existing.layer = _Meta.of(m), layer  # keeps its children
                return
            parent.children[base] = _Node("dir", _Meta.of(m), layer, children={})
            return
        parent.children[base] = _Node(kind, _Meta.of(m), layer, (layer, index))

    def _lookup(self, parts: tuple[str, ...], layer: int, what: str, name: str) -> _Node | None:
        parent = self._walk(parts[:-1], layer, False, what, name)
        if parent is None or parent.children is None:
            return None
        return parent.children.get(parts[-1])

    def _whiteout(self, layer: int, parent_parts: tuple[str, ...], base: str, name: str, what: str) -> None:
        # Like Docker (and containerd), a missing parent of a whiteout is created first;
        # umoci does not, but an empty directory is all the difference.
        directory = self._walk(parent_parts, layer, True, what, name)
        assert directory is not None and directory.children is not None
        if base == OPAQUE_MARKER:
            _prune_lower(directory, layer)  # everything below it from lower layers goes
            return
        if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            return  # other AUFS metadata (.wh..wh.plnk, ...): ignored, as Docker does
        victim_name = base[len(WHITEOUT_PREFIX):]
        if victim_name in (".", ".."):
            raise CorruptData(f"{what}: invalid whiteout {name!r}")
        victim = directory.children.get(victim_name)
        if victim is None or victim.layer >= layer:
            return  # absent, or put there by this same layer: a whiteout cannot hide it
        if victim.kind == "dir":
            _prune_lower(victim, layer)
            if victim.children:
                return  # keeps entries this layer added inside it
        del directory.children[victim_name]


def _prune_lower(directory: _Node, layer: int) -> None:
    """Remove everything below `directory` that comes from layers lower than `layer`.

    Iterative (children before parents), so a hostile, very deep tree cannot exhaust the stack.
    """
    order: list[_Node] = []
    stack = [directory]
    while stack:
        node = stack.pop()
        order.append(node)
        assert node.children is not None
        stack.extend(child for child in node.children.values() if child.kind == "dir")
    for node in reversed(order):
        assert node.children is not None
        for name in list(node.children):
            child = node.children[name]
            if child.layer < layer and (child.kind != "dir" or not child.children):
                del node.children[name]


def plan_layers(layers: list[LayerInput]) -> MergePlan:
    """Pass 1: read all layer headers, verify diff_ids, and compute the merged tree."""
    merger = _Merger(len(layers))
    for index, layer in enumerate(layers):
        what = layer.name
        hasher = hashlib.sha256()
        with layer.open() as raw, _prefetched(raw, what, hasher) as stream:
            for member_index, member in enumerate(StrictTarReader(stream, what)):
                merger.apply(index, member_index, member, what)
            try:
                while stream.read(1 << 20):
                    pass  # the tar padding after the end marker is part of the diff_id too
            except DECOMPRESS_ERRORS as exc:
                raise CorruptData(f"{what} is corrupt: {exc}") from None
        digest = "sha256:" + hasher.hexdigest()
        if layer.diff_id is not None and digest != layer.diff_id:
            raise CorruptData(f"{what}: uncompressed content is {digest}, but the image config says {layer.diff_id}")
    return MergePlan(merger.root, len(layers), merger.entries)


@contextlib.contextmanager
def _prefetched(raw: BinaryIO, what: str, hasher=None) -> Iterator[BinaryIO]:  # noqa: ANN001
    """The layer's decompressed bytes, decompressed (and hashed) ahead in a background thread."""
    try:
        _, stream = open_decompressed(raw)
    except DECOMPRESS_ERRORS as exc:
        raise CorruptData(f"{what} is corrupt: {exc}") from None
    reader = PrefetchReader(stream, hasher)
    try:
        yield io.BufferedReader(reader, buffer_size=1 << 16)  # type: ignore[misc]
    finally:
        reader.close()


# ----------------------------------------------------------------------------- pass 2


def _walk_tree(root: _Node) -> Iterator[tuple[str, _Node]]:
    """(path, node) in sorted preorder: parents always before their children (iterative, any depth)."""
    assert root.children is not None
    stack: list[tuple[str, _Node]] = [(name, root.children[name]) for name in sorted(root.children, reverse=True)]
    while stack:
        path, node = stack.pop()
        yield path, node
        if node.kind == "dir":
            assert node.children is not None
            stack.extend((f"{path}/{name}", node.children[name]) for name in sorted(node.children, reverse=True))


def _info(path: str, kind: str, meta: _Meta) -> tarfile.TarInfo:
    info = tarfile.TarInfo(path)
    info.type = _OUT_TYPES[kind]
    info.mode = meta.mode
    info.uid, info.gid = meta.uid, meta.gid
    info.uname = info.gname = ""
    info.mtime = meta.mtime
    info.size = meta.size if kind == "reg" else 0
    if kind == "sym":
        info.linkname = meta.linkname
    if kind in ("chr", "blk"):
        info.devmajor, info.devminor = meta.devmajor, meta.devminor
    if meta.xattrs:
        info.pax_headers = dict(meta.xattrs)
    return info


def _link_info(path: str, target: str, meta: _Meta) -> tarfile.TarInfo:
    info = tarfile.TarInfo(path)
    info.type = tarfile.LNKTYPE
    info.linkname = target
    info.mode, info.uid, info.gid, info.mtime = meta.mode, meta.uid, meta.gid, meta.mtime
    info.uname = info.gname = ""
    return info


def write_merged(plan: MergePlan, layers: list[LayerInput], out: BinaryIO) -> None:
    """Pass 2: write the merged image as one PAX tar stream to `out` (buffered; flushed, not closed)."""
    groups: dict[tuple[int, int], list[tuple[str, _Node]]] = {}
    with tar_writer(out) as tf:
        if plan.root.meta is not None:
            tf.addfile(_info(".", "dir", plan.root.meta))
        for path, node in _walk_tree(plan.root):
            if node.kind == "dir":
                # Undeclared directories too: one left empty by a whiteout must not vanish.
                tf.addfile(_info(path, "dir", node.meta or _IMPLICIT_DIR))
            else:
                assert node.ident is not None
                groups.setdefault(node.ident, []).append((path, node))

        data: dict[int, dict[int, list[tuple[str, _Node]]]] = {}
        for ident, members in groups.items():
            primary_path, primary = members[0]
            assert primary.meta is not None
            if primary.kind == "reg" and primary.meta.size > 0:
                data.setdefault(ident[0], {})[ident[1]] = members
                continue
            tf.addfile(_info(primary_path, primary.kind, primary.meta))
            for path, _ in members[1:]:
                tf.addfile(_link_info(path, primary_path, primary.meta))

        for layer_index in sorted(data):
            wanted = data[layer_index]
            last = max(wanted)
            layer = layers[layer_index]
            with layer.open() as raw, _prefetched(raw, layer.name) as stream:
                reader = StrictTarReader(stream, layer.name)
                for member_index, member in enumerate(reader):
                    members = wanted.get(member_index)
                    if members is not None:
                        primary_path, primary = members[0]
                        assert primary.meta is not None
                        if member.size != primary.meta.size:
                            raise CorruptData(f"{layer.name} changed between the two passes of the rootfs build")
                        tf.addfile(_info(primary_path, "reg", primary.meta), reader.extractfile(member))
                        for path, _ in members[1:]:
                            tf.addfile(_link_info(path, primary_path, primary.meta))
                    if member_index >= last:
                        break
