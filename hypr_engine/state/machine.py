"""The VM state machine.

    created ──start──▶ starting ──agent hello──▶ running ──workload exits──▶ exited
                          │                         │                          │
                          └────boot fails───────────┼──────────▶ exited        │
                                                    └─stop──▶ stopping ─▶ exited
    exited ──start──▶ starting            any state ──rm──▶ removing ──▶ (row gone)
    running/exited ──restart policy──▶ restarting ──▶ starting

Who moves a VM: the engine takes it from created to starting, to stopping and to
removing; the VM's supervisor, which outlives every HYPR process, records
running and exited (and restarting). Every move is a guarded UPDATE
(`WHERE state IN (...)`), so a stale writer cannot move a VM backwards.
Each transition publishes the event named after the new state.
"""

from __future__ import annotations

import enum


class VmState(str, enum.Enum):
    CREATED = "created"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    EXITED = "exited"
    RESTARTING = "restarting"
    REMOVING = "removing"


# new state -> the states it may be entered from
ALLOWED_FROM: dict[VmState, frozenset[VmState]] = {
    VmState.STARTING: frozenset({VmState.CREATED, VmState.EXITED, VmState.RESTARTING}),
    VmState.RUNNING: frozenset({VmState.STARTING}),
    VmState.STOPPING: frozenset({VmState.STARTING, VmState.RUNNING, VmState.RESTARTING}),
    VmState.EXITED: frozenset({VmState.STARTING, VmState.RUNNING, VmState.STOPPING, VmState.RESTARTING, VmState.CREATED}),
    VmState.RESTARTING: frozenset({VmState.RUNNING, VmState.STARTING}),
    VmState.REMOVING: frozenset(VmState),
}

# The states in which a supervisor (and so a VMM) may be alive.
ACTIVE_STATES = frozenset({VmState.STARTING, VmState.RUNNING, VmState.STOPPING, VmState.RESTARTING})

EVENT_FOR: dict[VmState, str] = {
    VmState.CREATED: "create",
    VmState.STARTING: "start",
    VmState.RUNNING: "running",
    VmState.STOPPING: "stop",
    VmState.EXITED: "die",
    VmState.RESTARTING: "restart",
    VmState.REMOVING: "destroy",
}


def can_move(current: VmState, new: VmState) -> bool:
    return current in ALLOWED_FROM[new]


def guarded_update_sql(new: VmState) -> tuple[str, list[str]]:
    """The WHERE clause fragment and its parameters that guard a move to `new`."""
    sources = sorted(s.value for s in ALLOWED_FROM[new])
    return f"state IN ({','.join('?' * len(sources))})", sources
