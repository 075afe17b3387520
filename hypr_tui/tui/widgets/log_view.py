"""A log view that renders only the lines on screen (the Line API, as toolong's LogLines).

`LogBuffer` keeps every line in one bytearray (each line followed by a newline) with
an array of start offsets, one byte of stream per line and its time: about the size
of the log itself plus 17 bytes a line, so a million-line log stays small, and a
search runs `re` over the whole buffer in C rather than line by line in Python.

`LogView` is a ScrollView: its virtual height is the number of lines shown (all of
them, or only those that match in filter mode), and `render_line(y)` builds just the
visible ones, with a small LRU cache.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from array import array
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

STDOUT, STDERR, SYSTEM = 0, 1, 2
TIMESTAMP_WIDTH = 25  # "2025-11-28T11:50:00.000Z "
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1a\x1c-\x1f\x7f]")


class LogBuffer:
    """Lines of a log, compactly: one bytearray, start offsets, stream and time per line."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.offsets = array("Q", [0])   # start of each line, plus the end as a sentinel
        self.streams = array("B")
        self.times = array("q")
        self.open_line = False           # the last line is a partial record (O/E) still growing
        self.max_length = 0              # bytes of the longest line: the view's width, roughly

    def __len__(self) -> int:
        return len(self.streams)

    def append(self, payload: bytes, stream: int, time_ns: int, *, complete: bool = True) -> bool:
        """Add a record; returns True when it extended the last line rather than adding one."""
        payload = payload.replace(b"\n", b" ").rstrip(b"\r")
        extended = self.open_line and self.streams and self.streams[-1] == stream
        if extended:
            del self.data[-1]
            self.data += payload
            self.data += b"\n"
            self.offsets[-1] = len(self.data)
        else:
            self.data += payload
            self.data += b"\n"
            self.offsets.append(len(self.data))
            self.streams.append(stream)
            self.times.append(time_ns)
        self.open_line = not complete
        self.max_length = max(self.max_length, self.line_length(len(self) - 1))
        return bool(extended)

    def line_length(self, index: int) -> int:
        return self.offsets[index + 1] - self.offsets[index] - 1

    def line_bytes(self, index: int) -> bytes:
        return bytes(self.data[self.offsets[index]:self.offsets[index + 1] - 1])

    def line_text(self, index: int) -> str:
        return self.line_bytes(index).decode("utf-8", "replace")

    def stream(self, index: int) -> int:
        return self.streams[index]

    def time(self, index: int) -> int:
        return self.times[index]

    def line_key(self, index: int) -> object:
        """Changes when line `index` does (a grown last line): part of the render cache key."""
        return self.offsets[index + 1]

    def line_at_offset(self, offset: int) -> int:
        return bisect_right(self.offsets, offset) - 1

    def copy(self) -> "LogBuffer":
        """A frozen copy, for a thread to read while this one keeps growing."""
        other = LogBuffer()
        other.data = bytearray(self.data)
        other.offsets = array("Q", self.offsets)
        other.streams = array("B", self.streams)
        other.times = array("q", self.times)
        other.max_length = self.max_length
        return other

    def write_to(self, path: str, *, timestamps: bool) -> int:
        """Write every line to `path` (a plain text file); returns the number of lines."""
        with open(path, "wb") as f:
            if not timestamps:
                f.write(self.data)
            else:
                for i in range(len(self)):
                    f.write(format_time(self.times[i]).encode() + b" " + self.line_bytes(i) + b"\n")
        return len(self)


PAGE = 1000                  # lines per page of a PagedLog (its cache's unit)
KEEP_PAGES = 64              # pages a PagedLog keeps: 64,000 lines, whatever the log's size
READ_LIMIT = 10_000          # lines per read_logs call when reading on (new lines, save)
SEARCH_BATCH = 10_000        # matches per search_logs call; a search goes on from where one stopped
MAX_FOUND = 100_000          # matching lines whose text a search keeps (filter mode needs no read)
_EXIT_WORDS = {b"exit": b"-- the workload exited with code ", b"error": b"-- error: "}


