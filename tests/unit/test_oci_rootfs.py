"""Layers -> squashfs: OCI whiteout semantics, metadata fidelity, safety, caching.

Every case builds a real image (writer -> OCI layout -> content store), converts it
with the real tar2sqfs, and reads the result back with sqfs2tar. Where umoci is
installed, the same layout is unpacked by it as an independent implementation of
layer flattening and the two trees are compared entry by entry.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hypr_engine.errors import CorruptData, InvalidArgument, NotFound, Timeout, Unavailable
from hypr_engine.oci import writer as w
from hypr_engine.oci.archive import load_archive
from hypr_engine.oci.content import ContentStore
from hypr_engine.oci.descriptor import OCI_LAYER, Descriptor
from hypr_engine.oci.rootfs import RootfsBuilder
from hypr_engine.oci.squashfs import FsEntry, list_entries, read_file

pytestmark = pytest.mark.skipif(shutil.which("tar2sqfs") is None, reason="squashfs-tools-ng not installed")


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Env:
    """A content store + rootfs builder in a temp dir, and helpers to build images from entry lists."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = ContentStore(root / "content")
        self.builder = RootfsBuilder(root / "rootfs", self.store)
        self.n = 0

    def image(self, layers: list[list[w.TarEntry]], compression: str = "gzip"):  # noqa: ANN201
        self.n += 1
        layout = self.root / f"layout{self.n}"
        w.write_oci_layout(layout, [w.layer_tar(entries) for entries in layers], {"config": {}}, "t", compression)
        [img] = load_archive(layout, self.store)
        return img

    def build(self, layers: list[list[w.TarEntry]], compression: str = "gzip") -> dict[str, FsEntry]:
        img = self.image(layers, compression)
        return list_entries(self.builder.build(img.layers, img.diff_ids))

    def cache_files(self) -> list[str]:
        return sorted(p.name for p in self.builder.cache_dir.iterdir() if p.name != ".locks")


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def content(e: FsEntry) -> str:
    return e.sha256


def test_metadata_is_preserved(env: Env) -> None:
    long_dir = "d" * 120
    long_name = f"{long_dir}/{'n' * 200}"
    fs = env.build(
        [
            [
                w.directory("etc", mode=0o755, mtime=1_600_000_000),
                w.file("etc/passwd", "root:x:0:0::/root:/bin/sh\n", mode=0o644, mtime=1_600_000_001),
                w.file("bin/su", b"\x7fELF", mode=0o4755, uid=0, gid=0),
                w.file("bin/wall", b"\x7fELF", mode=0o2755, gid=5),
                w.directory("tmp", mode=0o1777),
                w.directory("home/app", mode=0o700, uid=1000, gid=1000, mtime=42),
                w.file("home/app/big", os.urandom(300_000), uid=1000, gid=1000),
                w.symlink("bin/sh", "busybox"),
                w.symlink("abs", "/etc/passwd"),
                w.symlink("dangling", "../../nowhere"),
                w.chardev("dev/null", 1, 3, mode=0o666),
                w.blockdev("dev/vda", 254, 0, mode=0o660, gid=6),
                w.fifo("run/fifo", mode=0o620),
                w.file("caps", b"x", xattrs={"security.capability": b"\x01\x00\x00\x02\x00\x04\x00\x00" + b"\x00" * 12, "user.note": "hello"}),
                w.file(long_name, "long"),
                w.file("naïve/日本語.txt", "unicode"),
                w.file("latin1-\udce9t\udce9", "bytes"),  # a non-UTF-8 name (b"latin1-\xe9t\xe9")
                w.file("huge-ids", "x", uid=3_000_000, gid=4_000_000),
                w.hardlink("bin/su2", "bin/su"),
            ]
        ]
    )
    assert fs["etc"].mode == 0o755 and fs["etc"].mtime == 1_600_000_000
    assert fs["etc/passwd"].mtime == 1_600_000_001
    assert fs["bin/su"].mode == 0o4755
    assert fs["bin/wall"].mode == 0o2755 and fs["bin/wall"].gid == 5
    assert fs["tmp"].mode == 0o1777
    assert (fs["home/app"].mode, fs["home/app"].uid, fs["home/app"].gid, fs["home/app"].mtime) == (0o700, 1000, 1000, 42)
    assert fs["home/app/big"].size == 300_000 and fs["home/app/big"].uid == 1000
    assert (fs["bin/sh"].kind, fs["bin/sh"].target) == ("symlink", "busybox")
    assert fs["abs"].target == "/etc/passwd" and fs["dangling"].target == "../../nowhere"
    assert (fs["dev/null"].kind, fs["dev/null"].device, fs["dev/null"].mode) == ("chardev", (1, 3), 0o666)
    assert (fs["dev/vda"].kind, fs["dev/vda"].device, fs["dev/vda"].gid) == ("blockdev", (254, 0), 6)
    assert (fs["run/fifo"].kind, fs["run/fifo"].mode) == ("fifo", 0o620)
    assert fs["caps"].xattrs == {"security.capability": b"\x01\x00\x00\x02\x00\x04\x00\x00" + b"\x00" * 12, "user.note": b"hello"}
    assert fs[long_name].size == 4
    assert fs["naïve/日本語.txt"].size == 7
    assert fs["latin1-\udce9t\udce9"].size == 5
    assert (fs["huge-ids"].uid, fs["huge-ids"].gid) == (3_000_000, 4_000_000)
    assert fs["bin/su2"].kind == "hardlink" and fs["bin/su2"].target == "bin/su"
    # Implicit parents get Docker's defaults.
    for implicit in ("bin", "dev", "run", "home", long_dir, "naïve"):
        assert (fs[implicit].kind, fs[implicit].mode, fs[implicit].uid, fs[implicit].mtime) == ("dir", 0o755, 0, 0)
    assert fs[""].mode == 0o755


