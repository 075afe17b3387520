"""What a network driver gives the VM start path for each NIC.

A VM gets one NIC per network it is on, in endpoint `position` order, each taking
one device-plan slot. For each, the driver says:

- the QEMU arguments (`-netdev ... -device virtio-net-device,netdev=..,mac=..`). A
  netdev that needs a file descriptor obtained at spawn time (gvproxy's `/connect`)
  writes the placeholder `{fd:NETDEV_ID}` where the number goes and names an
  `fd_source` (NicPlan); the VM's supervisor obtains the descriptor before *each* QEMU spawn
  (it restarts QEMU under a restart policy with no engine alive) and substitutes it;
- the guest's configuration of that NIC (`GuestNic`), which kestrel applies itself
  before the workload starts (boot tag NIC, guest_agent/PROTOCOL.md).

Drivers register in `DRIVERS` by name (`networks.driver`): `gvproxy` here (the
default network); the bridge driver lives in its own module and adds itself.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from hypr_engine.errors import InvalidArgument
from hypr_engine.net.store import DEFAULT_MTU, Endpoint
from hypr_engine.paths import Layout

MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


@dataclass(frozen=True)
class GuestNic:
    """One interface as kestrel configures it: found by MAC, given an address, brought up."""

    mac: str                    # lower-case aa:bb:cc:dd:ee:ff
    address: str                # IPv4
    prefix: int                 # 0-32
    gateway: str | None         # None: no default route through this NIC
    mtu: int = DEFAULT_MTU

    def encode(self) -> str:
        """The NIC boot field: `MAC ADDRESS/PREFIX GATEWAY|- MTU` (PROTOCOL.md)."""
        return f"{self.mac} {self.address}/{self.prefix} {self.gateway or '-'} {self.mtu}"

    @classmethod
    def parse(cls, text: str) -> GuestNic:
        """The inverse of encode, as strict as kestrel's parser (guest_agent/netcfg.c)."""
        parts = text.split(" ")
        if len(parts) != 4:
            raise InvalidArgument(f"NIC field {text!r}: want 4 space-separated parts")
        mac, cidr, gateway, mtu = parts
        if not MAC_RE.match(mac):
            raise InvalidArgument(f"NIC field {text!r}: bad MAC")
        address, sep, prefix = cidr.partition("/")
        if not sep or not _canonical_decimal(prefix) or int(prefix) > 32:
            raise InvalidArgument(f"NIC field {text!r}: bad prefix")
        try:
            addr = ipaddress.IPv4Address(address)
            gw = None if gateway == "-" else ipaddress.IPv4Address(gateway)
        except ValueError:
            raise InvalidArgument(f"NIC field {text!r}: bad address") from None
        if not _canonical_decimal(mtu) or not 68 <= int(mtu) <= 65535:
            raise InvalidArgument(f"NIC field {text!r}: bad MTU")
        return cls(mac, str(addr), int(prefix), None if gw is None else str(gw), int(mtu))


def _canonical_decimal(text: str) -> bool:
    """Digits without a leading zero (kestrel's parser accepts nothing else)."""
    return text.isascii() and text.isdigit() and len(text) <= 5 and str(int(text)) == text


@dataclass
class NicPlan:
    """Everything the start path needs for one NIC."""

    netdev_id: str                       # "net0", "net1", ... by position
    purpose: str                         # the device plan's label, e.g. "network default"
    qemu_args: list[str]
    guest: GuestNic
    # How the supervisor obtains `{fd:netdev_id}` before each spawn: `module` names a module
    # with `open_link(fd_source) -> object with fileno() and close()`; with `lost`, a hang-up
    # of that descriptor means the network is gone (the message says why) and QEMU is ended.
    fd_source: dict | None = None
    dns: str | None = None               # the resolver this network offers the guest


class NetworkDriver(Protocol):
    name: str

    def nic(self, endpoint: Endpoint, layout: Layout) -> NicPlan:
        """The NIC of `endpoint` (pure: no process is started here)."""
        ...

    def prepare(self, endpoint: Endpoint, layout: Layout) -> None:
        """Make the host side ready before the VM boots (start gvproxy, create a TAP...).
        Blocking; the engine calls it in a thread. Raises a HyprError on failure."""
        ...


DRIVERS: dict[str, Callable[[], NetworkDriver]] = {}


def register(name: str, factory: Callable[[], NetworkDriver]) -> None:
    DRIVERS[name] = factory


def driver_for(driver_name: str) -> NetworkDriver:
    if driver_name not in DRIVERS:
        # drivers register on import; the built-in ones are imported here on first use
        import hypr_engine.net.gvproxy_driver
        try:
            import hypr_engine.net.bridge  # noqa: F401  (the user networks' driver, when present)
        except ImportError:
            pass
    try:
        return DRIVERS[driver_name]()
    except KeyError:
        raise InvalidArgument(f"unknown network driver {driver_name!r}") from None


def netdev_id(position: int) -> str:
    return f"net{position}"


def virtio_net_args(netdev: str, netdev_options: str, mac: str) -> list[str]:
    return ["-netdev", f"{netdev_options},id={netdev}", "-device", f"virtio-net-device,netdev={netdev},mac={mac}"]


def substitute_fds(argv: list[str], fds: dict[str, int]) -> list[str]:
    """Put spawn-time descriptors into an argv's `{fd:ID}` placeholders (the supervisor)."""
    out = []
    for a in argv:
        for nid, fd in fds.items():
            a = a.replace("{fd:%s}" % nid, str(fd))
        out.append(a)
    return out
