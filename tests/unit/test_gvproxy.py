"""The default network's gvproxy under its supervisor, without VMs: a real gvproxy started
on demand, its forwarder API, a restart that puts the recorded ports back, and the exit
once no VM uses it, leaving no process, socket or state file."""

from __future__ import annotations

import os
import shutil
import socket
import time
import uuid
from pathlib import Path

import pytest

from hypr_engine.errors import Conflict
from hypr_engine.net import gvproxy, store
from hypr_engine.net.ports import check_free
from hypr_engine.proc import ProcessRef, processes_mentioning
from hypr_engine.state.schema import connect, migrate


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def paths(tmp_path, monkeypatch):
    monkeypatch.setenv("HYPR_GVPROXY_IDLE_S", "0.5")
    runtime = Path(f"/tmp/hyprg-{uuid.uuid4().hex[:8]}")
    conn = connect(tmp_path / "hypr.db")
    migrate(conn)
    conn.close()
    p = gvproxy.GvproxyPaths(tmp_path, runtime)
    yield p
    deadline = time.monotonic() + 10
    while processes_mentioning(str(tmp_path), str(runtime)) and time.monotonic() < deadline:
        time.sleep(0.1)
    leaked = processes_mentioning(str(tmp_path), str(runtime))
    for pid, _ in leaked:
        os.kill(pid, 9)
    sockets = [q for q in runtime.glob("*") if q.is_socket()] if runtime.exists() else []
    shutil.rmtree(runtime, ignore_errors=True)
    assert not leaked, leaked
    assert not sockets, sockets


def test_started_on_demand_forwards_restarts_with_the_recorded_ports_and_leaves_when_idle(paths):
    # An active VM with a published port, as the engine records them.
    conn = connect(paths.db)
    vm_id = os.urandom(32).hex()
    conn.execute("INSERT INTO vms (id, name, image_id, image_ref, spec_json, state, created_at) "
                 "VALUES (?,?,?,?,?,?,?)", (vm_id, "vm", "sha256:x", "img", "{}", "running", 0.0))
    with store.write_transaction(conn):
        store.attach_all(conn, vm_id, store.resolve_attachments(conn, [store.Attachment("default")]))
    recorded, extra = free_port(), free_port()
    conn.execute("INSERT INTO ports (vm_id, host_ip, host_port, guest_port, protocol) VALUES (?,?,?,?,?)",
                 (vm_id, "127.0.0.1", recorded, 80, "tcp"))

    gvproxy.ensure_running(paths)
    state = gvproxy.state(paths)
    assert state["generation"] == 1 and ProcessRef.from_json(state["gvproxy"]).alive()
    local = f"127.0.0.1:{recorded}"
    assert {"local": local, "remote": "192.168.127.2:80", "protocol": "tcp"} in gvproxy.forwards(paths)

    # the forwarder API: a published port is taken on the host, and free again once closed
    gvproxy.expose(paths, "127.0.0.1", extra, "192.168.127.2", 53, "udp")
    gvproxy.expose(paths, "127.0.0.1", extra, "192.168.127.2", 53, "udp")   # the same again: already there
    with pytest.raises(Conflict, match="already in use"):
        gvproxy.expose(paths, "127.0.0.1", extra, "192.168.127.3", 53, "udp")
    with pytest.raises(Conflict):
        check_free("127.0.0.1", recorded, "tcp")
    assert gvproxy.unexpose(paths, "127.0.0.1", extra, "udp")
    assert not gvproxy.unexpose(paths, "127.0.0.1", extra, "udp")

    # gvproxy dies: its supervisor starts a new one, which gets the recorded port back
    os.kill(state["gvproxy"]["pid"], 9)
    wait(lambda: gvproxy.state(paths).get("generation") == 2, 20, "a new gvproxy")
    gvproxy.ensure_running(paths)
    assert [f["local"] for f in gvproxy.forwards(paths)] == [local]

    # the VM ends: gvproxy and its supervisor leave, taking their sockets and state along
    conn.execute("UPDATE vms SET state='exited' WHERE id=?", (vm_id,))
    conn.close()
    wait(lambda: not paths.state_file.exists() and not gvproxy.supervisor_running(paths), 15, "gvproxy to leave")
    assert not paths.api_socket.exists()
    check_free("127.0.0.1", recorded, "tcp")
