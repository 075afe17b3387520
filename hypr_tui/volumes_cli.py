"""`hypr volume ...` and the mount flags of `run`/`create` (-v, --mount, --tmpfs)."""

from __future__ import annotations

import json
import os
import sys

from hypr_tui import formatting as fmt
from hypr_tui.commands import UsageError, _key_value, for_each, inspect_each


def mounts_from_args(args) -> list[dict]:
    """The mount records of a VmSpec; a relative bind source is made absolute against this
    client's current directory, since the engine (maybe hyprd) has another one."""
    from hypr_engine.errors import InvalidArgument
    from hypr_engine.mounts import parse_mount_flag, parse_tmpfs_flag, parse_volume_flag

    cwd = os.getcwd()
    try:
        return ([parse_volume_flag(v, cwd) for v in getattr(args, "volume", [])]
                + [parse_mount_flag(m, cwd) for m in getattr(args, "mount", [])]
                + [parse_tmpfs_flag(t) for t in getattr(args, "tmpfs", [])])
    except InvalidArgument as exc:
        raise UsageError(exc.message) from None


def volume_json(v) -> dict:
    """Docker's `volume inspect` shape, plus HYPR's sizes and users."""
    return {
        "CreatedAt": fmt.iso(v.created_at), "Driver": v.driver, "Labels": v.labels,
        "Mountpoint": v.mountpoint, "Name": v.name, "Options": v.options, "Scope": "local",
        "Anonymous": v.anonymous, "Size": v.size_bytes, "AllocatedSize": v.allocated_bytes,
        "UsedBy": v.used_by,
    }


async def cmd_volume_create(client, args) -> int:
    labels = dict(_key_value(x, "label") for x in args.label)
    options = dict(_key_value(x, "option") for x in args.opt)
    volume = await client.create_volume(args.name, labels=labels, options=options)
    print(volume.name)
    return 0


async def cmd_volume_ls(client, args) -> int:
    filters = []
    for item in args.filter:
        key, sep, value = item.partition("=")
        if not sep or key not in ("name", "label", "dangling", "driver"):
            raise UsageError(f"invalid filter {item!r}: use name=, label=KEY[=VALUE], dangling=true|false or driver=")
        filters.append((key, value))
    volumes = await client.list_volumes(filters)
    if args.quiet:
        for v in volumes:
            print(v.name)
    elif args.format == "json":
        for v in volumes:
            print(json.dumps(volume_json(v)))
    else:
        print(fmt.table(["DRIVER", "VOLUME NAME", "SIZE", "USED", "USED BY"],
                        [[v.driver, v.name, fmt.human_size(v.size_bytes), fmt.human_size(v.allocated_bytes),
                          ", ".join(v.used_by)] for v in volumes]))
    return 0


async def cmd_volume_inspect(client, args) -> int:
    async def document(name: str) -> dict:
        return volume_json(await client.get_volume(name))

    return await inspect_each(args.names, document)


async def cmd_volume_rm(client, args) -> int:
    return await for_each(args.names, lambda name: client.remove_volume(name, force=args.force))


def confirm(warning: str) -> bool:
    print(warning)
    print("Are you sure you want to continue? [y/N] ", end="", flush=True)
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


async def cmd_volume_prune(client, args) -> int:
    what = "all local volumes" if args.all else "anonymous local volumes"
    if not args.force and not confirm(f"WARNING! This will remove {what} not used by at least one VM."):
        return 0
    removed, reclaimed = await client.prune_volumes(all=args.all)
    if removed:
        print("Deleted Volumes:")
        for name in removed:
            print(name)
        print()
    print(f"Total reclaimed space: {fmt.human_size(reclaimed)}")
    return 0
