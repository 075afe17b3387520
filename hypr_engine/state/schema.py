"""Schema and versioned migrations of hypr.db.

Migrations are applied in order inside one transaction each and recorded in
`PRAGMA user_version`. A database newer than this code is refused rather than
guessed at. Both the async engine (aiosqlite) and the per-VM supervisor (the
stdlib sqlite3 module, to stay small) open it through `connect()`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hypr_engine.errors import Unavailable

MIGRATIONS: list[str] = [
    # 1: images, tags, VMs
    """
    CREATE TABLE images (
        id              TEXT PRIMARY KEY,      -- config digest, 'sha256:...'
        manifest_digest TEXT NOT NULL,
        config_json     TEXT NOT NULL,         -- the image config as stored
        layers_json     TEXT NOT NULL,         -- [{digest, media_type, size}]
        diff_ids_json   TEXT NOT NULL,
        size            INTEGER NOT NULL,      -- sum of the stored layer blobs
        created         TEXT,                  -- from the image config
        added_at        REAL NOT NULL
    ) STRICT;
    CREATE TABLE image_tags (
        ref      TEXT PRIMARY KEY,             -- normalised 'docker.io/library/busybox:latest'
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
    ) STRICT;
    CREATE TABLE vms (
        id            TEXT PRIMARY KEY,        -- 64 hex digits
        name          TEXT NOT NULL UNIQUE,
        image_id      TEXT NOT NULL,
        image_ref     TEXT NOT NULL,           -- what the user typed, normalised
        spec_json     TEXT NOT NULL,           -- the VmSpec as created
        state         TEXT NOT NULL,
        exit_code     INTEGER,
        error         TEXT,
        created_at    REAL NOT NULL,
        started_at    REAL,
        finished_at   REAL,
        auto_remove   INTEGER NOT NULL DEFAULT 0,
        stages_json   TEXT NOT NULL DEFAULT '{}'
    ) STRICT;
    """,
    # 2: restart policy bookkeeping
    """
    ALTER TABLE vms ADD COLUMN restart_count INTEGER NOT NULL DEFAULT 0;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


def connect(path: Path, *, timeout: float = 10.0) -> sqlite3.Connection:
    """Open hypr.db with the settings every user of it needs."""
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
    return conn


def migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise Unavailable(
            f"hypr.db has schema version {version}, newer than this HYPR understands ({SCHEMA_VERSION}); "
            "upgrade HYPR"
        )
    for number in range(version, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-check under the write lock: another process may have migrated meanwhile.
            if conn.execute("PRAGMA user_version").fetchone()[0] != number:
                conn.execute("ROLLBACK")
                continue
            for statement in MIGRATIONS[number].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version={number + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
