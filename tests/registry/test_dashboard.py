"""The dashboard's registry actions against a real engine and a real registry (no VM)."""

from __future__ import annotations

import time

import pytest

from hypr_engine.client import HyprClient
from hypr_engine.paths import Layout
from hypr_tui.tui.app import HyprApp

pytestmark = pytest.mark.timeout(120)


async def _until(pilot, predicate, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await pilot.pause(0.1)


async def test_pull_from_the_command_palette_then_push_with_the_image_key(hypr_home, registry, images):
    ref = f"{registry.host}/dash/app:1"
    written = images.push(ref, fmt="oci")
    client = await HyprClient.connect(Layout(hypr_home.data, hypr_home.runtime))
    try:
        app = HyprApp(client, hostname="test", live=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            app.run_registry_action("pull", None)
            await pilot.pause()
            await pilot.press(*ref, "enter")
            await _until(pilot, lambda: any(i.id == written.config_digest for i in app.images), what="the pulled image")
            messages = [n.message for n in app._notifications]
            assert any("pull" in m and "done" in m for m in messages), messages

            app.run_registry_action("push", ref)
            await _until(pilot, lambda: any(n.message.startswith(f"push {ref}: done") for n in app._notifications),
                         what="the push")
            assert not [n for n in app._notifications if n.severity == "error"]
    finally:
        await client.close()


async def test_create_from_the_dashboard_pulls_a_missing_image_first(hypr_home, registry, images):
    ref = f"{registry.host}/dash/missing:1"
    written = images.push(ref, fmt="v2s2")
    client = await HyprClient.connect(Layout(hypr_home.data, hypr_home.runtime))
    try:
        app = HyprApp(client, hostname="test", live=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            app.run_registry_action("create", None)
            await pilot.pause()
            await pilot.press(*f"--name fromreg {ref} true", "enter")
            await _until(pilot, lambda: any(v.name == "fromreg" for v in app.vms), what="the created VM")
            assert written.config_digest in [i.id for i in await client.list_images()]
            assert any("pulling" in n.message for n in app._notifications)
            assert not [n for n in app._notifications if n.severity == "error"]
    finally:
        await client.close()
