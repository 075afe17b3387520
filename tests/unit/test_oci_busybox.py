"""The built-in busybox image: deterministic, loadable, and a sane root filesystem."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hypr_engine.errors import InvalidArgument
from hypr_engine.oci.archive import load_archive
from hypr_engine.oci.busybox_image import applets, build_busybox_image
from hypr_engine.oci.content import ContentStore
from hypr_engine.oci.rootfs import RootfsBuilder
from hypr_engine.oci.squashfs import list_entries, read_file

BUSYBOX = Path("/bin/busybox")
pytestmark = pytest.mark.skipif(not BUSYBOX.is_file(), reason="busybox-static not installed")


def test_deterministic_and_loadable(tmp_path: Path) -> None:
    a, b = tmp_path / "a.tar", tmp_path / "b.tar"
    written = build_busybox_image(a)
    build_busybox_image(b)
    assert a.read_bytes() == b.read_bytes()

    store = ContentStore(tmp_path / "content")
    [img] = load_archive(a, store)
    assert img.config_digest == written.config_digest
    assert img.repo_tags == ["docker.io/hypr/busybox:latest"]
    assert img.config.cmd == ["sh"] and img.config.working_dir == "/"
    assert img.config.env_dict()["PATH"].endswith("/bin")

    if shutil.which("tar2sqfs") is None:
        pytest.skip("squashfs-tools-ng not installed")
    out = RootfsBuilder(tmp_path / "rootfs", store).build(img.layers, img.diff_ids)
    fs = list_entries(out, with_content=False)
    assert fs["bin/busybox"].kind == "file" and fs["bin/busybox"].mode == 0o755
    assert fs["bin/busybox"].size == BUSYBOX.stat().st_size
    names = applets(BUSYBOX)
    assert "sh" in names and "ls" in names
    for name in names:
        assert (fs[f"bin/{name}"].kind, fs[f"bin/{name}"].target) == ("symlink", "busybox")
    assert fs["tmp"].mode == 0o1777
    assert fs["root"].mode == 0o700
    assert (fs["home/app"].uid, fs["home/app"].gid) == (1000, 1000)
    passwd = read_file(out, "etc/passwd").decode()
    assert "app:x:1000:1000:" in passwd and passwd.startswith("root:x:0:0:")
    group = read_file(out, "etc/group").decode()
    assert "staff:x:50:app" in group and "app:x:1000:" in group
    assert all(e.mtime == fs["bin/busybox"].mtime for p, e in fs.items() if p)


def test_cli(tmp_path: Path) -> None:
    out = tmp_path / "bb.tar"
    proc = subprocess.run([sys.executable, "-m", "hypr_engine.oci.busybox_image", str(out)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("sha256:") and out.is_file()


def test_missing_binary(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="no such file"):
        build_busybox_image(tmp_path / "x.tar", busybox=tmp_path / "nope")
