"""How the dashboard behaves, driven with keys (App.run_test) over the fake HyprClient:
confirmations, errors as notifications, the log view's search and follow, the terminal's
keys and resize, sorting and filtering, the size guard. No VM needed."""

from __future__ import annotations

import time

import pytest

from hypr_engine.errors import Conflict, Unavailable
from hypr_tui.tui.app import HyprApp
from hypr_tui.tui.fake import FIXED_NOW, FakeClient
from hypr_tui.tui.screens.exec import ExecScreen
from hypr_tui.tui.screens.logs import LogsScreen
from hypr_tui.tui.screens.main import MainScreen, StatusBar
from hypr_tui.tui.screens.modals import ConfirmScreen, HelpScreen, SignalScreen, TextScreen, TooSmallScreen
from hypr_tui.tui.widgets.log_view import LogView
from hypr_tui.tui.widgets.tables import VmTable
from hypr_tui.tui.widgets.terminal import Terminal

pytestmark = pytest.mark.timeout(60)


def make(client: FakeClient | None = None, **kwargs) -> HyprApp:
    kwargs.setdefault("live", False)
    return HyprApp(client or FakeClient(), clock=lambda: FIXED_NOW, hostname="test", **kwargs)


async def until(pilot, predicate, timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


async def ready(pilot) -> VmTable:
    await until(pilot, lambda: pilot.app.loaded, what="the first load")
    await pilot.pause()
    return pilot.app.screen.query_one(VmTable)


async def select(pilot, name: str) -> None:
    table = pilot.app.screen.query_one(VmTable)
    table.move_cursor(row=[vm.name for vm, _ in table._items].index(name))
    await pilot.pause()


def messages(app) -> list[str]:
    return [n.message for n in app._notifications]


async def test_destructive_actions_ask_first():
    client = FakeClient()
    app = make(client)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await select(pilot, "web")
        await pilot.press("D")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert isinstance(app.screen, MainScreen)
        assert not [c for c in client.calls if c[0] == "rm"]
        await pilot.press("D")
        await pilot.press("y")
        await until(pilot, lambda: ("rm", client.vms[0].id, True) in client.calls or
                    any(c[0] == "rm" for c in client.calls), what="the removal")
        assert [c for c in client.calls if c[0] == "rm"][0][2] is True   # running: forced, as the dialog said
        await until(pilot, lambda: "web" not in [vm.name for vm, _ in app.screen.query_one(VmTable)._items],
                    what="the row to go")


async def test_kill_chooses_a_signal_and_start_does_not_ask():
    client = FakeClient()
    app = make(client)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await select(pilot, "web")
        await pilot.press("K")
        assert isinstance(app.screen, SignalScreen)
        await pilot.press("down", "enter")  # SIGKILL is first; one down is SIGTERM
        await until(pilot, lambda: any(c[0] == "kill" for c in client.calls), what="the kill")
        assert [c for c in client.calls if c[0] == "kill"][0][2] == "SIGTERM"
        await select(pilot, "batch")
        await pilot.press("s")
        await until(pilot, lambda: ("start", client.vms[5].id) in client.calls, what="the start")


async def test_errors_are_notifications():
    client = FakeClient()
    app = make(client)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await select(pilot, "worker")   # exited: kill is refused by the engine
        await pilot.press("K", "enter")
        await until(pilot, lambda: any("is not running" in m for m in messages(app)), what="the error")
        await pilot.press("e")          # exec into an exited VM: said, not attempted
        assert isinstance(app.screen, MainScreen)
        assert any("worker is not running" in m for m in messages(app))


async def test_the_engine_going_away_and_coming_back():
    client = FakeClient()
    client.events = None   # no event stream: the app polls
    app = make(client, live=True, poll_seconds=0.05, stats_seconds=0.05)
    original = client.list_vms
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)

        async def gone(**kwargs):
            raise Unavailable("hyprd is not answering")

        client.list_vms = gone
        await until(pilot, lambda: app.connection_error is not None, what="the failure")
        assert any("cannot reach the engine: hyprd is not answering" in m for m in messages(app))
        status = app.screen.query_one(StatusBar)
        await until(pilot, lambda: "disconnected" in str(status.render()), what="the status bar")
        client.list_vms = original
        await until(pilot, lambda: app.connection_error is None, what="the reconnection")
        assert any("connected to the engine again" in m for m in messages(app))


