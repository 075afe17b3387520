"""Linux bridges and TAP devices of HYPR's user networks (the `bridge` driver's host side).

One bridge per user network holds the network's gateway address; each VM endpoint on
it gets one persistent TAP, created when the VM starts and removed with the VM (or
when it leaves the network), which QEMU opens with `-netdev tap,ifname=...`.

Names: interface names are limited to 15 bytes (IFNAMSIZ 16 with the NUL) and are
global to the host, and several HYPR data directories may share one host. So every
name is `hyb`/`hyt` + a 6-hex tag of the data directory + 6 hex of the network (or
endpoint): `hyb1a2b3c4d5e6f`. The common prefixes let the firewall match every HYPR
bridge at once (`hyb*`) and let tests find what one data directory left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
from pathlib import Path

from hypr_engine.errors import Unavailable
from hypr_engine.net.driver import GuestNic, NicPlan, netdev_id, register, virtio_net_args
from hypr_engine.net.store import DEFAULT_MTU, Endpoint
from hypr_engine.paths import Layout

BRIDGE_PREFIX = "hyb"
TAP_PREFIX = "hyt"
IP_TIMEOUT = 10.0


def dir_tag(data_dir: Path | str) -> str:
    """6 hex digits naming one data directory in host-global names."""
    return hashlib.sha256(os.path.realpath(data_dir).encode()).hexdigest()[:6]


def bridge_name(data_dir: Path | str, network_id: str) -> str:
    return f"{BRIDGE_PREFIX}{dir_tag(data_dir)}{network_id[:6]}"


def tap_name(data_dir: Path | str, vm_id: str, network_id: str) -> str:
    endpoint = hashlib.sha256(f"{vm_id}/{network_id}".encode()).hexdigest()[:6]
    return f"{TAP_PREFIX}{dir_tag(data_dir)}{endpoint}"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT)
    except FileNotFoundError:
        raise Unavailable("the `ip` command (iproute2) is missing; run scripts/setup.sh") from None
    except subprocess.TimeoutExpired:
        raise Unavailable(f"`ip {' '.join(args)}` did not finish within {IP_TIMEOUT:g} s") from None
    if check and proc.returncode != 0:
        raise Unavailable(f"`ip {' '.join(args)}` failed: {proc.stderr.strip()}")
    return proc


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def links_with_prefix(prefix: str) -> list[str]:
    """Interfaces whose name starts with `prefix` (e.g. everything of one data directory)."""
    try:
        return sorted(n for n in os.listdir("/sys/class/net") if n.startswith(prefix))
    except FileNotFoundError:
        return []


def ensure_bridge(name: str, gateway: str, prefixlen: int) -> None:
    """The bridge exists, is up, and holds the gateway address (idempotent)."""
    if not link_exists(name):
        proc = _ip("link", "add", name, "type", "bridge", check=False)
        if proc.returncode != 0 and not link_exists(name):   # (made meanwhile by another engine: fine)
            raise Unavailable(f"cannot create bridge {name}: {proc.stderr.strip()}")
    # replace: adding an address that is already there is an error, replacing is not
    _ip("addr", "replace", f"{gateway}/{prefixlen}", "dev", name)
    _ip("link", "set", name, "up")


def ensure_tap(name: str, bridge: str) -> None:
    """A persistent TAP enslaved to `bridge` and up (idempotent). QEMU opens it by name."""
    if not link_exists(name):
        proc = _ip("tuntap", "add", "dev", name, "mode", "tap", check=False)
        if proc.returncode != 0 and not link_exists(name):
            raise Unavailable(f"cannot create TAP {name}: {proc.stderr.strip()}")
    _ip("link", "set", name, "master", bridge)
    _ip("link", "set", name, "up")


def delete_link(name: str) -> None:
    """Remove a bridge or TAP; one that is already gone is fine (rm is idempotent)."""
    if link_exists(name):
        proc = _ip("link", "del", name, check=False)
        if proc.returncode != 0 and link_exists(name):
            raise Unavailable(f"cannot remove interface {name}: {proc.stderr.strip()}")


def host_routes() -> list[str]:
    """Every IPv4 destination the host routes somewhere other than its default route,
    plus its own addresses' networks: what a new subnet must not overlap."""
    found: list[str] = []
    routes = json.loads(_ip("-4", "-j", "route", "show", "table", "all").stdout or "[]")
    for r in routes:
        dst = r.get("dst", "")
        if dst and dst != "default" and r.get("type", "unicast") == "unicast":
            found.append(dst if "/" in dst else f"{dst}/32")
    addrs = json.loads(_ip("-4", "-j", "addr", "show").stdout or "[]")
    for link in addrs:
        for a in link.get("addr_info", []):
            if a.get("local") and not a["local"].startswith("127."):
                found.append(f"{a['local']}/{a.get('prefixlen', 32)}")
    return found


