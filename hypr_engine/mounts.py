"""What a VM mounts: `-v`, `--mount` and `--tmpfs` parsed into plain mount records.

Pure logic, no engine state: the CLI parses here (so a relative bind source is
resolved against the *client's* current directory before any request is sent),
and the engine validates the same records again (a gRPC client may send anything).

A mount record is a dict, stored as is in `VmSpec.mounts` (JSON in the database):

    {"type": "volume", "source": "pgdata", "target": "/var/lib/postgresql/data", "readonly": False}
    {"type": "volume", "source": "", "target": "/data", ...}           anonymous: the engine names it
    {"type": "bind", "source": "/abs/host/dir", "target": "/usr/share/nginx/html", "readonly": True}
    {"type": "tmpfs", "source": "", "target": "/scratch", "readonly": False,
     "options": {"size": 67108864, "mode": 0o1777, "flags": ["noexec"]}}

Docker's rule tells a named volume from a bind: a source that contains `/` or
starts with `.` or `~` is a host path, anything else names a volume.
"""

from __future__ import annotations

import os
import posixpath
import re
from typing import Any

from hypr_engine.errors import InvalidArgument

# Docker's volume name rule (daemon/names), with a length cap: the name is a directory.
VOLUME_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,127}$")
VOLUME_OPTIONS = ("ro", "readonly", "rw", "nocopy", "z", "Z", "delegated", "cached", "consistent")
TMPFS_FLAGS = ("ro", "rw", "noexec", "exec", "nosuid", "suid", "nodev", "dev")
# Where a mount would hide what kestrel or the kernel needs.
FORBIDDEN_TARGETS = ("/", "/proc", "/sys", "/dev", "/dev/pts")


def is_path_source(source: str) -> bool:
    return "/" in source or source.startswith((".", "~"))


def check_volume_name(name: str) -> str:
    if not VOLUME_NAME_RE.match(name):
        raise InvalidArgument(
            f"invalid volume name {name!r}: 2-128 characters, letters, digits, '_', '.' and '-', "
            "starting with a letter or digit"
        )
    return name


def check_target(target: str, flag: str) -> str:
    if not target:
        raise InvalidArgument(f"invalid {flag}: the mount point in the VM is empty")
    if not target.startswith("/"):
        raise InvalidArgument(f"invalid {flag}: the mount point {target!r} must be an absolute path")
    if "\0" in target or any(part == ".." for part in target.split("/")):
        raise InvalidArgument(f"invalid {flag}: the mount point {target!r} must not contain '..'")
    clean = posixpath.normpath(target)
    if clean.startswith("//"):
        clean = "/" + clean.lstrip("/")
    if clean in FORBIDDEN_TARGETS:
        raise InvalidArgument(f"invalid {flag}: cannot mount over {clean}")
    return clean


def resolve_host_path(source: str, cwd: str | None = None) -> str:
    """`./site`, `~/site`, `site/x` -> an absolute, normalised path (not resolved through symlinks)."""
    path = os.path.expanduser(source)
    if not os.path.isabs(path):
        path = os.path.join(cwd or os.getcwd(), path)
    return os.path.normpath(path)


def parse_size_option(value: str, what: str) -> int:
    """`64m`, `1g`, `512k`, `1048576` -> bytes; anything else is a clear error."""
    text = value.strip().lower().removesuffix("b").removesuffix("i")
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    unit = units.get(text[-1:], 1)
    if text[-1:] in units:
        text = text[:-1]
    if not re.fullmatch(r"\d+(\.\d+)?", text):
        raise InvalidArgument(f"invalid {what} {value!r}: use a number with k, m, g or t (e.g. 64m)")
    size = int(float(text) * unit)
    if size <= 0:
        raise InvalidArgument(f"invalid {what} {value!r}: must be more than 0")
    return size


