"""The VM and image tables of the main screen, with the registry's keys on their selection."""

from __future__ import annotations

from typing import Any, Callable

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from hypr_tui.tui import format as tf
from hypr_tui.tui.registry import selection_bindings

NAV_BINDINGS = [
    Binding("j", "cursor_down", "Down", show=False),
    Binding("k", "cursor_up", "Up", show=False),
    Binding("g", "scroll_top", "Top", show=False),
    Binding("G", "scroll_bottom", "Bottom", show=False),
]


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


class SortableTable(DataTable):
    """A DataTable whose rows are rebuilt from data, sorted by a column, keeping the selection."""

    # (key, label, fixed width or None for a share of what is left, sort key)
    COLUMNS: list[tuple[str, str, int | None, Callable[[Any], Any]]] = []
    FLEX: dict[str, float] = {}

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False, cell_padding=1)
        self.sort_column = 0
        self.sort_reverse = False
        self._items: list[Any] = []
        self._widths: dict[str, int] = {}
        self._built_width = -1

    # --- columns -----------------------------------------------------------------------

    def _column_widths(self, total: int) -> dict[str, int]:
        fixed = sum(w for _, _, w, _ in self.COLUMNS if w)
        padding = 2 * self.cell_padding * len(self.COLUMNS)
        left = max(len(self.FLEX) * 6, total - fixed - padding - 1)
        widths = {key: w for key, _, w, _ in self.COLUMNS if w}
        share = sum(self.FLEX.values())
        for key, weight in self.FLEX.items():
            widths[key] = int(left * weight / share)
        return widths

    def _build_columns(self) -> None:
        width = self.size.width or 80
        self._widths = self._column_widths(width)
        self.clear(columns=True)
        for i, (key, label, _, _) in enumerate(self.COLUMNS):
            if i == self.sort_column:
                label = f"{label} {'▼' if self.sort_reverse else '▲'}"
            self.add_column(label, width=self._widths[key], key=key)
        self._built_width = width

    def on_resize(self) -> None:
        if self.size.width != self._built_width:
            self.show(self._items)

    def sort_by(self, column: int) -> None:
        if column >= len(self.COLUMNS):
            return
        if column == self.sort_column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = column, False
        self._built_width = -1
        self.show(self._items)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(event.column_index)

    @property
    def sort_label(self) -> str:
        return f"{self.COLUMNS[self.sort_column][1].lower()} {'▼' if self.sort_reverse else '▲'}"

    # --- rows --------------------------------------------------------------------------

    def row_key(self, item: Any) -> str:
        raise NotImplementedError

    def cells(self, item: Any) -> list[Any]:
        raise NotImplementedError

    def show(self, items: list[Any]) -> None:
        """Replace the rows, sorted, keeping the cursor on the same item when it is still there."""
        selected = self.selected_key
        if self.size.width != self._built_width or not self.columns:
            self._build_columns()
        else:
            self.clear()
        sort_key = self.COLUMNS[self.sort_column][3]
        self._items = sorted(items, key=lambda it: (sort_key(it), self.row_key(it)), reverse=self.sort_reverse)
        for item in self._items:
            cells = []
            for (key, _, _, _), cell in zip(self.COLUMNS, self.cells(item)):
                if isinstance(cell, str):
                    cell = _fit(cell, self._widths[key])
                elif isinstance(cell, Text) and cell.justify == "right":  # DataTable ignores justify
                    cell = Text(cell.plain.rjust(self._widths[key]), style=cell.style)
                cells.append(cell)
            self.add_row(*cells, key=self.row_key(item))
        if selected is not None:
            keys = [self.row_key(it) for it in self._items]
            if selected in keys:
                self.move_cursor(row=keys.index(selected), animate=False, scroll=True)

    @property
    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:
            return None

    @property
    def selected_item(self) -> Any | None:
        key = self.selected_key
        for item in self._items:
            if self.row_key(item) == key:
                return item
        return None

    def action_registry(self, name: str) -> None:
        self.app.run_registry_action(name, self.selected_item)  # type: ignore[attr-defined]


