"""The DNS resolver of one user network: its own detached process.

    python -m hypr_engine.net.resolver DB NETWORK_ID LISTEN_IP READY_FD [--port N] [--upstream IP[:PORT]]

It answers A queries for the names and aliases of the running VMs that share a
network with the asking VM (Docker's rule), read from SQLite, and forwards every
other query to the host's resolver (the first `nameserver` of /etc/resolv.conf). It
listens on the network's gateway address, UDP and TCP port 53, which only that
network's VMs reach. On an `--internal` network nothing is forwarded (REFUSED): a
resolver that relays names out would be a way out of the network.

Like a VM's supervisor it is started in a new session and forks once more, so it
belongs to no HYPR process and keeps answering while no engine or hyprd runs. It
re-reads the endpoints only when the database changed (`PRAGMA data_version` moves
when another connection commits), and exits by itself once its network's row is gone.
The engine knows it by `resolver.json` (pid + start time) in the network's directory.

Standard library only (and HYPR's errors and proc modules, which are too): one runs per network.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path

from hypr_engine.errors import Timeout, Unavailable   # (both modules: standard library only)
from hypr_engine.proc import ProcessRef

TYPE_A, TYPE_AAAA, CLASS_IN = 1, 28, 1
RCODE_SERVFAIL, RCODE_NXDOMAIN, RCODE_REFUSED = 2, 3, 5
TTL = 5                       # seconds: VMs come and go
UPSTREAM_TIMEOUT = 3.0
WATCH_INTERVAL = 2.0          # how often the network's row is checked when no query comes
MAX_PENDING = 256             # UDP queries answered at once (each forward may wait UPSTREAM_TIMEOUT)
RUNNING_STATES = ("starting", "running", "stopping", "restarting")


# --- wire format (RFC 1035), only what a stub resolver sends ------------------------------

def parse_question(packet: bytes) -> tuple[int, int, str, int, int] | None:
    """(id, flags, name, qtype, end of the question) of a query with one question, else None."""
    if len(packet) < 12:
        return None
    qid, flags, qdcount = struct.unpack("!HHH", packet[:6])
    if flags & 0x8000 or qdcount != 1:
        return None
    labels, pos = [], 12
    while True:
        if pos >= len(packet):
            return None
        length = packet[pos]
        pos += 1
        if length == 0:
            break
        if length > 63 or pos + length > len(packet):
            return None   # compression pointers never occur in a question
        labels.append(packet[pos:pos + length].decode("ascii", "replace"))
        pos += length
    if pos + 4 > len(packet):
        return None
    qtype, qclass = struct.unpack("!HH", packet[pos:pos + 4])
    if qclass != CLASS_IN:
        return None
    return qid, flags, ".".join(labels).lower(), qtype, pos + 4


def build_reply(query: bytes, question_end: int, rcode: int, addresses: list[str]) -> bytes:
    qid, flags = struct.unpack("!HH", query[:4])
    rd = flags & 0x0100
    header = struct.pack("!HHHHHH", qid, 0x8000 | 0x0400 | rd | 0x0080 | rcode, 1, len(addresses), 0, 0)
    answers = b"".join(
        struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, TTL, 4) + socket.inet_aton(a) for a in addresses
    )
    return header + query[12:question_end] + answers


# --- the table of names ---------------------------------------------------------------------

class Names:
    """The names of running VMs on this data directory's bridge networks, re-read when the
    database changed. As with Docker, a VM resolves the names (and network-scoped aliases)
    of the VMs on *any* network it is on, whichever of its networks the query came in on;
    the address on the network the query came in on comes first."""

    def __init__(self, db_path: str, network_id: str) -> None:
        self.network_id = network_id
        self.conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5, isolation_level=None)
        self.conn.execute("PRAGMA busy_timeout=5000")
        self.version: int | None = None
        # (vm_id, network_id, ip, names of the endpoint: the VM's name and its aliases there)
        self.endpoints: list[tuple[str, str, str, set[str]]] = []
        self.network_exists = True
        self.internal = False       # --internal: nothing leaves, names of the outside included

    def refresh(self) -> None:
        version = self.conn.execute("PRAGMA data_version").fetchone()[0]
        if version == self.version:
            return
        row = self.conn.execute("SELECT internal FROM networks WHERE id=?", (self.network_id,)).fetchone()
        self.network_exists = row is not None
        self.internal = bool(row and row[0])
        rows = self.conn.execute(
            "SELECT e.vm_id, v.name, e.network_id, e.ip, e.aliases_json FROM endpoints e "
            "JOIN vms v ON v.id = e.vm_id JOIN networks n ON n.id = e.network_id "
            f"WHERE n.driver = 'bridge' AND v.state IN ({','.join('?' * len(RUNNING_STATES))})",
            RUNNING_STATES,
        ).fetchall()
        endpoints = []
        for vm_id, name, network_id, ip, aliases_json in rows:
            try:
                aliases = json.loads(aliases_json or "[]")
            except ValueError:
                aliases = []
            endpoints.append((vm_id, network_id, ip, {n.lower() for n in (name, *aliases)}))
        self.endpoints = endpoints
        self.version = version

    def lookup(self, name: str, source_ip: str | None = None) -> list[str] | None:
        """The addresses of `name` as seen by the VM at `source_ip` on this network; None
        when the name is none of ours (it is then forwarded)."""
        try:
            self.refresh()
        except sqlite3.Error as exc:
            print(f"resolver: database read failed: {exc}", file=sys.stderr)
        name = name.rstrip(".").lower()
        asker = next((vm for vm, net, ip, _ in self.endpoints if net == self.network_id and ip == source_ip), None)
        visible = {net for vm, net, _, _ in self.endpoints if vm == asker} if asker else set()
        visible.add(self.network_id)
        found = [(net != self.network_id, ip) for _, net, ip, names in self.endpoints
                 if net in visible and name in names]
        if not found:
            return None
        return list(dict.fromkeys(ip for _, ip in sorted(found)))


# --- the server -------------------------------------------------------------------------------

def host_upstream(resolv_conf: str = "/etc/resolv.conf") -> tuple[str, int] | None:
    try:
        for line in Path(resolv_conf).read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver" and ":" not in parts[1]:
                return parts[1], 53
    except OSError:
        pass
    return None


class Resolver:
    def __init__(self, names: Names, upstream: tuple[str, int] | None) -> None:
        self.names = names
        self.upstream = upstream

    async def answer(self, query: bytes, source_ip: str | None = None) -> bytes | None:
        q = parse_question(query)
        if q is None:
            return None
        _, _, name, qtype, end = q
        addresses = self.names.lookup(name, source_ip)
        if addresses is not None:
            # A name of ours: its A records; any other type gets an empty NOERROR answer,
            # so a client asking AAAA does not wait on the upstream resolver for nothing.
            return build_reply(query, end, 0, addresses if qtype == TYPE_A else [])
        if self.names.internal:
            # DNS is a way out too (tunnels): an internal network's VMs resolve only each other
            return build_reply(query, end, RCODE_REFUSED, [])
        return await self.forward(query, end)

    async def forward(self, query: bytes, end: int) -> bytes:
        if self.upstream is None:
            return build_reply(query, end, RCODE_SERVFAIL, [])
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[bytes] = loop.create_future()

        class Once(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr) -> None:
                if not reply.done() and data[:2] == query[:2]:
                    reply.set_result(data)

        transport, _ = await loop.create_datagram_endpoint(Once, remote_addr=self.upstream)
        try:
            transport.sendto(query)
            return await asyncio.wait_for(reply, UPSTREAM_TIMEOUT)
        except (asyncio.TimeoutError, OSError):
            return build_reply(query, end, RCODE_SERVFAIL, [])
        finally:
            transport.close()


class UdpServer(asyncio.DatagramProtocol):
    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: set[asyncio.Task] = set()    # held here: the loop keeps only weak references

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        if len(self.pending) >= MAX_PENDING:
            return   # a flood: drop, as a busy resolver does; the client retries
        task = asyncio.ensure_future(self._reply(data, addr))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _reply(self, data: bytes, addr) -> None:
        try:
            reply = await self.resolver.answer(data, addr[0])
        except Exception as exc:   # one bad query must not take the resolver down
            print(f"resolver: query from {addr[0]} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


async def serve_tcp(resolver: Resolver, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    peer = (writer.get_extra_info("peername") or (None,))[0]
    try:
        while True:
            size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 30))[0]
            reply = await resolver.answer(await asyncio.wait_for(reader.readexactly(size), 30), peer)
            if reply is None:
                break
            writer.write(struct.pack("!H", len(reply)) + reply)
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()


def _bound_socket(kind: int, listen: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, kind)
    if kind == socket.SOCK_STREAM:   # (on UDP it would let a second resolver share the port)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # IP_FREEBIND: the gateway address may sit on a bridge without carrier yet
    sock.setsockopt(socket.IPPROTO_IP, 15, 1)
    sock.bind((listen, port))
    return sock


async def run(db: str, network_id: str, listen: str, port: int, upstream: tuple[str, int] | None,
              ready_fd: int) -> None:
    names = Names(db, network_id)
    resolver = Resolver(names, upstream)
    loop = asyncio.get_running_loop()
    try:
        udp = _bound_socket(socket.SOCK_DGRAM, listen, port)
        tcp = _bound_socket(socket.SOCK_STREAM, listen, port)
        names.refresh()
    except (OSError, sqlite3.Error) as exc:
        os.write(ready_fd, f"error cannot serve DNS on {listen}:{port}: {exc}\n".encode())
        os.close(ready_fd)
        return
    await loop.create_datagram_endpoint(lambda: UdpServer(resolver), sock=udp)
    server = await asyncio.start_server(lambda r, w: serve_tcp(resolver, r, w), sock=tcp)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    os.write(ready_fd, f"ok {os.getpid()}\n".encode())
    os.close(ready_fd)
    print(f"resolver: serving {listen}:{port} for network {network_id[:12]}, upstream {upstream}", file=sys.stderr)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), WATCH_INTERVAL)
        except asyncio.TimeoutError:
            pass
        try:
            names.refresh()
        except sqlite3.Error:
            pass
        if not names.network_exists or not Path(db).exists():
            print("resolver: the network is gone; exiting", file=sys.stderr)
            break
    server.close()


# --- the engine's side: start, find, stop -------------------------------------------------------

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


def running(record: Path) -> ProcessRef | None:
    """The resolver recorded in `record` if it is alive (pid + start time; a zombie is dead)."""
    try:
        ref = ProcessRef.from_json(json.loads(record.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return ref if ref and ref.alive() else None


def start(record: Path, db: str, network_id: str, listen: str, *, port: int = 53,
          upstream: str | None = None) -> ProcessRef:
    """Start the network's resolver unless it runs; wait until it serves (or say why not)."""
    if (ref := running(record)) is not None:
        return ref
    record.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "hypr_engine.net.resolver", db, network_id, listen]
    read_fd, write_fd = os.pipe()
    try:
        with open(record.with_name("resolver.log"), "ab") as log:
            proc = subprocess.Popen(
                [*argv, str(write_fd), "--port", str(port), *(["--upstream", upstream] if upstream else [])],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(write_fd,),
                start_new_session=True, cwd="/", env=_child_env(),
            )
        os.close(write_fd)
        write_fd = -1
        proc.wait(START_TIMEOUT)  # the first fork exits at once
        line = _read_line(read_fd, START_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise Timeout(f"the DNS resolver of network {network_id[:12]} did not start within {START_TIMEOUT:g} s") from None
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
    if not line.startswith("ok "):
        raise Unavailable(line.removeprefix("error ").strip() or
                          f"the DNS resolver of network {network_id[:12]} failed; see {record.with_name('resolver.log')}")
    ref = ProcessRef.of(int(line.split()[1]))
    if ref is None:
        raise Unavailable(f"the DNS resolver of network {network_id[:12]} exited at once; "
                          f"see {record.with_name('resolver.log')}")
    tmp = record.with_name(record.name + ".tmp")
    tmp.write_text(json.dumps(ref.to_json()))
    os.replace(tmp, record)
    return ref


def stop(record: Path) -> None:
    """Stop the recorded resolver (SIGTERM, then SIGKILL) and forget it; idempotent."""
    ref = running(record)
    if ref is not None:
        try:
            os.kill(ref.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + STOP_TIMEOUT
        while ref.alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if ref.alive():
            try:
                os.kill(ref.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    record.unlink(missing_ok=True)


def _read_line(fd: int, timeout: float) -> str:
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise Timeout(f"the DNS resolver did not report within {timeout:g} s")
        chunk = os.read(fd, 256)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def main() -> None:
    args = sys.argv[1:]
    opts: dict[str, str] = {}
    while len(args) >= 2 and args[-2].startswith("--"):
        opts[args[-2][2:]] = args[-1]
        args = args[:-2]
    db, network_id, listen, ready_fd = args[0], args[1], args[2], int(args[3])
    if "upstream" in opts:
        host, _, port_text = opts["upstream"].partition(":")
        upstream: tuple[str, int] | None = (host, int(port_text or 53))
    else:
        upstream = host_upstream()
    # Fork once more: the engine reaps our parent at once, and we belong to no HYPR process.
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    asyncio.run(run(db, network_id, listen, int(opts.get("port", 53)), upstream, ready_fd))


if __name__ == "__main__":
    main()