def volume_mount(source: str, target: str, readonly: bool, flag: str = "-v", nocopy: bool = False,
                 cwd: str | None = None) -> dict[str, Any]:
    target = check_target(target, flag)
    if source and is_path_source(source):
        return {"type": "bind", "source": resolve_host_path(source, cwd), "target": target, "readonly": readonly}
    if source:
        check_volume_name(source)
    record: dict[str, Any] = {"type": "volume", "source": source, "target": target, "readonly": readonly}
    if nocopy:
        record["nocopy"] = True
    return record


def parse_volume_flag(text: str, cwd: str | None = None) -> dict[str, Any]:
    """Docker's `-v [SOURCE:]TARGET[:OPTIONS]`; options: ro, rw, nocopy (z/Z are accepted, no SELinux here)."""
    parts = text.split(":")
    if len(parts) == 1:
        source, target, options = "", parts[0], ""
    elif len(parts) == 2:
        if parts[0].startswith("/") and set(parts[1].split(",")) <= set(VOLUME_OPTIONS):
            source, target, options = "", parts[0], parts[1]   # "/data:ro": anonymous, with options
        else:
            source, target, options = parts[0], parts[1], ""
    elif len(parts) == 3:
        source, target, options = parts
    else:
        raise InvalidArgument(f"invalid -v {text!r}: use [SOURCE:]TARGET[:ro|rw]")
    readonly, nocopy = False, False
    for option in filter(None, options.split(",")):
        if option in ("ro", "readonly"):
            readonly = True
        elif option == "rw":
            readonly = False
        elif option == "nocopy":
            nocopy = True
        elif option in ("z", "Z", "delegated", "cached", "consistent"):
            pass  # SELinux labels and macOS consistency hints: meaningless here, as Docker on Linux ignores them
        else:
            raise InvalidArgument(f"invalid -v {text!r}: unknown option {option!r} (use ro, rw or nocopy)")
    if source == "" and len(parts) >= 2 and parts[0] == "" :
        raise InvalidArgument(f"invalid -v {text!r}: the source is empty")
    return volume_mount(source, target, readonly, f"-v {text!r}", nocopy, cwd)


def parse_mount_flag(text: str, cwd: str | None = None) -> dict[str, Any]:
    """Docker's `--mount type=bind|volume|tmpfs,source=...,target=...,readonly,...`."""
    fields: dict[str, str] = {}
    readonly = False
    flag = f"--mount {text!r}"
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if key in ("readonly", "ro"):
            if sep and value.lower() not in ("1", "true", "0", "false"):
                raise InvalidArgument(f"invalid {flag}: readonly takes true or false")
            readonly = not sep or value.lower() in ("1", "true")
            continue
        if not sep:
            raise InvalidArgument(f"invalid {flag}: {item!r} is not KEY=VALUE")
        aliases = {"src": "source", "dst": "target", "destination": "target"}
        key = aliases.get(key, key)
        if key not in ("type", "source", "target", "volume-nocopy", "tmpfs-size", "tmpfs-mode",
                       "bind-propagation", "consistency", "volume-opt", "volume-label"):
            raise InvalidArgument(f"invalid {flag}: unknown option {key!r}")
        if key in ("volume-opt", "volume-label"):
            raise InvalidArgument(f"invalid {flag}: {key} is not supported; create the volume with "
                                  "`hypr volume create` first")
        fields[key] = value
    kind = fields.get("type", "volume")
    target = fields.get("target", "")
    source = fields.get("source", "")
    if kind == "bind":
        if not source:
            raise InvalidArgument(f"invalid {flag}: a bind mount needs source=HOST_PATH")
        if set(fields) - {"type", "source", "target", "bind-propagation", "consistency"}:
            raise InvalidArgument(f"invalid {flag}: only source, target and readonly apply to a bind mount")
        return {"type": "bind", "source": resolve_host_path(source, cwd), "target": check_target(target, flag),
                "readonly": readonly}
    if kind == "volume":
        if source and is_path_source(source):
            raise InvalidArgument(f"invalid {flag}: {source!r} is a path; use type=bind for host directories")
        if set(fields) - {"type", "source", "target", "volume-nocopy", "consistency"}:
            raise InvalidArgument(f"invalid {flag}: only source, target, readonly and volume-nocopy apply to a volume")
        nocopy = fields.get("volume-nocopy", "false").lower() in ("1", "true", "")
        return volume_mount(source, target, readonly, flag, nocopy, cwd)
    if kind == "tmpfs":
        if source:
            raise InvalidArgument(f"invalid {flag}: a tmpfs mount has no source")
        options = {}
        if "tmpfs-size" in fields:
            options["size"] = parse_size_option(fields["tmpfs-size"], "tmpfs-size")
        if "tmpfs-mode" in fields:
            options["mode"] = _parse_mode(fields["tmpfs-mode"], flag)
        if readonly:
            options["flags"] = ["ro"]
        return tmpfs_mount(target, options, flag)
    raise InvalidArgument(f"invalid {flag}: unknown type {kind!r} (use bind, volume or tmpfs)")


