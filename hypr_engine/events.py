"""Events: what happened to VMs and images, in order, for `hypr events` and the API.

Recording: triggers on the `vms`, `images` and `image_tags` tables (schema migration 3)
insert one row into `events` in the same transaction as each change, whoever makes it:
an engine, hyprd, or a VM's supervisor (which writes `running`, `exited` and
`restarting` with plain sqlite3 while no HYPR process may be running). So every state
change gets an event, none is lost while no daemon runs, and the sequence number
(`seq`, AUTOINCREMENT) only grows: SQLite has one writer at a time, so rows become
visible in `seq` order.

Delivery: one `EventBus` per engine polls the table (a rowid range query every
`poll_interval`) and fans new rows out to its subscribers. Each subscriber has a
bounded queue; a subscriber that reads too slowly loses events rather than holding
anyone back, and gets a `Gap` (how many, which seqs) in their place, in order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import AsyncIterator, Iterable

log = logging.getLogger("hypr.events")

POLL_INTERVAL = 0.1
QUEUE_SIZE = 1024
KEEP_EVENTS = 100_000
FILTER_KEYS = ("type", "event", "vm", "image", "network")
_COLUMNS = "seq, time, type, action, id, name, attrs"


@dataclass(frozen=True)
class Event:
    seq: int
    time: float
    type: str                 # vm | image | network
    action: str               # vm: create start running stop die restart remove destroy rename; image: load tag untag delete
    id: str
    name: str
    attributes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row) -> "Event":
        try:
            raw = json.loads(row["attrs"] or "{}")
        except ValueError:
            raw = {}
        attrs = {str(k): str(v) for k, v in raw.items() if v is not None}
        return cls(int(row["seq"]), float(row["time"]), row["type"], row["action"], row["id"], row["name"], attrs)


@dataclass(frozen=True)
class Gap:
    """In place of events a slow subscriber missed."""

    missed: int
    first_seq: int
    last_seq: int


def parse_filters(items: Iterable[str]) -> list[tuple[str, str]]:
    from hypr_engine.errors import InvalidArgument

    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in FILTER_KEYS or not value:
            raise InvalidArgument(f"invalid event filter {item!r}: use type=, event=, vm=, image= or network=")
        out.append((key, value))
    return out


def matches(event: Event, filters: Iterable[tuple[str, str]]) -> bool:
    """Docker's semantics: the same key twice means either, different keys mean both."""
    wanted: dict[str, list[str]] = {}
    for key, value in filters:
        wanted.setdefault(key, []).append(value)
    for key, values in wanted.items():
        if key == "type":
            ok = event.type in values
        elif key == "event":
            ok = event.action in values
        elif key == "vm":
            ok = event.type == "vm" and any(v == event.name or event.id.startswith(v) for v in values)
        elif key == "network":
            ok = event.type == "network" and any(v == event.name or event.id.startswith(v) for v in values)
        elif key == "image":
            if event.type == "vm":
                names = [event.attributes.get("image", "")]
            else:
                names = [event.name, event.id, event.id.removeprefix("sha256:")]
            ok = any(_image_matches(n, v) for n in names if n for v in values)
        else:
            ok = False
        if not ok:
            return False
    return True


def _image_matches(name: str, wanted: str) -> bool:
    """`busybox`, `busybox:latest`, `docker.io/library/busybox:latest` or an id prefix."""
    for form in (wanted, wanted + ":latest"):
        if name == form or name.endswith("/" + form):
            return True
    return len(wanted) >= 4 and name.removeprefix("sha256:").startswith(wanted.removeprefix("sha256:"))


class _Subscriber:
    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[Event | Gap] = asyncio.Queue(size)
        self.missed = 0
        self.first_missed = 0
        self.last_missed = 0

    def offer(self, event: Event) -> None:
        q = self.queue
        if self.missed:
            # The gap goes in first, in its place; the event only if both fit.
            if q.maxsize - q.qsize() >= 2:
                q.put_nowait(Gap(self.missed, self.first_missed, self.last_missed))
                self.missed = 0
                q.put_nowait(event)
                return
        elif not q.full():
            q.put_nowait(event)
            return
        if not self.missed:
            self.first_missed = event.seq
        self.missed += 1
        self.last_missed = event.seq


