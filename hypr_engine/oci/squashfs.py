"""Read a built rootfs squashfs from the host, without mounting it (no root needed).

The engine uses it to answer questions about an image's files before booting it
(e.g. does the workload's command exist, what uid is user `app` in /etc/passwd), and
tests use `list_entries` to compare a rootfs against an independent unpacker. It runs
`sqfs2tar` (squashfs-tools-ng) and parses the tar it writes.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from hypr_engine.errors import CorruptData, NotFound, Unavailable
from hypr_engine.oci.tarstream import StrictTarReader

_TYPE_NAMES = {
    tarfile.REGTYPE: "file",
    tarfile.AREGTYPE: "file",
    tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hardlink",
    tarfile.CHRTYPE: "chardev",
    tarfile.BLKTYPE: "blockdev",
    tarfile.FIFOTYPE: "fifo",
}


@dataclass(frozen=True)
class FsEntry:
    """One file of the image as the guest will see it."""

    path: str  # relative, no leading "./"; "" is the root
    kind: str  # file, dir, symlink, hardlink, chardev, blockdev, fifo
    mode: int
    uid: int
    gid: int
    mtime: int
    size: int = 0
    target: str = ""  # symlink target, or the path a hard link shares its inode with
    sha256: str = ""  # content hash of regular files
    device: tuple[int, int] | None = None
    xattrs: dict[str, bytes] = field(default_factory=dict, compare=False)


def _tool(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        raise Unavailable(f"{name} not found: install squashfs-tools-ng")
    return exe


def list_entries(image: Path, *, with_content: bool = True) -> dict[str, FsEntry]:
    """Every entry of a squashfs, by path (the root as ""), with metadata and content hashes."""
    if not Path(image).is_file():
        raise NotFound(f"{image}: no such squashfs image")
    proc = subprocess.Popen(
        [_tool("sqfs2tar"), "--root-becomes", ".", str(image)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    entries: dict[str, FsEntry] = {}
    try:
        reader = StrictTarReader(proc.stdout, f"squashfs {image}")
        for m in reader:
            path = m.name[2:] if m.name.startswith("./") else ("" if m.name in (".", "./") else m.name)
            kind = _TYPE_NAMES.get(m.type, f"type-{m.type!r}")
            digest = ""
            if kind == "file" and with_content:
                h = hashlib.sha256()
                f = reader.extractfile(m)
                while chunk := f.read(1 << 20):
                    h.update(chunk)
                digest = "sha256:" + h.hexdigest()
            target = m.linkname
            if kind == "hardlink" and target.startswith("./"):
                target = target[2:]
            xattrs = {
                k[len("SCHILY.xattr."):]: v.encode("utf-8", "surrogateescape")
                for k, v in m.pax_headers.items()
                if k.startswith("SCHILY.xattr.")
            }
            entries[path] = FsEntry(
                path=path,
                kind=kind,
                mode=m.mode & 0o7777,
                uid=m.uid,
                gid=m.gid,
                mtime=int(m.mtime),
                size=m.size if kind == "file" else 0,
                target=target if kind in ("symlink", "hardlink") else "",
                sha256=digest,
                device=(m.devmajor, m.devminor) if kind in ("chardev", "blockdev") else None,
                xattrs=xattrs,
            )
    finally:
        proc.stdout.close()
        _, err = proc.communicate()
    if proc.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines()
        raise CorruptData(f"sqfs2tar {image} failed: {lines[-1] if lines else f'exit {proc.returncode}'}")
    return entries


def read_file(image: Path, path: str, *, max_size: int = 16 << 20) -> bytes:
    """The content of one regular file of the image (NotFound if absent)."""
    proc = subprocess.run(
        [_tool("rdsquashfs"), "--cat", "/" + path.lstrip("/"), str(image)],
        capture_output=True,
    )
    if proc.returncode != 0:
        raise NotFound(f"{path}: not a file in {image}")
    if len(proc.stdout) > max_size:
        raise CorruptData(f"{path} in {image} is larger than {max_size} bytes")
    return proc.stdout