def _parse_mode(value: str, flag: str) -> int:
    if not re.fullmatch(r"[0-7]{1,4}", value):
        raise InvalidArgument(f"invalid {flag}: mode {value!r} must be octal, e.g. 1777")
    return int(value, 8)


def tmpfs_mount(target: str, options: dict[str, Any], flag: str) -> dict[str, Any]:
    return {"type": "tmpfs", "source": "", "target": check_target(target, flag),
            "readonly": "ro" in options.get("flags", []), "options": options}


def parse_tmpfs_flag(text: str) -> dict[str, Any]:
    """Docker's `--tmpfs /path[:size=64m,mode=1777,noexec,...]`."""
    target, _, opts = text.partition(":")
    flag = f"--tmpfs {text!r}"
    options: dict[str, Any] = {}
    flags: list[str] = []
    for item in filter(None, opts.split(",")):
        key, sep, value = item.partition("=")
        if key == "size" and sep:
            options["size"] = parse_size_option(value, "tmpfs size")
        elif key == "mode" and sep:
            options["mode"] = _parse_mode(value, flag)
        elif not sep and key in TMPFS_FLAGS:
            flags.append(key)
        else:
            raise InvalidArgument(f"invalid {flag}: unknown option {item!r} "
                                  "(use size=, mode=, ro, noexec, nosuid, nodev)")
    if flags:
        options["flags"] = flags
    return tmpfs_mount(target, options, flag)


def check_mounts(mounts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validate records from any client; sorted so a parent mounts before what lies under it."""
    out = []
    seen: set[str] = set()
    for m in mounts or []:
        if not isinstance(m, dict) or m.get("type") not in ("volume", "bind", "tmpfs"):
            raise InvalidArgument(f"invalid mount {m!r}: type must be volume, bind or tmpfs")
        kind = m["type"]
        target = check_target(str(m.get("target", "")), f"{kind} mount")
        if target in seen:
            raise InvalidArgument(f"duplicate mount point {target}")
        seen.add(target)
        record = {"type": kind, "source": str(m.get("source") or ""), "target": target,
                  "readonly": bool(m.get("readonly"))}
        if kind == "bind":
            if not os.path.isabs(record["source"]):
                raise InvalidArgument(f"invalid bind mount {record['source']!r}: the host path must be absolute "
                                      "(the client resolves relative paths)")
        elif kind == "volume":
            if record["source"]:
                check_volume_name(record["source"])
            if m.get("nocopy"):
                record["nocopy"] = True
        else:
            options = dict(m.get("options") or {})
            unknown = set(options) - {"size", "mode", "flags"}
            bad_flags = [f for f in options.get("flags", []) if f not in TMPFS_FLAGS]
            if unknown or bad_flags:
                raise InvalidArgument(f"invalid tmpfs options for {target}: {sorted(unknown) or bad_flags}")
            record["options"] = options
        out.append(record)
    return sorted(out, key=lambda r: (r["target"].count("/"), r["target"]))