def test_big_file_content_survives(env: Env) -> None:
    data = os.urandom(3 << 20)
    img = env.image([[w.file("blob.bin", data)]])
    out = env.builder.build(img.layers, img.diff_ids)
    assert read_file(out, "blob.bin", max_size=8 << 20) == data
    with pytest.raises(NotFound):
        read_file(out, "nope")


def test_whiteouts(env: Env) -> None:
    fs = env.build(
        [
            [w.file("a"), w.file("b"), w.file("d/x"), w.file("d/sub/y"), w.file("keep/z")],
            [w.whiteout("a"), w.whiteout("d"), w.whiteout("missing"), w.file("new", "n")],
            [w.file("a", "again")],
        ]
    )
    assert "d" not in fs and "d/x" not in fs and "d/sub/y" not in fs
    assert fs["a"].size == 5  # recreated by a later layer
    assert "b" in fs and "keep/z" in fs and "new" in fs
    assert not any(".wh." in path for path in fs)


def test_whiteout_does_not_hide_its_own_layer(env: Env) -> None:
    """OCI: a whiteout applies only to lower layers, whatever the order inside its layer."""
    fs = env.build([[w.file("f", "old")], [w.file("f", "same layer"), w.whiteout("f")]])
    assert fs["f"].size == len("same layer")


def test_opaque_directory(env: Env) -> None:
    fs = env.build(
        [
            [w.directory("d", mode=0o755), w.file("d/lower1"), w.file("d/sub/lower2"), w.file("other")],
            [w.directory("d", mode=0o700, uid=9), w.opaque("d"), w.file("d/upper")],
        ]
    )
    assert sorted(p for p in fs if p.startswith("d/")) == ["d/upper"]
    assert (fs["d"].mode, fs["d"].uid) == (0o700, 9)
    assert "other" in fs
    # The marker may come before the directory's new entries or after: same result.
    fs2 = env.build([[w.file("d/lower")], [w.file("d/upper"), w.opaque("d")]])
    assert sorted(p for p in fs2 if p.startswith("d/")) == ["d/upper"]


def test_replacements_between_kinds(env: Env) -> None:
    fs = env.build(
        [
            [w.file("was-file"), w.directory("was-dir"), w.file("was-dir/child"), w.symlink("link", "target")],
            [w.directory("was-file", mode=0o711), w.file("was-dir", "now a file"), w.directory("link"), w.file("link/inside")],
        ]
    )
    assert fs["was-file"].kind == "dir" and fs["was-file"].mode == 0o711
    assert fs["was-dir"].kind == "file" and "was-dir/child" not in fs
    assert fs["link"].kind == "dir" and "link/inside" in fs


