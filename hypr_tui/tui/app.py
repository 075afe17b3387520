"""hypr-tui: the full-screen dashboard.

The app holds what every screen shows (VMs, images, system info, a ring buffer of
stats per VM) and refreshes it through HyprClient only. Every user action comes
from the registry (hypr_tui/actions.py): keys on a selection (tables.py), the
command palette (`get_system_commands`) and the action menu (Enter) all end in
`run_registry_action`, which asks first when the registry marks the action
destructive, and runs `do_<name>`.

Keeping current: the app follows `HyprClient.events()`: a VM event updates that VM's
row, and the whole list is re-read only after a gap (events this subscriber missed).
Without an event stream (a client that lacks it, or after the stream ended), the VM
list is polled every 1.5 s. Stats are polled every 2 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import shlex
import socket
import time
from functools import partial
from typing import Any, Awaitable, Callable, Iterable

from rich.syntax import Syntax
from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from hypr_tui.actions import ACTIONS, Action, by_name
from hypr_tui.tui.net_actions import NetActions
from hypr_tui.tui.registry import palette_entries
from hypr_tui.tui.screens.exec import ExecScreen
from hypr_tui.tui.screens.logs import LogsScreen
from hypr_tui.tui.screens.main import MainScreen
from hypr_tui.tui.screens.metrics import MetricsScreen, MetricsStore
from hypr_tui.tui.screens.modals import (
    ConfirmScreen,
    HelpScreen,
    MenuScreen,
    PromptScreen,
    SignalScreen,
    TextScreen,
    TooSmallScreen,
)
from hypr_tui.tui.network_actions import NetworkActions
from hypr_tui.tui.screens.processes import ProcessScreen
from hypr_tui.tui.volumes import VolumeActions
from hypr_tui.tui.widgets.terminal import Terminal
from hypr_tui.tui.image_actions import ImageActionsMixin
from hypr_tui.tui.registry_actions import RegistryActions

MIN_SIZE = (80, 24)
POLL_SECONDS = 1.5          # VM list, while there is no event stream
STATS_SECONDS = 2.0
RECONNECT_SECONDS = 2.0     # between HyprClient.connect() tries once the daemon went away
SLOW_SECONDS = 15.0         # images and system info
# Widget bindings too basic for the help screen.
_NOISE = {"cursor_left", "cursor_right", "page_left", "page_right", "scroll_left", "scroll_right",
          "scroll_home", "scroll_end"}


def handler_name(action: Action) -> str:
    """The HyprApp method that performs a registry action: `do_<name>` (spaces as _)."""
    return "do_" + action.name.replace(" ", "_")


def is_disconnect(exc: BaseException) -> bool:
    """A failure that means the engine is gone (hyprd stopped or crashed), not a refused call."""
    from hypr_engine.errors import Unavailable

    return isinstance(exc, (Unavailable, ConnectionError, EOFError)) or \
        (isinstance(exc, OSError) and not isinstance(exc, (FileNotFoundError, PermissionError)))


def error_text(exc: BaseException) -> str:
    message = getattr(exc, "message", None)
    if message:
        return message
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class HyprApp(ImageActionsMixin, RegistryActions, VolumeActions, NetActions, NetworkActions, App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "hypr"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
    ]

    def __init__(self, client: Any = None, *, connect: Callable[[], Awaitable[Any]] | None = None,
                 clock: Callable[[], float] = time.time, hostname: str | None = None, live: bool = True,
                 poll_seconds: float = POLL_SECONDS, stats_seconds: float = STATS_SECONDS,
                 reconnect_seconds: float = RECONNECT_SECONDS) -> None:
        super().__init__()
        self.client = client
        self._connect = connect
        self.clock = clock
        self.hostname = hostname or socket.gethostname()
        self.live = live            # False: load once and never poll (the screenshots' fixed scene)
        self.poll_seconds = poll_seconds
        self.stats_seconds = stats_seconds
        self.reconnect_seconds = reconnect_seconds
        self.reconnecting = False    # a connection error seen: HyprClient.connect() is retried
        self.vms: list = []
        self.images: list = []
        self.info: dict = {}
        self.loaded = False
        self.metrics = MetricsStore()
        self.connection_error: str | None = None
        self.following_events = False
        self._stats_busy = False
        self._gone: set[str] = set()

    # --- start-up and data -------------------------------------------------------------------

    def on_mount(self) -> None:
        self.push_screen(MainScreen())
        self._check_size()
        self.start()

    @work(group="connect", exclusive=True, exit_on_error=False)
    async def start(self) -> None:
        while self.client is None:
            try:
                self.client = await asyncio.wait_for(self._connect(), 60)  # type: ignore[misc]
            except Exception as exc:
                self._connection_failed(exc)
                await asyncio.sleep(3)
        await self.refresh_all()
        if not self.live:
            return
        if callable(getattr(self.client, "events", None)):
            self.follow_events()
        self.set_interval(self.poll_seconds, self.poll_vms)
        self.set_interval(self.stats_seconds, self.poll_stats)
        self.set_interval(SLOW_SECONDS, self.poll_slow)
        self.poll_stats()

    async def refresh_all(self) -> None:
        await asyncio.gather(self._load_vms(), self._load_images(), self._load_info(), self._load_volumes())
        self.loaded = True
        self._broadcast()

    async def _load_vms(self) -> None:
        try:
            self.vms = await self.client.list_vms(all=True)
        except Exception as exc:
            self._connection_failed(exc)
            return
        if self.connection_error is not None:
            self.connection_error = None
            self.notify("connected to the engine again")
        ids = {vm.id for vm in self.vms}
        self.metrics.forget(ids)

    async def _load_images(self) -> None:
        try:
            self.images = await self.client.list_images()
        except Exception as exc:
            self._connection_failed(exc)

    async def _load_info(self) -> None:
        try:
            self.info = await self.client.system_info()
        except Exception as exc:
            self._connection_failed(exc)

    def _connection_failed(self, exc: BaseException) -> None:
        message = error_text(exc)
        if message != self.connection_error:
            self.notify(f"cannot reach the engine: {message}", severity="error", timeout=8)
        self.connection_error = message
        if self._connect is not None and self.client is not None and self.loaded and is_disconnect(exc) \
                and not self.reconnecting:
            self.reconnecting = True
            self.reconnect()
        self._broadcast()

    @work(group="reconnect", exclusive=True, exit_on_error=False)
    async def reconnect(self) -> None:
        """The daemon went away: `HyprClient.connect()` every 2 s (an embedded engine when no
        daemon answers, the daemon when it is back) until a call goes through, then refresh."""
        try:
            while True:
                await asyncio.sleep(self.reconnect_seconds)
                try:
                    client = await asyncio.wait_for(self._connect(), 60)  # type: ignore[misc]
                    await client.list_vms(all=True)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.connection_error = error_text(exc)
                    self._broadcast()
                    continue
                old, self.client = self.client, client
                for screen in self.screen_stack:   # open logs read their pages from the new one
                    for view in screen.query("LogView"):
                        if getattr(view.buffer, "remote", False):
                            view.buffer.client = client
                if old is not None and old is not client:
                    with contextlib.suppress(Exception):
                        await old.close()
                break
        finally:
            self.reconnecting = False
        await self.refresh_all()
        if self.live and callable(getattr(self.client, "events", None)) and not self.following_events:
            self.follow_events()

    def poll_vms(self) -> None:
        if self.following_events:
            return  # kept current by the event stream; re-listed only after a gap
        self._poll_vms()

    @work(group="vms", exclusive=True, exit_on_error=False)
    async def _poll_vms(self) -> None:
        if self.client is None:
            return
        await self._load_vms()
        self._broadcast()

    @work(group="slow", exclusive=True, exit_on_error=False)
    async def poll_slow(self) -> None:
        await asyncio.gather(self._load_images(), self._load_info(), self._load_volumes())
        self._broadcast()

    @work(group="events", exclusive=True, exit_on_error=False)
    async def follow_events(self) -> None:
        """Keep current from the engine's events (HyprClient.events): a VM event updates that
        one VM, an image event reloads the images, and only a gap (events this subscriber
        missed) re-lists everything. Polling takes over if the stream ends."""
        self.following_events = True
        try:
            async for item in self.client.events(follow=True):
                kind = getattr(item, "type", None)
                if kind == "vm":
                    await self._apply_vm_event(item)
                elif kind == "image":
                    self._reload_images()
                else:  # a gap
                    self._poll_vms()
                    self._reload_images()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.notify(f"event stream ended ({error_text(exc)}): polling instead", severity="warning")
        finally:
            self.following_events = False

    async def _apply_vm_event(self, event) -> None:
        """One VM's row from one event, without listing all VMs."""
        others = [vm for vm in self.vms if vm.id != event.id]
        if event.action != "destroy":
            try:
                others.append(await self.client.get_vm(event.id))
            except Exception as exc:
                if type(exc).__name__ != "NotFound":
                    self._connection_failed(exc)
                    return
        self.vms = sorted(others, key=lambda vm: vm.created_at, reverse=True)
        self._broadcast()

    @work(group="images", exclusive=True, exit_on_error=False)
    async def _reload_images(self) -> None:
        await self._load_images()
        self._broadcast()

    @work(group="stats", exit_on_error=False)
    async def poll_stats(self) -> None:
        if self.client is None or self._stats_busy:
            return
        running = [vm.id for vm in self.vms if vm.state == "running"]
        if not running:
            return
        self._stats_busy = True
        try:
            samples = await asyncio.wait_for(self.client.stats(running), 30)
        except Exception:
            return  # a VM went away between the list and the sample: the next poll is right again
        finally:
            self._stats_busy = False
        now = self.clock()
        for sample in samples:
            self.metrics.add(sample["id"], now, sample)
        self._broadcast()

    def _broadcast(self) -> None:
        """Every screen that shows app data redraws; screens about a removed VM say so once."""
        ids = {vm.id for vm in self.vms}
        for screen in list(self.screen_stack):
            vm = getattr(screen, "vm", None)
            if self.loaded and self.connection_error is None and vm is not None and vm.id not in ids \
                    and vm.id not in self._gone:
                self._gone.add(vm.id)
                self.notify(f"VM {vm.name} was removed", severity="warning")
            refresh = getattr(screen, "refresh_data", None)
            if refresh is not None and screen.is_mounted:
                try:
                    refresh()
                except Exception as exc:  # a half-built screen: the next poll redraws it
                    self.log.error(f"refresh of {screen}: {exc!r}")

    # --- registry actions ------------------------------------------------------------------------

    def selection(self, target: str | None) -> Any:
        """What an action on `target` applies to: the VM or image selected on the main screen,
        or the VM of the screen in front (logs, exec, processes, metrics)."""
        if target is None:
            return None
        for screen in reversed(self.screen_stack):
            vm = getattr(screen, "vm", None)
            if target == "vm" and vm is not None:
                return vm
            if isinstance(screen, MainScreen):
                from hypr_tui.tui.widgets.network_table import NetworkTable
                from hypr_tui.tui.widgets.tables import ImageTable, VmTable

                table = screen.query_one({"vm": VmTable, "image": ImageTable, "network": NetworkTable}[target])
                return table.selected_item
        return None

    def run_registry_action(self, name: str, target: Any = None) -> None:
        action = by_name(name)
        if self.client is None:
            self.notify("not connected to the engine yet", severity="error")
            return
        if action.target is not None and target is None:
            self.notify(f"select a{'n' if action.target == 'image' else ''} {action.target} first",
                        severity="warning")
            return
        handler = getattr(self, handler_name(action))
        if action.target is None:
            handler()
        elif action.destructive and action.name != "kill":   # kill asks with its signal chooser
            question = self._question(action, target)

            def answered(yes: bool | None) -> None:
                if yes:
                    handler(target)

            self.push_screen(ConfirmScreen(question, confirm=action.name.capitalize()), answered)
        else:
            handler(target)

    def _question(self, action: Action, target: Any) -> str:
        what = action.help[:1].upper() + action.help[1:]
        if action.target == "image":
            return f"{what}:\n\n  {target}\n\nhypr {action.name} {target}"
        if action.target == "network":
            users = ", ".join(e.vm_name for e in target.endpoints)
            return f"{what}:\n\n  {target.name} ({target.driver} {target.subnet})\n\n" + \
                (f"VMs on it: {users}; `hypr network rm -f` disconnects them.\n\n" if users else "") + \
                f"hypr {action.name} {target.name}"
        running = target.state == "running"
        if action.name == "rm" and running:
            return (f"{target.name} is running: it will be killed and removed.\n\n"
                    f"hypr rm -f {target.name}")
        return f"{what}:\n\n  {target.name} ({target.image}, {target.state})\n\n" \
               f"hypr {action.name} {target.name}"

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for entry in palette_entries():
            yield SystemCommand(entry.title, entry.help, partial(self._palette_run, entry.action))

    def _palette_run(self, action: Action) -> None:
        self.run_registry_action(action.name, self.selection(action.target))

    def open_action_menu(self, target: str, item: Any) -> None:
        if item is None:
            return
        label = item.name if target == "vm" else item
        choices = [(a.name, f"{a.key}  {a.name:<8} {a.help}") for a in ACTIONS if a.target == target]

        def chosen(name: str | None) -> None:
            if name:
                self.run_registry_action(name, item)

        keys = {a.key: a.name for a in ACTIONS if a.target == target and a.key}
        self.push_screen(MenuScreen(f"{target.upper()} {label}: Enter or the key runs it", choices, keys), chosen)

    def perform(self, what: str, done: str, call: Callable[[], Awaitable[Any]]) -> None:
        """Run a client call in the background; say when it is done (`done`, formatted with
        its result) or why `what` failed."""

        async def run() -> None:
            try:
                result = await call()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.notify(f"{what}: {error_text(exc)}", severity="error", timeout=8)
            else:
                message = done.format(result=result)
                if message:
                    self.notify(message)
            finally:
                self._poll_vms()

        self.run_worker(run(), group="actions", exit_on_error=False)

    # Actions on a VM (target == "vm")

    def do_start(self, vm) -> None:
        self.notify(f"starting {vm.name}…", timeout=2)
        self.perform(f"start {vm.name}", f"started {vm.name}", lambda: self.client.start_vm(vm.id))

    def do_stop(self, vm) -> None:
        self.notify(f"stopping {vm.name}…", timeout=2)
        self.perform(f"stop {vm.name}", f"stopped {vm.name}", lambda: self.client.stop_vm(vm.id))

    def do_restart(self, vm) -> None:
        self.notify(f"restarting {vm.name}…", timeout=2)
        self.perform(f"restart {vm.name}", f"restarted {vm.name}", lambda: self.client.restart_vm(vm.id))

    def do_kill(self, vm) -> None:
        def chosen(sig: str | None) -> None:
            if sig:
                self.perform(f"kill {vm.name}", f"sent {sig} to {vm.name}", lambda: self.client.kill_vm(vm.id, sig))

        default = next((a.options.get("default") for a in by_name("kill").args if "--signal" in a.flags),
                       "SIGKILL")
        self.push_screen(SignalScreen(f"Send a signal to the workload of {vm.name}:", default), chosen)

    def do_rm(self, vm) -> None:
        force = vm.state in ("running", "starting", "stopping", "restarting")
        self.perform(f"rm {vm.name}", f"removed {vm.name}", lambda: self.client.remove_vm(vm.id, force=force))

    def do_rename(self, vm) -> None:
        def chosen(name: str | None) -> None:
            name = (name or "").strip()
            if name and name != vm.name:
                self.perform(f"rename {vm.name}", f"renamed {vm.name} to {name}", lambda: self.client.rename_vm(vm.id, name))

        self.push_screen(PromptScreen(f"New name for {vm.name}:", vm.name), chosen)

    def do_wait(self, vm) -> None:
        self.notify(f"waiting for {vm.name} to exit (the dashboard stays usable)", timeout=3)
        self.perform(f"wait {vm.name}", f"{vm.name} exited with code {{result}}", lambda: self.client.wait_vm(vm.id))

    def do_logs(self, vm) -> None:
        self.push_screen(LogsScreen(vm))

    def do_exec(self, vm) -> None:
        if vm.state != "running":
            self.notify(f"{vm.name} is not running (start it with {by_name('start').key})", severity="warning")
            return

        def chosen(command: str | None) -> None:
            argv = self._words(command, "command")
            if not argv:
                return
            self.push_screen(ExecScreen(vm, argv))

        self.push_screen(PromptScreen(f"Run in a terminal in {vm.name}:", "sh",
                                      hint="Enter runs it; inside, ctrl+] leaves; Esc cancels"), chosen)

    def _words(self, text: str | None, what: str) -> list[str]:
        """A prompt's answer split as a shell would; [] (after saying why) if empty or unparsable."""
        if not text or not text.strip():
            return []
        try:
            return shlex.split(text)
        except ValueError as exc:
            self.notify(f"bad {what}: {exc}", severity="error")
            return []

    def do_inspect(self, vm) -> None:
        async def show() -> None:
            from hypr_tui import formatting as fmt

            try:
                info = await self.client.get_vm(vm.id)
            except Exception as exc:
                self.notify(f"inspect {vm.name}: {error_text(exc)}", severity="error")
                return
            text = json.dumps(fmt.vm_inspect(info), indent=2)
            body = Syntax(text, "json", theme="ansi_dark", background_color="default", word_wrap=True)
            self.push_screen(TextScreen(f"hypr inspect {vm.name}", body))

        self.run_worker(show(), group="inspect", exclusive=True, exit_on_error=False)

    def do_top(self, vm) -> None:
        self.push_screen(ProcessScreen(vm))

    def do_stats(self, vm) -> None:
        self.push_screen(MetricsScreen(vm))

    def do_cp(self, vm) -> None:
        from pathlib import Path

        from hypr_tui.commands import _vm_path

        def chosen(text: str | None) -> None:
            words = self._words(text, "arguments")
            if not words:
                return
            args = self._parse_cli(["cp", *words])
            if args is None:
                return
            src_vm, src_path = _vm_path(args.src)
            dest_vm, dest_path = _vm_path(args.dest)
            if bool(src_vm) == bool(dest_vm):
                self.notify("cp copies between a VM and the host: exactly one side is VM:PATH", severity="error")
                return
            if src_vm:
                dest = Path(dest_path).expanduser().absolute()
                self.perform(f"cp {args.src}", f"copied {args.src} to {dest}",
                             lambda: self.client.copy_from_vm(src_vm, src_path, dest))
            else:
                src = Path(src_path).expanduser().absolute()
                self.perform(f"cp {src}", f"copied {src} to {args.dest}",
                             lambda: self.client.copy_to_vm(dest_vm, src, dest_path, archive=args.archive))

        self.push_screen(PromptScreen(f"hypr cp (VM:PATH on one side; {vm.name}: is this VM)",
                                      f"{vm.name}:/etc/hostname .",
                                      hint="SRC DEST, as `hypr cp`: -a keeps owners; Enter copies, Esc cancels"),
                         chosen)

    # Actions on an image (target == "image")

    def do_rmi(self, ref: str) -> None:
        async def remove() -> None:
            try:
                lines = await self.client.remove_image(ref)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.notify(f"rmi {ref}: {error_text(exc)}", severity="error", timeout=8)
                return
            self.notify("\n".join(lines) or f"removed {ref}")
            await self._load_images()
            self._broadcast()

        self.run_worker(remove(), group="actions", exit_on_error=False)

    # Actions without a selection

    def _parse_cli(self, words: list[str]):
        """Parse `hypr WORDS` with the CLI's own parser (the registry's arguments)."""
        from hypr_tui.cli import build_parser

        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                return build_parser().parse_args(words)
        except SystemExit:
            lines = [line for line in err.getvalue().splitlines() if line.startswith("hypr: error:")]
            self.notify(lines[-1] if lines else "invalid arguments", severity="error", timeout=8)
            return None

    def _create(self, start: bool) -> None:
        verb = "run" if start else "create"

        def chosen(text: str | None) -> None:
            words = self._words(text, "arguments")
            if not words:
                return
            args = self._parse_cli([verb, *(["-d"] if start else []), *words])
            if args is None:
                return
            from hypr_tui.commands import UsageError, _spec_from_args

            try:
                spec = _spec_from_args(args)
            except UsageError as exc:
                self.notify(str(exc), severity="error")
                return

            async def create() -> str:
                await self._pull_if_missing(spec.image)
                vm = await self.client.create_vm(spec)
                if start:
                    await self.client.start_vm(vm.id)
                return vm.name

            self.perform(verb, f"{'started' if start else 'created'} {{result}}", create)

        self.push_screen(PromptScreen(f"hypr {verb}{' -d' if start else ''}", "",
                                      placeholder="[--name NAME] [-e KEY=VALUE] ... IMAGE [COMMAND ...]",
                                      hint=f"the arguments of `hypr {verb}`; Enter {verb}s, Esc cancels"), chosen)

    async def _pull_if_missing(self, image: str) -> None:
        """As `hypr run`: an image that is not here is pulled first (Docker's --pull missing)."""
        from hypr_engine.errors import NotFound

        try:
            await self.client.get_image(image)
        except NotFound:
            self.notify(f"Unable to find image '{image}' locally: pulling", timeout=5)
            async for _ in self.client.pull_image(image):
                pass

    def do_run(self) -> None:
        self._create(start=True)

    def do_create(self) -> None:
        self._create(start=False)

    def do_ps(self) -> None:
        self._show_tab("vms")

    def do_images(self) -> None:
        self._show_tab("images")

    def do_events(self) -> None:
        from hypr_tui.tui.screens.logs import EventsScreen

        if not callable(getattr(self.client, "events", None)):
            self.notify("this engine has no event stream", severity="error")
            return
        self.push_screen(EventsScreen())

    def _show_tab(self, tab: str) -> None:
        while not isinstance(self.screen, MainScreen) and len(self.screen_stack) > 1:
            self.pop_screen()
        if isinstance(self.screen, MainScreen):
            self.screen.select_tab(tab)

    def do_load(self) -> None:
        from pathlib import Path

        def chosen(path: str | None) -> None:
            if path and path.strip():
                target = Path(path.strip()).expanduser()

                async def load() -> str:
                    images = await self.client.load_image(target)
                    await self._load_images()
                    return ", ".join(t for img in images for t in (img.tags or [img.short_id]))

                self.perform("load", "loaded {result}", load)

        self.push_screen(PromptScreen("hypr load -i", "", placeholder="docker-archive, oci-archive or OCI layout"),
                         chosen)

    def do_import(self) -> None:
        from pathlib import Path

        def chosen(text: str | None) -> None:
            words = self._words(text, "arguments")
            if not words:
                return
            if len(words) > 2:
                self.notify("import takes TARBALL [REPOSITORY[:TAG]]", severity="error")
                return
            tarball, ref = Path(words[0]).expanduser(), (words[1] if len(words) > 1 else None)

            async def do() -> str:
                img = await self.client.import_image(tarball, ref)
                await self._load_images()
                return img.short_id

            self.perform("import", "imported {result}", do)

        self.push_screen(PromptScreen("hypr import", "", placeholder="TARBALL [REPOSITORY[:TAG]]"), chosen)

    def do_system_info(self) -> None:
        async def show() -> None:
            from hypr_tui import formatting as fmt

            try:
                self.info = await self.client.system_info()
                text = fmt.system_info_text(self.info)
            except Exception as exc:
                self.notify(f"system info: {error_text(exc)}", severity="error")
                return
            self.push_screen(TextScreen("hypr system info", text))

        self.run_worker(show(), group="info", exclusive=True, exit_on_error=False)

    # --- keys, help, size ---------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Inside a live terminal every key belongs to the guest (ctrl+q, ctrl+p, ? included).
        if action in ("quit", "command_palette", "help") and isinstance(self.focused, Terminal) \
                and self.focused.live:
            return False
        return True

    def action_help(self) -> None:
        if isinstance(self.screen, (HelpScreen, TooSmallScreen)):
            return
        rows: dict[tuple[int, str, str, str], list[str]] = {}
        for active in self.screen.active_bindings.values():
            binding = active.binding
            if not binding.description or binding.system or binding.action in _NOISE:
                continue
            # The registry's actions first, then the screen's own keys, the app's, then movement.
            if (binding.id or "").startswith("hypr."):
                group = 0
            elif active.node is self.screen:
                group = 1
            elif active.node is self:
                group = 2
            else:
                group = 3
            display = binding.key_display or self.get_key_display(binding)
            detail = binding.tooltip if group == 0 else ""
            entry = rows.setdefault((group, binding.action, binding.description, detail), [])
            if display not in entry:
                entry.append(display)
        lines = [(" / ".join(keys), description, detail) for (_, _, description, detail), keys in sorted(
            rows.items(), key=lambda kv: kv[0][0])]
        lines.append(("Enter", "Actions", "every action on the selection, in a menu")
                     if isinstance(self.screen, MainScreen) else ("", "", ""))
        lines.append(("ctrl+p", "Palette", "every hypr action, searchable"))
        lines = [line for line in lines if line[0]]
        name = type(self.screen).__name__.removesuffix("Screen").lower() or "main"
        self.push_screen(HelpScreen(f"Keys: {name}", lines))

    def on_resize(self, event) -> None:
        self._check_size(event.size.width, event.size.height)

    def _check_size(self, width: int | None = None, height: int | None = None) -> None:
        if width is None or height is None:
            width, height = self.size
        small = width < MIN_SIZE[0] or height < MIN_SIZE[1]
        top = self.screen if self.screen_stack else None
        if small:
            if not isinstance(top, TooSmallScreen):
                screen = TooSmallScreen(MIN_SIZE)
                self.push_screen(screen, lambda _: None)
                self.call_after_refresh(screen.show_size, width, height)
            else:
                top.show_size(width, height)
        elif isinstance(top, TooSmallScreen):
            self.pop_screen()
