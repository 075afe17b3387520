"""The dashboard against a real engine and a real VM (App.run_test, in process).

Each test boots a busybox VM with the CLI, opens HyprClient on the same data
directory in this process, and drives the dashboard with keys as a user would.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from hypr_engine.client import HyprClient
from hypr_engine.paths import Layout
from hypr_tui.tui.app import HyprApp
from hypr_tui.tui.screens.exec import ExecScreen
from hypr_tui.tui.screens.logs import LogsScreen
from hypr_tui.tui.screens.main import MainScreen
from hypr_tui.tui.screens.metrics import MetricsScreen
from hypr_tui.tui.screens.processes import ProcessScreen, ProcessTable
from hypr_tui.tui.widgets.log_view import STDERR, STDOUT, LogView
from hypr_tui.tui.widgets.tables import VmTable
from hypr_tui.tui.widgets.terminal import Terminal

pytestmark = [pytest.mark.vm, pytest.mark.timeout(240)]

LOOP = "i=0; while true; do echo out-$i; echo err-$i >&2; i=$((i+1)); sleep 1; done"


async def until(pilot, predicate, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await pilot.pause(0.1)


@pytest.fixture
def looping_vm(hypr_home, busybox) -> str:
    hypr_home.run("run", "-d", "--name", "tui1", busybox, "sh", "-c", LOOP, check=True)
    return "tui1"


@pytest.fixture
async def client(hypr_home):
    c = await HyprClient.connect(Layout(hypr_home.data, hypr_home.runtime))
    yield c
    await c.close()


def notifications(app) -> list[str]:
    return [n.message for n in app._notifications]


async def open_dashboard(pilot, name: str) -> VmTable:
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, MainScreen) and app.loaded, 30, "the dashboard")
    table = app.screen.query_one(VmTable)
    await until(pilot, lambda: any(vm.name == name for vm, _ in table._items), 30, f"{name} in the table")
    names = [vm.name for vm, _ in table._items]
    table.move_cursor(row=names.index(name))
    await pilot.pause()
    return table


async def test_vm_appears_with_its_state_and_logs_follow(looping_vm, client):
    app = HyprApp(client)
    async with app.run_test(size=(120, 40)) as pilot:
        table = await open_dashboard(pilot, looping_vm)
        vm = table.selected_item
        assert vm.name == looping_vm and vm.state == "running"
        # Kept current by the engine's event stream where the client has one, else by polling.
        await until(pilot, lambda: app.following_events == callable(getattr(client, "events", None)), 10,
                    "the event stream")
        row = table.get_row(vm.id)
        assert str(row[2]) == "running" and row[1].startswith("hypr/busybox")
        # Stats arrive within a few polls: CPU % and memory get numbers.
        await until(pilot, lambda: "/" in str(table.get_row(vm.id)[6]) and not str(table.get_row(vm.id)[6])
                    .startswith("-"), 30, "memory figures")

        await pilot.press("l")
        assert isinstance(app.screen, LogsScreen)
        view = app.screen.query_one(LogView)
        await until(pilot, lambda: "out-2" in view.buffer.data.decode(), 30, "the first lines of output")
        # As printed: each line once, in order, stdout and stderr told apart.
        lines = [view.buffer.line_text(i) for i in range(len(view.buffer))]
        assert lines.index("out-0") < lines.index("out-1") < lines.index("out-2")
        assert view.buffer.streams[lines.index("err-1")] == STDERR
        assert view.buffer.streams[lines.index("out-1")] == STDOUT
        # It follows: a line printed after the screen opened arrives, and is on screen.
        seen = len(view.buffer)
        await until(pilot, lambda: len(view.buffer) >= seen + 2, 30, "new output while following")
        assert view.follow and view.scroll_y == view.max_scroll_y
        last = view.buffer.line_text(len(view.buffer) - 1)
        assert last in view.render_line(len(view.buffer) - 1 - int(view.scroll_y)).text
        # Scrolling up stops following; End resumes.
        await pilot.press("k")
        assert not view.follow
        await pilot.press("end")
        assert view.follow
        # Search highlights; filter shows only the matches.
        await pilot.press("slash", *"err-", "enter")
        assert view.search is not None and len(view.matches) >= 2
        await pilot.press("f")
        assert all(view.buffer.line_text(view._line_index(r)).startswith("err-") for r in range(view.shown_lines))
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_exec_runs_a_command_and_shows_its_result(looping_vm, client):
    app = HyprApp(client)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_dashboard(pilot, looping_vm)
        await pilot.press("e")
        await pilot.pause()
        await pilot.press("enter")  # the prompt's default: sh
        assert isinstance(app.screen, ExecScreen)
        terminal = app.screen.query_one(Terminal)
        await until(pilot, lambda: "#" in "".join(terminal.display_lines()), 30, "the shell's prompt")
        await pilot.press(*"echo $((6*7)) $(stty size)", "enter")
        rows, cols = terminal.screen_model.lines, terminal.screen_model.columns
        await until(pilot, lambda: any(line.strip() == f"42 {rows} {cols}" for line in terminal.display_lines()),
                    30, "the command's output")
        # ctrl+c reaches the guest (it interrupts the shell's line), and the app keeps running.
        await pilot.press(*"sleep 100", "ctrl+c")
        await pilot.press(*"echo after", "enter")
        await until(pilot, lambda: any(line.strip() == "after" for line in terminal.display_lines()), 30,
                    "the shell after ctrl+c")
        await pilot.press("ctrl+right_square_bracket")
        assert isinstance(app.screen, MainScreen)


async def test_processes_metrics_then_stop_changes_the_state(looping_vm, client):
    app = HyprApp(client)
    async with app.run_test(size=(120, 40)) as pilot:
        table = await open_dashboard(pilot, looping_vm)
        vm_id = table.selected_item.id
        # Processes: the workload's shell and its sleep, with a CPU % from the second poll on.
        await pilot.press("p")
        assert isinstance(app.screen, ProcessScreen)
        screen = app.screen
        await until(pilot, lambda: any("while true" in p["command"] for p in screen.processes), 30,
                    "the workload in the process list")
        await until(pilot, lambda: any(p["cpu"] is not None for p in screen.processes), 30, "CPU %")
        await pilot.press("t")  # the tree: the workload under the agent (PID 1)
        assert screen.query_one(ProcessTable).tree_view
        await pilot.press("escape")
        # Metrics: samples accumulate in the ring buffer and the charts show them.
        await pilot.press("m")
        assert isinstance(app.screen, MetricsScreen)
        await until(pilot, lambda: len(app.metrics.history(vm_id)) >= 2, 30, "two stats samples")
        await pilot.press("escape")
        await pilot.press("S")
        await pilot.pause()
        await pilot.press("y")
        await until(pilot, lambda: str(table.get_row(vm_id)[2]).startswith("exited"), 90, "the exited state")
        await until(pilot, lambda: any("stopped tui1" in m for m in notifications(app)), 30, "the notification")


async def test_exec_into_a_vm_that_stops_is_a_notification(looping_vm, client, hypr_home):
    app = HyprApp(client)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_dashboard(pilot, looping_vm)
        await pilot.press("e")
        await pilot.pause()
        await pilot.press("enter")
        terminal = app.screen.query_one(Terminal)
        await until(pilot, lambda: "#" in "".join(terminal.display_lines()), 30, "the shell's prompt")
        proc = await asyncio.to_thread(hypr_home.run, "rm", "-f", looping_vm, timeout=60)
        assert proc.returncode == 0, proc.stderr
        await until(pilot, lambda: not terminal.live, 60, "the session to end")
        await until(pilot, lambda: any("tui1" in m for m in notifications(app)), 30, "a notification")
        assert isinstance(app.screen, ExecScreen)  # still there, saying what happened
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)
        await until(pilot, lambda: not app.vms, 30, "the VM gone from the list")
