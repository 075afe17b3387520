"""Reading the workload log a VM's log port writes (PROTOCOL.md, "Log records").

Each line is `<unix ns> <kind> <payload>`; the file is written by QEMU, so it
exists and grows whether or not any HYPR process runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
import shutil

STDOUT_KINDS = {"o": ("stdout", True), "O": ("stdout", False), "e": ("stderr", True), "E": ("stderr", False)}


@dataclass(frozen=True, slots=True)
class LogRecord:
    time_ns: int
    kind: str        # o, O, e, E, x
    payload: bytes

    @property
    def stream(self) -> str | None:
        info = STDOUT_KINDS.get(self.kind)
        return info[0] if info else None

    @property
    def complete(self) -> bool:
        """A whole line (o/e) rather than part of a longer one (O/E)."""
        return self.kind in ("o", "e")


def parse_line(line: bytes) -> LogRecord | None:
    """One record, or None for a torn or foreign line (never raises: the guest is untrusted)."""
    if line.endswith(b"\n"):
        line = line[:-1]
    head, sep, rest = line.partition(b" ")
    if not sep or not head.isdigit():
        return None
    kind, sep, payload = rest.partition(b" ")
    if len(kind) != 1:
        return None
    return LogRecord(int(head), kind.decode(), payload if sep else b"")


def read_records(path: Path, offset: int = 0) -> tuple[list[LogRecord], int]:
    """Complete records from `offset`; returns them and the offset after the last one."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    records = [r for r in (parse_line(l) for l in data[:end].split(b"\n")[:-1]) if r]
    return records, offset + end


def tail_offset(path: Path, lines: int) -> int:
    """The offset at which the last `lines` output records start, reading backwards in blocks."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return 0
    with f:
        size = f.seek(0, os.SEEK_END)
        if lines <= 0:
            return size
        pos, buf = size, b""
        while pos > 0:
            step = min(65536, pos)
            pos -= step
            f.seek(pos)
            buf = f.read(step) + buf
            parts = buf.split(b"\n")
            # The first part may be cut by the block boundary; the last is a torn or empty tail.
            complete = parts[1:-1] if pos > 0 else parts[:-1]
            at = len(buf) - len(parts[-1])
            count = 0
            for line in reversed(complete):
                at -= len(line) + 1
                rec = parse_line(line)
                if rec and rec.kind != "x":
                    count += 1
                    if count == lines:
                        return pos + at
        return 0


def exit_record(path: Path) -> tuple[int | None, str | None]:
    """The workload's exit code and last error message, from the end of the log.

    The end may have just been rotated into `.1` (the supervisor rotates while the
    VM runs), so that file's tail is read first.
    """
    code: int | None = None
    error: str | None = None
    records: list[LogRecord] = []
    for part in (rotated(path, 1), path):
        try:
            size = part.stat().st_size
        except FileNotFoundError:
            continue
        # The exit records are at the very end; 256 KiB is far more than they need.
        records += read_records(part, max(0, size - 262144))[0]
    for rec in records:
        if rec.kind != "x":
            continue
        word, _, rest = rec.payload.partition(b" ")
        if word == b"exit":
            try:
                code = int(rest)
            except ValueError:
                pass
        elif word == b"error":
            error = rest.decode("utf-8", "replace")
        elif word == b"start":
            code, error = None, None  # a later boot of the same VM starts afresh
    return code, error


# --- rotation (Docker's json-file `max-size` / `max-file`) ------------------------------

def rotated(path: Path, index: int) -> Path:
    return path.with_name(f"{path.name}.{index}")


def rotate_if_needed(path: Path, max_size: int, max_file: int) -> bool:
    """Keep `path` under `max_size`: copy it to `.1` (older ones shift up, at most
    `max_file` files in all, the live one included) and truncate it.

    QEMU appends to the live file (O_APPEND) and cannot reopen it, so this is a
    copy-then-truncate: a record written between the copy and the truncate (a window
    of microseconds) is lost. The copy keeps the old offsets, so a follower that was
    reading the live file continues in `.1` where it was.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if size < max_size:
        return False
    oldest = max_file - 1
    if oldest >= 1:
        rotated(path, oldest).unlink(missing_ok=True)
        for i in range(oldest - 1, 0, -1):
            if rotated(path, i).exists():
                rotated(path, i).rename(rotated(path, i + 1))
        tmp = rotated(path, 1).with_suffix(".tmp")
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        tmp.rename(rotated(path, 1))
    os.truncate(path, 0)
    return True


def log_files(path: Path) -> list[Path]:
    """A VM's log files, oldest first: the rotated ones (`.N` ... `.1`), then the live one."""
    files = []
    i = 1
    while rotated(path, i).exists():
        files.append(rotated(path, i))
        i += 1
    return list(reversed(files)) + [path]


def read_plan(path: Path, tail: int | None) -> list[tuple[Path, int]]:
    """(file, start offset) pairs, oldest first, covering all records or the last `tail` output records."""
    files = log_files(path)
    if tail is None:
        return [(f, 0) for f in files]
    plan: list[tuple[Path, int]] = []
    wanted = tail
    for f in reversed(files):
        count = count_output_records(f)
        if count >= wanted:
            plan.insert(0, (f, tail_offset(f, wanted)))
            return plan
        plan.insert(0, (f, 0))
        wanted -= count
    return plan


def count_output_records(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for line in f if (rec := parse_line(line)) and rec.kind != "x")
    except FileNotFoundError:
        return 0
