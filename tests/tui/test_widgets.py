"""The dashboard's parts without an app: the log buffer and its search, key encoding for the
guest terminal, pyte's screen with the alternate screen, the metrics ring buffer."""

from __future__ import annotations

import pytest

from hypr_tui.tui.screens.metrics import MetricsStore, rates
from hypr_tui.tui.widgets.log_view import STDERR, STDOUT, LogBuffer, LogView, Search
from hypr_tui.tui.widgets.terminal import GuestScreen, encode_key


def test_log_buffer_keeps_lines_streams_and_joins_partial_records():
    buf = LogBuffer()
    buf.append(b"one", STDOUT, 1)
    buf.append(b"par", STDERR, 2, complete=False)   # E: a part of a longer line
    buf.append(b"tial", STDERR, 3)                   # e: the rest of it
    buf.append(b"two\r", STDOUT, 4)
    assert [buf.line_text(i) for i in range(len(buf))] == ["one", "partial", "two"]
    assert list(buf.streams) == [STDOUT, STDERR, STDOUT]
    assert list(buf.times) == [1, 2, 4]
    assert buf.max_length == 7


def test_log_buffer_does_not_join_a_partial_record_of_the_other_stream():
    buf = LogBuffer()
    buf.append(b"out", STDOUT, 1, complete=False)
    buf.append(b"err", STDERR, 2)
    assert [buf.line_text(i) for i in range(len(buf))] == ["out", "err"]


def test_log_buffer_copy_and_save(tmp_path):
    buf = LogBuffer()
    for i in range(3):
        buf.append(f"line {i}".encode(), STDOUT, 1_764_331_200_123_000_000 + i)
    copy = buf.copy()
    buf.append(b"later", STDOUT, 0)
    path = tmp_path / "out.log"
    assert copy.write_to(str(path), timestamps=False) == 3
    assert path.read_text() == "line 0\nline 1\nline 2\n"
    copy.write_to(str(path), timestamps=True)
    assert path.read_text().splitlines()[0] == "2025-11-28T12:00:00.123Z line 0"


def _view_with(lines: list[bytes]) -> LogView:
    view = LogView()
    for i, line in enumerate(lines):
        view.buffer.append(line, STDOUT, i)
    return view


@pytest.mark.parametrize(("text", "regex", "expected"), [
    ("error", False, [1, 3]),
    ("ERROR", False, [3]),                 # smart case: an upper-case letter makes it exact
    ("a.c", False, [4]),                   # not a regex: the dot is a dot
    ("a.c", True, [4, 5]),
    (r"^w", True, [0, 2]),                 # anchors work per line
    ("x$", True, [2]),
])
def test_search_finds_the_lines_that_match(text, regex, expected):
    view = _view_with([b"warn: one", b"an error", b"what x", b"ERROR two", b"a.c", b"abc"])
    search = Search.compile(text, regex)
    view.search = search
    view._search_range(0, len(view.buffer))
    assert list(view.matches) == expected


def test_a_bad_regex_is_a_message_not_an_exception():
    assert isinstance(Search.compile("(unclosed", True), str)
    assert isinstance(Search.compile("(unclosed", False), Search)


def test_a_match_never_runs_across_lines():
    view = _view_with([b"end of a", b"b start"])
    view.search = Search.compile(r"a\sb", True)
    view._search_range(0, 2)
    assert list(view.matches) == []


