"""Process identity from /proc: a pid plus its start time, never a bare pid.

A pid can be recycled, and on these machines PID 1 does not reap orphans, so
a dead process may linger as a zombie. `ProcessRef.alive()` is false for a
zombie, a missing pid, or a pid whose start time differs (recycled).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    close = raw.rfind(")")
    return raw[close + 2 :].split()


def start_ticks(pid: int) -> int | None:
    fields = _stat_fields(pid)
    # after comm: state is field 3 of stat, starttime field 22 -> index 19 here
    return int(fields[19]) if fields and len(fields) > 19 else None


def processes_mentioning(*needles: str) -> list[tuple[int, str]]:
    """Live (non-zombie) processes, this one excepted, whose command line names one of
    `needles`: how tests and benchmarks find what they left behind."""
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        fields = _stat_fields(pid)
        if not fields or fields[0] in ("Z", "X"):
            continue
        text = " ".join(cmdline(pid))
        if any(n in text for n in needles):
            found.append((pid, text[:200]))
    return found


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


@dataclass(frozen=True)
class ProcessRef:
    pid: int
    start_ticks: int

    @classmethod
    def of(cls, pid: int) -> "ProcessRef | None":
        ticks = start_ticks(pid)
        return None if ticks is None else cls(pid, ticks)

    def alive(self) -> bool:
        fields = _stat_fields(self.pid)
        if not fields or len(fields) < 20:
            return False
        if fields[0] in ("Z", "X"):
            return False
        return int(fields[19]) == self.start_ticks

    def to_json(self) -> dict[str, int]:
        return {"pid": self.pid, "start_ticks": self.start_ticks}

    @classmethod
    def from_json(cls, data: dict | None) -> "ProcessRef | None":
        if not data:
            return None
        return cls(int(data["pid"]), int(data["start_ticks"]))