def test_whiteout_leaves_parent_directory(env: Env) -> None:
    """Found by the umoci differential test: a directory emptied by a whiteout stays."""
    fs = env.build([[w.file("a/a")], [w.whiteout("a/a")]])
    assert fs["a"].kind == "dir" and "a/a" not in fs


def test_whiteout_with_missing_parent_creates_it(env: Env) -> None:
    """Docker creates the parent of any entry first, whiteouts included."""
    fs = env.build([[w.file("x")], [w.whiteout("p/q"), w.opaque("r/s")]])
    assert {"p", "r", "r/s"} <= set(fs) and fs["r/s"].kind == "dir"


def test_directory_redeclared_keeps_children(env: Env) -> None:
    fs = env.build([[w.directory("d", mode=0o755), w.file("d/f")], [w.directory("d", mode=0o750, gid=4)]])
    assert (fs["d"].mode, fs["d"].gid) == (0o750, 4) and "d/f" in fs


def test_hardlinks_across_layers(env: Env) -> None:
    fs = env.build(
        [
            [w.file("a", "original", mode=0o640, uid=7), w.file("c", "cee")],
            [w.hardlink("b", "a"), w.hardlink("c2", "c"), w.hardlink("/abs-link", "/c")],
            [w.file("a", "replaced"), w.whiteout("c")],
        ]
    )
    # b shares the inode a had when the link was made; replacing a later does not change b.
    assert fs["a"].kind == "file" and fs["a"].sha256 == sha(b"replaced")
    assert fs["b"].kind == "file" and fs["b"].sha256 == sha(b"original") and (fs["b"].mode, fs["b"].uid) == (0o640, 7)
    # c was deleted, its two other names survive as one inode.
    assert "c" not in fs
    group = {fs["c2"].kind, fs["abs-link"].kind}
    assert group == {"file", "hardlink"}
    primary = "c2" if fs["c2"].kind == "file" else "abs-link"
    other = "abs-link" if primary == "c2" else "c2"
    assert fs[primary].sha256 == sha(b"cee") and fs[other].target == primary


def test_hardlink_chain_and_special_files(env: Env) -> None:
    fs = env.build([[w.file("f", "x"), w.hardlink("g", "f"), w.hardlink("h", "g"), w.symlink("s", "f"), w.hardlink("s2", "s"), w.fifo("p"), w.hardlink("p2", "p")]])
    assert fs["f"].kind == "file" and fs["g"].target == "f" and fs["h"].target == "f"
    assert {fs["s"].kind, fs["s2"].kind} <= {"symlink", "hardlink"}
    assert {fs["p"].kind, fs["p2"].kind} <= {"fifo", "hardlink"}


def test_path_normalisation_and_root_entry(env: Env) -> None:
    fs = env.build([[w.directory("./", mode=0o751, mtime=77), w.file("./a"), w.file("/b"), w.file("c//d/./e"), w.directory("/x/")]])
    assert {"a", "b", "c/d/e", "x"} <= set(fs)
    assert (fs[""].mode, fs[""].mtime) == (0o751, 77)


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_layer_compression_does_not_matter(env: Env, compression: str) -> None:
    layers = [[w.file("a", "1"), w.file("d/b", "2")], [w.whiteout("a"), w.hardlink("d/c", "d/b")]]
    fs = env.build(layers, compression)
    assert sorted(fs) == ["", "d", "d/b", "d/c"]


def test_empty_image(env: Env) -> None:
    out = env.builder.build([], [])
    assert out.name == "empty.squashfs"
    assert list(list_entries(out)) == [""]


