"""Layer fidelity, end to end: the tree a booted VM sees equals `umoci unpack` of the same image.

Three crafted layers (Python's tarfile, OCI layout by hypr_engine/oci/writer.py) hold one of
each thing a layer can carry: a whiteout of a file of layer 1, an opaque directory, a hard
link in layer 3 to a file of layer 1, devices, a FIFO, setuid/setgid/sticky bits, a user.*
xattr, owners, mtimes, a name over 100 bytes and a path over 255 bytes (PAX headers), a
symlink pointing out of the root and an absolute member name. umoci (an independent
implementation) unpacks the layout on the host; HYPR boots it and the test reads the
booted tree back through kestrel's COPY_OUT tar (the path `hypr cp VM:PATH` uses), so the
manifest compared is what the guest really sees: squashfs under overlayfs.

Layers that would write outside the root (`../escape`, a file written through a symlink
that points out) are refused by HYPR before any VM exists (tests/vm/test_images.py covers
more); here umoci's clamped result is checked to have escaped nowhere on the host either.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from hypr_engine.oci import writer as w

pytestmark = [
    pytest.mark.vm,
    pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci not installed (scripts/setup.sh installs it)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="a faithful umoci unpack (owners, devices) needs root"),
]

BUSYBOX = Path("/bin/busybox")
T = 1_700_000_000  # mtimes: T + n, distinct per entry
LONG_NAME = "n" * 140                                  # > 100 bytes: a PAX path record
DEEP_DIRS = ["d" * 70 + str(i) for i in range(4)]        # with the file name: > 255 bytes
DEEP_PATH = "/".join(["deep", *DEEP_DIRS, "f" * 30])
# Written by kestrel at boot (boot.c write_identity), so never the image's to compare.
KESTREL_FILES = {"etc/hostname", "etc/hosts", "etc/resolv.conf"}
KESTREL_DIR_MTIMES = {"etc"}  # kestrel writes into it, so its mtime is the boot's


def _layers() -> list[bytes]:
    deep_dirs = ["deep/" + "/".join(DEEP_DIRS[: i + 1]) for i in range(len(DEEP_DIRS))]
    layer1 = [
        w.directory("bin", mtime=T + 1),
        w.file("bin/busybox", BUSYBOX.read_bytes(), mode=0o755, mtime=T + 2),
        w.symlink("bin/sh", "busybox", mtime=T + 3),
        w.file("bin/suid", b"\x7fELF setuid", mode=0o4755, uid=0, gid=0, mtime=T + 4),
        w.directory("etc", mtime=T + 5),
        w.file("etc/gone", "whited out by layer 2\n", mtime=T + 6),
        w.file("etc/kept", "kept\n", mode=0o600, uid=1000, gid=1001, mtime=T + 7),
        w.directory("data", mode=0o2775, uid=0, gid=50, mtime=T + 8),
        w.file("data/orig", "linked from layer 3\n", mode=0o640, uid=33, gid=33, mtime=T + 9),
        w.file("data/xattr", "has an xattr\n", mtime=T + 10, xattrs={"user.hypr.test": "value 1"}),
        w.directory("opq", mtime=T + 11),
        w.file("opq/old", "hidden by the opaque directory\n", mtime=T + 12),
        w.directory("opq/sub", mtime=T + 13),
        w.file("opq/sub/old2", "hidden too\n", mtime=T + 14),
        w.directory("devs", mtime=T + 15),
        w.chardev("devs/null2", 1, 3, mode=0o666, mtime=T + 16),
        w.blockdev("devs/loop9", 7, 9, mode=0o660, gid=6, mtime=T + 17),
        w.fifo("devs/pipe", mode=0o620, mtime=T + 18),
        w.directory("tmp", mode=0o1777, mtime=T + 19),
        w.directory("long", mtime=T + 20),
        w.file(f"long/{LONG_NAME}", "long name\n", mtime=T + 21),
        w.directory("deep", mtime=T + 22),
        *[w.directory(d, mtime=T + 23) for d in deep_dirs],
        w.file(DEEP_PATH, "deep path\n", uid=7, gid=8, mtime=T + 24),
    ]
    layer2 = [
        w.whiteout("etc/gone"),
        w.opaque("opq"),
        w.file("opq/new", "from layer 2\n", mtime=T + 30),
        w.file("etc/kept", "replaced in layer 2\n", mode=0o644, uid=1000, gid=1001, mtime=T + 31),
        w.directory("links", mtime=T + 32),
        w.symlink("links/rel", "../data/orig", mtime=T + 33),
        w.symlink("links/out", "../../../../../../tmp/hypr-fidelity-outside", mtime=T + 34),
        w.symlink("links/abs", "/etc/kept", mtime=T + 35),
        w.file("/abs", "an absolute member name lands inside the root\n", mtime=T + 36),
    ]
    layer3 = [
        w.hardlink("data/hl", "data/orig"),  # to a file of layer 1
        w.file("data/three", "three\n", mode=0o755, mtime=T + 40),
        w.hardlink("data/three-link", "data/three"),
        w.hardlink(f"long/{LONG_NAME}-link", f"long/{LONG_NAME}"),  # PAX linkpath
    ]
    return [w.layer_tar(layer) for layer in (layer1, layer2, layer3)]


def _config() -> dict:
    return {"architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["/bin/busybox", "sleep", "600"], "Env": ["PATH=/bin"]}}


# --- manifests -------------------------------------------------------------------------------

def _entry(kind: str, mode: int, uid: int, gid: int, size: int, target: str, device, digest: str,
           xattrs: dict, mtime: int | None) -> tuple:
    return (kind, mode, uid, gid, size, target, device, digest, tuple(sorted(xattrs.items())), mtime)


def _tree_manifest(root: Path) -> dict[str, tuple]:
    """path -> metadata of a tree on disk (umoci's unpack), plus the hard-link groups."""
    out: dict[str, tuple] = {}
    inodes: dict[int, list[str]] = {}
    kinds = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink", stat.S_IFCHR: "chardev",
             stat.S_IFBLK: "blockdev", stat.S_IFIFO: "fifo"}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            kind = kinds[stat.S_IFMT(st.st_mode)]
            xattrs = {} if kind == "symlink" else {
                k: os.getxattr(p, k, follow_symlinks=False) for k in os.listxattr(p, follow_symlinks=False)}
            out[rel] = _entry(
                kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_size if kind == "file" else 0,
                os.readlink(p) if kind == "symlink" else "",
                (os.major(st.st_rdev), os.minor(st.st_rdev)) if kind in ("chardev", "blockdev") else None,
                hashlib.sha256(p.read_bytes()).hexdigest() if kind == "file" else "", xattrs, int(st.st_mtime))
            if kind != "dir" and st.st_nlink > 1:
                inodes.setdefault(st.st_ino, []).append(rel)
    out["<hard links>"] = tuple(sorted(tuple(sorted(g)) for g in inodes.values() if len(g) > 1))
    return out


