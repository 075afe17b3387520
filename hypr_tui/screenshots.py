"""`python -m hypr_tui.screenshots`: render every dashboard screen to SVG in screenshots/.

The scenes run the real dashboard against a fake HyprClient with fixed data and a
fixed clock (hypr_tui/tui/fake.py), so the pictures are the same on every machine;
the snapshot tests (tests/tui/test_snapshots.py) use the same scenes.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

from textual.pilot import Pilot
from textual.widgets import Input

from hypr_tui.tui.app import HyprApp
from hypr_tui.tui.fake import FIXED_NOW, HOSTNAME, FakeClient, scene_history

SIZES = [(80, 24), (120, 40)]


def make_app(*, empty: bool = False, no_color: bool = False) -> HyprApp:
    """The dashboard over the fixed scene; nothing polls, nothing moves with the wall clock."""
    client = FakeClient(vms=[], images=[]) if empty else FakeClient()
    saved = os.environ.pop("NO_COLOR", None)
    if no_color:
        os.environ["NO_COLOR"] = "1"   # Textual reads it when the app is made
    try:
        app = HyprApp(client, clock=lambda: FIXED_NOW, hostname=HOSTNAME, live=False)
    finally:
        os.environ.pop("NO_COLOR", None)
        if saved is not None:
            os.environ["NO_COLOR"] = saved
    for vm in client.vms:
        if vm.state == "running":
            app.metrics.seed(vm.id, scene_history(vm))
    return app


async def wait_for(pilot: Pilot, predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what or predicate}")
        await pilot.pause(0.02)


async def loaded(pilot: Pilot) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: getattr(app, "loaded", False), what="the first load")
    await pilot.pause()


def steady(pilot: Pilot) -> None:
    """No blinking cursors in pictures."""
    for box in pilot.app.screen.query(Input):
        box.cursor_blink = False


async def select_vm(pilot: Pilot, name: str) -> None:
    from hypr_tui.tui.widgets.tables import VmTable

    table = pilot.app.screen.query_one(VmTable)
    names = [row[0].name for row in table._items]
    table.move_cursor(row=names.index(name), animate=False)
    await pilot.pause()


async def log_loaded(pilot: Pilot) -> None:
    from hypr_tui.tui.widgets.log_view import LogView

    await wait_for(pilot, lambda: len(pilot.app.screen.query_one(LogView).buffer) >= 240, what="the log")
    await pilot.pause(0.1)


@dataclass
class Scene:
    name: str
    doc: str
    steps: Callable[[Pilot], Awaitable[None]]
    empty: bool = False
    no_color: bool = False
    sizes: list[tuple[int, int]] = field(default_factory=lambda: list(SIZES))

    async def run(self, pilot: Pilot) -> None:
        await loaded(pilot)
        await self.steps(pilot)
        steady(pilot)
        await pilot.pause(0.1)


async def _main(pilot: Pilot) -> None:
    await select_vm(pilot, "web")


async def _filter(pilot: Pilot) -> None:
    await pilot.press("slash", *"running")


async def _empty(pilot: Pilot) -> None:
    pass


async def _images(pilot: Pilot) -> None:
    await pilot.press("tab")


async def _volumes(pilot: Pilot) -> None:
    await pilot.press("tab", "tab")


async def _confirm(pilot: Pilot) -> None:
    await select_vm(pilot, "web")
    await pilot.press("S")


async def _menu(pilot: Pilot) -> None:
    await select_vm(pilot, "web")
    await pilot.press("enter")


async def _help(pilot: Pilot) -> None:
    await select_vm(pilot, "web")
    await pilot.press("question_mark")


async def _logs(pilot: Pilot) -> None:
    await select_vm(pilot, "web")
    await pilot.press("l")
    await log_loaded(pilot)


async def _logs_search(pilot: Pilot) -> None:
    await _logs(pilot)
    await pilot.press("slash", *"missing|warn", "ctrl+r", "enter", "t")
    await pilot.pause(0.1)


async def _logs_filter(pilot: Pilot) -> None:
    await _logs_search(pilot)
    await pilot.press("f")
    await pilot.pause(0.1)


async def _exec(pilot: Pilot) -> None:
    from hypr_tui.tui.widgets.terminal import Terminal

    await select_vm(pilot, "web")
    await pilot.press("e", "enter")
    await wait_for(pilot, lambda: "successful" in "\n".join(pilot.app.screen.query_one(Terminal).display_lines()),
                   what="the shell")
    await pilot.press(*"curl -s localhost")
    await wait_for(pilot, lambda: "localhost" in "\n".join(pilot.app.screen.query_one(Terminal).display_lines()),
                   what="the echo")


async def _processes(pilot: Pilot) -> None:
    from hypr_tui.tui.screens.processes import ProcessScreen

    await select_vm(pilot, "web")
    await pilot.press("p")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ProcessScreen) and pilot.app.screen.processes,
                   what="the process list")
    screen = pilot.app.screen
    screen.poll()  # a second sample: CPU % is the change between two
    await wait_for(pilot, lambda: any(p["cpu"] is not None for p in screen.processes), what="CPU %")
    await pilot.press("4", "4")  # by CPU %, highest first


async def _processes_tree(pilot: Pilot) -> None:
    await _processes(pilot)
    await pilot.press("1", "t")


async def _metrics(pilot: Pilot) -> None:
    await select_vm(pilot, "web")
    await pilot.press("m")
    await pilot.pause(0.2)


async def _events(pilot: Pilot) -> None:
    from hypr_tui.tui.widgets.log_view import LogView

    await pilot.press("ctrl+p")
    await pilot.press(*"hypr events", "enter")
    await wait_for(pilot, lambda: len(pilot.app.screen.query_one(LogView).buffer) >= 10, what="the events")
    await pilot.pause(0.1)


async def _palette(pilot: Pilot) -> None:
    from textual.command import CommandPalette

    await pilot.press("ctrl+p")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, CommandPalette), what="the palette")
    await pilot.press(*"hypr s")
    await pilot.pause(0.5)


SCENES = [
    Scene("main", "VMs: name, image, state, health, uptime, CPU, memory; the status bar", _main),
    Scene("filter", "/ filters the VMs", _filter),
    Scene("empty", "no VM yet", _empty, empty=True),
    Scene("images", "the images tab", _images),
    Scene("volumes", "the volumes tab: size, host space used, the VMs that mount each", _volumes),
    Scene("actions", "Enter: every action on the selected VM", _menu),
    Scene("confirm", "destructive actions ask first", _confirm),
    Scene("help", "? lists the keys of the screen", _help),
    Scene("palette", "ctrl+p: every hypr action", _palette),
    Scene("logs", "logs, following", _logs),
    Scene("logs-search", "search (a regex here) highlights every match; t shows timestamps", _logs_search),
    Scene("logs-filter", "f shows only the matching lines", _logs_filter),
    Scene("exec", "a terminal into the VM (ctrl+] leaves)", _exec),
    Scene("processes", "processes, sorted by CPU", _processes),
    Scene("processes-tree", "t: the process tree", _processes_tree),
    Scene("metrics", "live CPU, memory, network and disk", _metrics),
    Scene("events", "ctrl+p, hypr events: what happened, then what happens", _events),
    Scene("logs-no-color", "NO_COLOR: no colour; stderr in italics, matches reversed", _logs_search,
          no_color=True, sizes=[(80, 24)]),
    Scene("too-small", "a terminal below 80x24", _empty, sizes=[(60, 20)]),
]


def render(scene: Scene, size: tuple[int, int]) -> str:
    """The scene as an SVG string."""
    app = make_app(empty=scene.empty, no_color=scene.no_color)
    result: dict[str, str] = {}

    async def pilot_run(pilot: Pilot) -> None:
        await scene.run(pilot)
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()
        result["svg"] = app.export_screenshot(title=f"hypr-tui: {scene.name}")
        app.exit()

    app.run(headless=True, size=size, auto_pilot=pilot_run)
    if "svg" not in result:
        raise RuntimeError(f"scene {scene.name} did not render")
    return result["svg"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hypr_tui.screenshots", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="screenshots", help="output directory (default: screenshots)")
    parser.add_argument("scenes", nargs="*", help="only these scenes")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for scene in SCENES:
        if args.scenes and scene.name not in args.scenes:
            continue
        for size in scene.sizes:
            path = out / f"{scene.name}-{size[0]}x{size[1]}.svg"
            path.write_text(render(scene, size))
            print(path)


if __name__ == "__main__":
    main()
