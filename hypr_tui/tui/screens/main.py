"""The main screen: VMs (kept current), images, and the tabs that arrive with later features."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Input, Static, TabbedContent, TabPane

from hypr_tui.tui.widgets.tables import ImageTable, VmTable
from hypr_tui.tui.widgets.volumes import VolumeTable

EMPTY_VMS = (
    "No VMs.\n\n"
    "Run one with: hypr run -d --name web IMAGE [COMMAND]\n"
    "or here: ctrl+p, then \"hypr run\"."
)
EMPTY_IMAGES = "No images.\n\nLoad one with: hypr load -i FILE.tar\nor here: ctrl+p, then \"hypr load\"."
EMPTY_VOLUMES = ("No volumes.\n\nCreate one with: hypr volume create NAME\n"
                 "or let run make it: hypr run -v NAME:/path IMAGE")
EMPTY_LATER = {
    "networks": "No networks yet.\n\nThis tab arrives with networks (hypr network ...).",
    "stacks": "No stacks yet.\n\nThis tab arrives with compose (hypr compose up).",
}
TABS = ["vms", "images", "volumes", "networks", "stacks"]


class StatusBar(Static):
    """Engine mode, host, accelerator, counts, and what the table shows."""


class MainScreen(Screen):
    BINDINGS = [
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("tab,right_square_bracket", "switch_tab(1)", "Next tab", show=False),
        Binding("shift+tab,left_square_bracket", "switch_tab(-1)", "Previous tab", show=False),
        *[Binding(str(n), f"sort({n - 1})", f"Sort by column {n}", show=False) for n in range(1, 8)],
    ]

    def __init__(self) -> None:
        super().__init__()
        self.filter_text = ""

    def compose(self) -> ComposeResult:
        clock = self.app.clock  # type: ignore[attr-defined]
        with TabbedContent(id="tabs", initial="vms"):
            with TabPane("VMs", id="vms"):
                yield Input(placeholder="filter: name, image, state or id  (Enter keeps it, Esc clears)",
                            id="vm-filter")
                yield VmTable(id="vm-table", clock=clock)
                yield Static(EMPTY_VMS, id="vms-empty", classes="empty")
            with TabPane("Images", id="images"):
                yield ImageTable(id="image-table", clock=clock)
                yield Static(EMPTY_IMAGES, id="images-empty", classes="empty")
            with TabPane("Volumes", id="volumes"):
                yield VolumeTable(id="volume-table")
                yield Static(EMPTY_VOLUMES, id="volumes-empty", classes="empty")
            for key, label in (("networks", "Networks"), ("stacks", "Stacks")):
                with TabPane(label, id=key):
                    if key == "networks":
                        from hypr_tui.tui.widgets.network_table import NetworkTable

                        yield NetworkTable(id="network-table")
                    else:
                        yield Static(EMPTY_LATER[key], classes="empty later")
        yield StatusBar(id="status-bar")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#vm-filter").display = False
        self.refresh_data()
        self.query_one(VmTable).focus()

    # --- data from the app ---------------------------------------------------------------

    def refresh_data(self) -> None:
        app = self.app
        vms = [vm for vm in app.vms if self._matches(vm)]  # type: ignore[attr-defined]
        table = self.query_one(VmTable)
        table.show([(vm, app.metrics.latest(vm.id)) for vm in vms])  # type: ignore[attr-defined]
        empty = self.query_one("#vms-empty", Static)
        if not vms:
            empty.update(EMPTY_VMS if not self.filter_text else
                         f"No VM matches \"{self.filter_text}\".\n\nEsc clears the filter.")
        table.display = bool(vms)
        empty.display = not vms and app.loaded  # type: ignore[attr-defined]
        images = self.query_one(ImageTable)
        images.show_images(app.images)  # type: ignore[attr-defined]
        images.display = bool(app.images)  # type: ignore[attr-defined]
        self.query_one("#images-empty").display = not app.images and app.loaded  # type: ignore[attr-defined]
        volumes = getattr(app, "volumes", [])
        self.query_one(VolumeTable).show(volumes)
        self.query_one(VolumeTable).display = bool(volumes)
        self.query_one("#volumes-empty").display = not volumes and app.loaded  # type: ignore[attr-defined]
        self._update_status()

    def _matches(self, vm) -> bool:
        if not self.filter_text:
            return True
        needle = self.filter_text.lower()
        return any(needle in field.lower() for field in (vm.name, vm.image, vm.state, vm.id[:12]))

    def _update_status(self) -> None:
        app = self.app
        info = app.info or {}  # type: ignore[attr-defined]
        parts = []
        if app.connection_error:  # type: ignore[attr-defined]
            parts.append("[b red]disconnected — reconnecting[/]")
        else:
            parts.append(f"[b]{info.get('mode', '…')}[/]")
        parts.append(app.hostname)  # type: ignore[attr-defined]
        accel = (info.get("accelerator") or {}).get("name")
        parts.append(accel or "…")
        total = len(app.vms)  # type: ignore[attr-defined]
        running = sum(vm.state == "running" for vm in app.vms)  # type: ignore[attr-defined]
        parts.append(f"{total} VM{'s' * (total != 1)}, {running} running")
        parts.append(f"{len(app.images)} image{'s' * (len(app.images) != 1)}")  # type: ignore[attr-defined]
        tab = self.query_one(TabbedContent).active
        table = self.query_one(VmTable) if tab != "images" else self.query_one(ImageTable)
        if tab in ("vms", "images"):
            parts.append(f"sort: {table.sort_label}")
        if self.filter_text and tab == "vms":
            parts.append(f"filter: \"{self.filter_text}\"")
        self.query_one(StatusBar).update(" │ ".join(parts))

    # --- tabs, filter, sort ------------------------------------------------------------------

    def action_switch_tab(self, step: int) -> None:
        tabs = self.query_one(TabbedContent)
        index = (TABS.index(tabs.active) + step) % len(TABS)
        tabs.active = TABS[index]

    @on(TabbedContent.TabActivated)
    def _tab_changed(self, event: TabbedContent.TabActivated) -> None:
        tab = self.query_one(TabbedContent).active
        if tab == "vms":
            self.query_one(VmTable).focus()
        elif tab == "images":
            self.query_one(ImageTable).focus()
        self._update_status()

    def action_filter(self) -> None:
        tabs = self.query_one(TabbedContent)
        tabs.active = "vms"
        box = self.query_one("#vm-filter", Input)
        box.display = True
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#vm-filter", Input)
        if box.display or self.filter_text:
            box.value = ""
            box.display = False
            self.filter_text = ""
            self.refresh_data()
            self.query_one(VmTable).focus()

    @on(Input.Changed, "#vm-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self.refresh_data()

    @on(Input.Submitted, "#vm-filter")
    def _filter_kept(self, event: Input.Submitted) -> None:
        if not self.filter_text:
            self.query_one("#vm-filter").display = False
        self.query_one(VmTable).focus()

    def action_sort(self, column: int) -> None:
        tab = self.query_one(TabbedContent).active
        if tab == "vms":
            self.query_one(VmTable).sort_by(column)
        elif tab == "images":
            self.query_one(ImageTable).sort_by(column)
        self._update_status()

    @on(VmTable.RowSelected, "#vm-table")
    def _vm_chosen(self, event: VmTable.RowSelected) -> None:
        self.app.open_action_menu("vm", self.query_one(VmTable).selected_item)  # type: ignore[attr-defined]

    @on(ImageTable.RowSelected, "#image-table")
    def _image_chosen(self, event: ImageTable.RowSelected) -> None:
        self.app.open_action_menu("image", self.query_one(ImageTable).selected_item)  # type: ignore[attr-defined]

    def select_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