def record_entry(rec: Any) -> tuple[int, int, bytes]:
    """(stream, time, text) of one log record as a line of the view."""
    if rec.kind == "x":
        word, _, rest = rec.payload.partition(b" ")
        text = _EXIT_WORDS.get(word)
        return SYSTEM, rec.time_ns, (text + rest + b" --") if text is not None else b"-- " + rec.payload + b" --"
    payload = rec.payload.replace(b"\n", b" ").rstrip(b"\r")
    return (STDERR if rec.kind in ("e", "E") else STDOUT), rec.time_ns, payload


class _Column:
    def __init__(self, get: Callable[[int], int], size: Callable[[], int]) -> None:
        self._get, self._size = get, size

    def __getitem__(self, index: int) -> int:
        return self._get(index)

    def __len__(self) -> int:
        return self._size()


class PagedLog:
    """A VM's log as the engine holds it, read a page at a time (`HyprClient.read_logs`), with
    server-side search (`search_logs`): a line's number is its record index in the engine's
    log (x records shown as system lines), only `KEEP_PAGES` pages are held, and a line not
    held is read when it is shown. The same reading interface as LogBuffer."""

    remote = True
    open_line = False

    def __init__(self, client: Any, ref: str) -> None:
        self.client = client
        self.ref = ref
        self.total = 0
        self.pages: LRUCache[int, list[tuple[int, int, bytes]]] = LRUCache(KEEP_PAGES)
        self.found: dict[int, tuple[int, int, bytes]] = {}   # lines a search returned
        self.max_length = 0
        self.reads = 0                                       # read_logs calls (tests, bench)

    def __len__(self) -> int:
        return self.total

    def entry(self, index: int) -> tuple[int, int, bytes] | None:
        page = self.pages.get(index // PAGE)
        if page is not None and index % PAGE < len(page):
            return page[index % PAGE]
        return self.found.get(index)

    def line_bytes(self, index: int) -> bytes:
        entry = self.entry(index)
        return entry[2] if entry is not None else b""

    def line_text(self, index: int) -> str:
        return self.line_bytes(index).decode("utf-8", "replace")

    def line_length(self, index: int) -> int:
        return len(self.line_bytes(index))

    def stream(self, index: int) -> int:
        entry = self.entry(index)
        return entry[0] if entry is not None else SYSTEM

    def time(self, index: int) -> int:
        entry = self.entry(index)
        return entry[1] if entry is not None else 0

    def line_key(self, index: int) -> object:
        entry = self.entry(index)
        return None if entry is None else len(entry[2])

    @property
    def streams(self) -> _Column:
        return _Column(self.stream, self.__len__)

    @property
    def times(self) -> _Column:
        return _Column(self.time, self.__len__)

    @property
    def data(self) -> bytes:
        """The lines held now, in order (tests)."""
        lines = [self.line_bytes(i) for i in range(self.total) if self.entry(i) is not None]
        return b"".join(line + b"\n" for line in lines)

    def _store(self, records: list) -> None:
        """Keep Positioned records (consecutive indices) in their pages."""
        i = 0
        while i < len(records):
            first = records[i].index
            number, at = divmod(first, PAGE)
            chunk = records[i:i + PAGE - at]
            page = self.pages.get(number)
            if page is None and at == 0:
                page = []
            if page is not None and len(page) >= at:
                entries = [record_entry(p.record) for p in chunk]
                page[at:at + len(entries)] = entries
                self.pages.set(number, page)
                self.max_length = max(self.max_length, max((len(e[2]) for e in entries), default=0))
            i += len(chunk)

    async def load_page(self, number: int) -> None:
        self.reads += 1
        page = await self.client.read_logs(self.ref, index=number * PAGE, limit=PAGE)
        if page.total_records < self.total:   # the oldest rotated file went: the lines moved
            self.pages.clear()
            self.found.clear()
            self.total = page.total_records
        self.pages.set(number, [])
        self._store(page.records)
        self.total = max(self.total, page.total_records)

    async def open(self) -> None:
        """Learn the log's length (one short read)."""
        self.reads += 1
        page = await self.client.read_logs(self.ref, index=0, limit=1)
        self.total = page.total_records
        self._store(page.records)

    async def catch_up(self) -> int:
        """Read the lines added since the last look; returns how many."""
        added = 0
        while True:
            self.reads += 1
            page = await self.client.read_logs(self.ref, index=self.total, limit=READ_LIMIT)
            if page.total_records < self.total:   # the files rotated or shrank: start again
                self.pages.clear()
                self.found.clear()
                self.total = page.total_records
                return -1
            if not page.records:
                return added
            self._store(page.records)
            self.total = page.records[-1].index + 1
            added += len(page.records)
            if len(page.records) < READ_LIMIT:
                return added

    async def search(self, search: "Search", from_offset: int = 0) -> AsyncIterator[tuple[list[int], int]]:
        """(matching line numbers, offset scanned to) in batches, forward from `from_offset`."""
        ignore_case = bool(search.pattern.flags & re.IGNORECASE)
        offset = from_offset
        while True:
            count = 0
            scanned = offset
            async for matches, scanned, _done in self.client.search_logs(
                    self.ref, search.text, regex=search.regex, ignore_case=ignore_case,
                    from_offset=offset, max_matches=SEARCH_BATCH):
                count += len(matches)
                for m in matches:
                    if len(self.found) < MAX_FOUND:
                        self.found[m.index] = record_entry(m.record)
                yield [m.index for m in matches], scanned
            if count < SEARCH_BATCH or scanned <= offset:
                return
            offset = scanned

    async def write_to(self, path: str, *, timestamps: bool) -> int:
        """Every line of the log to `path`, read page by page; returns the number of lines."""
        lines = 0
        with open(path, "wb") as f:
            index = 0
            while True:
                page = await self.client.read_logs(self.ref, index=index, limit=READ_LIMIT)
                if not page.records:
                    return lines
                out = []
                for p in page.records:
                    _stream, time_ns, text = record_entry(p.record)
                    out.append((format_time(time_ns).encode() + b" " if timestamps else b"") + text + b"\n")
                await asyncio.to_thread(f.writelines, out)
                lines += len(out)
                index = page.records[-1].index + 1


def format_time(time_ns: int) -> str:
    stamp = dt.datetime.fromtimestamp(time_ns // 1_000_000_000, dt.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S") + f".{(time_ns // 1_000_000) % 1000:03d}Z"


@dataclass
class Search:
    """What the user searches for, compiled for the buffer's bytes and for one line's text."""

    text: str
    regex: bool = False

    def __post_init__(self) -> None:
        source = self.text if self.regex else re.escape(self.text)
        flags = 0 if any(c.isupper() for c in self.text) else re.IGNORECASE  # smart case, as vim and less
        self.pattern = re.compile(source, flags)
        self.bytes_pattern = re.compile(source.encode(), flags | re.MULTILINE)

    @staticmethod
    def compile(text: str, regex: bool) -> "Search | str":
        """A Search, or the error message of a bad regular expression."""
        try:
            return Search(text, regex)
        except re.error as exc:
            return f"bad regular expression: {exc}"
        except (ValueError, UnicodeEncodeError) as exc:
            return str(exc)


class LogView(ScrollView, can_focus=True):
    """The lines of a LogBuffer; follows the end until the user scrolls up."""

    BINDINGS = [
        Binding("up,k", "scroll_up", "Up", show=False),
        Binding("down,j", "scroll_down", "Down", show=False),
        Binding("left,h", "scroll_left", "Left", show=False),
        Binding("right,l", "scroll_right", "Right", show=False),
        Binding("pageup,ctrl+b", "page_up", "Page up", show=False),
        Binding("pagedown,ctrl+f,space", "page_down", "Page down", show=False),
        Binding("home,g", "scroll_home", "Top", show=False),
        Binding("end,G", "follow", "Follow", key_display="End"),
    ]

    COMPONENT_CLASSES = {
        "logview--stderr", "logview--system", "logview--timestamp", "logview--match",
        "logview--current-match", "logview--current-line",
    }

    DEFAULT_CSS = """
    LogView { background: $surface; }
    LogView > .logview--stderr { color: $text-error; }
    LogView > .logview--system { color: $text-muted; text-style: italic; }
    LogView > .logview--timestamp { color: $text-muted; }
    LogView > .logview--match { background: $warning 40%; }
    LogView > .logview--current-match { background: $warning; color: $background; text-style: bold; }
    LogView > .logview--current-line { background: $boost; }
    """

    follow: reactive[bool] = reactive(True)
    show_timestamps: reactive[bool] = reactive(False)

    class StateChanged(Message):
        """Following, the search or the filter changed: the screen updates its title."""

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, LogView.StateChanged)

    def __init__(self, buffer: "LogBuffer | PagedLog | None" = None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.buffer: Any = buffer if buffer is not None else LogBuffer()
        self.search: Search | None = None
        self.matches = array("I")        # indices of lines with a match, ascending
        self._searched = 0               # lines searched so far (new lines are searched as they come)
        self.filter = False              # show only matching lines
        self.current: int | None = None  # the line of the current match (n / N)
        self._cache: LRUCache[tuple, Strip] = LRUCache(2000)
        self._pending_lines = False
        self.searching = False           # a server-side search (PagedLog) is running
        self._scanned_to = 0             # where it got to (a byte offset in the engine's log)
        self._search_done: Callable[[], None] | None = None
        self._loading: set[int] = set()  # pages being read (PagedLog)

    @property
    def remote(self) -> bool:
        """The lines are the engine's (PagedLog), read a page at a time."""
        return getattr(self.buffer, "remote", False)

    # --- content -------------------------------------------------------------------

    def add(self, payload: bytes, stream: int, time_ns: int, *, complete: bool = True) -> None:
        """Append a record; the view catches up at most once per refresh (call `flush`)."""
        # A grown last line needs no invalidation: its end offset is part of the cache key.
        self.buffer.append(payload, stream, time_ns, complete=complete)
        if not self._pending_lines:
            self._pending_lines = True
            self.call_after_refresh(self.flush)

    def flush(self) -> None:
        """Bring the view up to the buffer: search new lines, resize, follow."""
        self._pending_lines = False
        if self.remote:
            if self.search is not None and not self.searching:
                self._start_remote_search(self.search, self._scanned_to)
        elif self.search is not None and self._searched < len(self.buffer):
            # The last line may still grow: search it again next time.
            start = max(0, self._searched - 1) if self.buffer.open_line else self._searched
            if self.matches and self.matches[-1] >= start:
                del self.matches[-1]
            self._search_range(start, len(self.buffer))
            self._searched = len(self.buffer) - (1 if self.buffer.open_line else 0)
        self._update_virtual_size()
        if self.follow:
            self._scroll_to_end()
        self.refresh()
        self.post_message(self.StateChanged())

    def _scroll_to_end(self) -> None:
        self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True, force=True)
        # The size may be settled only after the next layout (the first lines of a screen).
        self.call_after_refresh(self._settle_end)

    def _settle_end(self) -> None:
        if self.follow and self.scroll_y < self.max_scroll_y:
            self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True, force=True)

    def on_resize(self) -> None:
        if self.follow:
            self._scroll_to_end()

    def watch_show_horizontal_scrollbar(self) -> None:
        # The scrollbar takes a row from the view: keep the last line in sight.
        if self.follow:
            self.call_after_refresh(self._settle_end)

    def _gutter(self) -> int:
        return TIMESTAMP_WIDTH if self.show_timestamps else 0

    def _update_virtual_size(self) -> None:
        height = len(self.matches) if self.filter and self.search else len(self.buffer)
        self.virtual_size = Size(self.buffer.max_length + self._gutter() + 1, height)

    @property
    def shown_lines(self) -> int:
        return self.virtual_size.height

    def _line_index(self, row: int) -> int | None:
        """The buffer line shown on virtual row `row`."""
        if self.filter and self.search:
            return self.matches[row] if row < len(self.matches) else None
        return row if row < len(self.buffer) else None

    def _row_of(self, index: int) -> int:
        if self.filter and self.search:
            pos = bisect_right(self.matches, index) - 1
            return max(0, pos)
        return index

    # --- rendering -----------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = self._line_index(scroll_y + y)
        width = self.scrollable_content_region.width
        base = self.rich_style
        if index is None:
            return Strip.blank(width, base)
        if self.remote and self.buffer.entry(index) is None:
            self._want_page(index // PAGE)
            return Strip.blank(width, base)
        key = (index, self.buffer.line_key(index), self.show_timestamps, id(self.search),
               index == self.current, scroll_x, width, base)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        text = self._line_renderable(index)
        segments = list(text.render(self.app.console))
        strip = Strip(segments).crop_extend(scroll_x, scroll_x + width, base).apply_style(base)
        if index == self.current:
            strip = strip.apply_style(self.get_component_rich_style("logview--current-line", partial=True))
        self._cache.set(key, strip)
        return strip

    def _line_renderable(self, index: int) -> Text:
        raw = self.buffer.line_text(index)
        stream = self.buffer.stream(index)
        if "\x1b" in raw:
            body = Text.from_ansi(raw, end="")
        else:
            body = Text(_CONTROL.sub("?", raw.expandtabs(8)), end="")
        body.no_wrap = True
        if stream == STDERR:
            style = self.get_component_rich_style("logview--stderr", partial=True)
            if self.app.no_color:
                style = style + Style(italic=True)
            body.stylize_before(style)
        elif stream == SYSTEM:
            body.stylize_before(self.get_component_rich_style("logview--system", partial=True))
        if self.search is not None:
            match_style = self.get_component_rich_style(
                "logview--current-match" if index == self.current else "logview--match", partial=True)
            if self.app.no_color:
                match_style = match_style + Style(reverse=True)
            for m in self.search.pattern.finditer(body.plain):
                if m.end() > m.start():
                    body.stylize(match_style, m.start(), m.end())
        if self.show_timestamps:
            stamp = Text(format_time(self.buffer.time(index)) + " ",
                         style=self.get_component_rich_style("logview--timestamp", partial=True), end="")
            stamp.append_text(body)
            return stamp
        return body

    def _want_page(self, number: int) -> None:
        if number not in self._loading:
            self._loading.add(number)
            self.run_worker(self._load_page(number), group="log-pages", exit_on_error=False)

    async def _load_page(self, number: int) -> None:
        try:
            await self.buffer.load_page(number)
        except Exception as exc:  # the VM removed, the daemon gone: the screen's reader says so
            self.log.warning(f"log page {number}: {exc!r}")
            return
        finally:
            self._loading.discard(number)
        self._update_virtual_size()
        if self.follow:
            self._scroll_to_end()
        self.refresh()

    @property
    def loaded(self) -> bool:
        """Every line on screen is at hand (PagedLog: no page is being read for it)."""
        if not self.remote:
            return True
        top = int(self.scroll_offset.y)
        for row in range(top, min(self.shown_lines, top + self.scrollable_content_region.height)):
            index = self._line_index(row)
            if index is not None and self.buffer.entry(index) is None:
                return False
        return True

    def watch_show_timestamps(self) -> None:
        self._update_virtual_size()
        self.refresh()

    # --- following -----------------------------------------------------------------

    def watch_follow(self, follow: bool) -> None:
        if follow:
            self._scroll_to_end()
        self.post_message(self.StateChanged())

    def action_follow(self) -> None:
        self.follow = True

    def _stop_following(self) -> None:
        if self.follow:
            self.follow = False

    def action_scroll_up(self) -> None:
        self._stop_following()
        self.scroll_to(y=self.scroll_y - 1, animate=False, immediate=True)

    def action_scroll_down(self) -> None:
        self.scroll_to(y=self.scroll_y + 1, animate=False, immediate=True)
        if self.scroll_y >= self.max_scroll_y:
            self.follow = True

    def action_page_up(self) -> None:
        self._stop_following()
        self.scroll_to(y=self.scroll_y - self.scrollable_content_region.height, animate=False, immediate=True)

    def action_page_down(self) -> None:
        self.scroll_to(y=self.scroll_y + self.scrollable_content_region.height, animate=False, immediate=True)
        if self.scroll_y >= self.max_scroll_y:
            self.follow = True

    def action_scroll_home(self) -> None:
        self._stop_following()
        self.scroll_to(y=0, animate=False, immediate=True)

    def _on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self._stop_following()

    def _on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        if self.scroll_y >= self.max_scroll_y - 1:
            self.call_after_refresh(self._maybe_follow)

    def _maybe_follow(self) -> None:
        if self.scroll_y >= self.max_scroll_y:
            self.follow = True

    # --- search ----------------------------------------------------------------------

    def set_search(self, search: Search | None, done: Callable[[], None] | None = None) -> None:
        """Search the whole buffer now (C speed: `re` over one bytearray); a PagedLog's search
        runs in the engine, in the background, and `done` is called when it has finished."""
        self.search = search
        self.matches = array("I")
        self.current = None
        self._searched = 0
        self._cache.clear()
        if self.remote:
            self.buffer.found.clear()
            self.workers.cancel_group(self, "log-search")
            self.searching = False
            self._search_done = None
            if search is not None and not search.text:
                self.search = None
            if self.search is not None:
                self._search_done = done
                self._start_remote_search(self.search, 0)
        elif search is not None and search.text:
            self._search_range(0, len(self.buffer))
            self._searched = len(self.buffer) - (1 if self.buffer.open_line else 0)
        elif search is not None:
            self.search = None
        self._update_virtual_size()
        self.refresh()
        self.post_message(self.StateChanged())

    def _start_remote_search(self, search: Search, offset: int) -> None:
        self.searching = True
        self.run_worker(self._remote_search(search, offset), group="log-search", exclusive=True,
                        exit_on_error=False)

    async def _remote_search(self, search: Search, offset: int) -> None:
        try:
            async for indices, scanned in self.buffer.search(search, offset):
                if self.search is not search:
                    return
                for index in indices:
                    if not self.matches or index > self.matches[-1]:
                        self.matches.append(index)
                self._scanned_to = max(self._scanned_to if offset else 0, scanned)
                self._update_virtual_size()
                self.refresh()
                self.post_message(self.StateChanged())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self.search is search:
                self.notify(f"search failed: {getattr(exc, 'message', None) or exc}", severity="error")
        finally:
            if self.search is search:
                self.searching = False
        if self.search is search:
            self._update_virtual_size()
            self.refresh()
            self.post_message(self.StateChanged())
            done, self._search_done = self._search_done, None
            if done is not None:
                done()

    def _search_range(self, first: int, end: int) -> None:
        if self.search is None or first >= end:
            return
        buf = self.buffer
        pattern = self.search.bytes_pattern
        data = buf.data
        pos, stop = buf.offsets[first], buf.offsets[end]
        matches = self.matches
        while pos < stop:
            m = pattern.search(data, pos, stop)
            if m is None:
                break
            line = buf.line_at_offset(m.start())
            line_end = buf.offsets[line + 1] - 1
            if m.end() > line_end:  # ran across a line break: try again from one byte on
                pos = m.start() + 1
                continue
            matches.append(line)
            pos = buf.offsets[line + 1]

    def set_filter(self, on: bool) -> None:
        keep = self.current if self.current is not None else self._line_index(self.scroll_offset.y)
        self.filter = on
        self._update_virtual_size()
        self._cache.clear()
        if keep is not None and not self.follow:
            self.call_after_refresh(self._scroll_to_line, keep)
        elif self.follow:
            self.call_after_refresh(self._scroll_to_end)
        self.refresh()
        self.post_message(self.StateChanged())

    def next_match(self, backwards: bool = False) -> bool:
        """Move to the next (or previous) matching line; False when there is none."""
        if not self.matches:
            return False
        if self.current is not None:
            ref = self.current
        else:
            top = self._line_index(self.scroll_offset.y)
            ref = (top if top is not None else 0) - (0 if backwards else 1)
            if backwards:
                ref = (self._line_index(min(self.shown_lines - 1, self.scroll_offset.y
                                            + self.scrollable_content_region.height)) or 0) + 1
        if backwards:
            pos = bisect_right(self.matches, ref - 1) - 1
            if pos < 0:
                pos = len(self.matches) - 1  # wrap, as less and vim do
        else:
            pos = bisect_right(self.matches, ref)
            if pos >= len(self.matches):
                pos = 0
        self.current = self.matches[pos]
        self.follow = False
        self._scroll_to_line(self.current)
        self.refresh()
        self.post_message(self.StateChanged())
        return True

    def _scroll_to_line(self, index: int) -> None:
        row = self._row_of(index)
        height = self.scrollable_content_region.height
        if not (self.scroll_offset.y <= row < self.scroll_offset.y + height):
            self.scroll_to(y=max(0, row - height // 3), animate=False, immediate=True)
        if self.search is not None:
            text = self._line_renderable(index).plain
            m = self.search.pattern.search(text)
            if m is not None:
                width = self.scrollable_content_region.width
                if not (self.scroll_offset.x <= m.start() and m.end() <= self.scroll_offset.x + width):
                    self.scroll_to(x=max(0, m.start() - 10), animate=False, immediate=True)

    def match_position(self) -> tuple[int, int]:
        """(1-based number of the current match, total); 0 when none is current."""
        if self.current is None:
            return 0, len(self.matches)
        return bisect_right(self.matches, self.current), len(self.matches)

    async def yield_now(self) -> None:
        await asyncio.sleep(0)
