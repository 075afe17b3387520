"""The userland proxy (net/userproxy.py) against real loopback sockets: a TCP server and a
UDP echo stand in for the guest; the VM tests (tests/vm/test_network_user.py) cover it with
real VMs."""

from __future__ import annotations

import asyncio
import socket

import pytest

from hypr_engine.net import userproxy


def _free(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _binding(host_port: int, guest_port: int, protocol: str) -> dict:
    return {"host_ip": "127.0.0.1", "host_port": host_port, "guest_port": guest_port, "protocol": protocol}


def test_tcp_is_relayed_both_ways_and_a_half_close_is_passed_on():
    async def main() -> None:
        async def guest(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            data = await reader.read()          # until the client's half-close arrives
            writer.write(b"got:" + data)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(guest, "127.0.0.1", 0)
        guest_port = server.sockets[0].getsockname()[1]
        host_port = _free(socket.SOCK_STREAM)
        proxy = await userproxy.start([_binding(host_port, guest_port, "tcp")], "127.0.0.1")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", host_port)
            writer.write(b"hello")
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 5) == b"got:hello"
            writer.close()
        finally:
            proxy.close()
            server.close()
        with socket.socket() as s:          # closed: the port is free again
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", host_port))

    asyncio.run(main())


def test_udp_replies_go_back_to_each_client():
    async def main() -> None:
        loop = asyncio.get_running_loop()

        class Echo(asyncio.DatagramProtocol):
            def connection_made(self, transport) -> None:
                self.transport = transport

            def datagram_received(self, data, addr) -> None:
                self.transport.sendto(b"echo:" + data, addr)

        guest, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
        host_port = _free(socket.SOCK_DGRAM)
        proxy = await userproxy.start([_binding(host_port, guest.get_extra_info("sockname")[1], "udp")],
                                      "127.0.0.1")
        try:
            clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
            for n, c in enumerate(clients):
                c.setblocking(False)
                c.sendto(f"ping-{n}".encode(), ("127.0.0.1", host_port))
            for n, c in enumerate(clients):
                assert await asyncio.wait_for(loop.sock_recv(c, 100), 5) == f"echo:ping-{n}".encode()
                c.close()
        finally:
            proxy.close()
            guest.close()

    asyncio.run(main())


def test_a_busy_host_port_fails_the_whole_start_and_holds_nothing():
    async def main() -> None:
        free = _free(socket.SOCK_STREAM)
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            taken = busy.getsockname()[1]
            with pytest.raises(userproxy.PublishError, match=f"cannot publish host port 127.0.0.1:{taken}/tcp"):
                await userproxy.start([_binding(free, 80, "tcp"), _binding(taken, 81, "tcp")], "127.0.0.1")
        with socket.socket() as s:          # the first port was let go again
            s.bind(("127.0.0.1", free))

    asyncio.run(main())


def test_the_proxy_targets_the_first_network_that_lets_traffic_in():
    from hypr_engine.net.service import NetService
    from hypr_engine.net.store import Endpoint, Network

    def ep(name: str, driver: str, ip: str, internal: bool, position: int) -> Endpoint:
        net = Network(name, name, driver, "10.0.0.0/8", "10.0.0.1", internal, {}, 0.0)
        return Endpoint("vm", net, ip, "02:00:00:00:00:01", [], position)

    internal, front, back = ep("vault", "bridge", "10.1.0.2", True, 0), ep("front", "bridge", "10.2.0.2", False, 1), \
        ep("back", "bridge", "10.3.0.2", False, 2)
    assert NetService.proxy_target([internal, front, back]) == {"guest_ip": "10.2.0.2"}
    assert NetService.proxy_target([back, front]) == {"guest_ip": "10.3.0.2"}
    assert NetService.proxy_target([front, ep("default", "gvproxy", "192.168.127.2", False, 1)]) is None  # gvproxy's
    assert NetService.proxy_target([internal]) is None