_STATE_ORDER = {"running": 0, "restarting": 1, "starting": 2, "stopping": 3, "created": 4, "exited": 5}


class VmTable(SortableTable):
    """VMs: name, image, state, health, uptime, CPU %, memory. Keys from the registry's VM actions."""

    BINDINGS = [*NAV_BINDINGS, *selection_bindings("vm")]

    COLUMNS = [
        ("name", "NAME", None, lambda r: r[0].name),
        ("image", "IMAGE", None, lambda r: r[0].image),
        ("state", "STATE", 9, lambda r: (_STATE_ORDER.get(r[0].state, 9), r[0].exit_code or 0)),
        ("health", "HEALTH", 9, lambda r: tf.vm_health(r[0])),
        ("uptime", "UPTIME", 6, lambda r: -(r[0].started_at or 0) if r[0].state == "running" else 1),
        ("cpu", "CPU %", 6, lambda r: (r[1] or {}).get("cpu_percent", -1)),
        ("mem", "MEMORY", 9, lambda r: (r[1] or {}).get("mem_used", -1)),
    ]
    FLEX = {"name": 0.4, "image": 0.6}

    def __init__(self, *, id: str | None = None, clock: Callable[[], float]) -> None:
        super().__init__(id=id)
        self.clock = clock

    def row_key(self, item) -> str:
        return item[0].id

    @property
    def selected_item(self):
        item = super().selected_item
        return item[0] if item is not None else None

    def cells(self, item) -> list[Any]:
        vm, stats = item
        now = self.clock()
        state = tf.vm_state(vm)
        state_style = {"running": "green", "exited": "dim", "created": "cyan"}.get(vm.state, "yellow")
        if vm.state == "exited" and vm.exit_code:
            state_style = "red"
        health = tf.vm_health(vm)
        health_style = {"healthy": "green", "unhealthy": "bold red", "starting": "yellow"}.get(health, "dim")
        cpu = mem = "-"
        if stats and "cpu_percent" in stats:
            cpu = f"{stats['cpu_percent']:.1f}"
            mem = f"{tf.short_size(stats['mem_used'])}/{tf.short_size(stats['mem_limit'])}"
        elif vm.state == "running":
            cpu, mem = "…", f"-/{tf.short_size(vm.spec.memory_mb << 20)}"
        return [vm.name, vm.image, Text(state, style=state_style), Text(health, style=health_style),
                tf.vm_uptime(vm, now), Text(cpu, justify="right"), Text(mem, justify="right")]


class ImageTable(SortableTable):
    """Images, one row per tag. Keys from the registry's image actions."""

    BINDINGS = [*NAV_BINDINGS, *selection_bindings("image")]

    COLUMNS = [
        ("repo", "REPOSITORY", None, lambda r: r[1]),
        ("tag", "TAG", None, lambda r: r[2]),
        ("id", "IMAGE ID", 12, lambda r: r[3].short_id),
        ("created", "CREATED", 11, lambda r: -(r[3].added_at or 0)),
        ("size", "SIZE", 6, lambda r: r[3].size),
    ]
    FLEX = {"repo": 0.7, "tag": 0.3}

    def __init__(self, *, id: str | None = None, clock: Callable[[], float]) -> None:
        super().__init__(id=id)
        self.clock = clock

    def show_images(self, images) -> None:
        rows = []
        for img in images:
            for ref, repo, tag in tf.image_rows(img):
                rows.append((ref, repo, tag, img))
        self.show(rows)

    def row_key(self, item) -> str:
        return item[0]

    @property
    def selected_item(self):
        item = super().selected_item
        return item[0] if item is not None else None

    def cells(self, item) -> list[Any]:
        ref, repo, tag, img = item
        return [repo, tag, img.short_id, tf.image_created(img, self.clock()),
                Text(tf.short_size(img.size), justify="right")]
