"""The default network under real VMs: gvproxy, static addresses, published ports.

A real nginx (the Debian test image) is reached from the host through `-p`, UDP through
`/udp` (a Perl echo in the same image), the host from the guest through 192.168.127.254
and its names; published ports survive a SIGKILL of hyprd and go with the VM; gvproxy's
death is noticed and handled by the restart policy; bad input changes nothing.
"""

from __future__ import annotations

import json
import os
import random
import socket
import sqlite3
import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import CACHE
from tests.daemon.conftest import hyprd, hyprd_factory, wait_for  # noqa: F401, F811  (fixtures)

pytestmark = pytest.mark.vm

DEBIAN = "hypr-test/debian-nginx"
INDEX_MARK = b"served by nginx in a HYPR microVM"
UDP_ECHO = ("perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalPort => 9999, Proto => \"udp\") or die $!; "
            "while ($s->recv($m, 2048)) { $s->send(\"echo:$m\") }'")


@pytest.fixture
def debian(hypr_home) -> str:
    path = CACHE / "images" / "debian-nginx.tar"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run scripts/setup.sh")
    hypr_home.run("load", "-i", str(path), check=True)
    return DEBIAN


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A free port below the kernel's ephemeral range, so that no outgoing connection of
    another program on this shared machine takes it between the check and the VM's start."""
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    for _ in range(200):
        port = random.randrange(20000, min(low, 32768))
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found")


def http_get(port: int, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=timeout) as resp:
        return resp.read()