def _tar_manifest(data: bytes) -> dict[str, tuple]:
    """The same manifest from a tar (kestrel's COPY_OUT of the booted tree)."""
    out: dict[str, tuple] = {}
    groups: dict[str, list[str]] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
        for m in tf:
            name = m.name.rstrip("/")
            xattrs = {k[len("SCHILY.xattr."):]: v.encode("utf-8", "surrogateescape")
                      for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr.")}
            if m.islnk():
                first = out[m.linkname.rstrip("/")]
                out[name] = first
                groups.setdefault(m.linkname, [m.linkname]).append(name)
                continue
            kind = ("file" if m.isreg() else "dir" if m.isdir() else "symlink" if m.issym() else
                    "chardev" if m.ischr() else "blockdev" if m.isblk() else "fifo" if m.isfifo() else m.type)
            body = tf.extractfile(m).read() if m.isreg() else b""
            out[name] = _entry(
                kind, m.mode & 0o7777, m.uid, m.gid, m.size if m.isreg() else 0, m.linkname if m.issym() else "",
                (m.devmajor, m.devminor) if kind in ("chardev", "blockdev") else None,
                hashlib.sha256(body).hexdigest() if m.isreg() else "", xattrs, int(m.mtime))
    out["<hard links>"] = tuple(sorted(tuple(sorted(g)) for g in groups.values()))
    return out


def _comparable(manifest: dict[str, tuple]) -> dict[str, tuple]:
    """Drop what kestrel writes at boot; a symlink's own mode and mtime are not the image's to set
    (Linux ignores them: 0777, and umoci does not restore them)."""
    out = {}
    for path, e in manifest.items():
        if path in KESTREL_FILES:
            continue
        if e and e[0] == "symlink":
            e = e[:1] + (0o777,) + e[2:9] + (None,)
        if path in KESTREL_DIR_MTIMES:
            e = e[:9] + (None,)
        out[path] = e
    return out


async def _copy_out(home, vm: str, path: str) -> bytes:
    """The raw tar kestrel streams for `hypr cp VM:PATH` (before the host extracts it)."""
    from hypr_engine.engine import Engine
    from hypr_engine.paths import Layout

    engine = await Engine.open(Layout(home.data, home.runtime))
    try:
        _, client = await engine.vms.agent(vm)
        try:
            session = await client.copy_out(path)
            data = b"".join([chunk async for _, chunk in session.output()])
            assert session.exit_code == 0, f"copy out of {path} failed"
            return data
        finally:
            await client.close()
    finally:
        await engine.close()


def test_booted_tree_matches_umoci_unpack(hypr_home, tmp_path):
    layout = tmp_path / "layout"
    w.write_oci_layout(layout, _layers(), _config(), ref_name="t", image_name="docker.io/library/fidelity:1")
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:t", str(bundle)], check=True, capture_output=True,
                   timeout=120)
    expected = _tree_manifest(bundle / "rootfs")

    hypr_home.run("load", "-i", str(layout), check=True)
    hypr_home.run("run", "-d", "--name", "fid", "fidelity:1", check=True)
    booted: dict[str, tuple] = {}
    links: list = []
    for top in sorted(p.name for p in (bundle / "rootfs").iterdir()):
        part = _tar_manifest(asyncio.run(_copy_out(hypr_home, "fid", f"/{top}")))
        links += part.pop("<hard links>")
        booted.update(part)
    booted["<hard links>"] = tuple(sorted(links))
    hypr_home.run("rm", "-f", "fid", check=True)

    assert _comparable(booted) == _comparable(expected)
    # What the comparison covers, spelled out (so an empty or trivial tree cannot pass).
    assert "etc/gone" not in booted and "opq/old" not in booted and "opq/sub" not in booted
    assert booted["opq/new"][0] == "file" and booted["abs"][0] == "file"
    assert booted["<hard links>"] == (("data/hl", "data/orig"), ("data/three", "data/three-link"),
                                      (f"long/{LONG_NAME}", f"long/{LONG_NAME}-link"))
    assert booted["devs/null2"][0] == "chardev" and booted["devs/null2"][6] == (1, 3)
    assert booted["devs/loop9"][6] == (7, 9) and booted["devs/pipe"][0] == "fifo"
    assert booted["bin/suid"][1] == 0o4755 and booted["data"][1:4] == (0o2775, 0, 50)
    assert booted["tmp"][1] == 0o1777
    assert booted["data/xattr"][8] == (("user.hypr.test", b"value 1"),)
    assert booted[DEEP_PATH][2:4] == (7, 8) and len(DEEP_PATH) > 255
    assert booted["etc/kept"][9] == T + 31 and booted["links/out"][5].endswith("hypr-fidelity-outside")


