"""The dashboard's `port` action (P on a selected VM) shows the engine's answer."""

from __future__ import annotations

from tests.tui.test_behaviour import make, messages, ready, select, until
from hypr_tui.tui.fake import FakeClient


async def test_port_key_shows_the_published_ports():
    client = FakeClient()
    app = make(client)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await select(pilot, "web")          # running: the fake publishes 8080 -> 80
        await pilot.press("P")
        await until(pilot, lambda: any("80/tcp -> 0.0.0.0:8080" in m for m in messages(app)), what="the ports")
        await select(pilot, "worker")       # exited: nothing is published
        await pilot.press("P")
        await until(pilot, lambda: any("worker publishes no ports" in m for m in messages(app)), what="no ports")
