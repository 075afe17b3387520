"""The network service: create, list, inspect, remove and prune networks, and connect
VMs to them or disconnect them.

A user network (driver `bridge`) is, on the host: a row in `networks`, a Linux bridge
holding the gateway address (bridge.py), its rules in the data directory's nftables
table (nft.py) and its DNS resolver process (resolver.py). `create` makes all four or,
on any failure, none; `rm` removes all four and is idempotent. `HostSide.bring_up`
re-creates whatever of the host side is missing (after a host reboot, or a resolver
that died); the bridge driver runs it before every VM start on the network.

`default` is the gvproxy network every VM gets unless told otherwise; it needs no root,
and cannot be removed. User networks need root: bridges and nftables are root's.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import shutil
from pathlib import Path

from hypr_engine.errors import AlreadyExists, Conflict, InvalidArgument, NotFound, Unavailable
from hypr_engine.models import EndpointInfo, NetworkInfo
from hypr_engine.net import bridge, nft, pool, resolver, store
from hypr_engine.paths import Layout
from hypr_engine.state.db import Database

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")
RESERVED_NAMES = {store.DEFAULT_NETWORK, store.NONE_NETWORK, "host", "bridge"}
ACTIVE = ("starting", "running", "stopping", "restarting")
HOST_LOCK_TIMEOUT = 30.0
ROOT_NEEDED = ("user networks need root: each is a Linux bridge with nftables rules. Without root, "
               "VMs use the `default` network (gvproxy: outbound access and -p publishing, no root needed)")


class HostSide:
    """The kernel objects and the resolver of this data directory's bridge networks.
    Blocking (run it in a thread); every method is idempotent."""

    def __init__(self, layout: Layout) -> None:
        self._layout = layout

    def network_dir(self, network_id: str) -> Path:
        return self._layout.data / "networks" / network_id

    def bridge_of(self, network_id: str) -> str:
        return bridge.bridge_name(self._layout.data, network_id)

    def _locked(self):
        """One engine at a time changes this data directory's host side: two VMs starting at
        once on a new network must not both start its resolver."""
        return pool.exclusive(self._layout.data / "networks" / ".lock", HOST_LOCK_TIMEOUT)

    def bring_up(self, conn, network_id: str) -> None:
        """Bridge, firewall rules and resolver of one bridge network: what a host reboot,
        or a resolver that died, took away comes back."""
        if os.geteuid() != 0:
            raise Unavailable(ROOT_NEEDED)
        row = conn.execute("SELECT subnet, gateway FROM networks WHERE id=?", (network_id,)).fetchone()
        if row is None:
            raise NotFound(f"no such network: {network_id[:12]}")
        subnet = ipaddress.IPv4Network(row[0])
        with self._locked():
            bridge.ensure_bridge(self.bridge_of(network_id), row[1], subnet.prefixlen)
            self.apply_rules(conn)
            resolver.start(self.network_dir(network_id) / "resolver.json", str(self._layout.db), network_id, row[1])

    def tear_down(self, conn, network_id: str) -> None:
        """Remove the resolver, the bridge and the rules of a network whose row is gone."""
        with self._locked():
            resolver.stop(self.network_dir(network_id) / "resolver.json")
            bridge.delete_link(self.bridge_of(network_id))
            self.apply_rules(conn)
            shutil.rmtree(self.network_dir(network_id), ignore_errors=True)

    def apply_rules(self, conn) -> None:
        rows = conn.execute("SELECT id, subnet, gateway, internal FROM networks WHERE driver='bridge' "
                            "ORDER BY created_at").fetchall()
        nft.apply(self._layout.data, [nft.NetRules(self.bridge_of(r[0]), r[1], r[2], bool(r[3])) for r in rows])


class NetworkService:
    def __init__(self, db: Database, layout: Layout, vms) -> None:
        self._db = db
        self._layout = layout
        self._vms = vms     # VmService: VM refs are resolved as everywhere else
        self._host = HostSide(layout)

    # --- reading -------------------------------------------------------------------------

    async def host_status(self) -> dict[str, str]:
        """What `system info` says of networking on this host: gvproxy, and whether user
        networks are possible (they need root)."""
        from hypr_engine.net import gvproxy
        from hypr_engine.net.gvproxy_driver import paths_of

        try:
            binary = gvproxy.find_gvproxy()
        except Unavailable as exc:
            binary = f"missing: {exc}"
        running = await asyncio.to_thread(gvproxy.supervisor_running, paths_of(self._layout))
        return {
            "gvproxy": binary,
            "default_network": "running" if running else "idle (gvproxy starts with the first VM on it)",
            "user_networks": "available" if os.geteuid() == 0 else f"unavailable: {ROOT_NEEDED}",
        }

    async def list(self) -> list[NetworkInfo]:
        rows = await self._db.fetchall("SELECT * FROM networks ORDER BY created_at, name")
        return [await self._info(r) for r in rows]

    async def get(self, ref: str) -> NetworkInfo:
        """By exact name, exact id or unique id prefix."""
        net = await asyncio.to_thread(self._with_conn, store.get_network, ref)
        return await self._info(await self._db.fetchone("SELECT * FROM networks WHERE id=?", (net.id,)))

    async def _info(self, row) -> NetworkInfo:
        eps = await self._db.fetchall(
            "SELECT e.vm_id, v.name AS vm_name, e.ip, e.mac, e.aliases_json FROM endpoints e "
            "JOIN vms v ON v.id = e.vm_id WHERE e.network_id=? ORDER BY v.name", (row["id"],))
        return NetworkInfo(
            id=row["id"], name=row["name"], driver=row["driver"], subnet=row["subnet"], gateway=row["gateway"],
            internal=bool(row["internal"]), labels=json.loads(row["labels_json"] or "{}"),
            created_at=row["created_at"],
            endpoints=[EndpointInfo(e["vm_id"], e["vm_name"], e["ip"], e["mac"], json.loads(e["aliases_json"] or "[]"))
                       for e in eps],
        )

    # --- create ----------------------------------------------------------------------------

    async def create(self, name: str, *, subnet: str | None = None, gateway: str | None = None,
                     internal: bool = False, labels: dict[str, str] | None = None) -> NetworkInfo:
        if not NAME_RE.match(name):
            raise InvalidArgument(f"invalid network name {name!r}: use letters, digits, '_', '.' and '-', "
                                  "starting with a letter or digit (at most 64)")
        if name in RESERVED_NAMES:
            raise InvalidArgument(f"the network name {name!r} is reserved")
        if gateway and not subnet:
            raise InvalidArgument("--gateway needs --subnet")
        requested = pool.parse_subnet(subnet) if subnet else None
        gw = pool.parse_gateway(gateway, requested) if requested else None
        if await self._db.fetchone("SELECT 1 FROM networks WHERE name=?", (name,)):
            raise AlreadyExists(f"a network named {name!r} already exists")
        if os.geteuid() != 0:
            raise Unavailable(ROOT_NEEDED)
        network_id = await asyncio.to_thread(self._create_locked, name, requested, gw, internal, labels or {})
        return await self.get(network_id)

    def _create_locked(self, name: str, requested: ipaddress.IPv4Network | None,
                       gw: ipaddress.IPv4Address | None, internal: bool, labels: dict[str, str]) -> str:
        """Choose the subnet and make the bridge under the host-wide lock (another engine
        choosing at the same time sees this bridge's route); undo everything on failure."""
        from hypr_engine.state.schema import connect

        with pool.subnet_lock():
            conn = connect(self._layout.db)
            try:
                taken = [(f"network {r[0]!r}", r[1]) for r in conn.execute("SELECT name, subnet FROM networks")]
                taken += [(f"the host's route or address {r}", r) for r in bridge.host_routes()]
                if requested is None:
                    subnet = pool.pick_free(taken)
                    gateway = pool.parse_gateway(None, subnet)
                else:
                    pool.check_free(requested, taken)
                    subnet, gateway = requested, gw
                network_id = store.insert_network(conn, name, "bridge", str(subnet), str(gateway),
                                                  internal=internal, labels=labels).id
                try:
                    self._host.bring_up(conn, network_id)
                except BaseException as failure:
                    try:   # nothing half-created: undo all of it, then report the first failure
                        conn.execute("DELETE FROM networks WHERE id=?", (network_id,))
                        self._host.tear_down(conn, network_id)
                    except Exception as cleanup:
                        failure.add_note(f"cleaning up after the failure also failed: {cleanup}")
                    raise
                return network_id
            finally:
                conn.close()

    def _with_conn(self, fn, *args):
        from hypr_engine.state.schema import connect

        conn = connect(self._layout.db)
        try:
            return fn(conn, *args)
        finally:
            conn.close()

    # --- remove -----------------------------------------------------------------------------------

    async def remove(self, ref: str, *, force: bool = False) -> str:
        info = await self.get(ref)
        if info.driver != "bridge":
            raise Conflict(f"the {info.name!r} network cannot be removed")
        if info.endpoints and not force:
            users = ", ".join(e.vm_name for e in info.endpoints)
            raise Conflict(f"network {info.name} is in use by {users}: disconnect them "
                           f"(`hypr network disconnect {info.name} VM`) or remove it with -f")
        await asyncio.to_thread(self._with_conn, self._remove_sync, info)
        return info.name

    def _remove_sync(self, conn, info: NetworkInfo) -> None:
        conn.execute("DELETE FROM endpoints WHERE network_id=?", (info.id,))
        conn.execute("DELETE FROM networks WHERE id=?", (info.id,))
        self._host.tear_down(conn, info.id)
        bridge.sweep_taps(conn, self._layout.data)

    async def prune(self) -> list[str]:
        """Remove every user network no VM is connected to; their names."""
        removed = []
        for info in await self.list():
            if info.driver == "bridge" and not info.endpoints:
                try:
                    removed.append(await self.remove(info.id))
                except (NotFound, Conflict):
                    pass   # another engine removed it, or connected a VM, meanwhile
        return removed

    # --- connect / disconnect ---------------------------------------------------------------------

    async def connect(self, network_ref: str, vm_ref: str, *, aliases: list[str] | None = None,
                      ip: str | None = None) -> tuple[NetworkInfo, bool]:
        """Attach a VM; True when it runs and gets the NIC at its next start (a NIC cannot be
        hot-plugged into a microvm)."""
        vm = await self._vms.get(vm_ref)
        for alias in aliases or []:
            if not NAME_RE.match(alias):
                raise InvalidArgument(f"invalid alias {alias!r}: use letters, digits, '_', '.' and '-'")

        def attach(conn) -> None:
            with store.write_transaction(conn):
                net = store.get_network(conn, network_ref)
                position = conn.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM endpoints WHERE vm_id=?",
                                        (vm.id,)).fetchone()[0]
                store.attach(conn, vm.id, net, store.Attachment(net.name, list(aliases or []), ip), position)

        await asyncio.to_thread(self._with_conn, attach)
        info = await self.get(network_ref)
        return info, vm.state in ACTIVE

    async def disconnect(self, network_ref: str, vm_ref: str) -> tuple[NetworkInfo, bool]:
        vm = await self._vms.get(vm_ref)
        info = await self.get(network_ref)

        def detach(conn) -> None:
            if not store.detach(conn, vm.id, info.id):
                raise NotFound(f"VM {vm.name} is not connected to network {info.name}")
            bridge.sweep_taps(conn, self._layout.data)

        await asyncio.to_thread(self._with_conn, detach)
        return await self.get(info.id), vm.state in ACTIVE
