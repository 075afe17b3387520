"""User networks with real VMs (QEMU), booted with `hypr run`: names and aliases, DNS
while hyprd is down, isolation and --internal (each against a positive control), a VM on
two networks, a custom subnet, and -p without the default network.

Root only (bridges, TAPs, nftables). hypr_home's teardown fails the test if a bridge,
TAP, nftables table or resolver process of its data directory is left.
"""

from __future__ import annotations

import http.server
import ipaddress
import json
import os
import signal
import socket
import subprocess
import threading
import time
import uuid

import pytest

from hypr_engine.net import bridge, resolver
from tests.daemon.conftest import Hyprd, wait_for
from tests.vm.test_network_default import (  # noqa: F401 (fixture)
    UDP_ECHO,
    debian,
    free_port,
    udp_echo,
    wait_http,
)

pytestmark = [pytest.mark.vm, pytest.mark.skipif(os.geteuid() != 0, reason="user networks need root")]

# busybox httpd serving one page that names its VM
SERVE = "mkdir -p /www && echo served-by-$0 > /www/index.html && exec httpd -f -p 80 -h /www"


def _serve(home, name: str, *networks: str, alias: str | None = None, publish: str | None = None) -> None:
    args = [a for n in networks for a in ("--network", n)]
    if alias:
        args += ["--network-alias", alias]
    if publish:
        args += ["-p", publish]
    home.run("run", "-d", "--name", name, *args, "hypr/busybox", "sh", "-c", SERVE, name, check=True)


def _idle(home, name: str, *networks: str) -> None:
    args = [a for n in networks for a in ("--network", n)]
    home.run("run", "-d", "--name", name, *args, "hypr/busybox", "sleep", "600", check=True)


def _fetch(home, vm: str, target: str, port: int = 80) -> str:
    """What `wget http://target:port/` prints inside `vm`, or FAIL and why."""
    # `timeout`, not wget's own -T: Debian's busybox 1.35 wget crashes with -T
    proc = home.run("exec", vm, "timeout", "5", "wget", "-qO-", f"http://{target}:{port}/", timeout=60)
    if proc.returncode != 0:
        return f"FAIL {proc.returncode} " + proc.stderr.decode(errors="replace").strip()
    return proc.stdout.decode().strip()


def _fetch_from_host(url: str) -> str:
    import urllib.request

    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # never a proxy from the environment
    with direct.open(url, timeout=10) as r:
        return r.read().decode().strip()


def _ip(home, vm: str, network: str) -> str:
    containers = json.loads(home.out("network", "inspect", network))[0]["Containers"]
    return next(c["IPv4Address"] for c in containers.values() if c["Name"] == vm)


def _gateway(home, network: str) -> str:
    return json.loads(home.out("network", "inspect", network))[0]["IPAM"]["Config"][0]["Gateway"]


class HostListener:
    """An HTTP server on one of the host's (non-loopback) addresses, answering `host-listener`."""

    def __init__(self, address: str, port: int = 8099) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = b"host-listener\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((address, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_vms_reach_each_other_by_name_and_alias_also_while_hyprd_is_down(hypr_home, busybox, tmp_path):
    daemon = Hyprd(hypr_home, tmp_path / "hyprd.log")
    daemon.start()
    try:
        hypr_home.run("network", "create", "appnet", check=True)
        hypr_home.run("network", "create", "spare", check=True)
        port = free_port()
        _serve(hypr_home, "web", "appnet", alias="www", publish=f"127.0.0.1:{port}:80")
        _idle(hypr_home, "client", "appnet")
        assert _fetch(hypr_home, "client", "web") == "served-by-web"
        assert _fetch(hypr_home, "client", "www") == "served-by-web"
        # a running VM joins another network only at its next start, and is told so
        proc = hypr_home.run("network", "connect", "spare", "client", check=True)
        assert b"next start" in proc.stderr
        assert daemon.stop() == 0
    finally:
        if daemon.proc and daemon.proc.poll() is None:
            daemon.proc.kill()
    assert not daemon.socket.exists()
    # hyprd is gone: the network's resolver (started by hyprd) still answers
    assert wait_http(port) == b"served-by-web\n"    # and the supervisor's proxy still publishes web's port
    out = hypr_home.out("exec", "client", "nslookup", "www")
    assert _ip(hypr_home, "web", "appnet") in out
    assert _fetch(hypr_home, "client", "web") == "served-by-web"
    # the connect made while it ran takes effect at its next start
    spare_ip = _ip(hypr_home, "client", "spare")
    assert spare_ip not in hypr_home.out("exec", "client", "ip", "-4", "addr")
    hypr_home.run("restart", "-t", "1", "client", check=True)
    assert f"inet {spare_ip}/" in hypr_home.out("exec", "client", "ip", "-4", "addr")
    assert _fetch(hypr_home, "client", "web") == "served-by-web"


