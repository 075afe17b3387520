"""hyprd as a process: its socket, its lock, refusals, stale state, bad sockets, versions.

No VM boots here (VMs are only created, never started), so these run in seconds.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time

import pytest

from tests.daemon.conftest import assert_clean_error, wait_for


def test_serves_a_0660_socket_says_so_and_removes_it_on_sigterm(hypr_home, hyprd):
    st = os.lstat(hyprd.socket)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    info = hypr_home.out("system", "info")
    assert "Engine:         daemon" in info
    assert f"pid {hyprd.pid}" in info and f"socket {hyprd.socket}" in info and "API 1.0" in info
    data = json.loads(hypr_home.out("system", "info", "--format", "json"))
    assert data["mode"] == "daemon" and data["daemon"]["socket"] == str(hyprd.socket)
    assert data["daemon"]["uptime_s"] >= 0
    assert hyprd.stop() == 0
    assert not hyprd.socket.exists()
    assert "Engine:         embedded" in hypr_home.out("system", "info")


def test_a_second_hyprd_on_the_same_data_dir_refuses(hypr_home, hyprd, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "hypr_engine.daemon", "--foreground"], env=hypr_home.env,
                          capture_output=True, timeout=30)
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert f"hyprd: error: hyprd is already running for {hypr_home.data} (pid {hyprd.pid}, socket {hyprd.socket})" in err
    assert "Traceback" not in err
    assert hypr_home.run("ps").returncode == 0  # the first one is unharmed


def test_hyprd_refuses_beside_an_embedded_engine(hypr_home, hyprd_factory):
    hypr_home.data.mkdir(parents=True, exist_ok=True)
    fd = os.open(hypr_home.data / "engine.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # what a running embedded `hypr` holds
        proc = subprocess.run([sys.executable, "-m", "hypr_engine.daemon"], env=hypr_home.env,
                              capture_output=True, timeout=30)
    finally:
        os.close(fd)
    assert proc.returncode == 1
    assert "is in use by another HYPR engine" in proc.stderr.decode()
    assert not hyprd_factory.socket.exists()


def test_a_killed_hyprd_leaves_a_socket_the_client_refuses_and_the_next_hyprd_replaces(hypr_home, hyprd):
    hyprd.kill()
    assert hyprd.socket.exists()
    assert_clean_error(hypr_home.run("ps"), "exists but nothing answers on it (connection refused)",
                       "start it, or remove the stale socket")
    hyprd.start()
    assert hypr_home.run("ps").returncode == 0
    assert "removed the stale socket" in hyprd.output()


def test_a_socket_that_accepts_but_never_answers(hypr_home):
    hypr_home.runtime.mkdir(parents=True, exist_ok=True)
    path = hypr_home.runtime / "hyprd.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    os.chmod(path, 0o660)
    listener.listen(8)
    try:
        started = time.monotonic()
        assert_clean_error(hypr_home.run("ps"), f"hyprd's socket {path} exists but does not answer within 5 s")
        assert time.monotonic() - started < 30
    finally:
        listener.close()
        path.unlink()


def test_a_socket_that_answers_something_else(hypr_home):
    hypr_home.runtime.mkdir(parents=True, exist_ok=True)
    path = hypr_home.runtime / "hyprd.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    os.chmod(path, 0o660)
    listener.listen(8)
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\nnot grpc\n")
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        assert_clean_error(hypr_home.run("ps"), f"hyprd's socket {path} exists but")
    finally:
        stop.set()
        thread.join(5)
        listener.close()
        path.unlink()


def test_a_socket_with_a_wrong_mode_or_owner_is_refused(hypr_home, hyprd):
    os.chmod(hyprd.socket, 0o666)
    assert_clean_error(hypr_home.run("ps"), "is world-writable (mode 0666)")
    os.chmod(hyprd.socket, 0o660)
    if os.geteuid() == 0:
        os.chown(hyprd.socket, 65534, -1)
        assert_clean_error(hypr_home.run("ps"), "owned by uid 65534, not by root or by you")
        os.chown(hyprd.socket, 0, -1)
    assert hypr_home.run("ps").returncode == 0


def test_an_incompatible_client_is_refused_with_a_message(hypr_home, hyprd):
    code = ("import hypr_engine.api as api; api.API_MAJOR = 2; api.API_MINOR = 3; "
            "from hypr_tui.cli import main; main(['ps'])")
    proc = subprocess.run([sys.executable, "-c", code], env=hypr_home.env, capture_output=True, timeout=60)
    err = assert_clean_error(proc, "incompatible API versions: this hypr speaks hypr.v2 (API 2.3) "
                                   "and hyprd speaks hypr.v1 (API 1.0); hypr is newer")
    assert "install matching versions of hypr and hyprd" in err
    assert "refused a client" in hyprd.output()


async def test_every_call_checks_the_version_metadata(hypr_home, hyprd):
    from grpclib.client import Channel
    from grpclib.const import Status
    from grpclib.exceptions import GRPCError

    from hypr_engine.api import convert
    from hypr_engine.api._pb.hypr import v1 as pb

    channel = Channel(path=str(hyprd.socket), status_details_codec=convert.StatusDetailsCodec())
    try:
        with pytest.raises(GRPCError) as caught:
            await pb.VmsStub(channel).list(pb.ListVmsRequest(), metadata={"hypr-api-version": "7.0"}, timeout=10)
        assert caught.value.status == Status.FAILED_PRECONDITION
        assert "hyprd speaks hypr.v1" in caught.value.message
        # Without the metadata (a generic gRPC client) the call is served.
        assert (await pb.VmsStub(channel).list(pb.ListVmsRequest(all=True), timeout=10)).vms == []
    finally:
        channel.close()


async def _create_until_prefix_collision(hypr_home, image: str) -> tuple[list[str], str]:
    from hypr_engine.client import HyprClient
    from hypr_engine.models import VmSpec
    from hypr_engine.paths import Layout

    client = await HyprClient.connect(Layout(hypr_home.data, hypr_home.runtime))
    try:
        ids: list[str] = []
        for i in range(40):  # until two ids share their first hex digit and another has its own
            ids.append((await client.create_vm(VmSpec(image=image, name=f"c{i}", command=["true"]))).id)
            firsts = [x[0] for x in ids]
            dup = next((d for d in firsts if firsts.count(d) > 1), None)
            if dup and any(firsts.count(d) == 1 for d in firsts):
                return ids, dup
        raise AssertionError("no collision beside a unique prefix among 40 ids")
    finally:
        await client.close()


@pytest.mark.parametrize("daemon", [False, True], ids=["embedded", "daemon"])
def test_bad_references_read_the_same_either_way(hypr_home, hyprd_factory, busybox, daemon):
    if daemon:
        hyprd_factory.start()
    ids, dup = asyncio.run(_create_until_prefix_collision(hypr_home, busybox))
    cases = {
        ("inspect", "nosuch"): "no such VM: nosuch",
        ("rm", "nosuch"): "no such VM: nosuch",
        ("logs", "nosuch"): "no such VM: nosuch",
        ("exec", "nosuch", "true"): "no such VM: nosuch",
        ("start", ""): "VM name or id is empty",
        ("inspect", dup): f"VM id prefix {dup!r} is ambiguous",
        ("exec", "c0", "true"): "VM c0 is not running",
        ("rename", "c0", "c1"): "the name 'c1' is already in use by another VM",
        ("rename", "c0", "bad name"): "invalid VM name 'bad name'",
        ("run", "--rm", "no/such-image"): "unable to find image 'no/such-image' locally",
        ("rmi", busybox): "it is used by a VM",
        ("events", "--filter", "colour=red"): "invalid event filter 'colour=red'",
    }
    for args, message in cases.items():
        proc = hypr_home.run(*args)
        assert_clean_error(proc, message)
    # a prefix that is unique works
    unique = next(i for i in ids if [x[0] for x in ids].count(i[0]) == 1)
    assert json.loads(hypr_home.out("inspect", unique[:1]))[0]["Id"] == unique


def test_reconcile_at_start_settles_exits_finishes_removals_and_deletes_leftovers(hypr_home, hyprd_factory, busybox):
    hypr_home.run("create", "--name", "was-running", busybox, "sleep", "60", check=True)
    hypr_home.run("create", "--name", "half-removed", busybox, "true", check=True)
    db = hypr_home.data / "hypr.db"
    conn = sqlite3.connect(db)
    with conn:
        running_id = conn.execute("SELECT id FROM vms WHERE name='was-running'").fetchone()[0]
        removing_id = conn.execute("SELECT id FROM vms WHERE name='half-removed'").fetchone()[0]
        # As if its supervisor had died with hyprd down: active row, no supervisor, no exit.json.
        conn.execute("UPDATE vms SET state='running' WHERE id=?", (running_id,))
        conn.execute("UPDATE vms SET state='removing' WHERE id=?", (removing_id,))
    conn.close()
    (hypr_home.data / "vms" / removing_id).mkdir(parents=True)
    (hypr_home.data / "vms" / removing_id / "console.log").write_text("x")
    ghost = "ab" * 32
    (hypr_home.data / "vms" / ghost).mkdir(parents=True)
    (hypr_home.data / "vms" / ghost / "log").write_text("x")
    hypr_home.runtime.mkdir(parents=True, exist_ok=True)
    (hypr_home.runtime / ghost[:12]).mkdir()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(hypr_home.runtime / ghost[:12] / "control.sock"))
    stale.close()
    (hypr_home.data / "locks").mkdir(exist_ok=True)
    (hypr_home.data / "locks" / f"{ghost}.lock").write_text("")
    (hypr_home.data / "blobs" / "sha256" / ".tmp-crashed").write_bytes(b"partial")

    hyprd_factory.start()
    assert "1 exits recorded, 1 removals finished" in hyprd_factory.output()
    vm = json.loads(hypr_home.out("inspect", "was-running"))[0]
    assert vm["State"]["Status"] == "exited" and vm["State"]["ExitCode"] == 255
    assert "supervisor died" in vm["State"]["Error"]
    assert hypr_home.run("inspect", "half-removed").returncode == 125
    for path in (hypr_home.data / "vms" / removing_id, hypr_home.data / "vms" / ghost,
                 hypr_home.runtime / ghost[:12], hypr_home.data / "locks" / f"{ghost}.lock",
                 hypr_home.data / "blobs" / "sha256" / ".tmp-crashed"):
        assert not path.exists(), path
    events = [json.loads(line) for line in hypr_home.out("events", "--since", "0", "--until", str(time.time() + 1),
                                                           "--format", "json").splitlines()]
    assert ("die", "was-running") in {(e["Action"], e["Name"]) for e in events}
    assert ("destroy", "half-removed") in {(e["Action"], e["Name"]) for e in events}


def test_sigterm_while_a_stream_is_open_ends_it_cleanly(hypr_home, hyprd):
    follower = hypr_home.popen("events", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)
        assert hyprd.stop() == 0
        out, err = follower.communicate(timeout=30)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait(10)
    assert follower.returncode == 125
    assert b"Traceback" not in err
    assert b"lost the connection to hyprd" in err or b"hyprd" in err
    assert not hyprd.socket.exists()


def test_log_level_comes_from_the_environment(hypr_home, hyprd_factory):
    hyprd_factory.start(env={"HYPR_LOG_LEVEL": "DEBUG"})
    hypr_home.run("ps", check=True)
    wait_for(lambda: "/hypr.v1.Vms/List" in hyprd_factory.output(), 10, what="a DEBUG line per call")
    hyprd_factory.stop()
    proc = subprocess.run([sys.executable, "-m", "hypr_engine.daemon"], env=hypr_home.env | {"HYPR_LOG_LEVEL": "LOUD"},
                          capture_output=True, timeout=30)
    assert proc.returncode == 1 and b"invalid HYPR_LOG_LEVEL 'LOUD'" in proc.stderr


def test_a_too_long_runtime_dir_is_refused_clearly(hypr_home, tmp_path):
    long_dir = "/tmp/" + "r" * 100
    env = hypr_home.env | {"HYPR_RUNTIME_DIR": long_dir}
    proc = subprocess.run([sys.executable, "-m", "hypr_engine.daemon"], env=env, capture_output=True, timeout=30)
    assert proc.returncode == 1
    assert b"too long for Unix socket paths" in proc.stderr or b"more than a Unix socket allows" in proc.stderr
    assert b"Traceback" not in proc.stderr
    import shutil

    shutil.rmtree(long_dir, ignore_errors=True)


def test_events_read_the_same_either_way(hypr_home, busybox, hyprd_factory):
    hypr_home.run("create", "--name", "first", busybox, "true", check=True)
    hypr_home.run("rename", "first", "second", check=True)
    hypr_home.run("rm", "second", check=True)
    until = str(time.time() + 0.5)
    time.sleep(0.6)
    queries = [("events", "--since", "0", "--until", until),
               ("events", "--since", "0", "--until", until, "--format", "json"),
               ("events", "--since", "0", "--until", until, "--filter", "event=rename", "--filter", "event=destroy"),
               ("events", "--since", "0", "--until", until, "--filter", "type=image")]
    embedded = [hypr_home.out(*q) for q in queries]
    hyprd_factory.start()
    assert [hypr_home.out(*q) for q in queries] == embedded
    lines = embedded[0].splitlines()
    assert [line.split()[1:3] for line in lines] == [
        ["image", "load"], ["image", "tag"], ["vm", "create"], ["network", "connect"], ["vm", "rename"],
        ["vm", "remove"], ["network", "disconnect"], ["vm", "destroy"]]
    assert "(name=second, image=hypr/busybox:latest, old_name=first)" in lines[4]
    assert [x.split()[2] for x in embedded[2].splitlines()] == ["rename", "destroy"]
    assert [json.loads(x)["Action"] for x in embedded[1].splitlines()][-3:] == ["remove", "disconnect", "destroy"]
    assert len(embedded[3].splitlines()) == 2
