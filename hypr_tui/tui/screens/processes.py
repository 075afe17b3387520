"""Processes inside a VM (the agent's process list), live: sort by any column, tree view.

CPU % is the change of each process's CPU ticks (USER_HZ, 100 a second in the
guest) between two polls. The registry's `kill` key signals the selected process
(`HyprClient.signal_process`) once a signal is chosen in the dialog, which is the
confirmation; `W` signals the VM's workload as the main screen's `kill` does.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static

from hypr_tui.actions import by_name
from hypr_tui.tui import format as tf
from hypr_tui.tui.screens.modals import SignalScreen
from hypr_tui.tui.widgets.tables import NAV_BINDINGS, SortableTable

USER_HZ = 100
POLL_SECONDS = 2.0


def _num(value: str, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


class ProcessTable(SortableTable):
    BINDINGS = NAV_BINDINGS

    COLUMNS = [
        ("pid", "PID", 6, lambda p: _num(p["pid"])),
        ("user", "USER", 8, lambda p: p["user"]),
        ("state", "S", 2, lambda p: p.get("state", "")),
        ("cpu", "CPU %", 6, lambda p: p["cpu"] if p["cpu"] is not None else -1.0),
        ("mem", "MEM", 6, lambda p: _num(p.get("rss_kb", "0"))),
        ("command", "COMMAND", None, lambda p: p["command"]),
    ]
    FLEX = {"command": 1.0}

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.tree_view = False

    def row_key(self, item) -> str:
        return item["pid"]

    def cells(self, item) -> list[Any]:
        cpu = "-" if item["cpu"] is None else f"{item['cpu']:.1f}"
        command = item["command"]
        if self.tree_view:
            command = item.get("prefix", "") + command
        return [Text(item["pid"], justify="right"), item["user"], item.get("state", ""),
                Text(cpu, justify="right"), Text(tf.short_size(_num(item.get("rss_kb", "0")) * 1024), justify="right"),
                command]

    def show(self, items: list[Any]) -> None:
        if not self.tree_view:
            super().show(items)
            return
        # Tree: children under their parent, siblings in the chosen order; keep that order.
        sort_key = self.COLUMNS[self.sort_column][3]
        by_pid = {p["pid"]: p for p in items}
        children: dict[str, list[dict]] = {}
        roots = []
        for p in items:
            parent = p.get("ppid")
            if parent in by_pid and parent != p["pid"]:
                children.setdefault(parent, []).append(p)
            else:
                roots.append(p)
        ordered: list[dict] = []

        def visit(p: dict, prefix: str, last: bool, depth: int) -> None:
            p = dict(p)
            p["prefix"] = (prefix + ("└─ " if last else "├─ ")) if depth else ""
            ordered.append(p)
            kids = sorted(children.get(p["pid"], []), key=sort_key, reverse=self.sort_reverse)
            for i, kid in enumerate(kids):
                visit(kid, prefix + (("   " if last else "│  ") if depth else ""), i == len(kids) - 1, depth + 1)

        for root in sorted(roots, key=sort_key, reverse=self.sort_reverse):
            visit(root, "", True, 0)
        saved = (self.sort_column, self.sort_reverse)
        keys = {p["pid"]: i for i, p in enumerate(ordered)}
        # Rebuild with a sort key that keeps the tree's order.
        original = self.COLUMNS
        self.COLUMNS = [(k, label, w, (lambda p, keys=keys: keys[p["pid"]]) if i == self.sort_column else f)
                        for i, (k, label, w, f) in enumerate(original)]
        try:
            self.sort_reverse = False
            super().show(ordered)
        finally:
            self.COLUMNS = original
            self.sort_column, self.sort_reverse = saved


class ProcessScreen(Screen):
    BINDINGS = [
        Binding("escape,q", "back", "Back"),
        Binding("t", "toggle_tree", "Tree"),
        *[Binding(str(n), f"sort({n - 1})", f"Sort by column {n}", show=False) for n in range(1, 7)],
        Binding(by_name("kill").key, "signal", "Signal process"),
        Binding("W", "signal_workload", "Signal workload", show=False),
    ]

    def __init__(self, vm, *, poll_seconds: float = POLL_SECONDS) -> None:
        super().__init__()
        self.vm = vm
        self.poll_seconds = poll_seconds
        self._previous: dict[str, tuple[int, int]] = {}   # pid -> (start ticks, cpu ticks)
        self._previous_time: float | None = None
        self.processes: list[dict] = []
        self.problem: str | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="proc-title", classes="screen-title")
        yield ProcessTable(id="proc-table")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(ProcessTable).focus()
        self._update_title()
        self.poll()
        if self.app.live:  # type: ignore[attr-defined]
            self.set_interval(self.poll_seconds, self.poll)

    @work(exclusive=True, group="processes", exit_on_error=False)
    async def poll(self) -> None:
        client = self.app.client  # type: ignore[attr-defined]
        try:
            procs = await client.processes(self.vm.id)
        except Exception as exc:
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            if message != self.problem:
                self.notify(f"processes of {self.vm.name}: {message}", severity="error")
            self.problem = message
            self._update_title()
            return
        self.problem = None
        now = self.app.clock()  # type: ignore[attr-defined]
        elapsed = (now - self._previous_time) if self._previous_time is not None else 0.0
        if elapsed <= 0:
            elapsed = self.poll_seconds
        current: dict[str, tuple[int, int]] = {}
        rows = []
        for p in procs:
            pid = p.get("pid", "?")
            ticks = _num(p.get("cpu_ticks", "0"))
            start = _num(p.get("start_ticks", "0"))
            current[pid] = (start, ticks)
            before = self._previous.get(pid)
            cpu = None
            if before is not None and before[0] == start:
                cpu = max(0.0, 100.0 * (ticks - before[1]) / (USER_HZ * elapsed))
            uid = p.get("uid", "")
            rows.append({**p, "pid": pid, "cpu": cpu, "user": "root" if uid == "0" else uid,
                         "command": p.get("cmdline") or f"[{p.get('comm', '')}]"})
        self._previous, self._previous_time = current, now
        self.processes = rows
        self.query_one(ProcessTable).show(rows)
        self._update_title()

    def _update_title(self) -> None:
        table = self.query_one(ProcessTable)
        parts = [f"[b]processes[/b] {escape(self.vm.name)}", f"{len(self.processes)} processes",
                 f"sort: {table.sort_label}"]
        if table.tree_view:
            parts.append("tree")
        if self.problem:
            parts.append(f"[red]{escape(self.problem)}[/red]")
        self.query_one("#proc-title", Static).update(" │ ".join(parts))

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_toggle_tree(self) -> None:
        table = self.query_one(ProcessTable)
        table.tree_view = not table.tree_view
        table.show(self.processes)
        self._update_title()

    def action_sort(self, column: int) -> None:
        self.query_one(ProcessTable).sort_by(column)
        self._update_title()

    def action_signal(self) -> None:
        """Signal the selected process, after choosing the signal (Esc cancels)."""
        process = self.query_one(ProcessTable).selected_item
        pid = _num(process["pid"], -1) if process else -1
        if pid < 1:
            self.notify("no process selected", severity="warning")
            return
        if pid == 1:
            self.notify("pid 1 is the VM's init (kestrel): signal the workload with W or stop the VM",
                        severity="warning")
            return
        command = process["command"]
        if len(command) > 60:
            command = command[:59] + "…"
        vm = self.vm

        def chosen(sig: str | None) -> None:
            if not sig:
                return
            app = self.app
            app.perform(  # type: ignore[attr-defined]
                f"signal {pid} in {vm.name}", f"sent {sig} to process {pid} in {vm.name}",
                lambda: app.client.signal_process(vm.id, pid, sig))  # type: ignore[attr-defined]

        self.app.push_screen(SignalScreen(f"Send a signal to process {pid} ({escape(command)}) in "
                                          f"{escape(vm.name)}:", "SIGTERM"), chosen)

    def action_signal_workload(self) -> None:
        self.app.run_registry_action("kill", self.vm)  # type: ignore[attr-defined]