def expected_taps(conn, data_dir: Path | str) -> set[str]:
    """TAPs that should exist: one per endpoint on a bridge network, plus any an active VM
    may hold open on a bridge network (disconnected while it runs: QEMU keeps the TAP
    until the VM stops)."""
    rows = conn.execute("SELECT e.vm_id, e.network_id FROM endpoints e JOIN networks n ON n.id = e.network_id "
                        "JOIN vms v ON v.id = e.vm_id WHERE n.driver='bridge'").fetchall()
    names = {tap_name(data_dir, r[0], r[1]) for r in rows}
    active = [r[0] for r in conn.execute(
        "SELECT id FROM vms WHERE state IN ('starting','running','stopping','restarting')")]
    bridges = [r[0] for r in conn.execute("SELECT id FROM networks WHERE driver='bridge'")]
    names |= {tap_name(data_dir, vm, net) for vm in active for net in bridges}
    return names


def sweep_taps(conn, data_dir: Path | str) -> list[str]:
    """Remove this data directory's TAPs that no endpoint needs any more (a removed VM's,
    a left network's); returns their names. Run after removals and before starts."""
    keep = expected_taps(conn, data_dir)
    gone = [n for n in links_with_prefix(TAP_PREFIX + dir_tag(data_dir)) if n not in keep]
    for name in gone:
        delete_link(name)
    return gone


def sweep_data_dir(db_path: Path | str, data_dir: Path | str) -> list[str]:
    """`sweep_taps` for callers without a connection (VM removal, the supervisor's --rm).
    Nothing to do, and no database opened, when the data directory has no TAP at all."""
    if not links_with_prefix(TAP_PREFIX + dir_tag(data_dir)):
        return []
    conn = sqlite3.connect(db_path, timeout=10)
    try:
        conn.execute("PRAGMA busy_timeout=10000")
        return sweep_taps(conn, data_dir)
    finally:
        conn.close()


# --- the `bridge` network driver (hypr_engine/net/driver.py) -----------------------------------

class BridgeDriver:
    """A user network's NIC: a virtio-net device on the endpoint's persistent TAP, which is
    enslaved to the network's bridge. The guest gets a static address, the gateway as its
    route out (none on an --internal network) and the network's resolver as its DNS."""

    name = "bridge"

    def nic(self, endpoint: Endpoint, layout: Layout) -> NicPlan:
        nid = netdev_id(endpoint.position)
        net = endpoint.network
        tap = tap_name(layout.data, endpoint.vm_id, net.id)
        return NicPlan(
            netdev_id=nid,
            purpose=f"network {net.name}",
            qemu_args=virtio_net_args(nid, f"tap,ifname={tap},script=no,downscript=no", endpoint.mac),
            guest=GuestNic(endpoint.mac, endpoint.ip, net.prefix, None if net.internal else net.gateway, DEFAULT_MTU),
            dns=net.gateway,
        )

    def prepare(self, endpoint: Endpoint, layout: Layout) -> None:
        """Before the VM boots: the network's bridge, rules and resolver, and the endpoint's TAP."""
        from hypr_engine.net.networks import HostSide
        from hypr_engine.state.schema import connect

        conn = connect(layout.db)
        try:
            HostSide(layout).bring_up(conn, endpoint.network.id)
        finally:
            conn.close()
        ensure_tap(tap_name(layout.data, endpoint.vm_id, endpoint.network.id),
                   bridge_name(layout.data, endpoint.network.id))


register("bridge", BridgeDriver)
