"""The dashboard's view of the action registry (hypr_tui/actions.py).

Key bindings on a selection and the command palette's entries are generated here
from `ACTIONS`, never written by hand, so an action cannot reach the CLI and miss
the dashboard (tests/unit/test_actions.py checks both lists).
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding

from hypr_tui.actions import ACTIONS, Action


def selection_actions(target: str) -> list[Action]:
    """Registry actions that act on a selected `target` ("vm" or "image")."""
    return [a for a in ACTIONS if a.target == target]


def selection_bindings(target: str) -> list[Binding]:
    """One binding per registry action on `target`: its key runs `action_registry(NAME)`.

    The widget holding these bindings implements `action_registry(name)`.
    """
    return [
        Binding(a.key, f"registry({a.name!r})", _label(a), id=f"hypr.{target}.{a.name}",
                tooltip=a.help, show=a.name in _SHOWN)
        for a in selection_actions(target)
    ]


# The footer has room for a few at 80 columns; `?` lists all of them.
_SHOWN = {"logs", "exec", "top", "stats", "rmi"}

_LABELS = {"rm": "Remove", "rmi": "Remove", "top": "Processes", "stats": "Metrics", "exec": "Shell"}


def _label(action: Action) -> str:
    return _LABELS.get(action.name, action.name.capitalize())


@dataclass(frozen=True)
class PaletteEntry:
    """One command palette line for a registry action."""

    action: Action
    title: str
    help: str


def palette_entries() -> list[PaletteEntry]:
    """Every registry action as a palette entry; actions on a selection say their key."""
    entries = []
    for a in ACTIONS:
        where = {"vm": "selected VM", "image": "selected image", "network": "selected network"}.get(a.target or "", "")
        key = f"  (key {a.key})" if a.key else ""
        help_text = f"{a.help}" + (f" (on the {where})" if where else "")
        entries.append(PaletteEntry(a, f"hypr {a.name}{key}", help_text))
    return entries