SECURITY = [
    ("dotdot entry", [[w.file("../escape", "x")]], "'..' path component"),
    ("dotdot inside", [[w.file("a/../../b", "x")]], "'..' path component"),
    ("symlink parent across layers", [[w.symlink("evil", "../../etc")], [w.file("evil/passwd", "pwned")]], "goes through symlink 'evil'"),
    ("symlink parent same layer", [[w.symlink("evil", "/etc"), w.file("evil/passwd", "pwned")]], "goes through symlink"),
    ("deep symlink parent", [[w.directory("a"), w.symlink("a/b", "/")], [w.directory("a/b/c")]], "goes through symlink 'a/b'"),
    ("whiteout through symlink", [[w.symlink("evil", "/etc")], [w.whiteout("evil/shadow")]], "goes through symlink"),
    ("opaque through symlink", [[w.symlink("evil", "/etc")], [w.opaque("evil")]], "goes through symlink"),
    ("file as parent", [[w.file("f")], [w.file("f/child")]], "not a directory"),
    ("hardlink to absent", [[w.hardlink("h", "missing")]], "does not exist"),
    ("hardlink outside", [[w.file("a")], [w.hardlink("h", "../a")]], "'..' path component"),
    ("hardlink host path", [[w.hardlink("h", "/etc/shadow")]], "does not exist"),
    ("hardlink through symlink", [[w.symlink("evil", "/etc"), w.hardlink("h", "evil/shadow")]], "goes through symlink"),
    ("hardlink to directory", [[w.directory("d"), w.hardlink("h", "d")]], "points to directory"),
    ("hardlink to whited-out file", [[w.file("a")], [w.whiteout("a")], [w.hardlink("h", "a")]], "does not exist"),
    ("bad whiteout name", [[w.file("d/.wh..", "x")]], "invalid whiteout"),
]


@pytest.mark.parametrize("name,layers,message", SECURITY, ids=[s[0] for s in SECURITY])
def test_hostile_layers_are_refused(env: Env, name: str, layers, message: str) -> None:  # noqa: ANN001
    img = env.image(layers)
    with pytest.raises(CorruptData) as info:
        env.builder.build(img.layers, img.diff_ids)
    assert message in info.value.message, info.value.message
    assert "\n" not in info.value.message
    assert env.cache_files() == []  # no output, no temp file
    assert env.builder.conversions == 0  # refused before tar2sqfs ran


def test_diff_id_mismatch_and_missing_blob(env: Env) -> None:
    layer = w.layer_tar([w.file("a")])
    desc = env.store.ingest(layer, media_type=OCI_LAYER)
    with pytest.raises(CorruptData, match="uncompressed content is"):
        env.builder.build([desc], ["sha256:" + "0" * 64])
    with pytest.raises(CorruptData, match="diff_ids"):
        env.builder.build([desc], [])
    with pytest.raises(NotFound):
        env.builder.build([Descriptor(OCI_LAYER, "sha256:" + "1" * 64, 5)], ["sha256:" + "1" * 64])
    with pytest.raises(CorruptData, match="the manifest says"):
        env.builder.build([Descriptor(OCI_LAYER, desc.digest, desc.size + 1)], [desc.digest])
    assert env.cache_files() == []


