"""The volume service against a real SQLite database and real mkfs.ext4/debugfs images:
sparse disks with an empty root, the in-use rules, prune, and what a VM's boot gets."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from hypr_engine.agent.codec import Fields
from hypr_engine.engine import Engine
from hypr_engine.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from hypr_engine.paths import Layout
from hypr_engine.vmm.bootcfg import BootConfig, BootTag
from hypr_engine.volumes import check_device_budget


@pytest.fixture
async def engine(tmp_path):
    engine = await Engine.open(Layout(tmp_path / "data", tmp_path / "run"))
    yield engine
    await engine.close()


async def _vm_using(engine, name: str, state: str, *mounts: dict) -> None:
    """A VM row whose spec mounts the given records (what `create` stores)."""
    await engine.db.execute(
        "INSERT INTO vms (id, name, image_id, image_ref, spec_json, state, created_at) VALUES (?,?,?,?,?,?,?)",
        (os.urandom(32).hex(), name, "sha256:x", "x", json.dumps({"image": "x", "mounts": list(mounts)}),
         state, time.time()))


def _ls(disk) -> list[str]:
    out = subprocess.run(["debugfs", "-R", "ls -p /", str(disk)], capture_output=True, text=True, check=True).stdout
    return sorted(line.split("/")[5] for line in out.splitlines() if line.startswith("/"))


async def test_a_volume_is_a_sparse_ext4_image_with_an_empty_root(engine):
    v = await engine.volumes.create("data", labels={"a": "b"}, options={"size": "64m"})
    disk = engine.layout.data / "volumes" / "data" / "disk.ext4"
    assert v.mountpoint == str(disk) and v.size_bytes == 64 << 20 == disk.stat().st_size
    assert v.allocated_bytes == disk.stat().st_blocks * 512 < 8 << 20     # sparse
    assert _ls(disk) == [".", ".."]                                        # no lost+found
    assert subprocess.run(["e2fsck", "-n", "-f", str(disk)], capture_output=True).returncode == 0
    # Docker: creating it again returns it; with other options it is an error
    assert (await engine.volumes.create("data", labels={"a": "b"}, options={"size": "64m"})).name == "data"
    with pytest.raises(AlreadyExists):
        await engine.volumes.create("data", options={"size": "1g"})
    assert [x.name for x in await engine.volumes.list([("label", "a=b")])] == ["data"]
    assert await engine.volumes.list([("label", "a=c")]) == []


@pytest.mark.parametrize("name, options, message", [
    ("x", {}, "invalid volume name"),
    ("ok", {"size": "12q"}, "invalid volume size"),
    ("ok", {"size": "1m"}, "at least 8m"),
    ("ok", {"type": "nfs"}, "unknown volume option 'type'"),
])
async def test_bad_volume_input_creates_nothing(engine, name, options, message):
    with pytest.raises(InvalidArgument, match=message):
        await engine.volumes.create(name, options=options)
    assert await engine.volumes.list() == []
    assert not list((engine.layout.data / "volumes").glob("*")) if (engine.layout.data / "volumes").exists() else True


async def test_in_use_rules_and_prune(engine):
    for name in ("run", "stopped", "named"):
        await engine.volumes.create(name, options={"size": "16m"})
    anon = await engine.volumes.create(None, options={"size": "16m"})
    assert anon.anonymous and len(anon.name) == 64
    await _vm_using(engine, "r", "running", {"type": "volume", "source": "run", "target": "/a"})
    await _vm_using(engine, "s", "exited", {"type": "volume", "source": "stopped", "target": "/a"})
    with pytest.raises(Conflict, match="in use by running VM r"):
        await engine.volumes.remove("run", force=True)
    with pytest.raises(Conflict, match="in use by VM s: remove the VM first, or use volume rm -f"):
        await engine.volumes.remove("stopped")
    with pytest.raises(NotFound):
        await engine.volumes.remove("nosuch")
    assert await engine.volumes.remove("nosuch", force=True) == "nosuch"
    assert {v.name: v.used_by for v in await engine.volumes.list()} == \
        {"run": ["r"], "stopped": ["s"], "named": [], anon.name: []}
    # Docker 23+: prune takes unused anonymous volumes; -a every unused one
    removed, reclaimed = await engine.volumes.prune()
    assert removed == [anon.name] and reclaimed > 0
    removed, _ = await engine.volumes.prune(all=True)
    assert removed == ["named"]
    assert await engine.volumes.remove("stopped", force=True) == "stopped"
    assert sorted(p.name for p in (engine.layout.data / "volumes").iterdir()) == ["run"]


async def test_boot_devices_make_read_only_real_and_refuse_a_second_vm(engine, tmp_path):
    share = tmp_path / "share,with comma"
    share.mkdir()
    mounts = [
        {"type": "volume", "source": "db", "target": "/db", "readonly": False},
        {"type": "volume", "source": "ro", "target": "/ro", "readonly": True},
        {"type": "bind", "source": str(share), "target": "/share", "readonly": True},
        {"type": "tmpfs", "source": "", "target": "/t", "readonly": False,
         "options": {"size": 1 << 20, "mode": 0o1777, "flags": ["noexec"]}},
    ]
    stored, created = await engine.volumes.prepare(mounts)
    assert created == ["db", "ro"] and stored[0]["disk"].endswith("volumes/db/disk.ext4")
    devices, entries = await engine.volumes.boot_devices("me", stored)
    args = [" ".join(d.args) for d in devices]
    assert "readonly=on" not in args[0] and "serial=hyprvol0" in args[0] and "cache=writeback" in args[0]
    assert "readonly=on" in args[1]
    assert f"path={str(share).replace(',', ',,')},security_model=" in args[2] and "readonly=on" in args[2]
    assert "virtio-9p-device,fsdev=fs2,mount_tag=hypr2" in args[2]
    assert entries == [
        ("ext4", "hyprvol0", "/db", "", "populate"),
        ("ext4", "hyprvol1", "/ro", "noload", "ro"),
        ("9p", "hypr2", "/share", "trans=virtio,version=9p2000.L,msize=262144,cache=none", "ro"),
        ("tmpfs", "tmpfs", "/t", "mode=1777,size=1048576", "noexec"),
    ]
    # the boot configuration carries them as five parallel lists (tags 19-23)
    fields = Fields(BootConfig(vm_id="x", argv=["true"], env=[], hostname="h", mounts=entries).encode())
    assert [t.decode() for t in fields.all(BootTag.MOUNT_TARGET)] == ["/db", "/ro", "/share", "/t"]
    assert [f.decode() for f in fields.all(BootTag.MOUNT_FLAGS)] == ["populate", "ro", "ro", "noexec"]
    assert len(fields.all(BootTag.MOUNT_DATA)) == 4
    # another active VM on the volume: refused before its QEMU starts
    await _vm_using(engine, "holder", "running", stored[0])
    with pytest.raises(Conflict, match="mounted by running VM holder"):
        await engine.volumes.boot_devices("me", stored)


async def test_a_missing_bind_source_creates_nothing(engine, tmp_path):
    mounts = [{"type": "volume", "source": "fresh", "target": "/a", "readonly": False},
              {"type": "bind", "source": str(tmp_path / "missing"), "target": "/b", "readonly": False}]
    with pytest.raises(NotFound, match="bind source path does not exist"):
        await engine.volumes.prepare(mounts)
    assert await engine.volumes.list() == []
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(InvalidArgument, match="neither a directory nor a regular file"):
        await engine.volumes.prepare([{"type": "bind", "source": str(tmp_path / "fifo"), "target": "/b"}])
    # a single file: its directory is shared, kestrel binds the file (type 9pfile, source TAG/NAME)
    (tmp_path / "app.conf").write_text("x")
    stored, _ = await engine.volumes.prepare([{"type": "bind", "source": str(tmp_path / "app.conf"),
                                               "target": "/etc/app.conf", "readonly": True}])
    devices, entries = await engine.volumes.boot_devices("me", stored)
    assert f"path={tmp_path},security_model=" in " ".join(devices[0].args)
    assert entries[0][:3] == ("9pfile", "hypr0/app.conf", "/etc/app.conf") and entries[0][4] == "ro"


def test_device_budget_counts_volumes_and_shares_not_tmpfs(monkeypatch):
    from hypr_engine.vmm import probe

    class Artifacts:
        acpi = True

    monkeypatch.setattr(probe, "find_guest_artifacts", lambda: Artifacts())
    volumes = [{"type": "volume", "source": f"v{i}", "target": f"/{i}"} for i in range(19)]
    tmpfs = [{"type": "tmpfs", "source": "", "target": f"/t{i}"} for i in range(30)]
    check_device_budget(volumes + tmpfs, upper=True)
    check_device_budget(volumes + [{"type": "bind", "source": "/x", "target": "/x"}], upper=False)
    with pytest.raises(InvalidArgument, match="too many devices: bind /x at /x would be device 24"):
        check_device_budget(volumes + [{"type": "bind", "source": "/x", "target": "/x"}], upper=True)
