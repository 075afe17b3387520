"""Logs through the API without booting anything: a created VM whose log file the test
writes (the file is all the engine reads), read in pages and searched, embedded and
through hyprd, with the same answers."""

from __future__ import annotations

import time

from hypr_engine.client import HyprClient
from hypr_engine.paths import Layout

LINES = 200_000


def _write_log(path, lines: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    older = path.with_name("log.1")
    with open(older, "wb") as f:
        for i in range(lines // 2):
            f.write(b"%d %s record %d%s\n" % (1_000_000 + i, b"oe"[i % 2:i % 2 + 1], i, b" needle" if i % 9999 == 0 else b""))
    with open(path, "wb") as f:
        for i in range(lines // 2, lines):
            f.write(b"%d o record %d%s\n" % (1_000_000 + i, i, b" needle" if i % 9999 == 0 else b""))
        f.write(b"%d x exit 0\n" % (1_000_000 + lines))


async def _session(home) -> dict:
    client = await HyprClient.connect(Layout(home.data, home.runtime))
    try:
        out: dict = {"mode": client.mode}
        started = time.monotonic()
        page = await client.read_logs("paged", index=LINES - 10, limit=5)
        out["first_page_s"] = time.monotonic() - started
        out["page"] = [(r.index, r.offset, r.record.payload) for r in page.records]
        out["totals"] = (page.total_records, page.total_bytes, page.next_index, page.next_offset)
        back = await client.read_logs("paged", offset=page.records[0].offset, limit=3, backwards=True)
        out["back"] = [r.index for r in back.records]
        found = []
        async for matches, scanned, done in client.search_logs("paged", "needle"):
            found += [(m.index, m.record.payload) for m in matches]
        out["found"] = found
        limited = [b async for b in client.search_logs("paged", "RECORD 1999", ignore_case=True, max_matches=3)]
        out["limited"] = [[m.index for m in batch] for batch, _, _ in limited]
        out["limited_done"] = limited[-1][2]
        resume = limited[-1][1]
        more = [m.index async for batch, _, _ in client.search_logs("paged", "record 1999", from_offset=resume,
                                                                     max_matches=2) for m in batch]
        out["resumed"] = more
        out["tail"] = [r.payload async for r in client.logs("paged", tail=2)]
        out["window"] = [r.payload async for r in client.logs("paged", since_ns=1_000_005, until_ns=1_000_008)]
        return out
    finally:
        await client.close()


def test_pages_search_and_windows_are_the_same_embedded_and_through_hyprd(hypr_home, busybox, hyprd_factory):
    import asyncio

    vm_id = hypr_home.out("create", "--name", "paged", busybox, "true").strip()
    _write_log(hypr_home.data / "vms" / vm_id / "log", LINES)
    embedded = asyncio.run(_session(hypr_home))
    hyprd_factory.start()
    daemon = asyncio.run(_session(hypr_home))
    assert (embedded.pop("mode"), daemon.pop("mode")) == ("embedded", "daemon")
    timings = (embedded.pop("first_page_s"), daemon.pop("first_page_s"))
    assert embedded == daemon
    assert max(timings) < 10, timings
    assert [i for i, _, _ in daemon["page"]] == list(range(LINES - 10, LINES - 5))
    assert daemon["page"][0][2] == b"record %d" % (LINES - 10)
    assert daemon["totals"][0] == LINES + 1 and daemon["totals"][2] == LINES - 5
    assert daemon["back"] == [LINES - 13, LINES - 12, LINES - 11]
    assert [i for i, _ in daemon["found"]] == [i for i in range(LINES) if i % 9999 == 0]
    assert [i for batch in daemon["limited"] for i in batch] == [1999, 19990, 19991] and daemon["limited_done"]
    assert daemon["resumed"] == [19992, 19993]
    assert daemon["tail"] == [b"record %d" % (LINES - 2), b"record %d" % (LINES - 1), b"exit 0"]
    assert daemon["window"] == [b"record 5", b"record 6", b"record 7"]
    # the CLI reads the same log identically too
    assert hypr_home.run("logs", "--tail", "3", "paged").stdout == b"record 199997\nrecord 199998\nrecord 199999\n"
