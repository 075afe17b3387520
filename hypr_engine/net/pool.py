"""Subnets of user networks: parse and check a requested `--subnet`/`--gateway`, or
pick a free /24 from HYPR's default pool.

A subnet must overlap neither another HYPR network of this data directory nor any
route or address of the host (another data directory's bridge, a VPN, the LAN):
two networks with one range would make the host route one of them into the void.
The choice and the bridge's creation run under a host-wide lock (`subnet_lock`) so
two engines creating networks at once never pick the same /24.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import time
import contextlib
from contextlib import contextmanager
from typing import Iterable, Iterator

from hypr_engine.errors import Conflict, InvalidArgument, Timeout

DEFAULT_POOL = ipaddress.IPv4Network("10.89.0.0/16")
POOL_PREFIX = 24
MAX_PREFIX = 29   # /30 leaves 2 hosts: the gateway and one VM; /29 is the smallest useful
LOCK_PATH = "/run/lock/hypr-subnets.lock"
LOCK_TIMEOUT = 30.0


def parse_subnet(text: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise InvalidArgument(f"invalid subnet {text!r}: expected IPv4 CIDR notation such as 10.90.0.0/24") from None
    if net.version != 4:
        raise InvalidArgument(f"invalid subnet {text!r}: only IPv4 subnets are supported")
    if "/" not in text:
        raise InvalidArgument(f"invalid subnet {text!r}: give a prefix length, e.g. {text.strip()}/24")
    if str(net.network_address) != text.strip().split("/")[0]:
        raise InvalidArgument(f"invalid subnet {text!r}: host bits are set (did you mean {net}?)")
    if net.prefixlen > MAX_PREFIX or net.prefixlen < 8:
        raise InvalidArgument(f"invalid subnet {text!r}: the prefix length must be between /8 and /{MAX_PREFIX}")
    if net.is_loopback or net.is_multicast or net.is_link_local or net.is_reserved or net.is_unspecified:
        raise InvalidArgument(f"invalid subnet {text!r}: not a usable unicast range")
    return net


def parse_gateway(text: str | None, subnet: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    """The gateway given, or the subnet's first host address."""
    if not text:
        return subnet.network_address + 1
    try:
        gw = ipaddress.IPv4Address(text.strip())
    except ValueError:
        raise InvalidArgument(f"invalid gateway {text!r}: expected an IPv4 address") from None
    if gw not in subnet:
        raise InvalidArgument(f"gateway {gw} is outside the subnet {subnet}")
    if gw in (subnet.network_address, subnet.broadcast_address):
        raise InvalidArgument(f"gateway {gw} is the network or broadcast address of {subnet}")
    return gw


def overlapping(subnet: ipaddress.IPv4Network, taken: Iterable[tuple[str, str]]) -> str | None:
    """The description of the first `(description, cidr)` in `taken` that overlaps `subnet`."""
    for what, cidr in taken:
        try:
            other = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            continue
        if other.version == 4 and subnet.overlaps(other):
            return what
    return None


def check_free(subnet: ipaddress.IPv4Network, taken: Iterable[tuple[str, str]]) -> None:
    if (what := overlapping(subnet, taken)) is not None:
        raise Conflict(f"subnet {subnet} overlaps {what}; choose another --subnet")


def pick_free(taken: Iterable[tuple[str, str]], pool: ipaddress.IPv4Network = DEFAULT_POOL) -> ipaddress.IPv4Network:
    taken = list(taken)
    for candidate in pool.subnets(new_prefix=POOL_PREFIX):
        if overlapping(candidate, taken) is None:
            return candidate
    raise Conflict(f"no free /{POOL_PREFIX} left in {pool}; remove unused networks (`hypr network prune`) "
                   "or give --subnet")


@contextmanager
def exclusive(path: str | os.PathLike, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """An exclusive flock on `path` (made if missing), waited for at most `timeout` seconds."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise Timeout(f"another HYPR engine held {path} for over {timeout:g} s") from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)


def subnet_lock() -> "contextlib.AbstractContextManager[None]":
    """Host-wide: one engine at a time chooses a subnet and creates its bridge."""
    return exclusive(LOCK_PATH)
