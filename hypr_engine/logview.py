"""Random access to a VM's log for viewers: pages by position, and search.

A VM's log is its rotated files, oldest first (`log.N` ... `log.1`), then the live
`log` (logfile.py). Positions count across all of them:

- the byte offset of a line in their concatenation, and
- the record index of a line: every complete line counts, `x` records included, so
  that index and offset always name the same line (a viewer that wants only output
  skips kinds it does not show).

Both stay valid until the next rotation shifts the files. A sparse index per file
(the offset of every `STEP`-th line, extended incrementally as the file grows and
rebuilt when it shrank or was replaced) makes "page 9,000 of a million lines" and
"the line at this offset" cost one short read instead of a scan. Search reads the
files once, forward, in large blocks; a literal, case-sensitive pattern is found with
`bytes.find` on whole blocks, anything else per line.
"""

from __future__ import annotations

import bisect
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from hypr_engine.errors import InvalidArgument
from hypr_engine.logfile import LogRecord, log_files, parse_line

STEP = 1024                 # one mark per this many lines
BLOCK = 1 << 20
MAX_PAGE = 10_000
OUTPUT_KINDS = ("o", "O", "e", "E")


@dataclass
class _FileIndex:
    dev: int = -1
    ino: int = -1
    end: int = 0                                        # offset after the last complete line indexed
    lines: int = 0                                      # complete lines before `end`
    marks: list[int] = field(default_factory=lambda: [0])   # offset of line k * STEP

    def update(self, path: Path) -> int:
        """Bring the index up to the file's current size; returns the size."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self.__init__()  # type: ignore[misc]
            return 0
        if (st.st_dev, st.st_ino) != (self.dev, self.ino) or st.st_size < self.end:
            self.__init__()  # type: ignore[misc]
            self.dev, self.ino = st.st_dev, st.st_ino
        if st.st_size > self.end:
            with open(path, "rb") as f:
                f.seek(self.end)
                pos = self.end
                while pos < st.st_size:
                    block = f.read(min(BLOCK, st.st_size - pos))
                    if not block:
                        break
                    start = 0
                    while (nl := block.find(b"\n", start)) >= 0:
                        self.lines += 1
                        if self.lines % STEP == 0:
                            self.marks.append(pos + nl + 1)
                        start = nl + 1
                    if start:
                        self.end = pos + start
                    pos += len(block)
        return st.st_size


_indexes: dict[str, _FileIndex] = {}
_lock = threading.Lock()


def _index(path: Path) -> tuple[_FileIndex, int]:
    with _lock:
        idx = _indexes.get(str(path))
        if idx is None:
            if len(_indexes) > 256:
                _indexes.clear()
            idx = _indexes[str(path)] = _FileIndex()
        size = idx.update(path)
        return idx, size


@dataclass(frozen=True)
class Positioned:
    offset: int
    index: int
    record: LogRecord


@dataclass
class Page:
    records: list[Positioned]
    next_offset: int
    next_index: int
    total_bytes: int
    total_records: int


@dataclass
class _Part:
    path: Path
    index: _FileIndex
    base_offset: int      # offset of this file's first byte in the whole log
    base_index: int       # index of this file's first line in the whole log
    size: int


class LogView:
    """One consistent look at a VM's log files (sizes taken once)."""

    def __init__(self, log_path: Path) -> None:
        files = log_files(log_path)
        self.parts: list[_Part] = []
        offset = count = 0
        for path in files:
            idx, size = _index(path)
            self.parts.append(_Part(path, idx, offset, count, size))
            offset += size
            count += idx.lines
        self.total_bytes = offset
        self.total_records = count

    def _part_for_index(self, index: int) -> _Part | None:
        for part in self.parts:
            if index < part.base_index + part.index.lines:
                return part
        return None

    def _part_for_offset(self, offset: int) -> _Part | None:
        for part in self.parts:
            if offset < part.base_offset + part.index.end:
                return part
        return None

    def offset_of_index(self, index: int) -> int:
        """The byte offset of line `index` (the end of the log if past it)."""
        part = self._part_for_index(index)
        if part is None:
            return self.total_bytes
        local = index - part.base_index
        mark = local // STEP
        pos = part.index.marks[mark]
        skip = local - mark * STEP
        with open(part.path, "rb") as f:
            f.seek(pos)
            while skip:
                block = f.read(BLOCK)
                if not block:
                    break
                start = 0
                while skip:
                    nl = block.find(b"\n", start)
                    if nl < 0:
                        break
                    start = nl + 1
                    skip -= 1
                pos += start if not skip else len(block)
        return part.base_offset + pos

    def index_of_offset(self, offset: int) -> tuple[int, int]:
        """(index, offset) of the line containing byte `offset` (snapped to its start)."""
        part = self._part_for_offset(max(0, offset))
        if part is None:
            return self.total_records, self.total_bytes
        local = max(0, offset - part.base_offset)
        mark = bisect.bisect_right(part.index.marks, local) - 1
        pos = part.index.marks[mark]
        index = mark * STEP
        with open(part.path, "rb") as f:
            f.seek(pos)
            data = f.read(local - pos + 1) if local >= pos else b""
        line_start = pos
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0 or pos + nl >= local:
                break
            index += 1
            start = nl + 1
            line_start = pos + start
        return part.base_index + index, part.base_offset + line_start

    def read(self, index: int, limit: int) -> list[Positioned]:
        """Up to `limit` lines from line `index` on."""
        out: list[Positioned] = []
        if index >= self.total_records or limit <= 0:
            return out
        offset = self.offset_of_index(index)
        for part in self.parts:
            end = part.base_offset + part.index.end
            if offset >= end:
                continue
            with open(part.path, "rb") as f:
                f.seek(offset - part.base_offset)
                pos = offset
                pending = b""
                while len(out) < limit and pos + len(pending) < end:
                    block = f.read(min(BLOCK, end - pos - len(pending)))
                    if not block:
                        break
                    pending += block
                    start = 0
                    while len(out) < limit:
                        nl = pending.find(b"\n", start)
                        if nl < 0:
                            break
                        line = pending[start:nl]
                        rec = parse_line(line) or LogRecord(0, "?", line)
                        out.append(Positioned(pos + start, index, rec))
                        index += 1
                        start = nl + 1
                    pos += start
                    pending = pending[start:]
            offset = end
            if len(out) >= limit:
                break
        return out

    def page(self, *, offset: int | None = None, index: int | None = None, limit: int = 1000,
             backwards: bool = False) -> Page:
        if limit <= 0:
            limit = 1000
        limit = min(limit, MAX_PAGE)
        if index is None:
            index = self.index_of_offset(offset or 0)[0] if offset else 0
        if index < 0:
            raise InvalidArgument("a record index must not be negative")
        if backwards:
            end = min(index, self.total_records)
            index = max(0, end - limit)
            limit = end - index
        records = self.read(index, limit)
        next_index = records[-1].index + 1 if records else min(index, self.total_records)
        next_offset = self.offset_of_index(next_index)
        return Page(records, next_offset, next_index, self.total_bytes, self.total_records)

    def search(self, pattern: str, *, regex: bool = False, ignore_case: bool = False, from_offset: int = 0,
               kinds: tuple[str, ...] = OUTPUT_KINDS, batch: int = 200
               ) -> Iterator[tuple[list[Positioned], int]]:
        """Yields (matches, scanned_to) in batches, forward from `from_offset`, to the end."""
        if not pattern:
            raise InvalidArgument("the search pattern is empty")
        needle = pattern.encode()
        # An ASCII literal ignoring case is a plain find in a lowercased copy of each block:
        # several times faster than a case-insensitive regex (bench/logview.py).
        fold = ignore_case and not regex and needle.isascii()
        literal = not regex and (not ignore_case or fold)
        if fold:
            needle = needle.lower()
        if not literal:
            try:
                compiled = re.compile(needle if regex else re.escape(needle), re.IGNORECASE if ignore_case else 0)
            except re.error as exc:
                raise InvalidArgument(f"invalid regular expression {pattern!r}: {exc}") from None
        kinds_set = set(kinds or OUTPUT_KINDS)
        index, offset = self.index_of_offset(from_offset)
        found: list[Positioned] = []
        for part in self.parts:
            end = part.base_offset + part.index.end
            if offset >= end:
                continue
            with open(part.path, "rb") as f:
                f.seek(offset - part.base_offset)
                pos = offset
                pending = b""
                while pos + len(pending) < end:
                    block = f.read(min(BLOCK, end - pos - len(pending)))
                    if not block:
                        break
                    pending += block
                    last_nl = pending.rfind(b"\n")
                    if last_nl < 0:
                        continue
                    chunk = pending[: last_nl + 1]
                    self._scan(chunk, pos, index, needle, None if literal else compiled, kinds_set, found,
                               fold=fold)
                    index += chunk.count(b"\n")
                    pos += len(chunk)
                    pending = pending[last_nl + 1:]
                    if len(found) >= batch:
                        yield found, pos
                        found = []
            offset = end
        yield found, self.total_bytes

    @staticmethod
    def _scan(chunk: bytes, base: int, index: int, needle: bytes, compiled, kinds: set[str],
              found: list[Positioned], *, fold: bool = False) -> None:
        """Matches among the complete lines of `chunk` (which starts at line `index`).
        With `fold`, `needle` is lowercase ASCII and matched against lowercased text."""
        haystack = chunk.lower() if fold else chunk
        if compiled is None or not _ANCHORED.search(compiled.pattern):
            # Any match in a payload is a match in the block: jump from hit to hit, check
            # the hit's line, count the lines between hits.
            at = 0
            counted_to = 0
            while True:
                if compiled is None:
                    hit = haystack.find(needle, at)
                else:
                    m = compiled.search(chunk, at)
                    hit = m.start() if m else -1
                if hit < 0:
                    return
                start = chunk.rfind(b"\n", 0, hit) + 1
                end = chunk.find(b"\n", hit)
                if end < 0:
                    end = len(chunk)
                index += chunk.count(b"\n", counted_to, start)
                counted_to = start
                rec = parse_line(chunk[start:end])
                payload = rec.payload.lower() if (rec and fold) else (rec.payload if rec else b"")
                if rec and rec.kind in kinds and (needle in payload if compiled is None
                                                  else compiled.search(rec.payload)):
                    found.append(Positioned(base + start, index, rec))
                at = end + 1
        # Anchors and lookbehinds mean something else in a block than in a payload: per line.
        start = 0
        while start < len(chunk):
            end = chunk.find(b"\n", start)
            if end < 0:
                end = len(chunk)
            rec = parse_line(chunk[start:end])
            if rec and rec.kind in kinds and compiled.search(rec.payload):
                found.append(Positioned(base + start, index, rec))
            index += 1
            start = end + 1


_ANCHORED = re.compile(rb"\^|\$|\\A|\\Z|\(\?<[=!]")
