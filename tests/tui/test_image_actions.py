"""The dashboard's image actions (`image inspect`, `image history`, `tag`, `save`, `image
prune`) on the Images tab, driven with keys over the fake HyprClient. No VM needed."""

from __future__ import annotations

import json

import pytest

from hypr_tui.tui.screens.modals import ConfirmScreen, PromptScreen, TextScreen
from hypr_tui.tui.widgets.tables import ImageTable
from tests.tui.test_behaviour import make, ready, until

pytestmark = pytest.mark.timeout(60)


async def _images_tab(pilot) -> ImageTable:
    await ready(pilot)
    await pilot.press("tab")
    table = pilot.app.screen.query_one(ImageTable)
    table.focus()
    await pilot.pause()
    return table


def _text(screen: TextScreen) -> str:
    body = screen.body
    return body.code if hasattr(body, "code") else str(body)


async def test_inspect_and_history_show_the_selected_image():
    app = make()
    async with app.run_test(size=(120, 40)) as pilot:
        await _images_tab(pilot)
        ref = app.selection("image")
        image = await app.client.get_image(ref)
        await pilot.press("i")
        await until(pilot, lambda: isinstance(app.screen, TextScreen), what="the inspect screen")
        [doc] = json.loads(_text(app.screen))
        assert doc["RepoTags"] == image.tags and doc["Id"] == image.id
        await pilot.press("escape")
        await pilot.press("h")
        await until(pilot, lambda: isinstance(app.screen, TextScreen), what="the history screen")
        lines = _text(app.screen).splitlines()
        assert lines[0].split()[:3] == ["IMAGE", "CREATED", "CREATED"] and image.short_id in lines[1]


async def test_tag_save_and_prune_reach_the_client():
    client_app = make()
    client = client_app.client
    async with client_app.run_test(size=(120, 40)) as pilot:
        await _images_tab(pilot)
        ref = client_app.selection("image")
        await pilot.press("t")
        await until(pilot, lambda: isinstance(client_app.screen, PromptScreen), what="the tag prompt")
        await pilot.press(*"web:v2", "enter")
        await until(pilot, lambda: ("tag", ref, "web:v2") in client.calls, what="the tag call")
        await pilot.press("s")
        await until(pilot, lambda: isinstance(client_app.screen, PromptScreen), what="the save prompt")
        await pilot.press(*"/tmp/x.tar", "enter")
        await until(pilot, lambda: ("save", (ref,), "/tmp/x.tar") in client.calls, what="the save call")
        client_app.do_image_prune()
        await until(pilot, lambda: isinstance(client_app.screen, ConfirmScreen), what="the prune question")
        await pilot.press("enter")  # focus starts on Cancel
        assert ("image prune", False) not in client.calls
        client_app.do_image_prune()
        await until(pilot, lambda: isinstance(client_app.screen, ConfirmScreen), what="the prune question")
        await pilot.press("y")
        await until(pilot, lambda: ("image prune", False) in client.calls, what="the prune call")