def test_isolation_and_internal_against_positive_controls(hypr_home, busybox):
    for args in (["a"], ["b"], ["--internal", "inner"]):
        hypr_home.run("network", "create", *args, check=True)
    _idle(hypr_home, "a1", "a")
    _serve(hypr_home, "b1", "b")
    _serve(hypr_home, "i1", "inner")
    _idle(hypr_home, "i2", "inner")
    b1 = _ip(hypr_home, "b1", "b")

    # isolation: a1 cannot reach b1, while the host (on b's bridge) does, and a1 itself
    # reaches a listener of the host on b's gateway address
    assert _fetch(hypr_home, "a1", b1).startswith("FAIL")
    assert _fetch_from_host(f"http://{b1}/") == "served-by-b1"
    listener = HostListener(_gateway(hypr_home, "b"))
    try:
        assert _fetch(hypr_home, "a1", _gateway(hypr_home, "b"), 8099) == "host-listener"
    finally:
        listener.close()

    # internal: i2 reaches its peer i1 by name, but not a host address that a1 reaches
    assert _fetch(hypr_home, "i2", "i1") == "served-by-i1"
    # a host address on an interface of the test's own (a veth pair: this kernel has no dummy)
    end = f"hyd{bridge.dir_tag(hypr_home.data)}{uuid.uuid4().hex[:5]}"   # and end + "p": 15 bytes
    address = str(_free_subnet().network_address + 1)
    subprocess.run(["ip", "link", "add", end, "type", "veth", "peer", "name", end + "p"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", end], check=True)
        for name in (end, end + "p"):
            subprocess.run(["ip", "link", "set", name, "up"], check=True)
        listener = HostListener(address)
        try:
            assert _fetch(hypr_home, "a1", address, 8099) == "host-listener"
            assert _fetch(hypr_home, "i2", address, 8099).startswith("FAIL")
        finally:
            listener.close()
    finally:
        subprocess.run(["ip", "link", "del", end], check=False)


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 no route or address of the host uses (parallel runs make their own networks)."""
    from hypr_engine.net import pool

    taken = [("route", r) for r in bridge.host_routes()]
    return pool.pick_free(taken, ipaddress.IPv4Network("10.238.0.0/16"))


def test_a_vm_on_two_networks_reaches_both_and_a_custom_subnet_is_honoured(hypr_home, busybox):
    subnet = _free_subnet()
    hypr_home.run("network", "create", "--subnet", str(subnet), "front", check=True)
    hypr_home.run("network", "create", "back", check=True)
    _serve(hypr_home, "f1", "front")
    _serve(hypr_home, "k1", "back")
    # a resolver that died (or a host reboot) is brought back by the next VM start on its network
    back_id = json.loads(hypr_home.out("network", "inspect", "back"))[0]["Id"]
    record = hypr_home.data / "networks" / back_id / "resolver.json"
    os.kill(resolver.running(record).pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while resolver.running(record) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert resolver.running(record) is None
    _idle(hypr_home, "both", "front", "back")
    assert resolver.running(record) is not None
    address = _ip(hypr_home, "both", "front")
    assert ipaddress.IPv4Address(address) in subnet
    assert f"inet {address}/24" in hypr_home.out("exec", "both", "ip", "-4", "addr")
    assert _fetch(hypr_home, "both", "f1") == "served-by-f1"
    assert _fetch(hypr_home, "both", "k1") == "served-by-k1"
    # a --rm VM on a user network: it works, and its TAP goes with it
    out = hypr_home.out("run", "--rm", "--network", "back", "hypr/busybox", "wget", "-qO-", "http://k1/")
    assert out.strip() == "served-by-k1"
    # (the VM's supervisor removes a --rm VM, and its TAP, just after `run` returned)
    deadline = time.monotonic() + 15
    while len(taps := bridge.links_with_prefix(bridge.TAP_PREFIX + bridge.dir_tag(hypr_home.data))) > 4 \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(taps) == 4, taps    # f1, k1, and both's two
    # f1 is on front only: k1 is neither resolvable nor reachable for it
    assert _fetch(hypr_home, "f1", "k1").startswith("FAIL")
    assert _fetch(hypr_home, "f1", _ip(hypr_home, "k1", "back")).startswith("FAIL")


def _bindable(port: int, kind: int = socket.SOCK_STREAM) -> bool:
    """Whether a server could take the port now (a relayed connection's TIME_WAIT is no conflict
    with SO_REUSEADDR; a listener is)."""
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            if kind == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
        return True


def _http_half_closed(port: int) -> bytes:
    """A GET whose sending side is shut before the answer: the proxy must pass the half-close on
    and still bring the whole answer back."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        return data


def test_ports_of_a_vm_only_on_a_user_network_are_published_by_a_userland_proxy(hypr_home, busybox):
    hypr_home.run("network", "create", "solo", check=True)
    port = free_port()
    hypr_home.run("run", "-d", "--name", "pub", "--network", "solo", "-p", f"{port}:80", "hypr/busybox",
                  "sh", "-c", SERVE, "pub", check=True)
    assert wait_http(port) == b"served-by-pub\n"          # the host reaches it through -p
    answer = _http_half_closed(port)
    assert answer.startswith(b"HTTP/1.") and answer.endswith(b"served-by-pub\n"), answer
    assert hypr_home.out("port", "pub") == f"80/tcp -> 0.0.0.0:{port}\n"
    assert f"0.0.0.0:{port}->80/tcp" in hypr_home.out("ps")
    settings = json.loads(hypr_home.out("inspect", "pub"))[0]["NetworkSettings"]
    assert settings["Ports"]["80/tcp"] == [{"HostIp": "0.0.0.0", "HostPort": str(port)}]
    assert not _bindable(port)                              # held by the VM's supervisor

    # stop releases the port, start holds it again, rm releases it for good
    hypr_home.run("stop", "pub", check=True)
    assert _bindable(port) and hypr_home.out("port", "pub") == ""
    hypr_home.run("start", "pub", check=True)
    assert wait_http(port) == b"served-by-pub\n"
    hypr_home.run("rm", "-f", "pub", check=True)
    assert _bindable(port)


def test_a_user_network_vms_ports_come_back_with_its_restart_policy(hypr_home, busybox):
    hypr_home.run("network", "create", "solo", check=True)
    port = free_port()
    # serves, then fails: --restart always boots it again, and the port is served again
    hypr_home.run("run", "-d", "--name", "flaky", "--restart", "always", "--network", "solo", "-p", f"{port}:80",
                  "hypr/busybox", "sh", "-c",
                  "mkdir -p /www && echo run-$(cat /proc/sys/kernel/random/uuid) > /www/index.html && "
                  "httpd -p 80 -h /www && sleep 3 && exit 3", check=True)
    first = wait_http(port)

    def info() -> dict:
        return json.loads(hypr_home.out("inspect", "flaky"))[0]

    wait_for(lambda: info()["RestartCount"] >= 1, 90, what="the VM to restart")
    deadline = time.monotonic() + 60
    while (again := wait_http(port)) == first and time.monotonic() < deadline:
        time.sleep(0.2)
    assert again.startswith(b"run-") and again != first      # served by the new boot, same host port
    hypr_home.run("rm", "-f", "flaky", check=True)
    assert _bindable(port)


def test_udp_of_a_vm_only_on_a_user_network_is_relayed_both_ways(hypr_home, debian):
    hypr_home.run("network", "create", "solo", check=True)
    port = free_port(socket.SOCK_DGRAM)
    hypr_home.run("run", "-d", "--name", "echo", "--network", "solo", "-p", f"127.0.0.1:{port}:9999/udp", debian,
                  "sh", "-c", UDP_ECHO, check=True)
    assert hypr_home.out("port", "echo") == f"9999/udp -> 127.0.0.1:{port}\n"
    assert udp_echo(port, b"ping-1") == b"echo:ping-1"      # the datagram arrived and the reply came back
    assert udp_echo(port, b"ping-2", timeout=5) == b"echo:ping-2"
    hypr_home.run("stop", "-t", "1", "echo", check=True)
    assert _bindable(port, socket.SOCK_DGRAM)


def test_publishing_on_a_user_network_refuses_a_busy_port_and_bad_networks(hypr_home, busybox):
    hypr_home.run("network", "create", "solo", check=True)
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen(1)
        taken = busy.getsockname()[1]
        proc = hypr_home.run("run", "-d", "--name", "pub", "--network", "solo", "-p", f"{taken}:80",
                             "hypr/busybox", "sleep", "60")
    err = proc.stderr.decode()
    assert proc.returncode == 125 and f"host port 0.0.0.0:{taken}/tcp is already in use" in err, err
    assert len(err.strip().splitlines()) == 1, err
    hypr_home.run("network", "create", "--internal", "vault", check=True)
    proc = hypr_home.run("run", "-d", "--name", "inside", "--network", "vault", "-p", "80", "hypr/busybox", "true")
    err = proc.stderr.decode()
    assert proc.returncode == 125 and "cannot reach a VM on internal network vault only" in err, err
    proc = hypr_home.run("run", "-d", "--name", "lost", "--network", "nowhere", "hypr/busybox", "true")
    assert proc.returncode != 0 and "no such network: nowhere" in proc.stderr.decode()
    assert hypr_home.out("ps", "-aq").strip() == ""
