"""Network records in hypr.db: networks, a VM's endpoints, the address allocator, MACs.

Plain functions over a stdlib `sqlite3.Connection` (schema.connect), so the engine (in
a thread), a VM's supervisor and the gvproxy supervisor share one implementation.
Functions that write expect the caller's write transaction (`write_transaction`):
the allocator reads the addresses in use and inserts under the same write lock, and
the UNIQUE(network_id, ip) / UNIQUE(mac) constraints decide any race that is left.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from hypr_engine.errors import AlreadyExists, Conflict, InvalidArgument, NotFound

DEFAULT_NETWORK = "default"
NONE_NETWORK = "none"                      # `--network none`: no NIC, only lo
GVPROXY_SUBNET = "192.168.127.0/24"        # fixed in gvproxy 0.8.1 (DESIGN.md, Networking)
GVPROXY_GATEWAY = "192.168.127.1"          # gvproxy's gateway and DNS
GVPROXY_HOST_ALIAS = "192.168.127.254"     # gvproxy maps it to the host's 127.0.0.1
DEFAULT_MTU = 1500


@dataclass(frozen=True)
class Network:
    id: str
    name: str
    driver: str            # gvproxy | bridge
    subnet: str            # '192.168.127.0/24'
    gateway: str
    internal: bool
    labels: dict[str, str]
    created_at: float

    @property
    def prefix(self) -> int:
        return ipaddress.ip_network(self.subnet).prefixlen

    def reserved(self) -> set[str]:
        """Addresses the allocator never hands out besides network and broadcast."""
        out = {self.gateway}
        if self.driver == "gvproxy":
            out.add(GVPROXY_HOST_ALIAS)
        return out

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Network:
        return cls(row["id"], row["name"], row["driver"], row["subnet"], row["gateway"], bool(row["internal"]),
                   json.loads(row["labels_json"] or "{}"), row["created_at"])


@dataclass(frozen=True)
class Endpoint:
    """A VM's place on one network: one NIC in the guest."""

    vm_id: str
    network: Network
    ip: str
    mac: str
    aliases: list[str]
    position: int          # interface order in the guest (0 = first NIC)


@dataclass(frozen=True)
class Attachment:
    """What a VM asks of a network at create time (`--network NAME --network-alias A --ip IP`)."""

    network: str
    aliases: list[str] = field(default_factory=list)
    ip: str | None = None


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on any error): one writer at a time."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


# --- networks -------------------------------------------------------------------------------

def get_network(conn: sqlite3.Connection, ref: str) -> Network:
    """By exact name, exact id or unique id prefix (as VMs)."""
    row = conn.execute("SELECT * FROM networks WHERE name=? OR id=?", (ref, ref)).fetchone()
    if row is None and ref and all(c in "0123456789abcdef" for c in ref):
        rows = conn.execute("SELECT * FROM networks WHERE id LIKE ?", (ref + "%",)).fetchall()
        if len(rows) > 1:
            raise InvalidArgument(f"network id prefix {ref!r} is ambiguous ({len(rows)} networks match)")
        row = rows[0] if rows else None
    if row is None:
        raise NotFound(f"no such network: {ref}")
    return Network.from_row(row)


def list_networks(conn: sqlite3.Connection) -> list[Network]:
    return [Network.from_row(r) for r in conn.execute("SELECT * FROM networks ORDER BY created_at, name")]


def insert_network(conn: sqlite3.Connection, name: str, driver: str, subnet: str, gateway: str, *,
                   internal: bool = False, labels: dict[str, str] | None = None) -> Network:
    """A new network row (the caller validated name, subnet and gateway)."""
    net_id = os.urandom(32).hex()
    try:
        conn.execute(
            "INSERT INTO networks (id, name, driver, subnet, gateway, internal, labels_json, created_at) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (net_id, name, driver, subnet, gateway, int(internal), json.dumps(labels or {}), time.time()),
        )
    except sqlite3.IntegrityError:
        raise AlreadyExists(f"a network named {name!r} already exists") from None
    return get_network(conn, net_id)


# --- endpoints ------------------------------------------------------------------------------

def endpoints_of(conn: sqlite3.Connection, vm_id: str) -> list[Endpoint]:
    """A VM's endpoints in interface order."""
    rows = conn.execute(
        "SELECT e.*, n.id AS n_id, n.name AS n_name, n.driver AS n_driver, n.subnet AS n_subnet, "
        "n.gateway AS n_gateway, n.internal AS n_internal, n.labels_json AS n_labels_json, "
        "n.created_at AS n_created_at FROM endpoints e JOIN networks n ON n.id = e.network_id "
        "WHERE e.vm_id=? ORDER BY e.position", (vm_id,)).fetchall()
    out = []
    for r in rows:
        net = Network(r["n_id"], r["n_name"], r["n_driver"], r["n_subnet"], r["n_gateway"], bool(r["n_internal"]),
                      json.loads(r["n_labels_json"] or "{}"), r["n_created_at"])
        out.append(Endpoint(r["vm_id"], net, r["ip"], r["mac"], json.loads(r["aliases_json"] or "[]"), r["position"]))
    return out