class EventBus:
    """Polls the events table and fans out to subscribers (one bus per engine)."""

    def __init__(self, db, *, poll_interval: float = POLL_INTERVAL, queue_size: int = QUEUE_SIZE) -> None:
        self._db = db
        self.poll_interval = poll_interval
        self.queue_size = queue_size
        self._subs: set[_Subscriber] = set()
        self.last_seq = 0
        self._task: asyncio.Task | None = None
        self._poll_lock = asyncio.Lock()

    async def start(self) -> None:
        if self._task is None:
            row = await self._db.fetchone("SELECT COALESCE(MAX(seq), 0) AS seq FROM events")
            self.last_seq = int(row["seq"])
            self._task = asyncio.ensure_future(self._poll())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None

    async def _poll(self) -> None:
        while True:
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a locked or busy database: try again next time
                log.warning("reading events failed: %s", exc)
            await asyncio.sleep(self.poll_interval)

    async def poll_once(self) -> int:
        """Publish every event committed since the last poll; how many."""
        count = 0
        async with self._poll_lock:
            while True:
                rows = await self._db.fetchall(
                    f"SELECT {_COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT 1000", (self.last_seq,))
                for row in rows:
                    event = Event.from_row(row)
                    self.last_seq = event.seq
                    for sub in list(self._subs):
                        sub.offer(event)
                count += len(rows)
                if len(rows) < 1000:
                    return count

    async def history(self, *, since_seq: int | None = None, since_time: float | None = None,
                      upto_seq: int | None = None) -> AsyncIterator[Event]:
        """Stored events after `since_seq` / from `since_time`, up to `upto_seq`, in pages."""
        after = since_seq if since_seq is not None else 0
        if since_seq is None and since_time is not None:
            row = await self._db.fetchone("SELECT MIN(seq) AS seq FROM events WHERE time >= ?", (since_time,))
            if row is None or row["seq"] is None:
                return
            after = int(row["seq"]) - 1
        upto = self.last_seq if upto_seq is None else upto_seq
        while after < upto:
            rows = await self._db.fetchall(
                f"SELECT {_COLUMNS} FROM events WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT 1000", (after, upto))
            if not rows:
                return
            for row in rows:
                event = Event.from_row(row)
                after = event.seq
                yield event

    async def watch(self, *, since_seq: int | None = None, since_time: float | None = None,
                    until_time: float | None = None, follow: bool = True,
                    filters: Iterable[tuple[str, str]] = ()) -> AsyncIterator[Event | Gap]:
        """Past events (with a `since`), then new ones while `follow`, until `until_time`."""
        filters = list(filters)
        await self.start()
        await self.poll_once()  # catch up, so that history reaches everything committed before this call
        sub = _Subscriber(self.queue_size)
        self._subs.add(sub)
        live_from = self.last_seq
        try:
            if since_seq is not None or since_time is not None:
                async for event in self.history(since_seq=since_seq, since_time=since_time, upto_seq=live_from):
                    if until_time is not None and event.time >= until_time:
                        return
                    if matches(event, filters):
                        yield event
            if not follow:
                return
            while True:
                if until_time is None:
                    item = await sub.queue.get()
                else:
                    left = until_time - time.time()
                    if left <= 0:
                        return
                    try:
                        item = await asyncio.wait_for(sub.queue.get(), left)
                    except asyncio.TimeoutError:
                        return
                if isinstance(item, Gap):
                    yield item
                    continue
                if item.seq <= live_from:
                    continue
                if until_time is not None and item.time >= until_time:
                    return
                if matches(item, filters):
                    yield item
        finally:
            self._subs.discard(sub)

    async def prune(self, keep: int = KEEP_EVENTS) -> int:
        """Forget all but the newest `keep` events (their seqs are never reused)."""
        return await self._db.execute(
            "DELETE FROM events WHERE seq <= (SELECT COALESCE(MAX(seq), 0) FROM events) - ?", (keep,))
