"""Text output of the CLI: Docker-style tables, durations, sizes, log records."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
import time
from typing import Any


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(str(cell)))
    lines = []
    for row in [headers, *rows]:
        cells = [str(c).ljust(widths[i]) for i, c in enumerate(row)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


def ago(ts: float | None, now: float | None = None) -> str:
    if ts is None:
        return ""
    return f"{human_duration((now or time.time()) - ts)} ago"


def human_duration(seconds: float) -> str:
    s = int(max(0, seconds))
    if s < 1:
        return "Less than a second"
    if s < 60:
        return f"{s} second{'s' * (s != 1)}"
    m = s // 60
    if m < 60:
        return f"{m} minute{'s' * (m != 1)}"
    h = m // 60
    if h < 48:
        return f"{h} hour{'s' * (h != 1)}"
    d = h // 24
    return f"{d} days"


def human_size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.3g}{unit}" if unit != "B" else f"{n}B"
        n /= 1000
    return f"{n}"


def vm_status(vm) -> str:
    if vm.state == "running":
        up = f"Up {human_duration(time.time() - (vm.started_at or vm.created_at))}"
        if vm.health:
            status = vm.health["Status"]
            up += " (health: starting)" if status == "starting" else f" ({status})"
        return up
    if vm.state == "exited":
        return f"Exited ({vm.exit_code}) {ago(vm.finished_at)}"
    return vm.state.capitalize()


def _command(argv: list[str]) -> str:
    text = " ".join(argv)
    return f'"{text[:20]}…"' if len(text) > 20 else f'"{text}"'


def vm_ports(vm) -> str:
    """Docker's PORTS column: `0.0.0.0:8080->80/tcp, 127.0.0.1:5353->53/udp`."""
    ports = (vm.network_settings or {}).get("Ports") or {}
    return ", ".join(f"{b['HostIp']}:{b['HostPort']}->{key}" for key, binds in ports.items() for b in binds or [])


def vm_row(vm) -> list[str]:
    return [vm.short_id, vm.image, _command(vm.command), ago(vm.created_at), vm_status(vm), vm_ports(vm), vm.name]


def vm_row_json(vm) -> dict[str, Any]:
    return {
        "ID": vm.short_id, "Image": vm.image, "Health": (vm.health or {}).get("Status", ""), "Command": " ".join(vm.command), "CreatedAt": iso(vm.created_at),
        "State": vm.state, "Status": vm_status(vm), "Ports": vm_ports(vm), "Names": vm.name, "ExitCode": vm.exit_code,
    }


def vm_inspect(vm) -> dict[str, Any]:
    base = vm.stages.get("requested", vm.created_at)
    return {
        "Id": vm.id,
        "Name": vm.name,
        "Created": iso(vm.created_at),
        "Image": vm.image_id,
        "ImageRef": vm.image,
        "Path": vm.command[0] if vm.command else "",
        "Args": vm.command[1:],
        "State": {
            "Status": vm.state,
            "Running": vm.state == "running",
            "ExitCode": vm.exit_code,
            "Error": vm.error or "",
            "StartedAt": iso(vm.started_at),
            "FinishedAt": iso(vm.finished_at),
            **({"Health": vm.health} if vm.health else {}),
        },
        "Config": {
            "Env": vm.spec.env, "WorkingDir": vm.spec.workdir or "", "User": vm.spec.user or "",
            "Hostname": vm.spec.hostname or vm.id[:12], "Cpus": vm.spec.cpus, "MemoryMB": vm.spec.memory_mb,
            "AutoRemove": vm.auto_remove, "Labels": vm.spec.labels,
            "StopSignal": vm.spec.stop_signal, "StopTimeout": vm.spec.stop_timeout,
        },
        "RestartCount": vm.restart_count,
        "HostConfig": {
            "RestartPolicy": {"Name": vm.spec.restart.partition(":")[0],
                              "MaximumRetryCount": int(vm.spec.restart.partition(":")[2] or 0)},
            "LogConfig": {"Type": "hypr-log", "Config": vm.spec.log_opts},
            "NetworkMode": ",".join(n.get("name", "") for n in vm.spec.networks) or "default",
            "PortBindings": vm.spec.publish, "PublishAllPorts": vm.spec.publish_all,
        },
        "Mounts": [mount_json(m) for m in vm.spec.mounts or []],
        "NetworkSettings": vm.network_settings,
        # seconds from the request to each boot stage
        "BootStages": {k: round(v - base, 4) for k, v in sorted(vm.stages.items(), key=lambda kv: kv[1])},
    }


def iso(ts: float | None) -> str:
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def image_rows(img) -> list[list[str]]:
    created = ""
    if img.created:
        try:
            created = ago(dt.datetime.fromisoformat(img.created.replace("Z", "+00:00")).timestamp())
        except ValueError:
            created = img.created
    out = []
    for tag in img.tags or ["<none>:<none>"]:
        repo, _, t = tag.rpartition(":")
        if "/" in t:  # a registry port, not a tag
            repo, t = tag, "<none>"
        out.append([repo, t, img.short_id, created, human_size(img.size)])
    return out


def image_row_json(img) -> dict[str, Any]:
    return {"ID": img.short_id, "Digest": img.id, "Tags": img.tags, "Size": img.size, "CreatedAt": img.created}


