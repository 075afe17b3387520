"""The Volumes tab's table: name, size, space used on the host, and the VMs that mount it."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from hypr_tui.tui import format as tf
from hypr_tui.tui.widgets.tables import NAV_BINDINGS, SortableTable


class VolumeTable(SortableTable):
    BINDINGS = [*NAV_BINDINGS]

    COLUMNS = [
        ("name", "VOLUME NAME", None, lambda v: v.name),
        ("size", "SIZE", 6, lambda v: v.size_bytes),
        ("used", "USED", 6, lambda v: v.allocated_bytes),
        ("users", "USED BY", None, lambda v: ", ".join(v.used_by)),
    ]
    FLEX = {"name": 0.55, "users": 0.45}

    def row_key(self, item) -> str:
        return item.name

    def cells(self, v) -> list[Any]:
        return [v.name[:12] if v.anonymous else v.name,
                Text(tf.short_size(v.size_bytes), justify="right"),
                Text(tf.short_size(v.allocated_bytes), justify="right"),
                ", ".join(v.used_by) or "-"]
