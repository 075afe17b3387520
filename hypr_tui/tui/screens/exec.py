"""An interactive terminal into a VM: `exec -it` inside the dashboard.

Everything typed goes to the guest, ctrl keys included, except ctrl+] (telnet's
escape character), which leaves. The guest's terminal is the widget's size.
"""

from __future__ import annotations

import asyncio

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Static

from hypr_engine.models import ExecOptions
from hypr_tui.tui.widgets.terminal import LEAVE_KEY, LEAVE_KEY_DISPLAY, Terminal


class ExecScreen(Screen):
    BINDINGS = [
        Binding(LEAVE_KEY, "leave", "Leave", key_display=LEAVE_KEY_DISPLAY, priority=True),
        # Only once the guest process has ended (the terminal then lets keys through):
        Binding("escape,q,enter", "leave_ended", "Leave", show=False),
    ]

    def __init__(self, vm, argv: list[str]) -> None:
        super().__init__()
        self.vm = vm
        self.argv = argv
        self.session = None
        self.state = "starting"
        self._started = False

    def compose(self) -> ComposeResult:
        yield Static(id="exec-title", classes="screen-title")
        yield Terminal(id="terminal")

    def on_mount(self) -> None:
        self._update_title()
        self.query_one(Terminal).focus()

    def _update_title(self) -> None:
        command = escape(" ".join(self.argv))
        self.query_one("#exec-title", Static).update(
            f"[b]exec[/b] {command} in {escape(self.vm.name)} │ {self.state} │ "
            f"[b]{LEAVE_KEY_DISPLAY}[/b] leaves")

    @on(Terminal.Resized)
    def _resized(self, event: Terminal.Resized) -> None:
        if not self._started:
            self._started = True
            self.run_session(event.rows, event.cols)
        elif self.session is not None and self.query_one(Terminal).live:
            try:
                self.session.resize(event.rows, event.cols)
            except Exception:
                pass

    @work(exclusive=True, group="exec", exit_on_error=False)
    async def run_session(self, rows: int, cols: int) -> None:
        terminal = self.query_one(Terminal)
        client = self.app.client  # type: ignore[attr-defined]
        writer = None
        close = None
        try:
            handle = await client.exec(
                self.vm.id, ExecOptions(argv=self.argv, tty=True, interactive=True, rows=rows, cols=cols))
            # HyprClient.exec returns one session with close(); the first engine returned (agent, session).
            if isinstance(handle, tuple):
                agent, self.session = handle
                close = agent.close
            else:
                self.session = handle
                close = getattr(handle, "close", None)
            session = self.session
            if (terminal.screen_model.lines, terminal.screen_model.columns) != (rows, cols):
                session.resize(terminal.screen_model.lines, terminal.screen_model.columns)
            self.state = "[green]running[/green]"
            self._update_title()

            async def pump_keys() -> None:
                try:
                    while True:
                        data = await terminal.outgoing()
                        await session.write(data)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    pass  # the session ended: output() says how

            writer = asyncio.ensure_future(pump_keys())
            async for _stream, data in session.output():
                terminal.feed(data)
            code = session.exit_code
            self.state = f"exited with code {code}; Esc leaves"
            self.notify(f"{' '.join(self.argv)} in {self.vm.name} exited with code {code}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the VM stopped, exec refused, the daemon gone
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            self.state = f"[red]ended: {escape(message)}[/red]; Esc leaves"
            self.notify(f"exec in {self.vm.name}: {message}", severity="error")
        finally:
            terminal.live = False
            terminal.refresh()
            if writer is not None:
                writer.cancel()
            if close is not None:
                try:
                    await asyncio.wait_for(close(), 10)
                except Exception:
                    pass
            if self.is_mounted:
                self._update_title()

    def action_leave(self) -> None:
        self.workers.cancel_group(self, "exec")
        self.app.pop_screen()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "leave_ended":
            return not self.query_one(Terminal).live
        return True

    def action_leave_ended(self) -> None:
        self.app.pop_screen()
