"""Published ports of a VM on user networks only: a userland proxy, as docker-proxy.

The default network's ports are forwarded by gvproxy; a VM attached only to Linux
bridge networks has no gvproxy, so its supervisor holds the host ports itself with
this module: TCP connections are accepted on HOST_IP:HOST_PORT and relayed to the
VM's address on its first bridge network (both ways, half-close passed on); UDP
datagrams are relayed through one socket per client address, closed after
UDP_IDLE_TIMEOUT seconds without traffic.

It runs in the supervisor's event loop, so it lives exactly as long as the VM (the
supervisor outlives every HYPR process) and needs no process of its own. Standard
library only: the supervisor imports it.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from dataclasses import dataclass, field

CONNECT_TIMEOUT = 10.0     # seconds to reach the guest's port for one TCP client
UDP_IDLE_TIMEOUT = 30.0    # seconds a UDP client's relay lives without a datagram either way
COPY_CHUNK = 65536


class PublishError(OSError):
    """A host port could not be bound."""


def _log(message: str) -> None:
    print(f"userproxy: {message}", file=sys.stderr, flush=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close the other side (the peer may still answer)."""
    try:
        while data := await reader.read(COPY_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


class _TcpForward:
    def __init__(self, guest_ip: str, guest_port: int) -> None:
        self.guest = (guest_ip, guest_port)
        self.tasks: set[asyncio.Task] = set()

    async def serve(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self.tasks.add(task)
        try:
            try:
                g_reader, g_writer = await asyncio.wait_for(asyncio.open_connection(*self.guest), CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                _log(f"cannot reach {self.guest[0]}:{self.guest[1]}: {exc or 'timed out'}")
                return
            try:
                await asyncio.gather(_pipe(c_reader, g_writer), _pipe(g_reader, c_writer))
            finally:
                g_writer.close()
        finally:
            c_writer.close()
            self.tasks.discard(task)


class _UdpClient(asyncio.DatagramProtocol):
    """The guest's side of one host client: replies go back to that client."""

    def __init__(self, forward: _UdpForward, client: tuple) -> None:
        self.forward, self.client = forward, client
        self.transport: asyncio.DatagramTransport | None = None
        self.idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.touch()

    def touch(self) -> None:
        if self.idle:
            self.idle.cancel()
        self.idle = asyncio.get_running_loop().call_later(UDP_IDLE_TIMEOUT, self.close)

    def datagram_received(self, data: bytes, addr) -> None:
        self.touch()
        if self.forward.transport is not None:
            self.forward.transport.sendto(data, self.client)

    def error_received(self, exc: Exception) -> None:
        pass   # e.g. ICMP port unreachable while the guest's server is not up yet

    def close(self) -> None:
        if self.idle:
            self.idle.cancel()
        if self.transport:
            self.transport.close()
        self.forward.clients.pop(self.client, None)


class _UdpForward(asyncio.DatagramProtocol):
    def __init__(self, guest_ip: str, guest_port: int) -> None:
        self.guest = (guest_ip, guest_port)
        self.transport: asyncio.DatagramTransport | None = None
        self.clients: dict[tuple, _UdpClient] = {}
        self.pending: dict[tuple, list[bytes]] = {}   # datagrams of a client whose relay is being opened

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        relay = self.clients.get(addr)
        if relay is not None and relay.transport is not None:
            relay.touch()
            relay.transport.sendto(data)
            return
        if addr in self.pending:
            self.pending[addr].append(data)
            return
        self.pending[addr] = [data]
        asyncio.ensure_future(self._open(addr))

    async def _open(self, addr) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, relay = await loop.create_datagram_endpoint(lambda: _UdpClient(self, addr),
                                                                   remote_addr=self.guest)
        except OSError as exc:
            _log(f"cannot relay to {self.guest[0]}:{self.guest[1]}: {exc}")
            self.pending.pop(addr, None)
            return
        self.clients[addr] = relay
        for data in self.pending.pop(addr, []):
            transport.sendto(data)

    def close(self) -> None:
        for relay in list(self.clients.values()):
            relay.close()
        if self.transport:
            self.transport.close()


@dataclass
class UserProxy:
    """The listening sockets of one VM's published ports."""

    tcp: list[tuple[asyncio.Server, _TcpForward]] = field(default_factory=list)
    udp: list[_UdpForward] = field(default_factory=list)

    def close(self) -> None:
        """Release every host port and end every relayed connection."""
        for server, forward in self.tcp:
            server.close()
            for task in list(forward.tasks):
                task.cancel()
        for forward in self.udp:
            forward.close()
        self.tcp, self.udp = [], []


async def start(ports: list[dict], guest_ip: str) -> UserProxy:
    """Bind every port (PortBinding.to_json dicts) or none: OSError names the one that failed."""
    loop = asyncio.get_running_loop()
    proxy = UserProxy()
    try:
        for p in ports:
            host_ip, host_port, guest_port = p["host_ip"], int(p["host_port"]), int(p["guest_port"])
            try:
                if p["protocol"] == "tcp":
                    forward = _TcpForward(guest_ip, guest_port)
                    server = await asyncio.start_server(forward.serve, host_ip, host_port, reuse_address=True,
                                                        family=socket.AF_INET6 if ":" in host_ip else socket.AF_INET)
                    proxy.tcp.append((server, forward))
                else:
                    forward = _UdpForward(guest_ip, guest_port)
                    await loop.create_datagram_endpoint(lambda f=forward: f, local_addr=(host_ip, host_port))
                    proxy.udp.append(forward)
            except OSError as exc:
                raise PublishError(f"cannot publish host port {host_ip}:{host_port}/{p['protocol']}: "
                                   f"{exc.strerror or exc}") from None
    except BaseException:
        proxy.close()
        raise
    return proxy
