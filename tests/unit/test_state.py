"""The state machine and the schema migrations."""

from __future__ import annotations

import pytest

from hypr_engine.errors import Unavailable
from hypr_engine.state.machine import ACTIVE_STATES, VmState, can_move
from hypr_engine.state.schema import SCHEMA_VERSION, connect, migrate


def test_transitions():
    assert can_move(VmState.CREATED, VmState.STARTING)
    assert can_move(VmState.STARTING, VmState.RUNNING)
    assert can_move(VmState.RUNNING, VmState.EXITED)
    assert can_move(VmState.EXITED, VmState.STARTING)
    assert not can_move(VmState.EXITED, VmState.RUNNING)
    assert not can_move(VmState.CREATED, VmState.RUNNING)
    assert all(can_move(s, VmState.REMOVING) for s in VmState)
    assert VmState.EXITED not in ACTIVE_STATES


def test_migrate_is_idempotent_and_refuses_newer(tmp_path):
    db = tmp_path / "hypr.db"
    conn = connect(db)
    migrate(conn)
    migrate(conn)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(Unavailable, match="newer"):
        migrate(conn)
