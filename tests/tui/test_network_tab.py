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


async def test_keys_on_a_selected_network_inspect_and_remove_it():
    from hypr_tui.tui.screens.modals import ConfirmScreen, TextScreen

    client = FakeClient()
    removed = []

    async def remove_network(ref, force=False):
        removed.append((ref, force))
        return ref

    client.remove_network = remove_network
    app = HyprApp(client, clock=lambda: FIXED_NOW, hostname="test", live=False)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        for _ in range(3):
            await pilot.press("tab")
        await pilot.pause(0.3)
        table = app.screen.query_one(NetworkTable)
        table.focus()
        await pilot.pause()
        backend = table.selected_item
        assert backend.name == "backend"
        await pilot.press("i")
        await pilot.pause(0.3)
        assert isinstance(app.screen, TextScreen) and '"Name": "backend"' in str(app.screen.body.code)
        await pilot.press("escape")
        await pilot.press("D")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "VMs on it: web, api" in app.screen.question and "hypr network rm backend" in app.screen.question
        await pilot.press("escape")      # cancelled: nothing removed
        await pilot.pause()
        assert removed == []
        await pilot.press("D")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause(0.3)
        assert removed == [(backend.id, False)]


async def test_network_ls_and_create_from_the_palette_actions():
    from hypr_tui.tui.screens.modals import PromptScreen, TextScreen

    client = FakeClient()
    created = []

    async def create_network(name, **options):
        created.append((name, options))
        return (await client.list_networks())[1]

    client.create_network = create_network
    app = HyprApp(client, clock=lambda: FIXED_NOW, hostname="test", live=False)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        app.do_network_ls()
        await pilot.pause(0.3)
        assert isinstance(app.screen, TextScreen) and "backend" in str(app.screen.body)
        await pilot.press("escape")
        app.do_network_create()
        await pilot.pause()
        assert isinstance(app.screen, PromptScreen)
        for key in "--internal --subnet 10.7.0.0/24 web":
            await pilot.press("space" if key == " " else key)
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert created == [("web", {"subnet": "10.7.0.0/24", "gateway": None, "internal": True, "labels": {}})]
