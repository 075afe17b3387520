"""The action registry reaches both front ends: every action is a `hypr` subcommand,
and every action on a selection has a unique dashboard key (the dashboard builds its
bindings and command palette from the same list)."""

from __future__ import annotations

import argparse

from hypr_tui.actions import ACTIONS, handler_of
from hypr_tui.cli import build_parser


def _subcommands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> set[str]:
    found: set[str] = set()
    for act in parser._actions:
        if isinstance(act, argparse._SubParsersAction):
            for name, sub in act.choices.items():
                words = prefix + (name,)
                nested = _subcommands(sub, words)
                found |= nested or {" ".join(words)}
    return found


def test_every_action_is_a_subcommand_and_nothing_else_is():
    assert _subcommands(build_parser()) == {a.name for a in ACTIONS}


def test_every_action_has_a_handler():
    for action in ACTIONS:
        assert callable(handler_of(action)), action.name


def test_actions_on_a_selection_have_unique_dashboard_keys():
    for target in ("vm", "image", "network"):
        keys = [a.key for a in ACTIONS if a.target == target]
        assert all(keys), f"a {target} action without a dashboard key"
        assert len(keys) == len(set(keys)), f"duplicate {target} keys: {keys}"


def test_destructive_actions_are_marked():
    for name in ("stop", "kill", "rm", "rmi", "restart"):
        assert next(a for a in ACTIONS if a.name == name).destructive


async def test_the_dashboard_binds_every_action_on_a_selection_and_lists_every_action():
    """Every action with a target is a key on the dashboard's selection (the VM, image or network table),
    every action has a dashboard handler, and the command palette lists every action."""
    from hypr_tui.tui.app import HyprApp, handler_name
    from hypr_tui.tui.fake import FIXED_NOW, FakeClient
    from hypr_tui.tui.widgets.network_table import NetworkTable
    from hypr_tui.tui.widgets.tables import ImageTable, VmTable

    app = HyprApp(FakeClient(), clock=lambda: FIXED_NOW, hostname="test", live=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        for target, table_type, tabs in (("vm", VmTable, 0), ("image", ImageTable, 1), ("network", NetworkTable, 2)):
            for _ in range(tabs):       # VMs, Images, Volumes, Networks
                await pilot.press("tab")
            table = app.screen.query_one(table_type)
            table.focus()
            await pilot.pause()
            bound = {key: active.binding.action for key, active in app.screen.active_bindings.items()}
            for action in (a for a in ACTIONS if a.target == target):
                assert bound.get(action.key) == f"registry({action.name!r})", (target, action.name)
        titles = [cmd.title for cmd in app.get_system_commands(app.screen)]
        for action in ACTIONS:
            assert any(t == f"hypr {action.name}" or t.startswith(f"hypr {action.name}  ") for t in titles), \
                action.name
            assert callable(getattr(app, handler_name(action), None)), action.name