@pytest.mark.parametrize(("key", "character", "app_cursor", "expected"), [
    ("a", "a", False, b"a"),
    ("A", "A", False, b"A"),
    ("ctrl+c", "\x03", False, b"\x03"),
    ("ctrl+d", None, False, b"\x04"),
    ("ctrl+q", "\x11", False, b"\x11"),
    ("ctrl+p", "\x10", False, b"\x10"),
    ("enter", "\r", False, b"\r"),
    ("tab", "\t", False, b"\t"),
    ("shift+tab", None, False, b"\x1b[Z"),
    ("escape", "\x1b", False, b"\x1b"),
    ("backspace", "\x7f", False, b"\x7f"),
    ("up", None, False, b"\x1b[A"),
    ("up", None, True, b"\x1bOA"),       # application cursor mode (vi, less, top)
    ("left", None, True, b"\x1bOD"),
    ("ctrl+right", None, False, b"\x1b[1;5C"),
    ("home", None, False, b"\x1b[H"),
    ("pagedown", None, False, b"\x1b[6~"),
    ("delete", None, False, b"\x1b[3~"),
    ("f1", None, False, b"\x1bOP"),
    ("f12", None, False, b"\x1b[24~"),
    ("alt+x", "x", False, b"\x1bx"),
    ("space", " ", False, b" "),
    ("ctrl+backslash", "\x1c", False, b"\x1c"),
    ("é", "é", False, "é".encode()),
])
def test_keys_are_encoded_as_an_xterm_sends_them(key, character, app_cursor, expected):
    assert encode_key(key, character, app_cursor=app_cursor) == expected


def _feed(screen: GuestScreen, data: bytes) -> None:
    import pyte

    pyte.ByteStream(screen).feed(data)


def test_the_alternate_screen_restores_what_was_there():
    replies: list[bytes] = []
    screen = GuestScreen(20, 5, replies.append)
    _feed(screen, b"$ vi\r\n")
    _feed(screen, b"\x1b[?1049h\x1b[2J\x1b[H~\r\n~ full screen")
    assert screen.display[1].startswith("~ full screen")
    _feed(screen, b"\x1b[?1049l")
    assert screen.display[0].startswith("$ vi")
    assert not screen.display[1].strip()


def test_the_guest_gets_answers_to_its_queries():
    replies: list[bytes] = []
    screen = GuestScreen(20, 5, replies.append)
    _feed(screen, b"\x1b[3;4H\x1b[6n")   # where is the cursor?
    assert replies == [b"\x1b[3;4R"]


def test_application_cursor_mode_is_tracked():
    screen = GuestScreen(20, 5, lambda data: None)
    assert not screen.app_cursor
    _feed(screen, b"\x1b[?1h")
    assert screen.app_cursor
    _feed(screen, b"\x1b[?1l")
    assert not screen.app_cursor


def test_metrics_ring_buffer_and_rates():
    store = MetricsStore(maxlen=3)
    for t in range(5):
        store.add("vm", float(t), {"net_rx": t * 100})
    assert [t for t, _ in store.history("vm")] == [2.0, 3.0, 4.0]
    assert rates(store.history("vm"), "net_rx") == ([3.0, 4.0], [100.0, 100.0])
    store.add("gone", 0.0, {"error": "exited"})
    assert store.history("gone") == []
    store.forget({"vm"})
    assert store.latest("gone") is None


def test_paged_log_keeps_pages_and_shows_exit_records_as_system_lines():
    from hypr_engine.logfile import LogRecord
    from hypr_engine.logview import Positioned
    from hypr_tui.tui.widgets.log_view import PAGE, SYSTEM, PagedLog, record_entry

    assert record_entry(LogRecord(5, "x", b"exit 3")) == (SYSTEM, 5, b"-- the workload exited with code 3 --")
    assert record_entry(LogRecord(6, "E", b"half\r")) == (STDERR, 6, b"half")
    log = PagedLog(client=None, ref="vm")
    log.total = PAGE + 10
    # Records that run across a page boundary land in both pages; a page starting midway is not kept.
    log._store([Positioned(0, i, LogRecord(i, "o", b"line %d" % i)) for i in range(PAGE - 5, PAGE + 5)])
    assert log.entry(PAGE - 1) is None                    # page 0 was never read from its start
    assert log.line_text(PAGE + 4) == "line %d" % (PAGE + 4)
    assert log.stream(PAGE) == STDOUT and log.time(PAGE) == PAGE
    assert log.line_text(PAGE + 5) == "" and log.line_key(PAGE + 5) is None   # not read yet
