"""Events: recorded by triggers whoever writes, numbered in order, fanned out with
bounded queues and gap markers."""

from __future__ import annotations

import asyncio
import sqlite3

from hypr_engine.events import Event, EventBus, Gap, _Subscriber, matches, parse_filters
from hypr_engine.state.db import Database
from hypr_engine.state.schema import connect


def _insert_vm(conn, vm_id: str, name: str) -> None:
    conn.execute("INSERT INTO vms (id, name, image_id, image_ref, spec_json, state, created_at) "
                 "VALUES (?,?,?,?,?,?,?)", (vm_id, name, "sha256:i", "hypr/busybox:latest", "{}", "created", 1.0))


async def test_every_writer_records_events_in_the_same_transaction(tmp_path):
    db = await Database.open(tmp_path / "hypr.db")
    bus = EventBus(db, poll_interval=0.02)
    try:
        await db.execute("INSERT INTO vms (id, name, image_id, image_ref, spec_json, state, created_at) "
                         "VALUES ('v1','web','sha256:i','hypr/busybox:latest','{}','created',1)")
        # A supervisor writes with plain sqlite3, as supervisor.py does: no helper involved.
        conn = sqlite3.connect(tmp_path / "hypr.db", isolation_level=None)
        conn.execute("UPDATE vms SET state='starting' WHERE id='v1'")
        conn.execute("UPDATE vms SET state='running', started_at=2 WHERE id='v1' AND state='starting'")
        conn.execute("UPDATE vms SET state='running' WHERE id='v1' AND state='starting'")  # no change: no event
        conn.execute("UPDATE vms SET state='exited', exit_code=3, error=NULL WHERE id='v1'")
        conn.execute("BEGIN")
        conn.execute("UPDATE vms SET state='starting' WHERE id='v1'")
        conn.execute("ROLLBACK")  # a change that did not happen has no event
        conn.close()
        await db.execute("UPDATE vms SET name='www' WHERE id='v1'")
        await db.execute("DELETE FROM vms WHERE id='v1'")
        got = [e async for e in bus.watch(since_seq=0, follow=False)]
        assert [(e.action, e.name) for e in got] == [
            ("create", "web"), ("start", "web"), ("running", "web"), ("die", "web"), ("rename", "www"),
            ("destroy", "www")]
        assert [e.seq for e in got] == sorted(e.seq for e in got) and len({e.seq for e in got}) == 6
        die = got[3]
        assert die.attributes == {"image": "hypr/busybox:latest", "from": "running", "state": "exited",
                                  "exit_code": "3"}
        # Sequence numbers are never reused, even after pruning.
        await bus.prune(keep=2)
        await db.execute("INSERT INTO vms (id, name, image_id, image_ref, spec_json, state, created_at) "
                         "VALUES ('v2','db','sha256:i','x','{}','created',1)")
        later = [e async for e in bus.watch(since_seq=0, follow=False)]
        assert [e.action for e in later] == ["rename", "destroy", "create"]
        assert later[-1].seq == got[-1].seq + 1
    finally:
        await bus.close()
        await db.close()


async def test_followers_get_new_events_live_and_history_by_time(tmp_path):
    db = await Database.open(tmp_path / "hypr.db")
    bus = EventBus(db, poll_interval=0.02)
    try:
        await db.execute("INSERT INTO vms (id, name, image_id, image_ref, spec_json, state, created_at) "
                         "VALUES ('old','old','sha256:i','x','{}','created',1)")
        got: list = []

        async def follow() -> None:
            async for item in bus.watch(filters=[("vm", "web")]):
                got.append(item)
                if len(got) == 2:
                    return

        task = asyncio.ensure_future(follow())
        await asyncio.sleep(0.1)
        await db.execute("INSERT INTO vms (id, name, image_id, image_ref, spec_json, state, created_at) "
                         "VALUES ('new','web','sha256:i','x','{}','created',1)")
        await db.execute("UPDATE vms SET state='starting' WHERE id='new'")
        await asyncio.wait_for(task, 10)
        assert [(e.action, e.name) for e in got] == [("create", "web"), ("start", "web")]
        first = [e async for e in bus.watch(since_seq=0, follow=False)][0]
        by_time = [e async for e in bus.watch(since_time=first.time, follow=False)]
        assert len(by_time) == 3
    finally:
        await bus.close()
        await db.close()


def test_a_slow_subscriber_gets_a_gap_in_the_right_place():
    sub = _Subscriber(3)
    events = [Event(i, float(i), "vm", "start", "id", "n") for i in range(1, 11)]
    for ev in events[:5]:
        sub.offer(ev)         # 1..3 fit, 4 and 5 are missed
    assert sub.queue.qsize() == 3 and sub.missed == 2
    assert sub.queue.get_nowait().seq == 1
    sub.offer(events[5])      # one free slot: not room for gap + event, so 6 is missed too
    assert sub.missed == 3
    assert sub.queue.get_nowait().seq == 2
    sub.offer(events[6])      # room for both: the gap, then 7
    items = [sub.queue.get_nowait() for _ in range(sub.queue.qsize())]
    assert items == [events[2], Gap(3, 4, 6), events[6]]


def test_filters():
    ev = Event(1, 1.0, "vm", "die", "0123456789ab" + "0" * 52, "web", {"image": "hypr/busybox:latest"})
    assert matches(ev, parse_filters(["type=vm", "event=die", "event=start"]))
    assert not matches(ev, parse_filters(["type=image"]))
    assert matches(ev, parse_filters(["vm=0123"])) and matches(ev, parse_filters(["vm=web"]))
    assert matches(ev, parse_filters(["image=hypr/busybox"]))
    img = Event(2, 1.0, "image", "tag", "sha256:" + "ab" * 32, "docker.io/library/busybox:latest")
    assert matches(img, parse_filters(["image=busybox"])) and matches(img, parse_filters(["image=abab"]))
    assert not matches(img, parse_filters(["image=nginx"]))


def test_the_schema_keeps_old_migrations_and_adds_events(tmp_path):
    conn = connect(tmp_path / "x.db")
    from hypr_engine.state.schema import MIGRATIONS, migrate

    migrate(conn)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")}
    assert {"vms_event_create", "vms_event_state", "vms_event_destroy", "images_event_load"} <= names
    assert len(MIGRATIONS) >= 3
