"""A VM's log: follows the end; search with highlights, n/N, regex, filter; timestamps; save.

Against HyprClient (which has `read_logs` and `search_logs`) the log is never loaded whole:
the view holds a PagedLog, opens at the end, reads the pages it shows, searches in the
engine, and follows new lines by reading on from its last line whenever `logs(follow=True,
tail=0)` says there is something new. A client without them (and the events screen) streams
every line into a LogBuffer.
"""

from __future__ import annotations

import asyncio
import os

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from hypr_tui.tui.screens.modals import PromptScreen
from hypr_tui.tui.widgets.log_view import (
    STDERR,
    STDOUT,
    SYSTEM,
    LogView,
    PagedLog,
    Search,
)

BATCH = 2000  # records read before letting the UI breathe
SEARCH_AS_YOU_TYPE_SECONDS = 0.25  # a paged log is searched by the engine: once typing pauses
CATCH_UP_SECONDS = 0.1  # at most this often a read of new lines while following a paged log


class LogsScreen(Screen):
    BINDINGS = [
        Binding("escape,q", "back", "Back"),
        Binding("slash", "search", "Search", key_display="/"),
        Binding("n", "next_match", "Next", show=False),
        Binding("N", "previous_match", "Previous", show=False),
        Binding("f", "toggle_filter", "Filter"),
        Binding("ctrl+r", "toggle_regex", "Regex", priority=True),
        Binding("t", "toggle_timestamps", "Times"),
        Binding("s", "save", "Save"),
    ]

    KIND = "logs"

    def __init__(self, vm) -> None:
        super().__init__()
        self.vm = vm
        self.regex = False
        self.ended: str | None = None
        self._typing_timer = None

    @property
    def label(self) -> str:
        return self.vm.name

    def compose(self) -> ComposeResult:
        yield Static(id="logs-title", classes="screen-title")
        yield LogView(id="log-view")
        yield Input(placeholder="search (Enter: go, ctrl+r: regex on/off, Esc: clear)", id="log-search")
        yield Footer()

    def on_mount(self) -> None:
        client = getattr(self.app, "client", None)
        if self.vm is not None and callable(getattr(client, "read_logs", None)) \
                and callable(getattr(client, "search_logs", None)):
            self.query_one(LogView).buffer = PagedLog(client, self.vm.id)
        self.query_one("#log-search").display = False
        self.query_one(LogView).focus()
        self._update_title()
        self.follow_log()

    @work(exclusive=True, group="logs", exit_on_error=False)
    async def follow_log(self) -> None:
        view = self.query_one(LogView)
        client = self.app.client  # type: ignore[attr-defined]
        if view.remote:
            await self._follow_paged(view, client)
            return
        count = 0
        try:
            async for rec in client.logs(self.vm.id, follow=True):
                if rec.kind == "x":
                    word, _, rest = rec.payload.partition(b" ")
                    text = {b"exit": b"-- the workload exited with code ", b"error": b"-- error: "}.get(word)
                    if text is not None:
                        view.add(text + rest + b" --", SYSTEM, rec.time_ns)
                    continue
                view.add(rec.payload, STDERR if rec.kind in ("e", "E") else STDOUT, rec.time_ns,
                         complete=rec.kind in ("o", "e"))
                count += 1
                if count % BATCH == 0:
                    await asyncio.sleep(0)
            self.ended = "end of log: the VM is not running"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the VM removed elsewhere, the daemon gone: say so, keep what we have
            self.ended = f"log stopped: {getattr(exc, 'message', None) or exc}"
            self.app.notify(f"{self.label}: {self.ended}", severity="error")  # type: ignore[attr-defined]
        view.flush()
        self._update_title()

    async def _follow_paged(self, view: LogView, client) -> None:
        buffer: PagedLog = view.buffer
        new_lines = asyncio.Event()

        async def catch_up() -> None:
            while True:
                await new_lines.wait()
                new_lines.clear()
                if await buffer.catch_up():
                    view.flush()
                await asyncio.sleep(CATCH_UP_SECONDS)

        reader = None
        try:
            await buffer.open()
            view.flush()   # at the end: the view reads the last page as it draws it
            stream = client.logs(self.vm.id, follow=True, tail=0)
            reader = asyncio.create_task(catch_up())
            new_lines.set()  # lines written between the first read and the stream's start
            async for _rec in stream:
                new_lines.set()
            reader.cancel()
            if await buffer.catch_up():
                view.flush()
            self.ended = "end of log: the VM is not running"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the VM removed elsewhere, the daemon gone: say so, keep what we have
            self.ended = f"log stopped: {getattr(exc, 'message', None) or exc}"
            self.app.notify(f"{self.label}: {self.ended}", severity="error")  # type: ignore[attr-defined]
        finally:
            if reader is not None:
                reader.cancel()
        view.flush()
        self._update_title()

    # --- title ---------------------------------------------------------------------------------

    def _update_title(self) -> None:
        view = self.query_one(LogView)
        parts = [f"[b]{self.KIND}[/b] {escape(self.label)}".rstrip(), f"{len(view.buffer):,} lines"]
        if self.ended:
            parts.append(f"[dim]{self.ended}[/dim]")
        elif view.follow:
            parts.append("[green]following[/green]")
        else:
            parts.append("[yellow]paused[/yellow] (End follows)")
        if view.search is not None:
            number, total = view.match_position()
            where = f"{number}/{total}" if number else f"{total}"
            parts.append(f"{'regex' if view.search.regex else 'search'} \"{view.search.text}\": {where} "
                         f"matching line{'s' * (total != 1)}{'…' if view.searching else ''}")
            if view.filter:
                parts.append("[b]filter on[/b]")
        if view.show_timestamps:
            parts.append("timestamps")
        self.query_one("#logs-title", Static).update(" │ ".join(parts))

    @on(LogView.StateChanged)
    def _state_changed(self) -> None:
        self._update_title()

    # --- actions --------------------------------------------------------------------------------

    def action_back(self) -> None:
        box = self.query_one("#log-search", Input)
        if box.has_focus:
            self._close_search(clear=True)
            return
        self.app.pop_screen()

    def action_search(self) -> None:
        box = self.query_one("#log-search", Input)
        box.display = True
        box.focus()

    def _close_search(self, *, clear: bool) -> None:
        box = self.query_one("#log-search", Input)
        view = self.query_one(LogView)
        self._cancel_typing_timer()
        if clear:
            box.value = ""
            view.set_search(None)
            if view.filter:
                view.set_filter(False)
        box.display = False
        view.focus()

    @on(Input.Changed, "#log-search")
    def _search_changed(self, event: Input.Changed) -> None:
        self._cancel_typing_timer()
        if self.query_one(LogView).remote and event.value:   # each search reads the whole log
            value = event.value
            self._typing_timer = self.set_timer(SEARCH_AS_YOU_TYPE_SECONDS,
                                                lambda: self._apply_search(value, jump=False))
            return
        self._apply_search(event.value, jump=False)

    def _cancel_typing_timer(self) -> None:
        if self._typing_timer is not None:
            self._typing_timer.stop()
            self._typing_timer = None

    @on(Input.Submitted, "#log-search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        self._cancel_typing_timer()
        if not event.value:
            self._close_search(clear=True)
            return
        if self._apply_search(event.value, jump=True):
            self._close_search(clear=False)

    def _apply_search(self, text: str, *, jump: bool) -> bool:
        view = self.query_one(LogView)
        if not text:
            view.set_search(None)
            return True
        search = Search.compile(text, self.regex)
        if isinstance(search, str):
            if jump:
                self.notify(search, severity="error")
            return False
        if view.remote:   # the engine searches; jump when it has answered
            view.set_search(search, done=(lambda: self._jump_to_match(text)) if jump else None)
            return True
        view.set_search(search)
        if jump:
            self._jump_to_match(text)
        return True

    def _jump_to_match(self, text: str) -> None:
        if not self.query_one(LogView).next_match():
            self.notify(f"no line matches \"{text}\"", severity="warning")

    def action_next_match(self) -> None:
        view = self.query_one(LogView)
        if view.search is None:
            self.action_search()
        elif not view.next_match():
            self.notify("no match", severity="warning")

    def action_previous_match(self) -> None:
        view = self.query_one(LogView)
        if view.search is None:
            self.action_search()
        elif not view.next_match(backwards=True):
            self.notify("no match", severity="warning")

    def action_toggle_regex(self) -> None:
        self.regex = not self.regex
        box = self.query_one("#log-search", Input)
        box.placeholder = ("regex" if self.regex else "search") + \
            " (Enter: go, ctrl+r: regex on/off, Esc: clear)"
        view = self.query_one(LogView)
        text = box.value or (view.search.text if view.search else "")
        if text:
            self._apply_search(text, jump=False)
        self._update_title()

    def action_toggle_filter(self) -> None:
        view = self.query_one(LogView)
        if view.search is None:
            self.notify("search first (/), then f shows only the matching lines", severity="warning")
            return
        view.set_filter(not view.filter)

    def action_toggle_timestamps(self) -> None:
        view = self.query_one(LogView)
        view.show_timestamps = not view.show_timestamps
        self._update_title()

    def action_save(self) -> None:
        default = os.path.join(os.getcwd(), f"{self.label or self.KIND}.log")

        def chosen(path: str | None) -> None:
            if path:
                self.save_to(os.path.expanduser(path))

        self.app.push_screen(PromptScreen("Save the log to:", default,
                                          hint="Enter saves (every line, with timestamps if shown); Esc cancels"),
                             chosen)

    @work(group="save", exit_on_error=False)
    async def save_to(self, path: str) -> None:
        view = self.query_one(LogView)
        try:
            if view.remote:   # every page, read from the engine
                lines = await view.buffer.write_to(path, timestamps=view.show_timestamps)
            else:
                lines = await asyncio.to_thread(view.buffer.copy().write_to, path, timestamps=view.show_timestamps)
        except OSError as exc:
            self.notify(f"cannot save to {path}: {exc.strerror or exc}", severity="error")
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a page the engine could not give (the daemon gone)
            self.notify(f"cannot save to {path}: {getattr(exc, 'message', None) or exc}", severity="error")
            return
        self.notify(f"saved {lines:,} lines to {path}")


class EventsScreen(LogsScreen):
    """`hypr events` in the dashboard: the last hour of VM and image events, then new ones
    as they happen, with the log view's search, filter, timestamps and save."""

    KIND = "events"
    SINCE_SECONDS = 3600

    def __init__(self) -> None:
        super().__init__(None)

    @property
    def label(self) -> str:
        return ""

    @work(exclusive=True, group="logs", exit_on_error=False)
    async def follow_log(self) -> None:
        from hypr_tui import formatting as fmt

        view = self.query_one(LogView)
        client = self.app.client  # type: ignore[attr-defined]
        since = self.app.clock() - self.SINCE_SECONDS  # type: ignore[attr-defined]
        try:
            async for item in client.events(since_time=since, follow=True):
                if hasattr(item, "missed"):  # a Gap: events this reader was too slow for
                    view.add(f"-- missed {item.missed} events (seq {item.first_seq}-{item.last_seq}) --".encode(),
                             SYSTEM, int(self.app.clock() * 1e9))  # type: ignore[attr-defined]
                    continue
                view.add(fmt.event_line(item).encode(), STDOUT, int(item.time * 1e9))
            self.ended = "end of the event stream"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.ended = f"events stopped: {getattr(exc, 'message', None) or exc}"
            self.app.notify(self.ended, severity="error")  # type: ignore[attr-defined]
        view.flush()
        self._update_title()