def test_cache_by_chain_id(env: Env) -> None:
    layers = [[w.file("a", "1")], [w.file("b", "2")]]
    img = env.image(layers)
    out = env.builder.build(img.layers, img.diff_ids)
    first = out.stat()
    assert env.builder.conversions == 1
    assert out.name == RootfsBuilder.cache_key(img.diff_ids) + ".squashfs"
    # Same builder, a fresh builder, and the same layers compressed differently in another image: all hits.
    again = env.builder.build(img.layers, img.diff_ids)
    other = RootfsBuilder(env.builder.cache_dir, env.store)
    img_zstd = env.image(layers, "zstd")
    assert img_zstd.layers != img.layers and img_zstd.diff_ids == img.diff_ids
    for path in (again, other.build(img_zstd.layers, img_zstd.diff_ids)):
        assert path == out
        st = path.stat()
        assert (st.st_ino, st.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    assert env.builder.conversions == 1 and other.conversions == 0
    assert env.builder.cached(img.diff_ids) == out
    assert env.builder.remove(img.diff_ids) and not env.builder.remove(img.diff_ids)
    assert env.builder.cached(img.diff_ids) is None


def test_prune_keeps_only_listed_chains(env: Env) -> None:
    a = env.image([[w.file("a")]])
    b = env.image([[w.file("b")]])
    pa = env.builder.build(a.layers, a.diff_ids)
    pb = env.builder.build(b.layers, b.diff_ids)
    stale = env.builder.cache_dir / ".tmp-crashed.squashfs"
    stale.write_bytes(b"half")
    os.utime(stale, (0, 0))
    assert env.builder.prune(keep_chains=[a.diff_ids]) == [pb.name]
    assert pa.is_file() and not pb.exists() and not stale.exists()


def test_concurrent_builds_convert_once(env: Env) -> None:
    img = env.image([[w.file(f"f{i}", os.urandom(20_000)) for i in range(50)]])
    builders = [RootfsBuilder(env.builder.cache_dir, env.store) for _ in range(4)]
    results: list[Path] = []
    threads = [threading.Thread(target=lambda b=b: results.append(b.build(img.layers, img.diff_ids))) for b in builders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and len(results) == 4
    assert sum(b.conversions for b in builders) == 1
    assert env.cache_files() == [results[0].name]


async def test_build_async(env: Env) -> None:
    img = env.image([[w.file("a")]])
    out = await env.builder.build_async(img.layers, img.diff_ids)
    assert "a" in list_entries(out)


def _compressor_id(image: Path) -> int:
    """squashfs superblock: u16 compression id at offset 20 (4 = xz, 5 = lz4, 6 = zstd)."""
    return int.from_bytes(image.read_bytes()[20:22], "little")


def test_compressor_choice(env: Env) -> None:
    img = env.image([[w.file("a", "zz")]])
    assert _compressor_id(env.builder.build(img.layers, img.diff_ids)) == 5  # lz4 by default
    zstd = RootfsBuilder(env.root / "zstd-cache", env.store, compressor="zstd", level=3)
    assert zstd.command(Path("/x"))[3:7] == ["--compressor", "zstd", "--comp-extra", "level=3"]
    out = zstd.build(img.layers, img.diff_ids)
    assert _compressor_id(out) == 6 and list_entries(out)["a"].size == 2
    with pytest.raises(InvalidArgument, match="guest kernel"):
        RootfsBuilder(env.root / "x", env.store, compressor="xz")


# ----------------------------------------------------------------------------- umoci

UMOCI = shutil.which("umoci")

COMPARED_LAYERS = [
    [
        w.directory("etc", mode=0o755, mtime=1000),
        w.file("etc/passwd", "root:x:0:0\n", mtime=1001),
        w.file("etc/shadow", "secret", mode=0o600, mtime=1002),
        w.directory("usr/bin", mode=0o755, mtime=1003),
        w.file("usr/bin/tool", b"\x7fELF" * 100, mode=0o4755, uid=0, gid=0, mtime=1004),
        w.hardlink("usr/bin/tool-alias", "usr/bin/tool"),
        w.symlink("usr/bin/sh", "tool", mtime=1005),
        w.file("usr/share/doc/a", "a", mtime=1006),
        w.file("usr/share/doc/b", "b", mtime=1007),
        w.directory("var/log", mode=0o750, uid=0, gid=4, mtime=1008),
        w.file("var/log/old.log", "old", uid=104, gid=4, mtime=1009),
        w.chardev("dev/zero", 1, 5, mtime=1010),
        w.fifo("var/run.fifo", mtime=1011),
        w.file("opt/x", "x", xattrs={"user.tag": "v1"}, mtime=1012),
        w.directory("tmp", mode=0o1777, mtime=1013),
    ],
    [
        w.whiteout("etc/shadow"),
        w.opaque("usr/share/doc"),
        w.file("usr/share/doc/c", "c", mtime=2000),
        w.hardlink("etc/passwd-", "etc/passwd"),
        w.file("usr/bin/tool", b"new tool", mode=0o755, mtime=2001),
        w.directory("var/log", mode=0o755, uid=0, gid=0, mtime=2002),
        w.whiteout("var/run.fifo"),
        w.file("home/user/.profile", "export X=1\n", uid=1000, gid=1000, mtime=2003),
    ],
    [
        w.file("etc/passwd", "root:x:0:0\napp:x:1000:1000\n", mtime=3000),
        w.whiteout("opt"),
        w.symlink("opt", "/usr", mtime=3001),
        w.file("usr/bin/newer", "n", gid=50, mode=0o2711, mtime=3002),
        w.hardlink("usr/bin/newer-alias", "usr/bin/newer"),
        w.hardlink("etc/passwd.bak", "etc/passwd-"),
    ],
]


def _walk_tree(root: Path) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    inodes: dict[int, list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            kind = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink", stat.S_IFCHR: "chardev", stat.S_IFBLK: "blockdev", stat.S_IFIFO: "fifo"}[stat.S_IFMT(st.st_mode)]
            digest = sha(p.read_bytes()) if kind == "file" else ""
            target = os.readlink(p) if kind == "symlink" else ""
            device = (os.major(st.st_rdev), os.minor(st.st_rdev)) if kind in ("chardev", "blockdev") else None
            xattrs = {k: os.getxattr(p, k, follow_symlinks=False) for k in os.listxattr(p, follow_symlinks=False)} if kind != "symlink" else {}
            mtime = int(st.st_mtime) if (kind != "dir" or st.st_mtime < 1_600_000_000) else None
            out[rel] = (kind, stat.S_IMODE(st.st_mode) if kind != "symlink" else 0o777, st.st_uid, st.st_gid, st.st_size if kind == "file" else 0, target, digest, device, xattrs, mtime)
            if kind != "dir" and st.st_nlink > 1:
                inodes.setdefault(st.st_ino, []).append(rel)
    out["<hardlink groups>"] = tuple(sorted(tuple(sorted(g)) for g in inodes.values() if len(g) > 1))
    return out


def _squashfs_tree(fs: dict[str, FsEntry], mtimes_of: dict[str, tuple]) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    groups: dict[str, list[str]] = {}
    for path, e in fs.items():
        if not path:
            continue
        src = fs[e.target] if e.kind == "hardlink" else e
        if e.kind == "hardlink":
            groups.setdefault(e.target, [e.target]).append(path)
        mtime = src.mtime if (src.kind != "dir" or mtimes_of.get(path, (None,) * 10)[9] is not None) else None
        out[path] = (src.kind, src.mode, src.uid, src.gid, src.size, src.target if src.kind == "symlink" else "", src.sha256, src.device, src.xattrs, mtime)
    out["<hardlink groups>"] = tuple(sorted(tuple(sorted(g)) for g in groups.values()))
    return out


@pytest.mark.skipif(UMOCI is None, reason="umoci not installed")
@pytest.mark.skipif(os.geteuid() != 0, reason="a faithful umoci unpack (owners, devices) needs root")
def test_matches_umoci_unpack(env: Env) -> None:
    layout = env.root / "umoci-layout"
    w.write_oci_layout(layout, [w.layer_tar(entries) for entries in COMPARED_LAYERS], {"config": {}}, "t", "gzip")
    bundle = env.root / "bundle"
    subprocess.run([UMOCI, "unpack", "--image", f"{layout}:t", str(bundle)], check=True, capture_output=True, timeout=60)
    expected = _walk_tree(bundle / "rootfs")

    [img] = load_archive(layout, env.store)
    fs = list_entries(env.builder.build(img.layers, img.diff_ids))
    actual = _squashfs_tree(fs, expected)
    assert actual == expected
    # Spot checks of the semantics being compared.
    assert "etc/shadow" not in actual and "var/run.fifo" not in actual
    assert sorted(p for p in actual if p.startswith("usr/share/doc/")) == ["usr/share/doc/c"]
    assert actual["etc/passwd-"][6] == sha(b"root:x:0:0\n")  # link kept the old inode
    # tool and passwd were replaced after being linked: their aliases kept the old inodes.
    assert actual["<hardlink groups>"] == (("etc/passwd-", "etc/passwd.bak"), ("usr/bin/newer", "usr/bin/newer-alias"))
    assert actual["usr/bin/tool-alias"][6] == sha(b"\x7fELF" * 100) and actual["usr/bin/tool-alias"][1] == 0o4755
    assert actual["dev/zero"][0] == "chardev"
    assert actual["opt"][0] == "symlink" and "opt/x" not in actual
    assert actual["var/log"][1:4] == (0o755, 0, 0) and actual["var/log/old.log"][2:4] == (104, 4)


# Differential test: random layer stacks, flattened by us and by umoci, must agree.

_NAMES = ["a", "b", "c"]


def _prefixes(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _related(p: str, q: str) -> bool:
    return p == q or p.startswith(q + "/") or q.startswith(p + "/")


@st.composite
def _layer_stacks(draw) -> list[list[w.TarEntry]]:  # noqa: ANN001
    """Well-formed stacks (no entry under a non-directory); each layer touches unrelated paths only,
    so the result does not depend on how an implementation orders entries within a layer."""
    model: dict[str, str] = {}  # path -> "dir" | "file" | "sym" after the layers so far
    layers = []
    for _ in range(draw(st.integers(1, 4))):
        entries: list[w.TarEntry] = []
        used: list[str] = []
        for _ in range(draw(st.integers(1, 6))):
            path = "/".join(draw(st.lists(st.sampled_from(_NAMES), min_size=1, max_size=3)))
            if any(model.get(p, "dir") != "dir" for p in _prefixes(path)) or any(_related(path, u) for u in used):
                continue
            op = draw(st.sampled_from(["file", "dir", "sym", "whiteout", "opaque", "hardlink"]))
            files = [p for p, k in model.items() if k == "file" and not any(_related(p, u) for u in used + [path])]
            if op == "hardlink" and not files:
                op = "file"
            # Docker creates the missing parent of a whiteout, umoci does not: only generate
            # whiteouts inside existing directories, where every implementation agrees.
            if op == "opaque" and model.get(path) != "dir":
                op = "whiteout"
            if op == "whiteout" and not all(model.get(p) == "dir" for p in _prefixes(path)):
                op = "file"
            used.append(path)
            for p in _prefixes(path):
                model.setdefault(p, "dir")
            if op in ("file", "dir", "sym", "hardlink"):
                for p in [p for p in model if p.startswith(path + "/")]:
                    if op != "dir":
                        del model[p]
            if op == "file":
                entries.append(w.file(path, draw(st.sampled_from(["x", "yy", ""])), mode=draw(st.sampled_from([0o644, 0o755, 0o4755]))))
                model[path] = "file"
            elif op == "dir":
                entries.append(w.directory(path, mode=draw(st.sampled_from([0o755, 0o700])), mtime=7))
                model[path] = "dir"
            elif op == "sym":
                entries.append(w.symlink(path, "somewhere"))
                model[path] = "sym"
            elif op == "hardlink":
                target = draw(st.sampled_from(sorted(files)))
                used.append(target)
                entries.append(w.hardlink(path, target))
                model[path] = "file"
            elif op == "whiteout":
                entries.append(w.whiteout(path))
                for p in [p for p in model if _related(p, path)]:
                    del model[p]
            else:
                entries.append(w.opaque(path))
                for p in [p for p in model if p.startswith(path + "/")]:
                    del model[p]
                model[path] = "dir"
        layers.append(entries)
    return layers


@pytest.mark.skipif(UMOCI is None, reason="umoci not installed")
@pytest.mark.skipif(os.geteuid() != 0, reason="a faithful umoci unpack (owners, devices) needs root")
@settings(max_examples=20, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(layers=_layer_stacks())
def test_random_stacks_match_umoci(layers: list[list[w.TarEntry]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = Env(Path(tmp))
        layout = env.root / "layout"
        w.write_oci_layout(layout, [w.layer_tar(entries) for entries in layers], {"config": {}}, "t", "none")
        bundle = env.root / "bundle"
        subprocess.run([UMOCI, "unpack", "--image", f"{layout}:t", str(bundle)], check=True, capture_output=True, timeout=60)
        expected = _walk_tree(bundle / "rootfs")
        [img] = load_archive(layout, env.store)
        actual = _squashfs_tree(list_entries(env.builder.build(img.layers, img.diff_ids)), expected)
        assert actual == expected


def test_listing_a_broken_image(env: Env) -> None:
    bad = env.root / "bad.squashfs"
    bad.write_bytes(b"not a squashfs" * 100)
    with pytest.raises(CorruptData, match="sqfs2tar"):
        list_entries(bad)
    with pytest.raises(NotFound):
        list_entries(env.root / "absent.squashfs")


def test_lock_wait_has_a_deadline(env: Env) -> None:
    img = env.image([[w.file("a")]])
    builder = RootfsBuilder(env.builder.cache_dir, env.store, lock_timeout=0.2)
    key = RootfsBuilder.cache_key(img.diff_ids)
    with open(env.builder.cache_dir / ".locks" / f"{key}.lock", "a+b") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a build that never finishes
        with pytest.raises(Timeout, match="another build"):
            builder.build(img.layers, img.diff_ids)
    assert builder.build(img.layers, img.diff_ids).is_file()


def test_missing_tar2sqfs(env: Env) -> None:
    img = env.image([[w.file("a")]])
    with pytest.raises(Unavailable, match="squashfs-tools-ng"):
        RootfsBuilder(env.root / "x", env.store, tar2sqfs="no-such-tar2sqfs").build(img.layers, img.diff_ids)
