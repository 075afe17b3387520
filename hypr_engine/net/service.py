"""The engine's network service: what VmService asks about a VM's networks and ports.

Blocking work (SQLite write transactions, gvproxy's API, binding test sockets) runs
in a thread; each call opens its own short-lived connection (schema.connect), so the
allocator's BEGIN IMMEDIATE never interleaves with the engine's aiosqlite connection.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable
from typing import Any

from hypr_engine.errors import Conflict, InvalidArgument
from hypr_engine.net import gvproxy, ports, store
from hypr_engine.net.driver import NicPlan, driver_for
from hypr_engine.net.gvproxy_driver import paths_of
from hypr_engine.net.store import Attachment, Endpoint, Network
from hypr_engine.paths import Layout
from hypr_engine.state.schema import connect


def attachments_of(networks: list[dict[str, Any]] | None) -> list[Attachment]:
    """VmSpec.networks to Attachments; empty means the default network."""
    out = []
    for item in networks or []:
        if not isinstance(item, dict) or not item.get("name"):
            raise InvalidArgument(f"invalid network attachment {item!r}: want {{'name': NAME, 'aliases': [...], 'ip': IP}}")
        aliases = item.get("aliases") or []
        if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
            raise InvalidArgument(f"invalid aliases for network {item['name']}: {aliases!r}")
        out.append(Attachment(str(item["name"]), list(aliases), item.get("ip") or None))
    return out or [Attachment(store.DEFAULT_NETWORK)]


class NetService:
    def __init__(self, layout: Layout) -> None:
        self._layout = layout

    def _conn(self) -> sqlite3.Connection:
        return connect(self._layout.db)

    async def _run(self, fn, *args):
        return await asyncio.to_thread(fn, *args)

    # --- create ----------------------------------------------------------------------------

    def check_create(self, attachments: list[Attachment], requests: list[ports.PortRequest]
                     ) -> list[tuple[Network, Attachment]]:
        """Everything about a new VM's networks that can be refused before it exists."""
        conn = self._conn()
        try:
            resolved = store.resolve_attachments(conn, attachments)
            for net, att in resolved:
                if att.aliases and net.driver == "gvproxy":
                    raise InvalidArgument(f"network aliases are for user networks: the {net.name} network's DNS "
                                          "(gvproxy) cannot serve them")
            if requests and not resolved:
                raise InvalidArgument("published ports (-p/-P) need a network: --network none leaves the VM "
                                      "no interface to forward them to")
            if requests and all(net.internal for net, _ in resolved):
                raise InvalidArgument(f"published ports (-p/-P) cannot reach a VM on internal network "
                                      f"{resolved[0][0].name} only: nothing comes in from outside")
            self._check_host_ports(conn, requests, vm_id=None)
            return resolved
        finally:
            conn.close()

    def _check_host_ports(self, conn: sqlite3.Connection, requests: Iterable[ports.PortRequest],
                          vm_id: str | None) -> None:
        for r in requests:
            if r.host_port is None:
                continue
            row = conn.execute(
                "SELECT v.name FROM ports p JOIN vms v ON v.id = p.vm_id WHERE p.host_port=? AND p.protocol=? "
                "AND (p.host_ip=? OR p.host_ip='0.0.0.0' OR ?='0.0.0.0') AND p.vm_id IS NOT ?",
                (r.host_port, r.protocol, r.host_ip, r.host_ip, vm_id)).fetchone()
            if row is not None:
                raise Conflict(f"host port {r.host_ip}:{r.host_port}/{r.protocol} is already published by VM {row[0]}")
            ports.check_free(r.host_ip, r.host_port, r.protocol)

    def insert_vm(self, insert_sql: str, params: tuple, vm_id: str,
                  resolved: list[tuple[Network, Attachment]]) -> list[Endpoint]:
        """The VM's row and its endpoints in one write transaction: all or nothing."""
        conn = self._conn()
        try:
            with store.write_transaction(conn):
                conn.execute(insert_sql, params)
                return store.attach_all(conn, vm_id, resolved)
        finally:
            conn.close()

    # --- start -----------------------------------------------------------------------------

    def endpoints(self, vm_id: str) -> list[Endpoint]:
        conn = self._conn()
        try:
            return store.endpoints_of(conn, vm_id)
        finally:
            conn.close()

    def nics(self, endpoints: list[Endpoint]) -> list[NicPlan]:
        return [driver_for(ep.network.driver).nic(ep, self._layout) for ep in endpoints]

    def prepare(self, endpoints: list[Endpoint]) -> None:
        for ep in endpoints:
            driver_for(ep.network.driver).prepare(ep, self._layout)

    def publish(self, vm_id: str, requests: list[ports.PortRequest], endpoints: list[Endpoint]
                ) -> list[ports.PortBinding]:
        """Choose random host ports, check every host port, record the bindings (the UNIQUE
        constraint decides between two VMs) and open them in gvproxy. All or nothing.
        A VM without the default network has no gvproxy: its supervisor proxies them
        (proxy_target, net/userproxy.py)."""
        if not requests:
            return []
        if not endpoints or all(ep.network.internal for ep in endpoints):
            raise InvalidArgument("published ports (-p/-P) need a network that lets them in: the VM is on none")
        guest_ip = next((ep.ip for ep in endpoints if ep.network.driver == "gvproxy"), None)
        self.release(vm_id)  # a previous run's, if its supervisor could not clean up
        conn = self._conn()
        try:
            self._check_host_ports(conn, requests, vm_id)
            bindings = [ports.PortBinding(r.host_ip, r.host_port or ports.random_free_port(r.host_ip, r.protocol),
                                          r.guest_port, r.protocol) for r in requests]
            try:
                with store.write_transaction(conn):
                    for b in bindings:
                        conn.execute("INSERT INTO ports (vm_id, host_ip, host_port, guest_port, protocol) "
                                     "VALUES (?,?,?,?,?)", (vm_id, b.host_ip, b.host_port, b.guest_port, b.protocol))
            except sqlite3.IntegrityError:
                raise Conflict("a host port of this VM was just published by another VM") from None
        finally:
            conn.close()
        if guest_ip is None:
            return bindings     # the supervisor binds them before QEMU starts
        paths = paths_of(self._layout)
        done: list[ports.PortBinding] = []
        try:
            for b in bindings:
                gvproxy.expose(paths, b.host_ip, b.host_port, guest_ip, b.guest_port, b.protocol)
                done.append(b)
        except BaseException:
            self.release(vm_id)
            raise
        return bindings

    @staticmethod
    def proxy_target(endpoints: list[Endpoint]) -> dict[str, str] | None:
        """Where the supervisor's userland proxy sends a VM's published ports: its address on
        its first non-internal network, when none of its networks is gvproxy's (which forwards
        them itself)."""
        if any(ep.network.driver == "gvproxy" for ep in endpoints):
            return None
        # an internal network lets nothing in from outside: its address is no way in
        target = next((ep for ep in endpoints if not ep.network.internal), None)
        return {"guest_ip": target.ip} if target else None

    def release(self, vm_id: str) -> None:
        """Close a VM's forwards and forget them (stop, rm, a failed start). Idempotent."""
        conn = self._conn()
        try:
            rows = conn.execute("SELECT host_ip, host_port, protocol FROM ports WHERE vm_id=?", (vm_id,)).fetchall()
            paths = paths_of(self._layout)
            for r in rows:
                gvproxy.unexpose(paths, r["host_ip"], r["host_port"], r["protocol"])
            if rows:
                conn.execute("DELETE FROM ports WHERE vm_id=?", (vm_id,))
        finally:
            conn.close()

    # --- observe ---------------------------------------------------------------------------

    def bindings(self, vm_id: str) -> list[ports.PortBinding]:
        conn = self._conn()
        try:
            rows = conn.execute("SELECT host_ip, host_port, guest_port, protocol FROM ports WHERE vm_id=? "
                                "ORDER BY guest_port, protocol, host_ip", (vm_id,)).fetchall()
            return [ports.PortBinding(r["host_ip"], r["host_port"], r["guest_port"], r["protocol"]) for r in rows]
        finally:
            conn.close()

    def network_settings(self, vm_id: str) -> dict[str, Any]:
        """Docker's NetworkSettings of a VM: its networks (address, MAC, gateway, aliases) and ports."""
        return self.network_settings_of([vm_id])[vm_id]

    def network_settings_of(self, vm_ids: list[str]) -> dict[str, dict[str, Any]]:
        """network_settings of several VMs over one connection (`ps`)."""
        conn = self._conn()
        try:
            return {vm_id: self._settings(conn, vm_id) for vm_id in vm_ids}
        finally:
            conn.close()

    def _settings(self, conn: sqlite3.Connection, vm_id: str) -> dict[str, Any]:
        endpoints = store.endpoints_of(conn, vm_id)
        rows = conn.execute("SELECT host_ip, host_port, guest_port, protocol FROM ports WHERE vm_id=?",
                            (vm_id,)).fetchall()
        bindings = [ports.PortBinding(r["host_ip"], r["host_port"], r["guest_port"], r["protocol"]) for r in rows]
        networks = {
            ep.network.name: {
                "NetworkID": ep.network.id, "Driver": ep.network.driver, "IPAddress": ep.ip,
                "IPPrefixLen": ep.network.prefix, "Gateway": "" if ep.network.internal else ep.network.gateway,
                "MacAddress": ep.mac, "Aliases": ep.aliases, "Position": ep.position,
            } for ep in endpoints
        }
        first = endpoints[0] if endpoints else None
        return {
            "Networks": networks,
            "Ports": ports.docker_ports(bindings),
            "IPAddress": first.ip if first else "",
            "IPPrefixLen": first.network.prefix if first else 0,
            "Gateway": (first.network.gateway if first and not first.network.internal else ""),
            "MacAddress": first.mac if first else "",
        }
