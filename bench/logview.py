"""The dashboard's log view on a million-line log, without a VM.

    .venv/bin/python bench/logview.py [--lines 1000000] [--runs 3]

Writes a log file in HYPR's record format (`<ns> o <text>` lines, hypr_engine/logfile.py;
a few `e` lines carry a rare word) into a temporary directory, and opens it in the real
dashboard (HyprApp + LogsScreen, in `App.run_test`, 120x40) over
`hypr_tui.tui.fake.LogFileClient`: a fake HyprClient whose `read_logs` and `search_logs`
are the embedded transport's own, over the engine's `hypr_engine.logview.LogView` on
that file. Timed, wall clock, each until the screen's lines are all at hand:

- open: push the logs screen until it shows the last lines (the first open also builds
  the engine's sparse line index of the file: "cold"; later opens find it built, as a
  running hyprd or embedded engine does: "warm");
- page up 10 times, each press until its lines are read;
- search a rare word: `/`, the word, then timed: Enter until the first match is current
  and the engine's search has finished. In lower case, smart case makes it a
  case-insensitive search (a regex in the engine); "exact case" is the same word with a
  capital, which the engine finds with `bytes.find`.

Also printed: how many lines the view holds (it never holds more than KEEP_PAGES pages)
and the peak RSS of the process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypr_tui.tui.app import HyprApp
from hypr_tui.tui.fake import FIXED_NOW, LogFileClient
from hypr_tui.tui.screens.logs import LogsScreen
from hypr_tui.tui.widgets.log_view import PAGE, LogView

RARE = "Zanzibar"   # in 5 lines of a million


def write_log(path: Path, lines: int) -> int:
    """`lines` records, 1 in 250,000 (and the last-but-100) with the rare word; returns bytes."""
    base = int((FIXED_NOW - lines / 100) * 1e9)
    chunk = []
    with open(path, "wb") as f:
        for i in range(lines):
            t = base + i * 10_000_000
            if i % 250_000 == 77_777 or i == lines - 100:
                chunk.append(b"%d e 2025/11/28 [error] 7#7: *%d upstream %s timed out\n" % (t, i, RARE.encode()))
            else:
                chunk.append(b'%d o 10.0.2.%d - - [28/Nov/2025:11:50:%02d +0000] "GET /api/items?page=%d HTTP/1.1" '
                             b'200 %d "-" "curl/8.5.0"\n' % (t, 2 + i % 7, i % 60, i % 97, 512 + (i * 37) % 4096))
            if len(chunk) >= 50_000:
                f.writelines(chunk)
                chunk = []
        f.writelines(chunk)
    return path.stat().st_size


async def until(pilot, predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the log view did not get there")
        await pilot.pause(0.005)


async def one_run(log: Path, lines: int) -> dict[str, float]:
    client = LogFileClient(log, running=False)
    app = HyprApp(client, clock=lambda: FIXED_NOW, hostname="bench", live=False)
    times: dict[str, float] = {}
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.loaded)
        await pilot.pause()

        t0 = time.perf_counter()
        app.push_screen(LogsScreen(client.vms[0]))
        await until(pilot, lambda: isinstance(app.screen, LogsScreen) and app.screen.query(LogView))
        view = app.screen.query_one(LogView)
        await until(pilot, lambda: len(view.buffer) == lines and view.loaded
                    and view.scroll_y == view.max_scroll_y and view.max_scroll_y > 0)
        times["open at the end"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        for _ in range(10):
            await pilot.press("pageup")
            await until(pilot, lambda: view.loaded)
        times["page up x10"] = time.perf_counter() - t0
        assert not view.follow and view.buffer.line_text(int(view.scroll_y)).startswith("10.0.2.")

        for name, word in (("search a rare word", RARE.lower()), ("... exact case", RARE)):
            await pilot.press("slash", *word)
            t0 = time.perf_counter()
            await pilot.press("enter")
            await until(pilot, lambda: view.current is not None and not view.searching and view.loaded)
            times[name] = time.perf_counter() - t0
            assert RARE in view.buffer.line_text(view.current), view.buffer.line_text(view.current)
            times["matches"] = len(view.matches)
            await pilot.press("slash", "escape")   # clear the search
        times["held lines"] = sum(len(view.buffer.pages.get(k) or []) for k in list(view.buffer.pages.keys()))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3, help="warm runs after the cold one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hypr-bench-logview-") as tmp:
        log = Path(tmp) / "log"
        t0 = time.perf_counter()
        size = write_log(log, args.lines)
        print(f"log: {args.lines:,} lines, {size / 1e6:.1f} MB, written in {time.perf_counter() - t0:.2f} s "
              f"(page: {PAGE} lines; python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")
        results = [asyncio.run(one_run(log, args.lines)) for _ in range(1 + args.runs)]
        cold, warm = results[0], results[1:]
        print(f"{'':24} {'cold':>8} {'warm median':>12} {'warm max':>9}")
        for name in ("open at the end", "page up x10", "search a rare word", "... exact case"):
            values = [r[name] for r in warm] or [cold[name]]
            print(f"{name:24} {cold[name]:7.3f}s {statistics.median(values):11.3f}s {max(values):8.3f}s")
        print(f"lines held by the view at the end: {int(cold['held lines']):,} of {args.lines:,}; "
              f"matches: {int(cold['matches'])}")
        print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