def resolve_attachments(conn: sqlite3.Connection, wanted: list[Attachment]) -> list[tuple[Network, Attachment]]:
    """Check a create request's networks before anything is written: each exists, none twice,
    `none` alone, every `--ip` inside its subnet and free. Returns them in interface order."""
    names = [a.network for a in wanted]
    if NONE_NETWORK in names:
        if len(names) > 1:
            raise InvalidArgument("--network none cannot be combined with other networks")
        return []
    out: list[tuple[Network, Attachment]] = []
    seen: set[str] = set()
    for att in wanted:
        net = get_network(conn, att.network)
        if net.id in seen:
            raise InvalidArgument(f"network {net.name} is given twice")
        seen.add(net.id)
        if att.ip is not None:
            check_requested_ip(conn, net, att.ip)
        out.append((net, att))
    return out


def check_requested_ip(conn: sqlite3.Connection, net: Network, ip: str) -> str:
    """The address in canonical form, if it is inside the subnet, not reserved and free."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        raise InvalidArgument(f"invalid --ip {ip!r}: not an IP address") from None
    subnet = ipaddress.ip_network(net.subnet)
    if addr not in subnet:
        raise InvalidArgument(f"--ip {ip} is outside network {net.name}'s subnet {net.subnet}")
    if addr in (subnet.network_address, subnet.broadcast_address) or str(addr) in net.reserved():
        raise InvalidArgument(f"--ip {ip} is reserved on network {net.name} (network, broadcast, gateway "
                              f"or host address)")
    if conn.execute("SELECT 1 FROM endpoints WHERE network_id=? AND ip=?", (net.id, str(addr))).fetchone():
        raise Conflict(f"--ip {ip} is already in use on network {net.name}")
    return str(addr)


def allocate_ip(conn: sqlite3.Connection, net: Network) -> str:
    """The lowest free host address of the network (call inside a write transaction)."""
    subnet = ipaddress.ip_network(net.subnet)
    used = {r[0] for r in conn.execute("SELECT ip FROM endpoints WHERE network_id=?", (net.id,))}
    used |= net.reserved()
    for addr in subnet.hosts():
        if str(addr) not in used:
            return str(addr)
    raise Conflict(f"network {net.name} ({net.subnet}) has no free address left")


def mac_for(vm_id: str, network_id: str, salt: int = 0) -> str:
    """A locally administered unicast MAC, the same for a VM on a network every time."""
    digest = hashlib.sha256(f"{vm_id}/{network_id}/{salt}".encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def attach(conn: sqlite3.Connection, vm_id: str, net: Network, att: Attachment, position: int) -> Endpoint:
    """Insert one endpoint (call inside a write transaction): the requested or lowest free
    address, the derived MAC (a collision with another VM's MAC takes the next salt)."""
    ip = check_requested_ip(conn, net, att.ip) if att.ip is not None else allocate_ip(conn, net)
    for salt in range(8):
        mac = mac_for(vm_id, net.id, salt)
        try:
            conn.execute(
                "INSERT INTO endpoints (vm_id, network_id, ip, mac, aliases_json, position) VALUES (?,?,?,?,?,?)",
                (vm_id, net.id, ip, mac, json.dumps(list(att.aliases)), position),
            )
            return Endpoint(vm_id, net, ip, mac, list(att.aliases), position)
        except sqlite3.IntegrityError as exc:
            if "endpoints.mac" in str(exc):
                continue
            if "endpoints.network_id, endpoints.ip" in str(exc):
                raise Conflict(f"address {ip} is already in use on network {net.name}") from None
            if "PRIMARY KEY" in str(exc) or "endpoints.vm_id" in str(exc):
                raise AlreadyExists(f"the VM is already connected to network {net.name}") from None
            raise
    raise Conflict("no free MAC address for this VM (eight collisions in a row)")


def attach_all(conn: sqlite3.Connection, vm_id: str, resolved: list[tuple[Network, Attachment]]) -> list[Endpoint]:
    """A new VM's endpoints, in order (call inside the write transaction that inserts the VM)."""
    return [attach(conn, vm_id, net, att, pos) for pos, (net, att) in enumerate(resolved)]


def detach(conn: sqlite3.Connection, vm_id: str, network_id: str) -> bool:
    return conn.execute("DELETE FROM endpoints WHERE vm_id=? AND network_id=?", (vm_id, network_id)).rowcount > 0


def vms_on_network(conn: sqlite3.Connection, network_id: str, states: tuple[str, ...] | None = None) -> list[str]:
    sql = "SELECT e.vm_id FROM endpoints e JOIN vms v ON v.id = e.vm_id WHERE e.network_id=?"
    params: list = [network_id]
    if states:
        sql += f" AND v.state IN ({','.join('?' * len(states))})"
        params += list(states)
    return [r[0] for r in conn.execute(sql, params)]