def wait_http(port: int, timeout: float = 60) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return http_get(port)
        except (urllib.error.URLError, ConnectionError, socket.timeout, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def refused(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(3)
        try:
            s.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
        return False


def udp_echo(port: int, payload: bytes, timeout: float = 60) -> bytes:
    """Send until the echo comes back (the guest's server may still be starting)."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1)
        while True:
            s.sendto(payload, ("127.0.0.1", port))
            try:
                return s.recv(2048)
            except socket.timeout:
                if time.monotonic() > deadline:
                    raise


def endpoints_in(home) -> int:
    conn = sqlite3.connect(home.data / "hypr.db")
    try:
        return conn.execute("SELECT COUNT(*) FROM endpoints").fetchone()[0]
    finally:
        conn.close()


def test_nginx_is_reached_from_the_host_through_published_ports(hypr_home, debian):
    fixed = free_port()
    hypr_home.run("run", "-d", "--name", "web", "-p", f"127.0.0.1:{fixed}:80", "-p", "80", debian, check=True)
    assert INDEX_MARK in wait_http(fixed)

    lines = hypr_home.out("port", "web").splitlines()
    assert f"80/tcp -> 127.0.0.1:{fixed}" in lines
    random_line = next(line for line in lines if line.startswith("80/tcp -> 0.0.0.0:"))
    random_port = int(random_line.rsplit(":", 1)[1])
    assert INDEX_MARK in wait_http(random_port)           # on every host address, as Docker
    assert sorted(hypr_home.out("port", "web", "80/tcp").split()) == sorted([f"127.0.0.1:{fixed}",
                                                                               f"0.0.0.0:{random_port}"])
    assert f"127.0.0.1:{fixed}->80/tcp" in hypr_home.out("ps")   # Docker's PORTS column
    missing = hypr_home.run("port", "web", "81")
    assert missing.returncode != 0 and b"no public port '81/tcp' published for web" in missing.stderr

    settings = json.loads(hypr_home.out("inspect", "web"))[0]["NetworkSettings"]
    net = settings["Networks"]["default"]
    assert net["IPAddress"] == settings["IPAddress"] == "192.168.127.2"
    assert net["Gateway"] == "192.168.127.1" and net["IPPrefixLen"] == 24
    assert net["MacAddress"].startswith("02:")
    assert {"HostIp": "127.0.0.1", "HostPort": str(fixed)} in settings["Ports"]["80/tcp"]

    # stop closes the forwards (as Docker's); start opens them again
    hypr_home.run("stop", "web", check=True)
    assert refused(fixed)
    assert hypr_home.out("port", "web") == ""
    hypr_home.run("start", "web", check=True)
    assert INDEX_MARK in wait_http(fixed)
    hypr_home.run("rm", "-f", "web", check=True)
    assert refused(fixed)


def test_udp_is_published_with_udp_and_ranges_map_port_by_port(hypr_home, debian):
    port = free_port(socket.SOCK_DGRAM)
    while True:  # two free ports in a row for the range
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind(("127.0.0.1", port + 1))
            break
        except OSError:
            port = free_port(socket.SOCK_DGRAM)
    hypr_home.run("run", "-d", "--name", "echo", "-p", f"127.0.0.1:{port}-{port + 1}:9998-9999/udp", debian,
                  "sh", "-c", UDP_ECHO, check=True)
    assert hypr_home.out("port", "echo") == (f"9998/udp -> 127.0.0.1:{port}\n"
                                             f"9999/udp -> 127.0.0.1:{port + 1}\n")
    assert udp_echo(port + 1, b"ping-1") == b"echo:ping-1"
    assert udp_echo(port + 1, b"ping-2", timeout=5) == b"echo:ping-2"


def test_publish_all_publishes_the_images_exposed_ports(hypr_home, debian):
    hypr_home.run("run", "-d", "--name", "all", "-P", debian, check=True)
    line = hypr_home.out("port", "all").strip()
    assert line.startswith("80/tcp -> 0.0.0.0:"), line       # the image EXPOSEs 80
    assert INDEX_MARK in wait_http(int(line.rsplit(":", 1)[1]))


def test_the_guest_has_its_static_address_and_reaches_the_host(hypr_home, busybox):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))   # loopback only: reached through gvproxy's 192.168.127.254
    listener.listen(8)
    port = listener.getsockname()[1]
    served: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                served.append(conn.recv(100))
                conn.sendall(b"hello-from-host\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        script = (
            "ip -4 addr show eth0; ip route; cat /etc/resolv.conf /etc/hosts; "
            f"for h in 192.168.127.254 host.containers.internal host.hypr.internal; do "
            f"  (echo from-$h; sleep 2) | nc $h {port}; done; "
            "nslookup host.containers.internal 192.168.127.1 2>&1"
        )
        out = hypr_home.out("run", "--rm", "--ip", "192.168.127.77", busybox, "sh", "-c", script)
    finally:
        listener.close()
    assert "inet 192.168.127.77/24" in out
    assert "default via 192.168.127.1 dev eth0" in out
    assert "nameserver 192.168.127.1" in out
    assert "192.168.127.254\thost.hypr.internal host.containers.internal" in out
    assert out.count("hello-from-host") == 3
    assert sorted(served) == sorted([b"from-192.168.127.254\n", b"from-host.containers.internal\n",
                                     b"from-host.hypr.internal\n"])
    assert "Address: 192.168.127.254" in out   # gvproxy's DNS answers the name too


def test_network_none_gives_only_loopback(hypr_home, busybox):
    out = hypr_home.out("run", "--rm", "--network", "none", busybox, "sh", "-c", "ls /sys/class/net; ip route")
    assert out.split() == ["lo"]


def test_a_published_port_survives_a_daemon_sigkill_and_goes_with_rm(hypr_home, busybox, hyprd):
    port = free_port()
    hypr_home.run("run", "-d", "--name", "site", "-p", f"{port}:8000", busybox, "sh", "-c",
                  "mkdir /www && echo up > /www/index.html && httpd -f -p 8000 -h /www", check=True)
    assert wait_http(port) == b"up\n"
    hyprd.kill()
    assert http_get(port) == b"up\n"                    # gvproxy and the VM never depended on hyprd
    hyprd.start()
    assert hypr_home.out("port", "site") == f"8000/tcp -> 0.0.0.0:{port}\n"
    assert http_get(port) == b"up\n"
    hypr_home.run("rm", "-f", "site", check=True)
    assert refused(port)
    assert endpoints_in(hypr_home) == 0


def test_gvproxy_death_is_noticed_and_the_restart_policy_applies(hypr_home, busybox):
    port = free_port()
    hypr_home.run("run", "-d", "--name", "keeps", "--restart", "always", "-p", f"{port}:8000", busybox, "sh", "-c",
                  "mkdir -p /www && echo alive > /www/index.html && httpd -f -p 8000 -h /www", check=True)
    hypr_home.run("run", "-d", "--name", "stays-down", busybox, "sleep", "600", check=True)
    assert wait_http(port) == b"alive\n"
    state = json.loads((hypr_home.data / "net" / "gvproxy.json").read_text())
    os.kill(state["gvproxy"]["pid"], 9)

    def info(name: str) -> dict:
        return json.loads(hypr_home.out("inspect", name))[0]

    wait_for(lambda: info("stays-down")["State"]["Status"] == "exited", 60, what="the VM without a policy to end")
    assert "gvproxy exited" in info("stays-down")["State"]["Error"]
    wait_for(lambda: info("keeps")["RestartCount"] >= 1 and info("keeps")["State"]["Status"] == "running", 90,
             what="the VM with --restart always to come back")
    assert wait_http(port) == b"alive\n"              # the new gvproxy got the forward back
    events = [json.loads(line) for line in hypr_home.out(
        "events", "--since", "0", "--until", str(time.time() + 1), "--format", "json").splitlines()]
    assert any(e["Name"] == "keeps" and e["Action"] == "restart" and "gvproxy" in e["Attributes"].get("error", "")
               for e in events)


def test_bad_network_input_is_refused_and_creates_nothing(hypr_home, busybox):
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen(1)
        taken = busy.getsockname()[1]
        cases = [
            (["-p", "0:80"], "invalid port '0'"),
            (["-p", "80:70000"], "invalid port '70000'"),
            (["-p", "8o:80"], "use PORT or START-END"),
            (["-p", "1:2:3:4"], "invalid -p"),
            (["-p", "80/sctp"], "use tcp or udp"),
            (["-p", f"{taken}:80"], f"host port 0.0.0.0:{taken}/tcp is already in use"),
            (["--network", "nowhere"], "no such network: nowhere"),
            (["--ip", "10.1.2.3"], "outside network default's subnet"),
            (["--network", "none", "-p", "8080:80"], "published ports (-p/-P) need a network"),
            (["--network", "default", "--network-alias", "db"], "network aliases are for user networks"),
        ]
        for flags, message in cases:
            proc = hypr_home.run("run", "--rm", *flags, busybox, "true")
            err = proc.stderr.decode()
            assert proc.returncode == 125 and message in err and "Traceback" not in err, (flags, err)
            assert len(err.strip().splitlines()) == 1, err
    # More interfaces than a microVM's device slots: refused before anything exists.
    conn = sqlite3.connect(hypr_home.data / "hypr.db")
    with conn:
        for n in range(24):
            conn.execute("INSERT INTO networks (id, name, driver, subnet, gateway, created_at) VALUES (?,?,?,?,?,0)",
                         (f"{n:064x}", f"extra{n}", "bridge", f"10.77.{n}.0/24", f"10.77.{n}.1"))
    conn.close()
    flags = [arg for n in range(24) for arg in ("--network", f"extra{n}")]
    proc = hypr_home.run("create", *flags, busybox, "true")
    assert proc.returncode == 125 and b"too many networks" in proc.stderr, proc.stderr
    assert hypr_home.out("ps", "-aq") == ""
    assert endpoints_in(hypr_home) == 0
    assert not (hypr_home.data / "net" / "gvproxy.json").exists()   # nothing was started for them either
