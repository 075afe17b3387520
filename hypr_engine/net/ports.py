"""Published ports: `-p` parsing (Docker's forms), host port checks, and the bindings of a run.

Forms (Docker's): `GUEST`, `HOST:GUEST`, `IP:HOST:GUEST`, `IP::GUEST`, each with an
optional `/tcp` or `/udp`; ranges `A-B` for the guest port, or for both sides with the
same length; `-P` publishes every EXPOSEd port of the image on a random host port. A
missing host port is chosen at each start, as Docker does; the host address defaults
to 0.0.0.0 (all of the host's addresses).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass

from hypr_engine.errors import Conflict, InvalidArgument

PROTOCOLS = ("tcp", "udp")
MAX_RANGE = 1024        # ports in one -p range; more is almost surely a typo
_PORTS = r"(\d+)(?:-(\d+))?"


@dataclass(frozen=True)
class PortRequest:
    """One port of a `-p` as asked: host_port None means a random one at start."""

    host_ip: str
    host_port: int | None
    guest_port: int
    protocol: str


@dataclass(frozen=True)
class PortBinding:
    """One forward in place: the host's ip:port to the guest's port."""

    host_ip: str
    host_port: int
    guest_port: int
    protocol: str

    def to_json(self) -> dict:
        return {"host_ip": self.host_ip, "host_port": self.host_port, "guest_port": self.guest_port,
                "protocol": self.protocol}

    @classmethod
    def from_json(cls, data: dict) -> PortBinding:
        return cls(data["host_ip"], int(data["host_port"]), int(data["guest_port"]), data["protocol"])


def _port(text: str, spec: str) -> int:
    if not text.isdigit() or len(text) > 5 or not 1 <= int(text) <= 65535:
        raise InvalidArgument(f"invalid port {text!r} in -p {spec!r}: a port is a number from 1 to 65535")
    return int(text)


def _range(text: str, spec: str) -> list[int]:
    m = re.fullmatch(_PORTS, text)
    if not m:
        raise InvalidArgument(f"invalid port {text!r} in -p {spec!r}: use PORT or START-END")
    first = _port(m.group(1), spec)
    last = _port(m.group(2), spec) if m.group(2) else first
    if last < first:
        raise InvalidArgument(f"invalid port range {text!r} in -p {spec!r}: the end is below the start")
    if last - first >= MAX_RANGE:
        raise InvalidArgument(f"port range {text!r} in -p {spec!r} is too large (at most {MAX_RANGE} ports)")
    return list(range(first, last + 1))


def parse_publish(spec: str) -> list[PortRequest]:
    """One `-p` value to the ports it publishes."""
    text = spec.strip()
    if not text:
        raise InvalidArgument("empty -p value")
    body, sep, protocol = text.rpartition("/") if "/" in text else (text, "", "tcp")
    protocol = protocol.lower()
    if protocol not in PROTOCOLS:
        raise InvalidArgument(f"invalid protocol {protocol!r} in -p {spec!r}: use tcp or udp")
    host_ip = "0.0.0.0"
    if body.startswith("["):          # [IPv6]:HOST:GUEST
        end = body.find("]")
        if end < 0 or body[end + 1:end + 2] != ":":
            raise InvalidArgument(f"invalid -p {spec!r}: use [IP]:HOSTPORT:GUESTPORT")
        host_ip, rest = body[1:end], body[end + 2:]
        parts = rest.split(":")
        if len(parts) != 2:
            raise InvalidArgument(f"invalid -p {spec!r}: use [IP]:HOSTPORT:GUESTPORT")
        host_part, guest_part = parts
    else:
        parts = body.split(":")
        if len(parts) == 1:
            host_part, guest_part = "", parts[0]
        elif len(parts) == 2:
            host_part, guest_part = parts
        elif len(parts) == 3:
            host_ip, host_part, guest_part = parts
        else:
            raise InvalidArgument(f"invalid -p {spec!r}: use [IP:][HOSTPORT:]GUESTPORT[/PROTOCOL]")
    try:
        host_ip = str(ipaddress.ip_address(host_ip))
    except ValueError:
        raise InvalidArgument(f"invalid host address {host_ip!r} in -p {spec!r}") from None
    guests = _range(guest_part, spec)
    if not host_part:
        return [PortRequest(host_ip, None, g, protocol) for g in guests]
    hosts = _range(host_part, spec)
    if len(hosts) == 1 and len(guests) == 1:
        return [PortRequest(host_ip, hosts[0], guests[0], protocol)]
    if len(hosts) != len(guests):
        raise InvalidArgument(f"invalid -p {spec!r}: the host and guest ranges must have the same length")
    return [PortRequest(host_ip, h, g, protocol) for h, g in zip(hosts, guests)]


def parse_all(specs: list[str], exposed: list[str] = (), publish_all: bool = False) -> list[PortRequest]:
    """Every `-p`, and with `-P` the image's EXPOSEd ports (`80/tcp`) on random host ports;
    a host port given twice is an error."""
    out: list[PortRequest] = []
    for spec in specs:
        out += parse_publish(spec)
    if publish_all:
        taken = {(r.guest_port, r.protocol) for r in out}
        for item in exposed:
            port, _, proto = item.partition("/")
            req = PortRequest("0.0.0.0", None, _port(port, item), (proto or "tcp").lower())
            if req.protocol in PROTOCOLS and (req.guest_port, req.protocol) not in taken:
                out.append(req)
    seen: set[tuple[str, int, str]] = set()
    for r in out:
        if r.host_port is None:
            continue
        key = (r.host_ip, r.host_port, r.protocol)
        if key in seen:
            raise InvalidArgument(f"host port {r.host_ip}:{r.host_port}/{r.protocol} is published twice")
        seen.add(key)
    return out


def check_free(host_ip: str, port: int, protocol: str) -> None:
    """Conflict unless this process could bind host_ip:port now (gvproxy binds the same way)."""
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Go's listeners: TIME_WAIT is no conflict
        s.bind((host_ip, port))
        if kind == socket.SOCK_STREAM:
            s.listen(1)
    except PermissionError:
        raise Conflict(f"host port {host_ip}:{port}/{protocol} needs privileges this user lacks") from None
    except OSError as exc:
        if exc.errno == 99:  # EADDRNOTAVAIL
            raise InvalidArgument(f"host address {host_ip} is not an address of this host") from None
        raise Conflict(f"host port {host_ip}:{port}/{protocol} is already in use") from None
    finally:
        s.close()


def random_free_port(host_ip: str, protocol: str) -> int:
    """A port the kernel says is free now (ephemeral range)."""
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(family, kind)
    try:
        s.bind((host_ip, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def docker_ports(bindings: list[PortBinding], exposed: list[str] = ()) -> dict[str, list[dict] | None]:
    """NetworkSettings.Ports as Docker shows it: `{"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}`,
    exposed but unpublished ports mapping to None."""
    out: dict[str, list[dict] | None] = {}
    for item in exposed:
        port, _, proto = item.partition("/")
        out.setdefault(f"{port}/{proto or 'tcp'}", None)
    for b in sorted(bindings, key=lambda b: (b.guest_port, b.protocol, b.host_ip, b.host_port)):
        key = f"{b.guest_port}/{b.protocol}"
        out[key] = (out.get(key) or []) + [{"HostIp": b.host_ip, "HostPort": str(b.host_port)}]
    return out