async def test_the_daemon_stopping_reconnects_every_two_seconds():
    """A connection error: the status bar says so and HyprClient.connect() is retried (every
    `reconnect_seconds`) until it gives a client that answers; then the app refreshes."""
    first = FakeClient()
    first.events = None
    second = FakeClient()
    second.events = None
    tries: list[float] = []

    async def connect():
        tries.append(time.monotonic())
        if len(tries) < 3:
            raise Unavailable("hyprd's socket exists but nothing answers on it (connection refused)")
        return second

    app = make(first, live=True, poll_seconds=0.05, stats_seconds=0.05, connect=connect,
               reconnect_seconds=0.1)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)

        async def gone(**kwargs):
            raise Unavailable("lost the connection to hyprd: it stopped or crashed")

        first.list_vms = gone
        status = app.screen.query_one(StatusBar)
        await until(pilot, lambda: "disconnected — reconnecting" in str(status.render()), what="the status bar")
        await until(pilot, lambda: app.client is second and app.connection_error is None, what="the reconnection")
        assert len(tries) == 3 and all(b - a >= 0.09 for a, b in zip(tries, tries[1:]))
        assert any("connected to the engine again" in m for m in messages(app))
        await until(pilot, lambda: "disconnected" not in str(status.render()), what="the status bar to clear")


async def test_a_refused_call_is_not_a_disconnect():
    from hypr_tui.tui.app import is_disconnect

    assert is_disconnect(Unavailable("gone")) and is_disconnect(ConnectionResetError())
    assert not is_disconnect(Conflict("busy")) and not is_disconnect(FileNotFoundError())


async def test_a_vm_removed_elsewhere_is_said_once():
    client = FakeClient()
    client.events = None   # no event stream: the app polls
    app = make(client, live=True, poll_seconds=0.05, stats_seconds=10)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await select(pilot, "web")
        await pilot.press("l")
        assert isinstance(app.screen, LogsScreen)
        client.vms = [vm for vm in client.vms if vm.name != "web"]
        await until(pilot, lambda: any("VM web was removed" in m for m in messages(app)), what="the notice")
        await pilot.pause(0.3)
        assert sum("VM web was removed" in m for m in messages(app)) == 1
        assert isinstance(app.screen, LogsScreen)   # what was read stays readable


async def test_an_event_refreshes_the_list_at_once():
    import asyncio

    from hypr_engine.events import Event

    client = FakeClient()
    queue: asyncio.Queue = asyncio.Queue()

    def events(**kwargs):
        async def gen():
            while True:
                yield await queue.get()
        return gen()

    client.events = events
    app = make(client, live=True, poll_seconds=0.05, stats_seconds=10)
    async with app.run_test(size=(100, 30)) as pilot:
        table = await ready(pilot)
        await until(pilot, lambda: app.following_events, what="the event stream")
        await pilot.pause(0.3)
        batch = next(vm for vm in client.vms if vm.name == "batch")
        client.vms = [vm for vm in client.vms if vm.name != "batch"]
        await pilot.pause(0.3)
        assert "batch" in [vm.name for vm, _ in table._items]   # no polling while events flow
        queue.put_nowait(Event(1, FIXED_NOW, "vm", "destroy", batch.id, "batch"))
        await until(pilot, lambda: "batch" not in [vm.name for vm, _ in table._items], what="the update")
        # Something changed that no event told: only a gap makes the app re-list.
        client.vms = client.vms + [batch]
        await pilot.pause(0.3)
        assert "batch" not in [vm.name for vm, _ in table._items]
        from hypr_engine.events import Gap

        queue.put_nowait(Gap(missed=3, first_seq=2, last_seq=4))
        await until(pilot, lambda: "batch" in [vm.name for vm, _ in table._items], what="the re-list")


