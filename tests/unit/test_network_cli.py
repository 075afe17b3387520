"""`hypr network` without VMs: the host side of user networks made and unmade through the
CLI (real bridges, nftables, resolver processes and SQLite), and bad input refused with
nothing half-created. Root only: user networks are root's (the non-root error is tested
too, as an unprivileged user)."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import sqlite3
import subprocess

import pytest

from hypr_engine.net import bridge, nft
from hypr_engine.proc import ProcessRef

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="user networks need root")


def _rows(home, sql: str) -> list[tuple]:
    conn = sqlite3.connect(home.data / "hypr.db")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _host_objects(home) -> list[str]:
    tag = bridge.dir_tag(home.data)
    found = bridge.links_with_prefix(bridge.BRIDGE_PREFIX + tag)
    if nft.table_exists(nft.table_name(home.data)):
        found.append("table")
    return found


def _resolver(home, network_id: str) -> ProcessRef | None:
    from hypr_engine.net import resolver

    return resolver.running(home.data / "networks" / network_id / "resolver.json")


def _error(proc) -> str:
    err = proc.stderr.decode()
    assert proc.returncode != 0, proc.stdout.decode()
    assert err.startswith("hypr: error: ") and "Traceback" not in err, err
    return err


def _query(server: str, name: str) -> list[str]:
    """The A records the DNS server at server:53 answers for `name`."""
    from tests.unit.test_net_resolver import _ask

    return _ask(53, name, server=server)[1]


def test_create_inspect_ls_rm_make_and_unmake_every_host_object(hypr_home):
    net_id = hypr_home.out("network", "create", "--label", "team=blue", "appnet").strip()
    info = json.loads(hypr_home.out("network", "inspect", "appnet"))[0]
    subnet = ipaddress.IPv4Network(info["IPAM"]["Config"][0]["Subnet"])
    assert info["Id"] == net_id and info["Driver"] == "bridge" and info["Labels"] == {"team": "blue"}
    assert subnet.subnet_of(ipaddress.IPv4Network("10.89.0.0/16")) and subnet.prefixlen == 24
    gateway = info["IPAM"]["Config"][0]["Gateway"]
    assert gateway == str(subnet.network_address + 1)
    br = bridge.bridge_name(hypr_home.data, net_id)
    assert gateway in subprocess.run(["ip", "-4", "addr", "show", br], capture_output=True, text=True).stdout
    assert f"ip saddr {subnet} " in subprocess.run(["nft", "list", "table", "inet", nft.table_name(hypr_home.data)],
                                                   capture_output=True, text=True).stdout
    ref = _resolver(hypr_home, net_id)
    assert ref is not None
    listing = hypr_home.out("network", "ls")
    assert "appnet" in listing and "default" in listing and str(subnet) in listing

    assert hypr_home.out("network", "rm", "appnet").strip() == "appnet"
    assert not ref.alive()
    assert _host_objects(hypr_home) == []
    assert _rows(hypr_home, "SELECT name FROM networks WHERE driver='bridge'") == []
    assert "no such network" in _error(hypr_home.run("network", "rm", "appnet"))


def test_a_custom_subnet_and_gateway_are_honoured_and_overlaps_refused(hypr_home):
    hypr_home.run("network", "create", "--subnet", "10.231.8.0/26", "--gateway", "10.231.8.62", "custom", check=True)
    cfg = json.loads(hypr_home.out("network", "inspect", "custom"))[0]["IPAM"]["Config"][0]
    assert cfg == {"Subnet": "10.231.8.0/26", "Gateway": "10.231.8.62"}
    err = _error(hypr_home.run("network", "create", "--subnet", "10.231.0.0/16", "wide"))
    assert "overlaps network 'custom'" in err
    # a route of the host (its own LAN) is refused too
    routes = [ipaddress.IPv4Network(r, strict=False) for r in bridge.host_routes() if not r.startswith("10.231.")]
    lans = [r for r in routes if r.prefixlen >= 8 and not (r.is_link_local or r.is_loopback or r.is_multicast)]
    assert lans, "the host has no route besides its default one?"
    lan = lans[0]
    if lan.prefixlen > 29:
        lan = lan.supernet(new_prefix=29)
    assert "overlaps the host's" in _error(hypr_home.run("network", "create", "--subnet", str(lan), "lan"))
    assert [r[0] for r in _rows(hypr_home, "SELECT name FROM networks WHERE driver='bridge'")] == ["custom"]
    hypr_home.run("network", "rm", "custom", check=True)


@pytest.mark.parametrize("args, message", [
    (["--subnet", "10.300.0.0/24"], "invalid subnet '10.300.0.0/24'"),
    (["--subnet", "10.232.0.5/24"], "host bits are set"),
    (["--subnet", "10.232.0.0/24", "--gateway", "10.233.0.1"], "gateway 10.233.0.1 is outside the subnet 10.232.0.0/24"),
    (["--gateway", "10.232.0.1"], "--gateway needs --subnet"),
])
def test_bad_input_is_refused_and_creates_nothing(hypr_home, args, message):
    assert message in _error(hypr_home.run("network", "create", *args, "bad"))
    assert _rows(hypr_home, "SELECT name FROM networks WHERE driver='bridge'") == []
    assert _host_objects(hypr_home) == []


def test_names_in_use_and_reserved_are_refused(hypr_home):
    hypr_home.run("network", "create", "taken", check=True)
    before = _host_objects(hypr_home)
    assert "a network named 'taken' already exists" in _error(hypr_home.run("network", "create", "taken"))
    assert "reserved" in _error(hypr_home.run("network", "create", "default"))
    assert "cannot be removed" in _error(hypr_home.run("network", "rm", "default"))
    assert _host_objects(hypr_home) == before
    assert hypr_home.out("network", "prune").split() == ["Deleted", "Networks:", "taken"]
    assert _host_objects(hypr_home) == []


def test_the_resolver_answers_from_sqlite_and_survives_its_engine(hypr_home):
    """No VM here: an endpoint row is inserted by hand and the resolver, started by a CLI
    process that has long exited, answers for it on the gateway address."""
    net_id = hypr_home.out("network", "create", "--subnet", "10.233.5.0/24", "dnsnet").strip()
    conn = sqlite3.connect(hypr_home.data / "hypr.db")
    with conn:
        conn.execute("INSERT INTO vms (id, name, image_id, image_ref, spec_json, state, created_at) "
                     "VALUES ('ab' || hex(randomblob(31)), 'web', 'x', 'x', '{}', 'running', 0)")
        conn.execute("INSERT INTO endpoints (vm_id, network_id, ip, mac, aliases_json, position) "
                     "SELECT id, ?, '10.233.5.7', '02:00:00:00:00:07', '[\"www\"]', 0 FROM vms WHERE name='web'",
                     (net_id,))
    assert _query("10.233.5.1", "web") == ["10.233.5.7"]
    assert _query("10.233.5.1", "WWW") == ["10.233.5.7"]
    with conn:   # the change is seen at the next query (PRAGMA data_version)
        conn.execute("UPDATE vms SET state='exited' WHERE name='web'")
    assert "10.233.5.7" not in _query("10.233.5.1", "web")   # not ours any more: forwarded upstream
    with conn:
        conn.execute("DELETE FROM vms WHERE name='web'")
    conn.close()
    hypr_home.run("network", "rm", "dnsnet", check=True)


def test_without_root_a_user_network_is_a_clear_error(tmp_path):
    """As an unprivileged user (nobody), in a data dir of its own."""
    from tests.conftest import HYPR, ROOT

    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is missing")
    home = tmp_path / "nobody"
    home.mkdir()
    shutil.chown(home, 65534, 65534)
    os.chmod(tmp_path, 0o755)
    for parent in tmp_path.parents:
        if parent == parent.parent or not str(parent).startswith("/tmp/"):
            break
        os.chmod(parent, os.stat(parent).st_mode | 0o005)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYPR_")}
    env.update(HOME=str(home), HYPR_DATA_DIR=str(home / "data"), HYPR_RUNTIME_DIR=str(home / "run"),
               PYTHONPATH=str(ROOT), XDG_CACHE_HOME=str(home / "cache"))
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *HYPR,
                           "network", "create", "mine"], env=env, capture_output=True, timeout=60)
    err = _error(proc)
    assert "user networks need root" in err and "default" in err
    conn = sqlite3.connect(home / "data" / "hypr.db")
    try:
        assert conn.execute("SELECT name FROM networks WHERE driver='bridge'").fetchall() == []
    finally:
        conn.close()
    assert bridge.links_with_prefix(bridge.BRIDGE_PREFIX + bridge.dir_tag(home / "data")) == []
    # `system info` says so up front, and what works instead
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *HYPR,
                           "system", "info", "--format", "json"], env=env, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    networking = json.loads(proc.stdout)["networking"]
    assert networking["user_networks"].startswith("unavailable: user networks need root")


def test_system_info_reports_gvproxy_and_user_networks(hypr_home):
    networking = json.loads(hypr_home.out("system", "info", "--format", "json"))["networking"]
    assert networking["gvproxy"].endswith("/gvproxy")
    assert networking["default_network"].startswith("idle")     # no VM yet: no gvproxy running
    assert networking["user_networks"] == "available"
    text = hypr_home.out("system", "info")
    assert "User networks:  available" in text and "Default net:    idle" in text


def test_connect_and_disconnect_a_created_vm_and_rm_refuses_a_network_in_use(hypr_home, busybox):
    hypr_home.run("create", "--name", "c1", busybox, "true", check=True)
    hypr_home.run("network", "create", "--subnet", "10.234.0.0/24", "joined", check=True)
    proc = hypr_home.run("network", "connect", "--alias", "db", "--alias", "store", "joined", "c1", check=True)
    assert b"next start" not in proc.stderr            # not running: nothing to say
    endpoint = next(iter(json.loads(hypr_home.out("network", "inspect", "joined"))[0]["Containers"].values()))
    assert endpoint["Name"] == "c1" and endpoint["Aliases"] == ["db", "store"]
    assert ipaddress.IPv4Address(endpoint["IPv4Address"]) in ipaddress.IPv4Network("10.234.0.0/24")
    assert "already connected" in _error(hypr_home.run("network", "connect", "joined", "c1"))
    assert "no such network" in _error(hypr_home.run("network", "connect", "nowhere", "c1"))
    assert "outside network" in _error(hypr_home.run("network", "connect", "--ip", "10.9.9.9", "default", "c1"))

    err = _error(hypr_home.run("network", "rm", "joined"))
    assert "in use by c1" in err and "-f" in err
    assert bridge.links_with_prefix(bridge.BRIDGE_PREFIX + bridge.dir_tag(hypr_home.data))   # still there

    hypr_home.run("network", "disconnect", "joined", "c1", check=True)
    assert "not connected" in _error(hypr_home.run("network", "disconnect", "joined", "c1"))
    assert json.loads(hypr_home.out("network", "inspect", "joined"))[0]["Containers"] == {}
    hypr_home.run("network", "connect", "joined", "c1", check=True)
    assert hypr_home.out("network", "rm", "-f", "joined").strip() == "joined"
    assert _host_objects(hypr_home) == []


def test_a_failure_half_way_leaves_nothing(hypr_home):
    """The resolver cannot bind (something else holds gateway:53): the bridge and rules
    made before it are undone and the row is gone."""
    from hypr_engine.net import pool

    subnet = pool.pick_free([("route", r) for r in bridge.host_routes()], ipaddress.IPv4Network("10.239.0.0/16"))
    gateway = str(subnet.network_address + 1)
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.setsockopt(socket.IPPROTO_IP, 15, 1)          # IP_FREEBIND: the address is not the host's yet
    squatter.bind((gateway, 53))
    try:
        err = _error(hypr_home.run("network", "create", "--subnet", str(subnet), "doomed"))
    finally:
        squatter.close()
    assert f"cannot serve DNS on {gateway}:53" in err
    assert _rows(hypr_home, "SELECT name FROM networks WHERE driver='bridge'") == []
    assert _host_objects(hypr_home) == []
    assert [p.name for p in (hypr_home.data / "networks").glob("*") if p.name != ".lock"] == []   # no network's dir


def test_engines_bringing_a_network_up_at_once_start_one_resolver(hypr_home):
    """As when VMs on a network start together after its resolver died (or a reboot)."""
    import threading

    from hypr_engine.net.networks import HostSide
    from hypr_engine.paths import Layout
    from hypr_engine.proc import processes_mentioning
    from hypr_engine.state.schema import connect

    net_id = hypr_home.out("network", "create", "together").strip()
    layout = Layout(hypr_home.data, hypr_home.runtime)
    resolver_mod = __import__("hypr_engine.net.resolver", fromlist=["stop"])
    resolver_mod.stop(hypr_home.data / "networks" / net_id / "resolver.json")
    errors = []

    def up() -> None:
        conn = connect(layout.db)
        try:
            HostSide(layout).bring_up(conn, net_id)
        except Exception as exc:
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=up) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    resolvers = [p for p in processes_mentioning(net_id) if "hypr_engine.net.resolver" in p[1]]
    assert len(resolvers) == 1, resolvers
    hypr_home.run("network", "rm", "together", check=True)