def test_layers_writing_outside_the_root_escape_nowhere(hypr_home, tmp_path):
    outside = Path(f"/tmp/hypr-fidelity-{uuid.uuid4().hex[:8]}")
    layers = [
        w.layer_tar([w.directory("bin"), w.file("bin/busybox", BUSYBOX.read_bytes(), mode=0o755)]),
        w.layer_tar([w.symlink("out", str(outside)), w.file("out/pwned", "through a symlink\n"),
                     w.file("../escape", "dot-dot\n")]),
    ]
    layout = tmp_path / "layout"
    w.write_oci_layout(layout, layers, _config(), ref_name="t", image_name="docker.io/library/evil:1")
    bundle = tmp_path / "sub" / "bundle"
    bundle.parent.mkdir()
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:t", str(bundle)], capture_output=True, timeout=120)
    assert not outside.exists() and not (tmp_path / "sub" / "escape").exists()
    assert not (bundle / "escape").exists()

    loaded = hypr_home.run("load", "-i", str(layout))
    proc = hypr_home.run("run", "--rm", "evil:1") if loaded.returncode == 0 else loaded
    assert proc.returncode == 125 and proc.stderr.count(b"\n") == 1, proc.stderr
    assert b"symlink" in proc.stderr or b".." in proc.stderr
    assert not outside.exists() and hypr_home.out("ps", "-aq") == ""
    assert not list((hypr_home.data / "rootfs").glob("*.squashfs"))