async def test_exec_that_fails_to_start_is_a_notification():
    client = FakeClient()

    async def refuse(ref, options):
        raise Conflict("VM web is not running")

    client.exec = refuse
    app = make(client)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await select(pilot, "web")
        await pilot.press("e", "enter")
        await until(pilot, lambda: any("is not running" in m for m in messages(app)), what="the error")
        assert isinstance(app.screen, ExecScreen)
        assert not app.screen.query_one(Terminal).live
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_every_key_goes_to_the_guest_and_ctrl_bracket_leaves():
    client = FakeClient()
    app = make(client)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await select(pilot, "web")
        await pilot.press("e", "enter")
        terminal = app.screen.query_one(Terminal)
        await until(pilot, lambda: client.sessions and client.sessions[0].sizes == [] or True)
        await until(pilot, lambda: "successful" in "\n".join(terminal.display_lines()), what="the banner")
        session = client.sessions[0]
        await pilot.press("ctrl+q", "ctrl+p", "ctrl+c", "question_mark", "q", "tab", "escape", "up")
        await until(pilot, lambda: b"".join(session.written).endswith(b"\x1b[A"), what="the keys")
        assert b"".join(session.written) == b"\x11\x10\x03?q\t\x1b\x1b[A"
        assert isinstance(app.screen, ExecScreen) and app.is_running
        # The guest terminal is the widget's size; a resize reaches the session.
        rows, cols = terminal.size.height, terminal.size.width
        await pilot.resize_terminal(120, 40)
        await until(pilot, lambda: session.sizes and session.sizes[-1] == (39, 120), what="the resize")
        assert (rows, cols) == (29, 100)
        await pilot.press("ctrl+right_square_bracket")
        assert isinstance(app.screen, MainScreen)
        await until(pilot, lambda: session.closed, what="the session to close")


