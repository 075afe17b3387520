"""Crash points: hyprd dies (os._exit, as a SIGKILL would) at each named point inside
run/create, start, stop, rm and load (hypr_engine/crash.py lists them). A new hyprd
starts, the state must make sense, and `rm -f` / `rmi` then leave no file, process or
row behind."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from hypr_engine.proc import processes_mentioning
from tests.conftest import BUSYBOX_IMAGE
from tests.daemon.conftest import assert_clean_error, wait_for

pytestmark = pytest.mark.vm


def _rows(home) -> list[tuple]:
    conn = sqlite3.connect(home.data / "hypr.db")
    try:
        return conn.execute("SELECT name, state, exit_code FROM vms").fetchall()
    finally:
        conn.close()


def _state(home, name: str) -> str | None:
    return next((s for n, s, _ in _rows(home) if n == name), None)


def _crash(home, hyprd, *args: str) -> None:
    """Run a CLI command that makes hyprd hit its crash point."""
    proc = home.run(*args, timeout=300)
    assert_clean_error(proc, "hyprd")
    assert hyprd.wait_exit(30) == 99, hyprd.output()[-2000:]


def _assert_nothing_left(home) -> None:
    vms = home.data / "vms"
    assert not vms.exists() or not list(vms.iterdir()), list(vms.iterdir())
    assert _rows(home) == []
    locks = home.data / "locks"
    assert not locks.exists() or not [p for p in locks.iterdir() if p.suffix == ".lock"]
    # The default network's gvproxy leaves (with its sockets) a moment after the last VM.
    deadline = time.monotonic() + 10
    while (processes_mentioning(str(home.data), str(home.runtime)) or _runtime(home) not in ([], ["hyprd.sock"])) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _runtime(home) in ([], ["hyprd.sock"]), _runtime(home)
    assert not processes_mentioning(str(home.data), str(home.runtime))


def _runtime(home) -> list[str]:
    return sorted(p.name for p in home.runtime.iterdir()) if home.runtime.exists() else []


def _blobs(home) -> list[str]:
    root = home.data / "blobs" / "sha256"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


SLEEPER = ("sh", "-c", "echo up; exec sleep 600")


@pytest.mark.parametrize("point", [
    "create.after_insert", "start.after_starting", "start.after_spawn", "stop.after_stopping",
    "rm.after_removing", "rm.after_kill",
])
def test_vm_crash_points(hypr_home, busybox, hyprd_factory, point):
    hyprd = hyprd_factory
    hyprd.start(env={"HYPR_CRASH_AT": point})
    name = "victim"
    if point == "create.after_insert":
        _crash(hypr_home, hyprd, "run", "-d", "--name", name, busybox, *SLEEPER)
    elif point.startswith("start."):
        hypr_home.run("create", "--name", name, busybox, *SLEEPER, check=True)
        _crash(hypr_home, hyprd, "start", name)
    else:
        hypr_home.run("run", "-d", "--name", name, busybox, *SLEEPER, check=True)
        _crash(hypr_home, hyprd, "stop" if point.startswith("stop") else "rm", *(["-f"] if "rm" in point else []),
               name)

    hyprd.start()  # no crash point this time
    states = {"create.after_insert": {"created"},                 # the row is all there was
              "start.after_starting": {"exited"},                  # no supervisor ever ran: settled
              "start.after_spawn": {"starting", "running"},        # the supervisor boots it on: adopted
              "stop.after_stopping": {"stopping", "exited"},       # the stop is finished by the new hyprd
              "rm.after_removing": {None},                         # the removal is finished
              "rm.after_kill": {None}}[point]
    assert _state(hypr_home, name) in states, (_rows(hypr_home), hyprd.output()[-3000:])
    if point == "start.after_spawn":
        wait_for(lambda: _state(hypr_home, name) == "running", 120, what="the adopted VM to run")
        assert hypr_home.out("exec", name, "echo", "alive") == "alive\n"
    if point == "stop.after_stopping":
        wait_for(lambda: _state(hypr_home, name) == "exited", 120, what="the resumed stop")
    if point == "start.after_starting":
        vm = json.loads(hypr_home.out("inspect", name))[0]
        assert vm["State"]["ExitCode"] == 255
        hypr_home.run("start", name, check=True)  # and it can start now
        assert _state(hypr_home, name) == "running"
    if point in ("rm.after_removing", "rm.after_kill"):
        assert hypr_home.out("ps", "-aq") == ""
    else:
        hypr_home.run("rm", "-f", name, check=True)
    _assert_nothing_left(hypr_home)
    hypr_home.run("rmi", busybox, check=True)
    assert _blobs(hypr_home) == []
    assert hyprd.stop() == 0


def test_load_crash_point(hypr_home, hyprd_factory):
    hyprd = hyprd_factory
    hyprd.start(env={"HYPR_CRASH_AT": "load.after_blobs"})
    _crash(hypr_home, hyprd, "load", "-i", str(BUSYBOX_IMAGE))
    assert _blobs(hypr_home)  # the blobs landed, no image refers to them
    hyprd.start()
    assert "leftovers deleted" in hyprd.output() and _blobs(hypr_home) == []
    assert hypr_home.out("images", "-q") == ""
    hypr_home.run("load", "-i", str(BUSYBOX_IMAGE), check=True)
    assert hypr_home.out("run", "--rm", "hypr/busybox", "echo", "loaded") == "loaded\n"
    hypr_home.run("rmi", "hypr/busybox", check=True)
    assert _blobs(hypr_home) == [] and not list((hypr_home.data / "rootfs").glob("*.sqfs"))
    _assert_nothing_left(hypr_home)
    assert hyprd.stop() == 0
