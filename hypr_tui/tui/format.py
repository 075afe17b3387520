"""Short, fixed-width cell texts for the dashboard's tables."""

from __future__ import annotations

import datetime as dt


def short_duration(seconds: float) -> str:
    s = int(max(0, seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h:02d}h"


def short_size(n: float) -> str:
    """Binary units, 4-5 characters: 512M, 1.5G, 980K."""
    for unit in ("B", "K", "M", "G", "T"):
        if abs(n) < 1024 or unit == "T":
            if unit == "B":
                return f"{int(n)}B"
            return f"{n:.1f}{unit}" if n < 10 else f"{n:.0f}{unit}"
        n /= 1024
    return f"{n}"


def ago(ts: float | None, now: float) -> str:
    if ts is None:
        return ""
    s = max(0, int(now - ts))
    if s < 3600:
        return f"{max(1, s // 60)}m ago"
    if s < 48 * 3600:
        return f"{s // 3600}h ago"
    return f"{s // 86400}d ago"


def vm_state(vm) -> str:
    if vm.state == "exited" and vm.exit_code is not None:
        return f"exited {vm.exit_code}"
    return vm.state


def vm_health(vm) -> str:
    if not vm.health:
        return "-"
    return str(vm.health.get("Status", "-"))


def vm_uptime(vm, now: float) -> str:
    if vm.state == "running" and vm.started_at:
        return short_duration(now - vm.started_at)
    if vm.state == "exited" and vm.finished_at:
        return "-"
    return "-"


def image_created(img, now: float) -> str:
    if not img.created:
        return ""
    try:
        stamp = dt.datetime.fromisoformat(img.created.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return img.created
    return ago(stamp, now)


def image_rows(img) -> list[tuple[str, str, str]]:
    """(ref to act on, repository, tag) per tag of an image; untagged images once."""
    out = []
    for tag in img.tags or []:
        repo, _, t = tag.rpartition(":")
        if "/" in t or not repo:
            repo, t = tag, "<none>"
        out.append((tag, repo, t))
    if not out:
        out.append((img.id, "<none>", "<none>"))
    return out
