"""kestrel's health checks (through the CLI) and file copy (STAT, COPY_OUT, COPY_IN,
through the agent client in-process) in real VMs."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import stat
import tarfile
import time

import pytest

from hypr_engine.client import HyprClient
from hypr_engine.errors import HyprError, NotFound
from hypr_engine.filecopy import extract, pack
from hypr_engine.models import VmSpec
from hypr_engine.paths import Layout

pytestmark = pytest.mark.vm


# --- health checks ------------------------------------------------------------------


def _status(home, name: str) -> str:
    return home.out("ps", "-a", "--filter", f"name={name}", "--format", "{{.Status}}").strip()


def _wait_status(home, name: str, want: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    status = _status(home, name)
    while want not in status and time.monotonic() < deadline:
        time.sleep(0.25)
        status = _status(home, name)
    return status


def _health(home, name: str) -> dict:
    return json.loads(home.out("inspect", name))[0]["State"]["Health"]


def test_health_goes_starting_unhealthy_healthy(hypr_home, busybox):
    hypr_home.run("run", "-d", "--name", "hc", "--health-cmd", "test -e /tmp/ok", "--health-interval", "1s",
                  "--health-retries", "2", busybox, "sleep", "300", check=True)
    # the first check runs one interval after the start, and one failure is not enough
    assert "(health: starting)" in _status(hypr_home, "hc")
    assert "(unhealthy)" in _wait_status(hypr_home, "hc", "(unhealthy)")
    health = _health(hypr_home, "hc")
    assert health["Status"] == "unhealthy" and health["FailingStreak"] >= 2
    assert health["Log"] and all(c["ExitCode"] == 1 for c in health["Log"])

    hypr_home.run("exec", "hc", "touch", "/tmp/ok", check=True)
    assert "(healthy)" in _wait_status(hypr_home, "hc", "(healthy)")
    health = _health(hypr_home, "hc")
    assert health["Status"] == "healthy" and health["FailingStreak"] == 0
    assert health["Log"][-1]["ExitCode"] == 0
    # the checks are reaped: no zombie or leftover check process in the guest
    procs = hypr_home.out("exec", "hc", "ps", "-o", "stat,args")
    assert " Z " not in procs and "test -e" not in procs


def test_health_start_period_output_and_timeout(hypr_home, busybox):
    cmd = "[ -e /tmp/slow ] && sleep 30; printf 'out1\\nout2\\n'; echo err >&2; exit 2"
    hypr_home.run("run", "-d", "--name", "hp", "--health-cmd", cmd, "--health-interval", "300ms",
                  "--health-timeout", "1s", "--health-retries", "1", "--health-start-period", "6s",
                  busybox, "sleep", "300", check=True)
    # failures within the start period do not count
    deadline = time.monotonic() + 5
    health = _health(hypr_home, "hp")
    while not health["Log"] and time.monotonic() < deadline:
        time.sleep(0.2)
        health = _health(hypr_home, "hp")
    assert health["Status"] == "starting" and health["FailingStreak"] == 0
    check = health["Log"][0]
    assert check["ExitCode"] == 2
    assert check["Output"] == "out1 out2 err"  # stdout and stderr, control characters as spaces
    # after it, one failure is enough
    assert "(unhealthy)" in _wait_status(hypr_home, "hp", "(unhealthy)")

    hypr_home.run("exec", "hp", "touch", "/tmp/slow", check=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        log = _health(hypr_home, "hp")["Log"]
        if sum(c["ExitCode"] == -1 for c in log) >= 3:
            break
        time.sleep(0.25)
    last = _health(hypr_home, "hp")["Log"][-1]
    assert last["ExitCode"] == -1 and "timeout" in last["Output"]
    assert 1000 <= last["DurationMs"] < 3000
    # each timed-out check's whole process group was killed: only the running one is left
    procs = hypr_home.out("exec", "hp", "ps", "-o", "args").splitlines()
    assert procs.count("sleep 30") <= 1
    assert sum(p.startswith("/bin/sh -c [ -e /tmp/slow ]") for p in procs) <= 1


# --- file copy ------------------------------------------------------------------------


@pytest.fixture
async def agent(hypr_home, busybox):
    client = await HyprClient.connect(Layout(hypr_home.data, hypr_home.runtime))
    vm = await client.create_vm(VmSpec(image=busybox, command=["sleep", "600"], name="cp-test"))
    await client.start_vm(vm.id)
    _, agent_client = await client._engine.vms.agent(vm.id)  # test-only: the agent client itself
    try:
        yield agent_client
    finally:
        await agent_client.close()
        await client.remove_vm(vm.id, force=True)
        await client.close()


async def _copy_in(agent, dest: str, archive: bytes) -> int:
    session = await agent.copy_in(dest)

    async def feed() -> None:
        await session.write(archive)
        session.close_stdin()

    feeder = asyncio.ensure_future(feed())
    try:
        return await asyncio.wait_for(session.wait(), 120)  # also what returns the input credit
    finally:
        feeder.cancel()


async def _copy_out(agent, path: str) -> bytes:
    session = await agent.copy_out(path)
    data = b"".join([chunk async for stream, chunk in session.output() if stream == "stdout"])
    assert session.exit_code == 0
    return data


def _tree(root):
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            entry = {"mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid}
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    entry["sha"] = hashlib.sha256(f.read()).hexdigest()
                entry["mtime"] = int(st.st_mtime)
            elif stat.S_ISLNK(st.st_mode):
                entry["link"] = os.readlink(path)
            found[os.path.relpath(path, root)] = entry
    return found


LONG_DIR = "d" * 150
LONG_FILE = "f" * 120


def _make_tree(base):
    tree = base / "tree"
    (tree / "sub" / LONG_DIR).mkdir(parents=True)
    (tree / "sub" / LONG_DIR / LONG_FILE).write_bytes(b"behind a long name\n")
    (tree / "big").write_bytes(os.urandom(5 * 1024 * 1024 + 13))
    (tree / "suid").write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(tree / "suid", 0o4755)
    (tree / "link").symlink_to("sub")
    (tree / "owned").write_bytes(b"")
    os.utime(tree / "owned", (1_000_000_000, 1_000_000_000))
    os.chmod(tree / "sub", 0o750)
    if os.geteuid() == 0:
        os.chown(tree / "owned", 1234, 5678)
    return tree


async def test_copy_round_trip_keeps_everything(agent, tmp_path):
    tree = _make_tree(tmp_path / "src")
    buf = io.BytesIO()
    pack(tree, "tree", buf, preserve_owner=True)
    assert await _copy_in(agent, "/tmp", buf.getvalue()) == 0

    st = await agent.stat("/tmp/tree/suid")
    assert st["type"] == "file" and st["mode"] & 0o7777 == 0o4755
    assert (await agent.stat("/tmp/tree/link")) | {"mtime": 0} == {
        "type": "symlink", "mode": 0o120777, "uid": os.geteuid(), "gid": os.getegid(), "size": 3,
        "mtime": 0, "link": "sub"}
    assert (await agent.stat("/tmp/tree/big"))["size"] == 5 * 1024 * 1024 + 13
    assert (await agent.stat("/tmp/tree/sub"))["type"] == "dir"
    assert (await agent.stat("/tmp/tree/owned"))["mtime"] == 1_000_000_000
    with pytest.raises(NotFound):
        await agent.stat("/tmp/tree/missing")

    out = tmp_path / "out"
    out.mkdir()
    archive = await _copy_out(agent, "/tmp/tree")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        names = tar.getnames()
        assert names[0] == "tree" and f"tree/sub/{LONG_DIR}/{LONG_FILE}" in names
    assert extract(io.BytesIO(archive), out) == ["tree"]  # the host side of `hypr cp`
    want, got = _tree(tree), _tree(out / "tree")
    if os.geteuid() != 0:  # only root can keep owners and setuid bits
        for entry in (*want.values(), *got.values()):
            entry.update(uid=0, gid=0, mode=entry["mode"] & ~0o6000)
    assert got == want

    # a single file's member is named after it alone
    with tarfile.open(fileobj=io.BytesIO(await _copy_out(agent, "/tmp/tree/suid"))) as tar:
        (member,) = tar.getmembers()
        assert member.name == "suid" and member.mode == 0o4755
        assert tar.extractfile(member).read() == b"#!/bin/sh\necho hi\n"
    # a symlink is copied as itself, not followed
    with tarfile.open(fileobj=io.BytesIO(await _copy_out(agent, "/tmp/tree/link"))) as tar:
        (member,) = tar.getmembers()
        assert member.issym() and member.linkname == "sub"


def _archive(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o644
    return info


HOSTILE = {
    "dotdot": [(_member("../evil"), b"x")],
    "absolute": [(_member("/tmp/evil"), b"x")],
    "inner-dotdot": [(_member("ok/../../evil"), b"x")],
    "through-new-symlink": [(_member("esc", tarfile.SYMTYPE, "/tmp"), b""), (_member("esc/evil"), b"x")],
    "through-old-symlink": [(_member("pre/evil"), b"x")],
    "hardlink-out": [(_member("h", tarfile.LNKTYPE, "../evil-target"), b"")],
    "hardlink-through-symlink": [(_member("h", tarfile.LNKTYPE, "pre/evil-target"), b"")],
}


async def test_hostile_archives_are_refused_and_write_nothing_outside(agent):
    # /tmp/dest holds a symlink "pre" to /tmp; /tmp/evil-target is a file outside it
    prep = _archive((_member("dest", tarfile.DIRTYPE), b""), (_member("dest/pre", tarfile.SYMTYPE, "/tmp"), b""),
                    (_member("evil-target"), b"outside"))
    assert await _copy_in(agent, "/tmp", prep) == 0
    for name, members in HOSTILE.items():
        with pytest.raises(HyprError):
            await _copy_in(agent, "/tmp/dest", _archive(*members))
        with pytest.raises(NotFound):
            await agent.stat("/tmp/evil")
        assert (await agent.stat("/tmp/dest/pre"))["type"] == "symlink", name
        assert (await agent.stat("/tmp/evil-target"))["size"] == len(b"outside"), name
        with pytest.raises(NotFound):
            await agent.stat("/tmp/dest/h")


async def test_copy_errors_for_missing_paths_and_truncated_archives(agent):
    with pytest.raises(NotFound):
        await agent.copy_out("/no/such/path")
    with pytest.raises(NotFound):
        await agent.copy_in("/no/such/dir")
    with pytest.raises(HyprError, match="not a directory"):
        await agent.copy_in("/etc/passwd")
    whole = _archive((_member("partial"), b"y" * 5000))
    with pytest.raises(HyprError, match="middle of a member"):
        await _copy_in(agent, "/tmp", whole[:1500])
    # the session table is clean afterwards: the agent still serves
    assert await agent.ping(b"still here") == b"still here"


def test_health_changes_are_events(hypr_home, busybox):
    import json as _json
    import time as _time

    hypr_home.run("run", "-d", "--name", "checked", "--health-cmd", "test -e /tmp/ok", "--health-interval", "1s",
                  "--health-retries", "1", busybox, "sleep", "600", check=True)
    deadline = _time.monotonic() + 60
    while "(unhealthy)" not in hypr_home.out("ps") and _time.monotonic() < deadline:
        _time.sleep(0.5)
    hypr_home.run("exec", "checked", "touch", "/tmp/ok", check=True)
    while "(healthy)" not in hypr_home.out("ps") and _time.monotonic() < deadline:
        _time.sleep(0.5)
    events = [_json.loads(line) for line in
              hypr_home.out("events", "--since", "10m", "--until", "0s", "--format", "json").splitlines()]
    actions = [e["Action"] for e in events if e["Name"] == "checked"]
    health = [a for a in actions if a.startswith("health_status")]
    assert health[:3] == ["health_status: starting", "health_status: unhealthy", "health_status: healthy"]
