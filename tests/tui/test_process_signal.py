"""The process explorer signals the selected process (HyprClient.signal_process) after the
signal is chosen in the dialog; Esc sends nothing; pid 1 is refused; W signals the workload.
Over the fake HyprClient, no VM needed."""

from __future__ import annotations

import time

import pytest

from hypr_tui.tui.app import HyprApp
from hypr_tui.tui.fake import FIXED_NOW, FakeClient
from hypr_tui.tui.screens.modals import SignalScreen
from hypr_tui.tui.screens.processes import ProcessScreen, ProcessTable
from hypr_tui.tui.widgets.tables import VmTable

pytestmark = pytest.mark.timeout(60)


async def until(pilot, predicate, timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


async def open_processes(pilot, name: str = "web") -> ProcessScreen:
    await until(pilot, lambda: pilot.app.loaded, what="the first load")
    await pilot.pause()
    table = pilot.app.screen.query_one(VmTable)
    table.move_cursor(row=[vm.name for vm, _ in table._items].index(name))
    await pilot.pause()
    await pilot.press("p")
    await until(pilot, lambda: isinstance(pilot.app.screen, ProcessScreen) and pilot.app.screen.processes,
                what="the process list")
    return pilot.app.screen


async def select_pid(pilot, screen: ProcessScreen, pid: str) -> None:
    table = screen.query_one(ProcessTable)
    table.move_cursor(row=[table.row_key(p) for p in table._items].index(pid))
    await pilot.pause()
    assert table.selected_item["pid"] == pid


async def test_signal_the_selected_process_after_choosing_the_signal():
    client = FakeClient()
    app = HyprApp(client, clock=lambda: FIXED_NOW, hostname="test", live=False)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_processes(pilot)
        web = next(vm for vm in client.vms if vm.name == "web")
        await select_pid(pilot, screen, "43")
        await pilot.press("K")
        assert isinstance(app.screen, SignalScreen)
        assert "process 43" in app.screen.question
        await pilot.press("escape")  # cancelled: nothing sent
        assert app.screen is screen
        assert not [c for c in client.calls if c[0] == "signal_process"]

        await pilot.press("K")
        await pilot.press("enter")  # the default, SIGTERM
        await until(pilot, lambda: ("signal_process", web.id, 43, "SIGTERM") in client.calls, what="the call")
        assert app.screen is screen
        await until(pilot, lambda: any("sent SIGTERM to process 43" in n.message for n in app._notifications),
                    what="the notification")
        assert not [c for c in client.calls if c[0] == "kill"]

        await select_pid(pilot, screen, "1")
        await pilot.press("K")
        assert app.screen is screen  # pid 1 (kestrel) is refused without a dialog
        assert any("pid 1" in n.message for n in app._notifications)

        await pilot.press("W")  # the workload, as the main screen's kill
        assert isinstance(app.screen, SignalScreen)
        assert "workload" in app.screen.question
        await pilot.press("escape")
