"""Networking on the command line: `--network/--network-alias/--ip/-p/-P` into a VmSpec,
and `hypr port`."""

from __future__ import annotations

from hypr_engine.errors import InvalidArgument, NotFound


def parse_network_flag(value: str) -> dict:
    """`NAME` or Docker's long form `name=NAME,alias=A,alias=B,ip=IP`."""
    if "=" not in value:
        if not value.strip():
            raise InvalidArgument("--network needs a network name")
        return {"name": value.strip(), "aliases": [], "ip": None}
    out: dict = {"name": None, "aliases": [], "ip": None}
    for item in value.split(","):
        key, sep, val = item.partition("=")
        key = key.strip()
        if not sep or not val:
            raise InvalidArgument(f"invalid --network {value!r}: use name=NET[,alias=A][,ip=IP]")
        if key == "name":
            out["name"] = val
        elif key == "alias":
            out["aliases"].append(val)
        elif key in ("ip", "ipv4-address"):
            out["ip"] = val
        else:
            raise InvalidArgument(f"invalid --network {value!r}: unknown key {key!r} (name, alias, ip)")
    if not out["name"]:
        raise InvalidArgument(f"invalid --network {value!r}: no name=")
    return out


def spec_network_fields(args) -> dict:
    """VmSpec's networks, publish and publish_all from parsed `run`/`create` arguments.
    `--network-alias` and `--ip` belong to the first `--network` (as Docker's), or to the
    default network when none is given."""
    networks = [parse_network_flag(v) for v in getattr(args, "network", None) or []]
    aliases = list(getattr(args, "network_alias", None) or [])
    ip = getattr(args, "ip", None)
    if (aliases or ip) and not networks:
        networks = [{"name": "default", "aliases": [], "ip": None}]
    if networks:
        networks[0]["aliases"] = networks[0]["aliases"] + aliases
        if ip:
            networks[0]["ip"] = ip
    return {"networks": networks, "publish": list(getattr(args, "publish", None) or []),
            "publish_all": bool(getattr(args, "publish_all", False))}


async def cmd_port(client, args) -> int:
    """`hypr port VM [PRIVATE_PORT[/PROTO]]`, printed as Docker prints it."""
    ports = await client.vm_ports(args.vm)
    if args.private_port:
        port, _, proto = args.private_port.partition("/")
        proto = (proto or "tcp").lower()
        if not port.isdigit() or proto not in ("tcp", "udp"):
            raise InvalidArgument(f"invalid port {args.private_port!r}: use PORT or PORT/tcp or PORT/udp")
        found = [p for p in ports if p.guest_port == int(port) and p.protocol == proto]
        if not found:
            raise NotFound(f"no public port '{port}/{proto}' published for {args.vm}")
        for p in found:
            print(f"{p.host_ip}:{p.host_port}")
        return 0
    for p in sorted(ports, key=lambda p: (p.guest_port, p.protocol, p.host_ip, p.host_port)):
        print(f"{p.guest_port}/{p.protocol} -> {p.host_ip}:{p.host_port}")
    return 0
