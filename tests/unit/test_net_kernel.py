"""The host side of user networks against real kernel objects (root only): bridges,
TAPs, the nftables table (masquerade, isolation, --internal) and IPv4 forwarding.

Network namespaces joined to HYPR's bridges by veth pairs stand in for the VMs here
(tests/vm/test_network_user.py repeats the user-visible checks with real VMs): they
put packets on the same bridges through the same rules, in milliseconds.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import uuid

import pytest

from hypr_engine.net import bridge, nft, pool

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="bridges and nftables need root")

# A tiny TCP server and client run inside the namespaces (python is there; busybox may not be).
SERVE = ("import socket,sys;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
         "s.bind((sys.argv[1],int(sys.argv[2])));s.listen();print('ready',flush=True)\n"
         "while True:\n c,a=s.accept();c.sendall(a[0].encode());c.close()")
FETCH = ("import socket,sys\ntry:\n c=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=1.5);"
         "print(c.recv(100).decode())\nexcept OSError as e:\n print('FAIL',e);sys.exit(1)")


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=20)


class Lab:
    """Bridges, namespaces and a listener, all named from one data dir's tag; all removed at the end."""

    def __init__(self, data_dir) -> None:
        self.data = data_dir
        self.tag = bridge.dir_tag(data_dir)
        self.netns: list[str] = []
        self.links: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.networks: list[nft.NetRules] = []

    def network(self, key: str, internal: bool = False) -> nft.NetRules:
        with pool.subnet_lock():
            taken = [("route", r) for r in bridge.host_routes()] + [("lab", n.subnet) for n in self.networks]
            subnet = pool.pick_free(taken, ipaddress.IPv4Network("10.213.0.0/16"))
            name = bridge.bridge_name(self.data, key.ljust(6, "0"))
            self.links.append(name)
            gw = str(subnet.network_address + 1)
            bridge.ensure_bridge(name, gw, subnet.prefixlen)
        rules = nft.NetRules(name, str(subnet), gw, internal)
        self.networks.append(rules)
        nft.apply(self.data, self.networks)
        return rules

    def guest(self, key: str, net: nft.NetRules, host_index: int) -> str:
        """A namespace with one veth on `net`'s bridge at .host_index; returns its address."""
        ns = f"hypr-{self.tag}-{key}"
        outer = f"{bridge.TAP_PREFIX}{self.tag}{key.ljust(6, '0')}"
        sh("ip", "netns", "add", ns)
        self.netns.append(ns)
        sh("ip", "link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", ns)
        self.links.append(outer)
        sh("ip", "link", "set", outer, "master", net.bridge, "up")
        subnet = ipaddress.IPv4Network(net.subnet)
        addr = str(subnet.network_address + host_index)
        for cmd in (["ip", "addr", "add", f"{addr}/{subnet.prefixlen}", "dev", "eth0"], ["ip", "link", "set", "eth0", "up"],
                    ["ip", "link", "set", "lo", "up"], ["ip", "route", "add", "default", "via", net.gateway]):
            sh("ip", "netns", "exec", ns, *cmd)
        return addr

    def outside(self) -> str:
        """A namespace beyond the host (like the internet), reached through a plain veth
        and routed by the host: it has no route back to any HYPR subnet."""
        ns = f"hypr-{self.tag}-out"
        host_end = f"hyo{self.tag}000000"
        with pool.subnet_lock():
            taken = [("route", r) for r in bridge.host_routes()] + [("lab", n.subnet) for n in self.networks]
            link = next(s for s in ipaddress.IPv4Network("10.214.0.0/16").subnets(new_prefix=30)
                        if pool.overlapping(s, taken) is None)
            host_ip, far_ip = str(link.network_address + 1), str(link.network_address + 2)
            sh("ip", "netns", "add", ns)
            self.netns.append(ns)
            sh("ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", ns)
            self.links.append(host_end)
            sh("ip", "addr", "add", f"{host_ip}/30", "dev", host_end)
            sh("ip", "link", "set", host_end, "up")
        for cmd in (["ip", "addr", "add", f"{far_ip}/30", "dev", "eth0"], ["ip", "link", "set", "eth0", "up"],
                    ["ip", "link", "set", "lo", "up"]):
            sh("ip", "netns", "exec", ns, *cmd)
        self.serve(ns, far_ip)
        self.outside_host_ip = host_ip
        return far_ip

    def serve(self, ns: str | None, addr: str, port: int = 8080) -> None:
        prefix = ["ip", "netns", "exec", ns] if ns else []
        p = subprocess.Popen([*prefix, sys.executable, "-c", SERVE, addr, str(port)],
                             stdout=subprocess.PIPE, text=True)
        self.procs.append(p)
        assert p.stdout.readline().strip() == "ready"

    def fetch(self, key: str, addr: str, port: int = 8080) -> str:
        """What the server at addr answers from namespace `key` (the peer address it saw), or FAIL."""
        p = sh("ip", "netns", "exec", f"hypr-{self.tag}-{key}", sys.executable, "-c", FETCH, addr, str(port),
               check=False)
        return p.stdout.strip()

    def close(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()
        for ns in self.netns:
            sh("ip", "netns", "del", ns, check=False)
        for name in self.links:
            bridge.delete_link(name)
        nft.remove(self.data)


@pytest.fixture
def lab(tmp_path):
    lab = Lab(tmp_path / f"data-{uuid.uuid4().hex[:6]}")
    yield lab
    lab.close()
    assert not bridge.links_with_prefix(bridge.BRIDGE_PREFIX + lab.tag)
    assert not nft.table_exists(nft.table_name(lab.data))


def test_names_fit_ifnamsiz_and_differ_between_data_dirs(tmp_path):
    net = "ab" * 32
    vm = "cd" * 32
    a, b = bridge.bridge_name(tmp_path / "one", net), bridge.bridge_name(tmp_path / "two", net)
    assert a != b and len(a) <= 15 and a.startswith("hyb")
    tap = bridge.tap_name(tmp_path / "one", vm, net)
    assert len(tap) <= 15 and tap.startswith("hyt") and tap != bridge.tap_name(tmp_path / "one", vm, "ef" * 32)


def test_bridge_and_tap_are_created_idempotently_and_removed(lab):
    net = lab.network("aaaaaa")
    bridge.ensure_bridge(net.bridge, net.gateway, 24)   # again: no error
    tap = bridge.tap_name(lab.data, "v" * 64, "aaaaaa")
    lab.links.append(tap)
    bridge.ensure_tap(tap, net.bridge)
    bridge.ensure_tap(tap, net.bridge)
    master = os.path.basename(os.readlink(f"/sys/class/net/{tap}/master"))
    assert master == net.bridge
    assert net.gateway in sh("ip", "-4", "addr", "show", net.bridge).stdout
    bridge.delete_link(tap)
    bridge.delete_link(tap)   # idempotent
    assert not bridge.link_exists(tap)


def test_masquerade_isolation_and_internal(lab):
    a, b, c = lab.network("aaaaaa"), lab.network("bbbbbb"), lab.network("cccccc", internal=True)
    a1, a2 = lab.guest("a1", a, 2), lab.guest("a2", a, 3)
    b1 = lab.guest("b1", b, 2)
    c1, c2 = lab.guest("c1", c, 2), lab.guest("c2", c, 3)
    far = lab.outside()
    assert open("/proc/sys/net/ipv4/ip_forward").read().strip() == "1"
    for ns, addr in (("a2", a2), ("b1", b1), ("c2", c2)):
        lab.serve(f"hypr-{lab.tag}-{ns}", addr)
    lab.serve(None, b.gateway)          # a host listener on another network's gateway address

    # same network: reachable, with the peer's own address
    assert lab.fetch("a1", a2) == a1
    # the outside world through the host, masqueraded to the host's address
    assert lab.fetch("a1", far) == lab.outside_host_ip
    # isolation: another network's VM is dropped, while the host (its gateway address) answers
    assert lab.fetch("a1", b1).startswith("FAIL")
    assert lab.fetch("a1", b.gateway) == a1
    assert lab.fetch("b1", a2).startswith("FAIL")
    # internal: peers yes; the outside and the host no (the same requests work from network a)
    assert lab.fetch("c1", c2) == c1
    assert lab.fetch("c1", far).startswith("FAIL")
    assert lab.fetch("c1", b.gateway).startswith("FAIL")


def test_the_table_goes_with_the_last_network(lab):
    lab.network("aaaaaa")
    table = nft.table_name(lab.data)
    assert nft.table_exists(table)
    assert table in nft.tables_with_prefix("hypr_")
    nft.apply(lab.data, [])
    assert not nft.table_exists(table)


def test_the_leak_check_sees_and_removes_one_data_dirs_objects_only(lab, tmp_path):
    from tests.conftest import _network_objects_of

    lab.network("aaaaaa")
    other = tmp_path / "another-data-dir"
    assert _network_objects_of(other) == []          # a parallel run's objects are not its business
    found = _network_objects_of(lab.data, remove=True)
    assert lab.links[0] in found and f"nft table inet {nft.table_name(lab.data)}" in found
    assert _network_objects_of(lab.data) == []