def system_info_text(info: dict[str, Any]) -> str:
    lines = [
        f"HYPR version:   {info['version']}",
        f"Engine:         {info['mode']}",
        f"Data dir:       {info['data_dir']}",
        f"Runtime dir:    {info['runtime_dir']}",
        f"Accelerator:    {info['accelerator']['name']} ({info['accelerator']['reason']})",
    ]
    k = info.get("kernel", {})
    if "error" in k:
        lines.append(f"Kernel:         unavailable: {k['error']}")
    else:
        lines.append(f"Kernel:         {k['path']} ({k['reason']})")
        lines.append(f"Initramfs:      {info['initramfs']['path']} ({info['initramfs']['reason']})")
    lines.append(f"QEMU:           {info.get('qemu')}")
    lines.append(f"VMs:            {info['vms']['total']} ({info['vms']['running']} running)")
    lines.append(f"Images:         {info['images']}")
    if net := info.get("networking"):
        lines.append(f"gvproxy:        {net['gvproxy']}")
        lines.append(f"Default net:    {net['default_network']}")
        lines.append(f"User networks:  {net['user_networks']}")
    if d := info.get("daemon"):
        lines.append(f"Daemon:         hyprd {d['version']} (API {d['api_version']}), pid {d['pid']}, "
                     f"up {human_duration(d['uptime_s'])}, socket {d['socket']}")
    return "\n".join(lines)


def event_line(ev) -> str:
    """`2026-11-28T14:00:00.123456Z vm die 0123456789ab (name=web, exit_code=0)`, as Docker prints events."""
    ident = ev.id[:12] if ev.type == "vm" else ev.id
    attrs = {"name": ev.name, **ev.attributes} if ev.name else dict(ev.attributes)
    shown = ", ".join(f"{k}={v}" for k, v in attrs.items() if v != "")
    return f"{iso(ev.time)} {ev.type} {ev.action} {ident}" + (f" ({shown})" if shown else "")


def event_json(ev) -> dict[str, Any]:
    return {"Seq": ev.seq, "Time": iso(ev.time), "TimeUnix": ev.time, "Type": ev.type, "Action": ev.action,
            "ID": ev.id, "Name": ev.name, "Attributes": ev.attributes}


def write_record(rec, *, timestamps: bool) -> None:
    out = sys.stdout.buffer if rec.stream == "stdout" else sys.stderr.buffer
    if timestamps:
        stamp = dt.datetime.fromtimestamp(rec.time_ns / 1e9, dt.timezone.utc)
        out.write(stamp.strftime("%Y-%m-%dT%H:%M:%S.%f").encode() + f"{rec.time_ns % 1000:03d}Z ".encode())
    out.write(rec.payload)
    if rec.complete:
        out.write(b"\n")
    out.flush()


def terminal_size() -> tuple[int, int]:
    size = shutil.get_terminal_size((80, 24))
    if os.isatty(1):
        try:
            size = os.get_terminal_size(1)
        except OSError:
            pass
    return size.lines, size.columns


def vm_matches(vm, key: str, value: str) -> bool:
    """Docker's `ps --filter` semantics for name, id, status and label."""
    if key == "name":
        return value in vm.name
    if key == "id":
        return vm.id.startswith(value)
    if key == "status":
        return vm.state == value
    if key == "label":
        k, sep, v = value.partition("=")
        return k in vm.spec.labels and (not sep or vm.spec.labels[k] == v)
    return False


def render_template(template: str, fields: dict[str, Any]) -> str:
    """The `{{.Field}}` subset of Docker's Go templates; `table ` prefix is accepted and dropped."""
    import re

    text = template.removeprefix("table ").encode().decode("unicode_escape")
    return re.sub(r"\{\{\s*\.(\w+)\s*\}\}", lambda m: str(fields.get(m.group(1), "")), text)


def parse_time(value: str, flag: str) -> float:
    """RFC 3339, unix seconds, or a duration ago (`10m`, `2h`, `30s`), as Docker's --since."""
    from hypr_tui.commands import UsageError

    text = value.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        return time.time() - float(text[:-1]) * units[text[-1]]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"invalid {flag} {value!r}: use RFC 3339, unix seconds, or a duration such as 10m") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.timezone.utc)
    return stamp.timestamp()


def stats_row(s: dict[str, Any]) -> list[str]:
    if s.get("error"):
        return [s["id"][:12], s["name"], "--", s["error"], "", "", "", "", ""]
    used = s["mem_used"]
    limit = s["mem_limit"]
    return [
        s["id"][:12], s["name"], f"{s['cpu_percent']:.2f}%",
        f"{human_size(used)} / {human_size(limit)}", f"{100 * used / limit if limit else 0:.2f}%",
        f"{human_size(s['net_rx'])} / {human_size(s['net_tx'])}",
        f"{human_size(s['block_read'])} / {human_size(s['block_write'])}",
        str(s["pids"]), human_size(s["vmm_rss"]),
    ]


def mount_json(m: dict[str, Any]) -> dict[str, Any]:
    """One entry of `inspect`'s Mounts, as Docker writes it."""
    out: dict[str, Any] = {"Type": m["type"]}
    if m["type"] == "volume":
        out |= {"Name": m["source"], "Source": m.get("disk", ""), "Driver": "local"}
    else:
        out["Source"] = m["source"]
    out |= {"Destination": m["target"], "Mode": "ro" if m.get("readonly") else "", "RW": not m.get("readonly"),
            "Propagation": "rprivate" if m["type"] == "bind" else ""}
    if m["type"] == "tmpfs":
        out["Options"] = m.get("options", {})
    return out
