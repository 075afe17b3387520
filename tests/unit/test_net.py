"""Networking's pure logic against a real SQLite file: the default network, the address
allocator, MACs, the NIC boot field, `-p` parsing, host-port checks, the guest's name files,
and the CLI's network flags. (Real VMs: tests/vm/test_network_default.py.)"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sqlite3
import threading

import pytest

from hypr_engine.agent.codec import decode_fields
from hypr_engine.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from hypr_engine.net import guestfiles, store
from hypr_engine.net.driver import GuestNic, substitute_fds
from hypr_engine.net.ports import PortBinding, PortRequest, check_free, docker_ports, parse_all, parse_publish
from hypr_engine.net.store import Attachment
from hypr_engine.state.schema import connect, migrate
from hypr_engine.vmm.bootcfg import BootConfig, BootTag


@pytest.fixture
def db(tmp_path):
    conn = connect(tmp_path / "hypr.db")
    migrate(conn)
    yield conn
    conn.close()


def _vm(conn: sqlite3.Connection, name: str) -> str:
    vm_id = os.urandom(32).hex()
    conn.execute("INSERT INTO vms (id, name, image_id, image_ref, spec_json, state, created_at) "
                 "VALUES (?,?,?,?,?,?,?)", (vm_id, name, "sha256:x", "img", "{}", "created", 0.0))
    return vm_id


def _attach(conn, vm_id: str, att: Attachment) -> store.Endpoint:
    with store.write_transaction(conn):
        resolved = store.resolve_attachments(conn, [att])
        return store.attach_all(conn, vm_id, resolved)[0]


def test_every_data_dir_has_the_default_network(db):
    net = store.get_network(db, "default")
    assert (net.driver, net.subnet, net.gateway, net.internal) == ("gvproxy", "192.168.127.0/24", "192.168.127.1", False)
    assert len(net.id) == 64 and store.get_network(db, net.id[:8]) == net
    with pytest.raises(NotFound, match="no such network: nope"):
        store.get_network(db, "nope")


def test_addresses_are_the_lowest_free_never_reserved_never_twice(db):
    ips = [_attach(db, _vm(db, f"vm{i}"), Attachment("default")).ip for i in range(3)]
    assert ips == ["192.168.127.2", "192.168.127.3", "192.168.127.4"]
    # a removed VM's address is free again (its endpoint goes with it), and the lowest is taken
    db.execute("DELETE FROM vms WHERE name='vm1'")
    assert _attach(db, _vm(db, "again"), Attachment("default")).ip == "192.168.127.3"
    # the allocator never hands out .254 (gvproxy's alias of the host) nor the broadcast
    net = store.get_network(db, "default")
    with store.write_transaction(db):
        for n in range(5, 254):
            db.execute("INSERT INTO endpoints (vm_id, network_id, ip, mac, position) VALUES (?,?,?,?,0)",
                       (_vm(db, f"fill{n}"), net.id, f"192.168.127.{n}", f"02:00:00:00:00:{n:02x}"))
    with pytest.raises(Conflict, match="no free address"):
        _attach(db, _vm(db, "full"), Attachment("default"))


def test_concurrent_allocations_never_share_an_address(tmp_path):
    first = connect(tmp_path / "hypr.db")
    migrate(first)
    vm_ids = [_vm(first, f"vm{i}") for i in range(12)]
    results: list[str] = []
    errors: list[BaseException] = []

    def worker(ids):
        conn = connect(tmp_path / "hypr.db")
        try:
            for vm_id in ids:
                results.append(_attach(conn, vm_id, Attachment("default")).ip)
        except BaseException as exc:
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(vm_ids[i::3],)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(results, key=ipaddress.ip_address) == [f"192.168.127.{n}" for n in range(2, 14)]


def test_a_requested_address_must_be_inside_free_and_not_reserved(db):
    assert _attach(db, _vm(db, "a"), Attachment("default", ip="192.168.127.50")).ip == "192.168.127.50"
    for ip, error, message in [
        ("192.168.127.50", Conflict, "already in use"),
        ("10.0.0.5", InvalidArgument, "outside network default's subnet"),
        ("192.168.127.1", InvalidArgument, "reserved"),
        ("192.168.127.254", InvalidArgument, "reserved"),
        ("192.168.127.255", InvalidArgument, "reserved"),
        ("192.168.127.0", InvalidArgument, "reserved"),
        ("not-an-ip", InvalidArgument, "not an IP address"),
    ]:
        with pytest.raises(error, match=message):
            store.resolve_attachments(db, [Attachment("default", ip=ip)])
    # the allocator then skips the requested one
    assert _attach(db, _vm(db, "b"), Attachment("default")).ip == "192.168.127.2"


def test_attachment_requests_are_checked_before_anything_is_written(db):
    with pytest.raises(NotFound, match="no such network: nowhere"):
        store.resolve_attachments(db, [Attachment("nowhere")])
    with pytest.raises(InvalidArgument, match="none cannot be combined"):
        store.resolve_attachments(db, [Attachment("none"), Attachment("default")])
    with pytest.raises(InvalidArgument, match="given twice"):
        store.resolve_attachments(db, [Attachment("default"), Attachment("default")])
    assert store.resolve_attachments(db, [Attachment("none")]) == []
    assert db.execute("SELECT COUNT(*) FROM endpoints").fetchone()[0] == 0


def test_macs_are_locally_administered_unicast_and_stable():
    vm, net = "ab" * 32, "cd" * 32
    mac = store.mac_for(vm, net)
    first = int(mac.split(":")[0], 16)
    assert first & 0b10 and not first & 0b1
    assert mac == store.mac_for(vm, net) != store.mac_for(vm, "ef" * 32)
    assert GuestNic.parse(f"{mac} 10.0.0.2/24 - 1500").mac == mac


def test_endpoints_and_network_events(db):
    vm_id = _vm(db, "evt")
    ep = _attach(db, vm_id, Attachment("default"))
    assert store.endpoints_of(db, vm_id) == [ep]
    db.execute("DELETE FROM vms WHERE id=?", (vm_id,))
    assert store.endpoints_of(db, vm_id) == []
    rows = db.execute("SELECT action, name, attrs FROM events WHERE type='network' ORDER BY seq").fetchall()
    assert [(r["action"], r["name"]) for r in rows] == [("connect", "default"), ("disconnect", "default")]
    store.insert_network(db, "mine", "bridge", "10.89.0.0/24", "10.89.0.1")
    with pytest.raises(AlreadyExists):
        store.insert_network(db, "mine", "bridge", "10.89.1.0/24", "10.89.1.1")
    db.execute("DELETE FROM networks WHERE name='mine'")
    actions = [r[0] for r in db.execute("SELECT action FROM events WHERE type='network' ORDER BY seq")]
    assert actions[-2:] == ["create", "destroy"]


# --- the NIC boot field ---------------------------------------------------------------------------

def test_nic_field_encoding_round_trips_and_reaches_the_boot_config():
    nics = [GuestNic("02:1f:6a:00:c3:9e", "192.168.127.2", 24, "192.168.127.1", 1500),
            GuestNic("02:00:00:00:00:01", "10.89.0.5", 16, None, 9000)]
    texts = [n.encode() for n in nics]
    assert texts == ["02:1f:6a:00:c3:9e 192.168.127.2/24 192.168.127.1 1500", "02:00:00:00:00:01 10.89.0.5/16 - 9000"]
    assert [GuestNic.parse(t) for t in texts] == nics
    encoded = BootConfig(vm_id="x", argv=["true"], env=[], hostname="h", nics=texts).encode()
    assert [v.decode() for tag, v in decode_fields(encoded) if tag == BootTag.NIC] == texts


@pytest.mark.parametrize("text", [
    "", "02:1f:6a:00:c3:9e 192.168.127.2/24 192.168.127.1", "02:1F:6a:00:c3:9e 192.168.127.2/24 - 1500",
    "02:1f:6a:00:c3 192.168.127.2/24 - 1500", "02:1f:6a:00:c3:9e 192.168.127.2/33 - 1500",
    "02:1f:6a:00:c3:9e 192.168.127.2 - 1500", "02:1f:6a:00:c3:9e 192.168.127.256/24 - 1500",
    "02:1f:6a:00:c3:9e 192.168.127.2/24 - 67", "02:1f:6a:00:c3:9e 192.168.127.2/24 - 65536",
    "02:1f:6a:00:c3:9e  192.168.127.2/24 - 1500", "02:1f:6a:00:c3:9e 192.168.127.2/24 x 1500",
    "02:1f:6a:00:c3:9e 192.168.127.02/24 - 1500", "02:1f:6a:00:c3:9e 192.168.127.2/24 - 1500 ",
    "02:1f:6a:00:c3:9e 192.168.127.2/024 - 1500", "02:1f:6a:00:c3:9e 192.168.127.2/02 - 1500",
    "02:1f:6a:00:c3:9e 192.168.127.2/24 - 01500",
])
def test_malformed_nic_fields_are_refused(text):
    with pytest.raises(InvalidArgument):
        GuestNic.parse(text)


def test_spawn_time_descriptors_replace_their_placeholders():
    argv = ["qemu", "-netdev", "stream,addr.type=fd,addr.str={fd:net0},id=net0", "-netdev", "x={fd:net1}"]
    assert substitute_fds(argv, {"net0": 7, "net1": 12}) == [
        "qemu", "-netdev", "stream,addr.type=fd,addr.str=7,id=net0", "-netdev", "x=12"]


# --- -p -----------------------------------------------------------------------------------------

def test_publish_forms():
    assert parse_publish("8080:80") == [PortRequest("0.0.0.0", 8080, 80, "tcp")]
    assert parse_publish("80") == [PortRequest("0.0.0.0", None, 80, "tcp")]
    assert parse_publish("127.0.0.1:5353:53/udp") == [PortRequest("127.0.0.1", 5353, 53, "udp")]
    assert parse_publish("127.0.0.1::53/UDP") == [PortRequest("127.0.0.1", None, 53, "udp")]
    assert parse_publish("9000-9002:7000-7002") == [PortRequest("0.0.0.0", 9000 + i, 7000 + i, "tcp") for i in range(3)]
    assert parse_publish("7000-7001") == [PortRequest("0.0.0.0", None, 7000, "tcp"),
                                          PortRequest("0.0.0.0", None, 7001, "tcp")]
    assert parse_publish("[::1]:8080:80") == [PortRequest("::1", 8080, 80, "tcp")]


@pytest.mark.parametrize("spec, message", [
    ("0:80", "from 1 to 65535"), ("65536:80", "from 1 to 65535"), ("80:70000", "from 1 to 65535"),
    ("abc", "use PORT or START-END"), ("1:2:3:4", "use \\[IP:\\]"), ("80/sctp", "use tcp or udp"),
    ("10.0.0.300:80:80", "invalid host address"), ("9000-9003:7000-7001", "same length"),
    ("9000-8000:80", "the end is below the start"), ("", "empty"), ("1-5000", "too large"),
])
def test_malformed_publish_is_refused(spec, message):
    with pytest.raises(InvalidArgument, match=message):
        parse_publish(spec)


def test_publish_all_adds_exposed_ports_and_a_host_port_twice_is_refused():
    requests = parse_all(["8080:80"], ["80/tcp", "53/udp", "443"], publish_all=True)
    assert requests == [PortRequest("0.0.0.0", 8080, 80, "tcp"), PortRequest("0.0.0.0", None, 53, "udp"),
                        PortRequest("0.0.0.0", None, 443, "tcp")]
    with pytest.raises(InvalidArgument, match="published twice"):
        parse_all(["8080:80", "8080:81"])


def test_a_host_port_in_use_is_a_clear_conflict():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with pytest.raises(Conflict, match=f"host port 0.0.0.0:{port}/tcp is already in use"):
            check_free("0.0.0.0", port, "tcp")
    check_free("127.0.0.1", port, "tcp")  # free again once closed


def test_docker_shaped_ports():
    ports = docker_ports([PortBinding("0.0.0.0", 8080, 80, "tcp"), PortBinding("127.0.0.1", 5353, 53, "udp")],
                         ["80/tcp", "443/tcp"])
    assert ports == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}], "443/tcp": None,
                     "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}]}


# --- the guest's files and the CLI ---------------------------------------------------------------

def test_hosts_and_resolv_follow_the_networks(db):
    vm_id = _vm(db, "named")
    ep = _attach(db, vm_id, Attachment("default"))
    hosts = guestfiles.hosts_file("hn", "named", [ep])
    assert f"{ep.ip}\thn named\n" in hosts
    assert "192.168.127.254\thost.hypr.internal host.containers.internal\n" in hosts
    assert "127.0.1.1\thn\n" in guestfiles.hosts_file("hn", "hn", [])

    class Nic:  # what resolv_conf reads of a NicPlan
        def __init__(self, dns):
            self.dns = dns

    assert guestfiles.resolv_conf([ep], [Nic("192.168.127.1")]).startswith("nameserver 192.168.127.1\n")
    assert guestfiles.resolv_conf([], []) == ""


def test_cli_network_flags():
    from hypr_tui.net_cli import parse_network_flag, spec_network_fields

    def ns(**kw):
        base = dict(network=[], network_alias=[], ip=None, publish=[], publish_all=False)
        return argparse.Namespace(**(base | kw))

    assert spec_network_fields(ns())["networks"] == []
    assert spec_network_fields(ns(network=["none"]))["networks"] == [{"name": "none", "aliases": [], "ip": None}]
    fields = spec_network_fields(ns(network=["a", "b"], network_alias=["x"], ip="10.0.0.9", publish=["80"],
                                    publish_all=True))
    assert fields == {"networks": [{"name": "a", "aliases": ["x"], "ip": "10.0.0.9"},
                                   {"name": "b", "aliases": [], "ip": None}],
                      "publish": ["80"], "publish_all": True}
    assert spec_network_fields(ns(ip="192.168.127.9"))["networks"] == [
        {"name": "default", "aliases": [], "ip": "192.168.127.9"}]
    assert parse_network_flag("name=n1,alias=a,alias=b,ip=10.1.0.3") == {"name": "n1", "aliases": ["a", "b"],
                                                                         "ip": "10.1.0.3"}
    with pytest.raises(InvalidArgument, match="unknown key"):
        parse_network_flag("name=n1,foo=bar")


def test_network_events_filter():
    from hypr_engine.events import Event, matches, parse_filters

    connect = Event(1, 0.0, "network", "connect", "ab" * 32, "default", {"vm": "cd" * 32})
    assert matches(connect, parse_filters(["network=default"]))
    assert matches(connect, parse_filters(["network=abab", "event=connect"]))
    assert not matches(connect, parse_filters(["network=other"]))
    assert not matches(Event(2, 0.0, "vm", "start", "ab" * 32, "default"), parse_filters(["network=default"]))
