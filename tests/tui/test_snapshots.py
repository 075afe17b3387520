"""Snapshots of every dashboard screen, from the fixed scene of hypr_tui/screenshots.py
(a fake HyprClient, a fixed clock), at 80x24 and 120x40.

After an intended change of the dashboard's look:
    .venv/bin/pytest tests/tui/test_snapshots.py --snapshot-update
then look at the changed SVGs (and run `python -m hypr_tui.screenshots` for the README).
"""

from __future__ import annotations

import pytest

from hypr_tui.screenshots import SCENES, make_app

CASES = [pytest.param(scene, size, id=f"{scene.name}-{size[0]}x{size[1]}")
         for scene in SCENES for size in scene.sizes]


@pytest.mark.parametrize(("scene", "size"), CASES)
def test_screen(snap_compare, scene, size):
    assert snap_compare(make_app(empty=scene.empty, no_color=scene.no_color), terminal_size=size, run_before=scene.run)