async def test_logs_follow_search_filter_and_save(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = make(FakeClient(log_lines=500))
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await select(pilot, "web")
        await pilot.press("l")
        view = app.screen.query_one(LogView)
        await until(pilot, lambda: len(view.buffer) == 500, what="the log")
        await pilot.pause()
        assert view.follow and view.scroll_y == view.max_scroll_y  # at the end
        await pilot.press("pageup")
        assert not view.follow
        await pilot.press("end")
        assert view.follow
        await pilot.press("slash", *"error", "enter")
        assert view.search is not None and view.current is not None
        first = view.current
        assert "error" in view.buffer.line_text(first)
        await pilot.press("n")
        assert view.current != first and "error" in view.buffer.line_text(view.current)
        await pilot.press("N")
        assert view.current == first
        await pilot.press("f")
        assert view.shown_lines == len(view.matches) < len(view.buffer)
        await pilot.press("f", "t")
        assert view.show_timestamps and view.shown_lines == 500
        await pilot.press("s")
        await pilot.pause()
        await pilot.press("enter")
        saved = tmp_path / "web.log"
        await until(pilot, lambda: saved.exists() and len(saved.read_text().splitlines()) == 500, what="the file")
        assert saved.read_text().splitlines()[0].startswith("2025-11-28T11:50:00.000Z 10.0.2.2")


async def test_sort_filter_and_help():
    app = make()
    async with app.run_test(size=(100, 30)) as pilot:
        table = await ready(pilot)
        await pilot.press("6")   # CPU %, low to high; again: high to low
        await pilot.press("6")
        cpus = [(stats or {}).get("cpu_percent", -1) for _, stats in table._items]
        assert cpus == sorted(cpus, reverse=True)
        await pilot.press("slash", *"busy")
        assert sorted(vm.name for vm, _ in table._items) == ["batch", "worker"]
        await pilot.press("escape")
        assert len(table._items) == 6
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        keys = {row[0] for row in app.screen.rows}
        assert {"S", "D", "l", "e", "p", "m"} <= keys
        await pilot.press("escape")
        await pilot.press("ctrl+p")
        await pilot.press(*"hypr inspect", "enter")
        await until(pilot, lambda: isinstance(app.screen, TextScreen), what="inspect")


async def test_a_terminal_too_small_gets_a_message():
    app = make()
    async with app.run_test(size=(70, 20)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, TooSmallScreen)
        await pilot.resize_terminal(80, 24)
        await until(pilot, lambda: isinstance(app.screen, MainScreen), what="the main screen")


def _write_log(path, lines: int, rare_at: tuple[int, ...] = ()) -> None:
    base = 1_764_331_200_000_000_000
    with open(path, "wb") as f:
        for i in range(lines):
            if i in rare_at:
                f.write(b"%d e line %d: the zanzibar error\n" % (base + i, i))
            else:
                f.write(b"%d o line %d: GET /index.html 200\n" % (base + i, i))
        f.write(b"%d x exit 0\n" % (base + lines))


async def test_a_long_log_is_paged_not_loaded(tmp_path, monkeypatch):
    """Against a client with read_logs/search_logs (the engine's LogView over a real file),
    the view opens at the end, reads only the pages it shows, searches in the engine (n/N,
    filter), follows appended lines, and saves every line."""
    from hypr_tui.tui.fake import LogFileClient
    from hypr_tui.tui.widgets.log_view import KEEP_PAGES, STDERR, SYSTEM, PagedLog

    monkeypatch.chdir(tmp_path)
    lines = 50_000
    _write_log(tmp_path / "log", lines, rare_at=(1234, 40_000, 40_001))
    client = LogFileClient(tmp_path / "log")
    app = make(client)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await pilot.press("l")
        view = app.screen.query_one(LogView)
        assert isinstance(view.buffer, PagedLog)
        total = lines + 1   # the exit record is a line too
        await until(pilot, lambda: len(view.buffer) == total and view.loaded, what="the end of the log")
        await pilot.pause()
        assert view.follow and view.scroll_y == view.max_scroll_y
        last = view.buffer.line_text(total - 1)
        assert last == "-- the workload exited with code 0 --" and view.buffer.stream(total - 1) == SYSTEM
        assert view.buffer.line_text(total - 2).startswith(f"line {lines - 1}:")
        assert view.buffer.reads <= 4 and len(view.buffer.pages) <= 3   # not the whole log

        for _ in range(10):
            await pilot.press("pageup")
        assert not view.follow
        await until(pilot, lambda: view.loaded, what="the pages above")
        top = int(view.scroll_y)
        assert view.buffer.line_text(top).startswith(f"line {top}:")
        await pilot.press("home")
        await until(pilot, lambda: view.loaded, what="the first page")
        assert view.buffer.line_text(0).startswith("line 0:")
        assert len(view.buffer.pages) <= KEEP_PAGES

        await pilot.press("slash", *"zanzibar", "enter")
        await until(pilot, lambda: view.current is not None, what="the first match")
        assert list(view.matches) == [1234, 40_000, 40_001]
        assert view.current == 1234 and "zanzibar" in view.buffer.line_text(1234)
        assert view.buffer.stream(1234) == STDERR
        await pilot.press("n")
        assert view.current == 40_000
        await pilot.press("N")
        assert view.current == 1234
        await pilot.press("f")
        assert view.shown_lines == 3
        assert all("zanzibar" in view.buffer.line_text(view._line_index(r)) for r in range(3))
        await pilot.press("f")
        assert view.shown_lines == total

        # Following: new lines at the end are read on, and searched.
        await pilot.press("end")
        assert view.follow
        await client.append([(1, "o", b"appended one"), (2, "e", b"appended zanzibar")])
        await until(pilot, lambda: len(view.buffer) == total + 2, what="the new lines")
        await until(pilot, lambda: list(view.matches)[-1:] == [total + 1], what="the new match")
        await until(pilot, lambda: view.loaded and view.scroll_y == view.max_scroll_y, what="the end again")
        assert view.buffer.line_text(total) == "appended one"

        await pilot.press("t", "s")
        await pilot.pause()
        await pilot.press("enter")
        saved = tmp_path / "big.log"
        await until(pilot, lambda: saved.exists() and any("saved" in m for m in messages(app)), what="the file")
        text = saved.read_text().splitlines()
        assert len(text) == total + 2
        assert text[0] == "2025-11-28T12:00:00.000Z line 0: GET /index.html 200"
        assert text[-1].endswith(" appended zanzibar")


async def test_a_paged_search_without_a_match_says_so(tmp_path):
    from hypr_tui.tui.fake import LogFileClient

    _write_log(tmp_path / "log", 3000)
    app = make(LogFileClient(tmp_path / "log"))
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await pilot.press("l")
        view = app.screen.query_one(LogView)
        await until(pilot, lambda: len(view.buffer) == 3001, what="the log")
        await pilot.press("slash", *"nowhere", "enter")
        await until(pilot, lambda: any('no line matches "nowhere"' in m for m in messages(app)), what="the answer")
        assert view.current is None and not view.searching
