"""`hypr system df` and `hypr system prune`."""

from __future__ import annotations

import json

from hypr_tui import formatting as fmt
from hypr_tui.volumes_cli import confirm

ROWS = (("images", "Images"), ("vms", "VMs"), ("volumes", "Local Volumes"), ("cache", "Cache"), ("logs", "Logs"))


def _reclaimable(row: dict) -> str:
    pct = f" ({100 * row['reclaimable'] // row['size']}%)" if row["size"] else ""
    return fmt.human_size(row["reclaimable"]) + pct


def df_text(report: dict, verbose: bool) -> str:
    lines = [fmt.table(["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
                       [[label, str(report[key]["count"]), str(report[key]["active"]),
                         fmt.human_size(report[key]["size"]), _reclaimable(report[key])] for key, label in ROWS])]
    if verbose:
        lines += ["", "Images space usage:", "",
                  fmt.table(["IMAGE ID", "TAGS", "SIZE", "VMS"],
                            [[i["id"].split(":")[-1][:12], ", ".join(i["tags"]) or "<none>", fmt.human_size(i["size"]),
                              str(i["vms"])] for i in report["images"]["items"]])]
        lines += ["", "VMs space usage:", "",
                  fmt.table(["VM ID", "NAME", "IMAGE", "STATE", "WRITABLE LAYER", "LOGS"],
                            [[v["id"][:12], v["name"], v["image"], v["state"], fmt.human_size(v["size"]),
                              fmt.human_size(v["logs"])] for v in report["vms"]["items"]])]
        lines += ["", "Local Volumes space usage:", "",
                  fmt.table(["VOLUME NAME", "USED BY", "SIZE", "APPARENT SIZE"],
                            [[v["name"], ", ".join(v["used_by"]) or "-", fmt.human_size(v["size"]),
                              fmt.human_size(v["apparent_size"])] for v in report["volumes"]["items"]])]
        lines += ["", "Cache space usage:", "",
                  fmt.table(["PATH", "SIZE"], [[c["path"], fmt.human_size(c["size"])]
                                               for c in report["cache"]["items"]])]
    lines += ["", f"Sizes are {report['figures']}."]
    return "\n".join(lines)


async def cmd_system_df(client, args) -> int:
    report = await client.system_df()
    if args.format == "json":
        print(json.dumps(report if args.verbose else {k: v for k, v in report.items()
                                                      if not isinstance(v, dict)} |
                         {k: {f: x for f, x in v.items() if f != "items"}
                          for k, v in report.items() if isinstance(v, dict)}))
    else:
        print(df_text(report, args.verbose))
    return 0


def prune_warning(all: bool, volumes: bool) -> str:
    items = ["  - all stopped VMs", "  - all networks not used by at least one VM"]
    if volumes:
        items.append("  - all volumes not used by at least one VM")
    items.append("  - all images without at least one VM associated to them" if all
                 else "  - all dangling images")
    items.append("  - unused root filesystem caches")
    return "WARNING! This will remove:\n" + "\n".join(items)


async def cmd_system_prune(client, args) -> int:
    if not args.force and not confirm(prune_warning(args.all, args.volumes)):
        return 0
    report = await client.system_prune(all=args.all, volumes=args.volumes)
    for key, title in (("vms", "Deleted VMs"), ("images", "Deleted Images"), ("volumes", "Deleted Volumes"),
                       ("networks", "Deleted Networks"), ("caches", "Deleted caches")):
        if report.get(key):
            print(f"{title}:")
            for item in report[key]:
                print(item)
            print()
    for note in report.get("notes", []):
        print(note)
    print(f"Total reclaimed space: {fmt.human_size(report['reclaimed'])}")
    return 0
