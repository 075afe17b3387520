"""-v / --mount / --tmpfs parsing (Docker's rules) and the engine's re-check of the records."""

from __future__ import annotations

import pytest

from hypr_engine.errors import InvalidArgument
from hypr_engine.mounts import (
    check_mounts,
    parse_mount_flag,
    parse_tmpfs_flag,
    parse_volume_flag,
)


@pytest.mark.parametrize("text, expected", [
    ("pgdata:/var/lib/postgresql/data", {"type": "volume", "source": "pgdata", "target": "/var/lib/postgresql/data",
                                        "readonly": False}),
    ("pgdata:/data:ro", {"type": "volume", "source": "pgdata", "target": "/data", "readonly": True}),
    ("/data", {"type": "volume", "source": "", "target": "/data", "readonly": False}),
    ("/data:ro", {"type": "volume", "source": "", "target": "/data", "readonly": True}),
    ("v1:/data:nocopy", {"type": "volume", "source": "v1", "target": "/data", "readonly": False, "nocopy": True}),
    ("./site:/usr/share/nginx/html:ro", {"type": "bind", "source": "/home/u/proj/site",
                                         "target": "/usr/share/nginx/html", "readonly": True}),
    ("../up/x:/x", {"type": "bind", "source": "/home/u/up/x", "target": "/x", "readonly": False}),
    ("/abs/dir:/x/", {"type": "bind", "source": "/abs/dir", "target": "/x", "readonly": False}),
    ("sub/dir:/x:rw", {"type": "bind", "source": "/home/u/proj/sub/dir", "target": "/x", "readonly": False}),
])
def test_volume_flag_tells_named_volumes_from_host_paths(text, expected):
    assert parse_volume_flag(text, cwd="/home/u/proj") == expected


def test_tilde_is_a_host_path(monkeypatch):
    monkeypatch.setenv("HOME", "/home/someone")
    assert parse_volume_flag("~/site:/srv")["source"] == "/home/someone/site"


@pytest.mark.parametrize("text, message", [
    ("vol:relative", "must be an absolute path"),
    ("vol:/x:bogus", "unknown option 'bogus'"),
    ("b@d:/x", "invalid volume name"),
    ("a:/x", "invalid volume name"),                 # Docker: at least 2 characters
    ("vol:/", "cannot mount over /"),
    ("vol:/proc", "cannot mount over /proc"),
    ("vol:/a/../b", "must not contain '..'"),
    ("a:b:c:d", "use [SOURCE:]TARGET"),
    (":/x", "the source is empty"),
])
def test_bad_volume_flags(text, message):
    with pytest.raises(InvalidArgument, match=message.replace("[", r"\[")):
        parse_volume_flag(text, cwd="/w")


def test_mount_flag_long_form():
    assert parse_mount_flag("type=bind,source=./s,target=/t,readonly", cwd="/w") == \
        {"type": "bind", "source": "/w/s", "target": "/t", "readonly": True}
    assert parse_mount_flag("type=volume,src=v1,dst=/t,volume-nocopy=true", cwd="/w") == \
        {"type": "volume", "source": "v1", "target": "/t", "readonly": False, "nocopy": True}
    assert parse_mount_flag("target=/t") == {"type": "volume", "source": "", "target": "/t", "readonly": False}
    assert parse_mount_flag("type=tmpfs,target=/t,tmpfs-size=64m,tmpfs-mode=1777") == \
        {"type": "tmpfs", "source": "", "target": "/t", "readonly": False,
         "options": {"size": 64 << 20, "mode": 0o1777}}


@pytest.mark.parametrize("text, message", [
    ("type=nfs,target=/t", "unknown type 'nfs'"),
    ("type=bind,target=/t", "needs source="),
    ("type=volume,source=./x,target=/t", "use type=bind"),
    ("type=volume,source=v,target=/t,size=1", "unknown option 'size'"),
    ("type=tmpfs,source=x,target=/t", "has no source"),
    ("type=tmpfs,target=/t,tmpfs-mode=9", "must be octal"),
    ("type=bind,source=/s", "mount point in the VM is empty"),
    ("type=bind,source=/s,target=/t,readonly=maybe", "readonly takes true or false"),
])
def test_bad_mount_flags(text, message):
    with pytest.raises(InvalidArgument, match=message):
        parse_mount_flag(text, cwd="/w")


def test_tmpfs_flag():
    assert parse_tmpfs_flag("/run/x:size=1g,mode=700,noexec,nosuid") == {
        "type": "tmpfs", "source": "", "target": "/run/x", "readonly": False,
        "options": {"size": 1 << 30, "mode": 0o700, "flags": ["noexec", "nosuid"]}}
    assert parse_tmpfs_flag("/t") == {"type": "tmpfs", "source": "", "target": "/t", "readonly": False,
                                      "options": {}}
    for bad, message in (("/t:size=lots", "invalid tmpfs size"), ("/t:size=-1", "invalid tmpfs size"),
                         ("/t:uid=1", "unknown option"), ("t", "absolute")):
        with pytest.raises(InvalidArgument, match=message):
            parse_tmpfs_flag(bad)


def test_engine_recheck_sorts_parents_first_and_refuses_what_a_client_must_not_send():
    records = [parse_volume_flag("v1:/a/b"), parse_volume_flag("v2:/a"), parse_tmpfs_flag("/z")]
    assert [m["target"] for m in check_mounts(records)] == ["/a", "/z", "/a/b"]
    with pytest.raises(InvalidArgument, match="duplicate mount point /a"):
        check_mounts([parse_volume_flag("v1:/a"), parse_tmpfs_flag("/a")])
    with pytest.raises(InvalidArgument, match="must be absolute"):
        check_mounts([{"type": "bind", "source": "rel", "target": "/x"}])
    with pytest.raises(InvalidArgument, match="type must be"):
        check_mounts([{"type": "nfs", "source": "x", "target": "/x"}])
    # a client cannot smuggle a disk path or other keys through
    [record] = check_mounts([{"type": "volume", "source": "v1", "target": "/x", "disk": "/etc/shadow"}])
    assert "disk" not in record
