"""The dashboard's Networks tab lists the engine's networks with their VMs."""

from __future__ import annotations

from hypr_tui.tui.app import HyprApp
from hypr_tui.tui.fake import FIXED_NOW, FakeClient
from hypr_tui.tui.widgets.network_table import NetworkTable


async def test_the_networks_tab_lists_networks_and_their_vms():
    app = HyprApp(FakeClient(), clock=lambda: FIXED_NOW, hostname="test", live=False)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        for _ in range(3):          # VMs, Images, Volumes, Networks
            await pilot.press("tab")
        await pilot.pause(0.3)
        table = app.screen.query_one(NetworkTable)
        assert table.display and table.row_count == 2
        rows = [table.get_row_at(i) for i in range(table.row_count)]
        assert rows[0][:4] == ["backend", "bridge", "10.89.0.0/24", "10.89.0.1"]
        assert rows[0][5] == "web 10.89.0.2, api 10.89.0.3"
        assert rows[1][:2] == ["default", "gvproxy"]
