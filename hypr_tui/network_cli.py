"""`hypr network ...`: create, ls, inspect, rm, prune, connect, disconnect.

Handlers of the registry's network actions (actions.py), through HyprClient only.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

from hypr_tui import formatting as fmt
from hypr_tui.commands import _key_value, for_each, inspect_each


def network_rows(networks) -> list[list[str]]:
    return [[n.short_id, n.name, n.driver, n.subnet, "yes" if n.internal else "", str(len(n.endpoints))]
            for n in networks]


def network_inspect(info) -> dict:
    """Docker's field names where Docker has the field."""
    return {
        "Name": info.name, "Id": info.id, "Created": fmt.iso(info.created_at),
        "Driver": info.driver, "Internal": info.internal, "Labels": info.labels,
        "IPAM": {"Config": [{"Subnet": info.subnet, "Gateway": info.gateway}]},
        "Containers": {e.vm_id: {"Name": e.vm_name, "IPv4Address": e.ip, "MacAddress": e.mac, "Aliases": e.aliases}
                       for e in info.endpoints},
    }


async def cmd_network_create(client, args) -> int:
    labels = dict(_key_value(x, "label") for x in args.label)
    info = await client.create_network(args.name, subnet=args.subnet, gateway=args.gateway,
                                       internal=args.internal, labels=labels)
    print(info.id)
    return 0


async def cmd_network_ls(client, args) -> int:
    networks = await client.list_networks()
    if args.quiet:
        for n in networks:
            print(n.short_id)
    elif args.format == "json":
        for n in networks:
            print(json.dumps(asdict(n)))
    else:
        print(fmt.table(["NETWORK ID", "NAME", "DRIVER", "SUBNET", "INTERNAL", "VMS"], network_rows(networks)))
    return 0


async def cmd_network_inspect(client, args) -> int:
    async def document(ref: str) -> dict:
        return network_inspect(await client.get_network(ref))

    return await inspect_each(args.networks, document)


async def cmd_network_rm(client, args) -> int:
    return await for_each(args.networks, lambda ref: client.remove_network(ref, force=args.force))


async def cmd_network_prune(client, args) -> int:
    removed = await client.prune_networks()
    if removed:
        print("Deleted Networks:")
        for name in removed:
            print(name)
    return 0


async def cmd_network_connect(client, args) -> int:
    info, later = await client.connect_network(args.network, args.vm, aliases=args.alias, ip=args.ip)
    if later:
        print(f"hypr: {args.vm} is running: it joins {info.name} at its next start (`hypr restart {args.vm}`)",
              file=sys.stderr)
    return 0


async def cmd_network_disconnect(client, args) -> int:
    info, later = await client.disconnect_network(args.network, args.vm)
    if later:
        print(f"hypr: {args.vm} is running: it leaves {info.name} at its next start (`hypr restart {args.vm}`)",
              file=sys.stderr)
    return 0
