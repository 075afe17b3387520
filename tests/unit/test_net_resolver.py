"""The user networks' DNS resolver: which names a VM sees (Names, over a real hypr.db)
and the detached process answering over UDP and TCP, forwarding the rest upstream."""

from __future__ import annotations

import json
import socket
import sqlite3
import struct
import time

import pytest

from hypr_engine.net import resolver
from hypr_engine.state.schema import connect, migrate


def _db(path) -> sqlite3.Connection:
    conn = connect(path)
    migrate(conn)
    return conn


def _network(conn, net_id: str, name: str, subnet: str, driver: str = "bridge") -> None:
    conn.execute("INSERT INTO networks (id, name, driver, subnet, gateway, created_at) VALUES (?,?,?,?,?,0)",
                 (net_id, name, driver, subnet, subnet.replace("0/24", "1")))


def _vm(conn, vm_id: str, name: str, state: str = "running") -> None:
    conn.execute("INSERT INTO vms (id, name, image_id, image_ref, spec_json, state, created_at) "
                 "VALUES (?,?,'i','i','{}',?,0)", (vm_id, name, state))


def _endpoint(conn, vm_id: str, net_id: str, ip: str, aliases=(), position: int = 0) -> None:
    conn.execute("INSERT INTO endpoints (vm_id, network_id, ip, mac, aliases_json, position) VALUES (?,?,?,?,?,?)",
                 (vm_id, net_id, ip, "02:" + ip.replace(".", ":")[-11:].rjust(14, "0")[-14:], json.dumps(list(aliases)),
                  position))


@pytest.fixture
def world(tmp_path):
    """Networks x and y; `a` on x (alias `api` there), `b` on y (alias `api` there too),
    `d` on both, `off` on x but stopped."""
    db = tmp_path / "hypr.db"
    conn = _db(db)
    _network(conn, "x" * 64, "x", "10.1.1.0/24")
    _network(conn, "y" * 64, "y", "10.1.2.0/24")
    for vm_id, name in (("a", "a"), ("b", "b"), ("d", "d")):
        _vm(conn, vm_id * 64, name)
    _vm(conn, "o" * 64, "off", state="exited")
    _endpoint(conn, "a" * 64, "x" * 64, "10.1.1.2", ["api"])
    _endpoint(conn, "b" * 64, "y" * 64, "10.1.2.2", ["api"])
    _endpoint(conn, "d" * 64, "x" * 64, "10.1.1.3")
    _endpoint(conn, "d" * 64, "y" * 64, "10.1.2.3", position=1)
    _endpoint(conn, "o" * 64, "x" * 64, "10.1.1.4")
    yield db, conn
    conn.close()


def test_a_vm_sees_the_names_of_its_networks_only(world):
    db, _ = world
    on_x = resolver.Names(str(db), "x" * 64)
    assert on_x.lookup("a", "10.1.1.2") == ["10.1.1.2"]
    assert on_x.lookup("A.", "10.1.1.2") == ["10.1.1.2"]        # case and the root dot do not matter
    assert on_x.lookup("b", "10.1.1.2") is None                 # isolation: b shares no network with a
    assert on_x.lookup("off", "10.1.1.2") is None               # stopped VMs have no name
    assert on_x.lookup("api", "10.1.1.2") == ["10.1.1.2"]       # aliases are per network
    # d is on both: it sees b (through y) and both `api`s, the one of the asking network first
    assert on_x.lookup("b", "10.1.1.3") == ["10.1.2.2"]
    assert on_x.lookup("api", "10.1.1.3") == ["10.1.1.2", "10.1.2.2"]
    # a reaches d only on x: d's address on y (unreachable for a) is not given
    assert on_x.lookup("d", "10.1.1.2") == ["10.1.1.3"]
    assert resolver.Names(str(db), "y" * 64).lookup("d", "10.1.2.3") == ["10.1.2.3", "10.1.1.3"]


def test_changes_are_seen_at_the_next_query(world):
    db, conn = world
    names = resolver.Names(str(db), "x" * 64)
    assert names.lookup("off", "10.1.1.2") is None
    conn.execute("UPDATE vms SET state='running' WHERE name='off'")
    assert names.lookup("off", "10.1.1.2") == ["10.1.1.4"]
    conn.execute("DELETE FROM vms WHERE name='a'")
    assert names.lookup("api", "10.1.1.3") == ["10.1.2.2"]


