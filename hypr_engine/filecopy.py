"""`hypr cp`: tar streams to and from a VM, with Docker's naming rules.

The guest side (kestrel's STAT, COPY_IN, COPY_OUT) reads and writes POSIX tar;
this module builds the stream from host files and extracts what comes back,
never writing outside the destination: the guest is not trusted.
"""

from __future__ import annotations

import os
import posixpath
import stat as stat_mod
import tarfile
from pathlib import Path
from typing import BinaryIO

from hypr_engine.errors import CorruptData, InvalidArgument


def pack(src: Path, arcname: str, out: BinaryIO, *, preserve_owner: bool) -> None:
    """Write `src` (file or tree, symlinks not followed) as a PAX tar named `arcname`.

    Without `preserve_owner` every entry belongs to root, as `docker cp` without -a.
    """

    def owner(info: tarfile.TarInfo) -> tarfile.TarInfo:
        if not preserve_owner:
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
        return info

    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        tar.add(str(src), arcname=arcname, recursive=True, filter=owner)


def _clean_name(name: str, rename_top: tuple[str, str] | None) -> str:
    if name.startswith("/"):
        raise CorruptData(f"refusing absolute path {name!r} in the copied archive")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts:
        return ""
    if any(p == ".." for p in parts):
        raise CorruptData(f"refusing path {name!r} with '..' in the copied archive")
    if rename_top and parts[0] == rename_top[0]:
        parts[0] = rename_top[1]
    return "/".join(parts)


def _inside(root: Path, path: Path) -> bool:
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root + os.sep)


def extract(archive: BinaryIO, dest_dir: Path, *, rename_top: tuple[str, str] | None = None) -> list[str]:
    """Extract into `dest_dir` (which must exist); returns the top-level names written.

    Refuses absolute names, `..`, links pointing out of `dest_dir`, and any member
    whose parent resolves outside `dest_dir` (through a symlink made earlier).
    """
    if not dest_dir.is_dir():
        raise InvalidArgument(f"destination directory {dest_dir} does not exist")
    as_root = os.geteuid() == 0
    tops: list[str] = []
    dirs: list[tuple[Path, tarfile.TarInfo]] = []
    try:
        tar = tarfile.open(fileobj=archive, mode="r|")
    except tarfile.TarError as exc:
        raise CorruptData(f"the VM sent an unreadable archive: {exc}") from None
    with tar:
        for member in tar:
            if member.name.startswith("/"):
                raise CorruptData(f"refusing absolute path {member.name!r} in the copied archive")
            name = _clean_name(member.name, rename_top)
            if not name:
                continue
            target = dest_dir / name
            if not _inside(dest_dir, target.parent):
                raise CorruptData(f"refusing {member.name!r}: it would be written outside {dest_dir}")
            top = name.split("/", 1)[0]
            if top not in tops:
                tops.append(top)
            target.parent.mkdir(parents=True, exist_ok=True)
            if member.isdir():
                if target.is_symlink() or (target.exists() and not target.is_dir()):
                    target.unlink()
                target.mkdir(exist_ok=True)
                dirs.append((target, member))
                continue
            if target.is_symlink() or (target.exists() and not target.is_dir()):
                target.unlink()
            if member.issym():
                os.symlink(member.linkname, target)
            elif member.islnk():
                link = dest_dir / _clean_name(member.linkname, rename_top)
                if not _inside(dest_dir, link):
                    raise CorruptData(f"refusing hard link {member.name!r} to {member.linkname!r}")
                os.link(link, target)
            elif member.isfile():
                src = tar.extractfile(member)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as out:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
            else:
                continue  # devices and fifos are not copied out of a VM
            _apply_meta(target, member, as_root)
        for path, member in reversed(dirs):  # after their contents, so mtimes stick
            _apply_meta(path, member, as_root)
    return tops


def _apply_meta(path: Path, member: tarfile.TarInfo, as_root: bool) -> None:
    if member.issym():
        if as_root:
            os.lchown(path, member.uid, member.gid)
        return
    if as_root:
        os.chown(path, member.uid, member.gid, follow_symlinks=False)
    os.chmod(path, stat_mod.S_IMODE(member.mode), follow_symlinks=False)
    os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)


def plan_copy_in(src: Path, dest: str, dest_stat: dict | None, parent_stat: dict | None) -> tuple[str, str]:
    """Docker's rules for `cp HOSTPATH VM:DEST`: (directory to extract in, name of the top entry)."""
    if not dest.startswith("/"):
        raise InvalidArgument(f"the path in the VM must be absolute: {dest!r}")
    contents_only = str(src).endswith("/.")
    name = src.name if not contents_only else "."
    if dest_stat and dest_stat.get("type") == "dir":
        if contents_only:
            return dest, "."
        return dest, name
    if dest_stat:  # an existing file
        if src.is_dir():
            raise InvalidArgument(f"cannot copy a directory onto the file {dest}")
        return posixpath.dirname(dest) or "/", posixpath.basename(dest)
    if dest.endswith("/"):
        raise InvalidArgument(f"destination directory {dest} does not exist in the VM")
    parent = posixpath.dirname(dest) or "/"
    if not parent_stat or parent_stat.get("type") != "dir":
        raise InvalidArgument(f"no such directory in the VM: {parent}")
    return parent, posixpath.basename(dest)
