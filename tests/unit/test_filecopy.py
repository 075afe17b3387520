"""Host side of `hypr cp`: Docker's naming rules and extraction that never escapes."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from hypr_engine.errors import CorruptData, InvalidArgument
from hypr_engine.filecopy import extract, pack, plan_copy_in

DIR = {"type": "dir"}
FILE = {"type": "file"}


def test_plan_copy_in(tmp_path):
    src = tmp_path / "app.conf"
    src.write_text("x")
    assert plan_copy_in(src, "/etc", DIR, None) == ("/etc", "app.conf")
    assert plan_copy_in(src, "/etc/new.conf", None, DIR) == ("/etc", "new.conf")
    assert plan_copy_in(src, "/etc/old.conf", FILE, DIR) == ("/etc", "old.conf")
    with pytest.raises(InvalidArgument, match="no such directory"):
        plan_copy_in(src, "/missing/new.conf", None, None)
    with pytest.raises(InvalidArgument, match="does not exist"):
        plan_copy_in(src, "/missing/", None, DIR)
    with pytest.raises(InvalidArgument, match="absolute"):
        plan_copy_in(src, "relative", None, None)
    with pytest.raises(InvalidArgument, match="onto the file"):
        plan_copy_in(tmp_path, "/etc/passwd", FILE, DIR)


def test_pack_and_extract_round_trip_with_modes(tmp_path):
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "tool").write_bytes(b"#!/bin/sh\n")
    os.chmod(tree / "sub" / "tool", 0o4755)
    (tree / "link").symlink_to("sub/tool")
    buf = io.BytesIO()
    pack(tree, "tree", buf, preserve_owner=False)
    out = tmp_path / "out"
    out.mkdir()
    buf.seek(0)
    assert extract(buf, out, rename_top=("tree", "renamed")) == ["renamed"]
    assert (out / "renamed/sub/tool").read_bytes() == b"#!/bin/sh\n"
    assert (out / "renamed/sub/tool").stat().st_mode & 0o7777 == 0o4755
    assert os.readlink(out / "renamed/link") == "sub/tool"


def _tar(*members: tuple[tarfile.TarInfo, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def _info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o644
    return info


@pytest.mark.parametrize("members", [
    [(_info("../evil"), b"x")],
    [(_info("/abs"), b"x")],
    [(_info("a", tarfile.SYMTYPE, "/"), b""), (_info("a/etc-passwd"), b"x")],
    [(_info("h", tarfile.LNKTYPE, "../../etc/passwd"), b"")],
])
def test_hostile_archives_write_nothing_outside(tmp_path, members):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(CorruptData):
        extract(_tar(*members), out)
    assert not (tmp_path / "evil").exists()
    assert not any(p.name == "etc-passwd" for p in tmp_path.rglob("*"))