def _ask(port: int, name: str, *, qtype: int = 1, tcp: bool = False, timeout: float = 8,
         server: str = "127.0.0.1") -> tuple[int, list[str]]:
    """(rcode, A records) of one query, as a minimal stub resolver asks."""
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p) + b"\0" + struct.pack("!HH", qtype, 1)
    query = struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + question
    if tcp:
        with socket.create_connection((server, port), timeout=5) as s:
            s.sendall(struct.pack("!H", len(query)) + query)
            size = struct.unpack("!H", s.recv(2))[0]
            reply = b""
            while len(reply) < size:
                reply += s.recv(size - len(reply))
    else:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(query, (server, port))
            reply = s.recv(4096)
    assert reply[:2] == query[:2]
    count = struct.unpack("!H", reply[6:8])[0]
    pos, found = 12 + len(question), []
    for _ in range(count):
        pos += 2                                     # our answers name the question by pointer
        rtype, _, _, size = struct.unpack("!HHIH", reply[pos:pos + 10])
        pos += 10
        if rtype == 1:
            found.append(socket.inet_ntoa(reply[pos:pos + 4]))
        pos += size
    return reply[3] & 0x0F, found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_detached_resolver_answers_forwards_and_exits_with_its_network(world, tmp_path):
    db, conn = world
    upstream_port, port = _free_port(), _free_port()
    record_y = tmp_path / "y" / "resolver.json"
    record_x = tmp_path / "x" / "resolver.json"
    # network y's resolver plays the host's resolver for network x's (a real upstream, on loopback)
    up = resolver.start(record_y, str(db), "y" * 64, "127.0.0.1", port=upstream_port, upstream="127.0.0.9:9")
    ref = resolver.start(record_x, str(db), "x" * 64, "127.0.0.1", port=port, upstream=f"127.0.0.1:{upstream_port}")
    try:
        assert resolver.start(record_x, str(db), "x" * 64, "127.0.0.1", port=port) == ref   # already running
        # the asker (127.0.0.1) is no VM of network x: it sees network x's names
        assert _ask(port, "a") == (0, ["10.1.1.2"])
        assert _ask(port, "a", tcp=True) == (0, ["10.1.1.2"])
        assert _ask(port, "a", qtype=28) == (0, [])           # AAAA of our name: empty, not forwarded
        # not ours: forwarded to the upstream, which (as network y's resolver) knows b
        assert _ask(port, "b") == (0, ["10.1.2.2"])
        # upstream down: SERVFAIL, after the forward's timeout
        assert _ask(upstream_port, "nowhere.example")[0] == 2
        # --internal: its own names still, nothing forwarded out (REFUSED)
        conn.execute("UPDATE networks SET internal=1 WHERE id=?", ("x" * 64,))
        assert _ask(port, "a") == (0, ["10.1.1.2"])
        assert _ask(port, "b") == (5, [])
        conn.execute("UPDATE networks SET internal=0 WHERE id=?", ("x" * 64,))
        assert _ask(port, "b") == (0, ["10.1.2.2"])
        conn.execute("DELETE FROM endpoints WHERE network_id=?", ("x" * 64,))
        conn.execute("DELETE FROM networks WHERE id=?", ("x" * 64,))
        deadline = time.monotonic() + 10
        while ref.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not ref.alive(), "the resolver outlived its network"
    finally:
        resolver.stop(record_x)
        resolver.stop(record_y)
    assert not up.alive() and not record_y.exists()


def test_garbage_from_a_guest_never_breaks_the_resolver(world, tmp_path):
    """Guests are not trusted: random and truncated packets get no answer and change nothing."""
    import random

    rng = random.Random(7)
    valid = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\x01a\x00" + struct.pack("!HH", 1, 1)
    samples = [bytes(rng.randrange(256) for _ in range(rng.randrange(0, 80))) for _ in range(300)]
    samples += [valid[:n] for n in range(len(valid))]                          # every truncation
    samples += [valid[:12] + b"\x3f" + b"x" * 10, valid[:12] + b"\xc0\x0c" + valid[-4:]]   # overlong label, pointer
    for packet in samples:
        assert resolver.parse_question(packet) is None or len(packet) >= 17
    db, _ = world
    port = _free_port()
    record = tmp_path / "x" / "resolver.json"
    ref = resolver.start(record, str(db), "x" * 64, "127.0.0.1", port=port, upstream="127.0.0.9:9")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for packet in samples:
                s.sendto(packet, ("127.0.0.1", port))
        # a burst can overflow the socket's buffer (the kernel then drops), so ask as a stub
        # resolver does: again after a timeout
        answer = None
        for _ in range(4):
            try:
                answer = _ask(port, "a", timeout=2)
                break
            except TimeoutError:
                continue
        assert answer == (0, ["10.1.1.2"])
        assert ref.alive()
    finally:
        resolver.stop(record)
