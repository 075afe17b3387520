"""Schema and versioned migrations of hypr.db.

Migrations are applied in order inside one transaction each and recorded in
`PRAGMA user_version`. A database newer than this code is refused rather than
guessed at. Both the async engine (aiosqlite) and the per-VM supervisor (the
stdlib sqlite3 module, to stay small) open it through `connect()`.
"""

from __future__ import annotations

import sqlite3
import time
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
    # 3: events (hypr_engine/events.py). Triggers write them in the same transaction as
    # the change, whoever makes it (an engine, or a VM's supervisor with plain sqlite3),
    # so no writer can forget one and none is lost while no daemon runs.
    # AUTOINCREMENT: a sequence number is never reused, even after old rows are pruned.
    """
    CREATE TABLE events (
        seq     INTEGER PRIMARY KEY AUTOINCREMENT,
        time    REAL NOT NULL,                 -- Unix seconds
        type    TEXT NOT NULL,                 -- vm | image
        action  TEXT NOT NULL,
        id      TEXT NOT NULL,
        name    TEXT NOT NULL DEFAULT '',
        attrs   TEXT NOT NULL DEFAULT '{}'     -- JSON object
    ) STRICT;
    CREATE INDEX events_time ON events(time);
    CREATE TRIGGER vms_event_create AFTER INSERT ON vms BEGIN
        INSERT INTO events (time, type, action, id, name, attrs)
        VALUES ((julianday('now') - 2440587.5) * 86400.0, 'vm', 'create', NEW.id, NEW.name,
                json_object('image', NEW.image_ref, 'state', NEW.state));
    END;
    CREATE TRIGGER vms_event_state AFTER UPDATE OF state ON vms WHEN NEW.state IS NOT OLD.state BEGIN
        INSERT INTO events (time, type, action, id, name, attrs)
        VALUES ((julianday('now') - 2440587.5) * 86400.0, 'vm',
                CASE NEW.state WHEN 'starting' THEN 'start' WHEN 'stopping' THEN 'stop' WHEN 'exited' THEN 'die'
                               WHEN 'restarting' THEN 'restart' WHEN 'removing' THEN 'remove' ELSE NEW.state END,
                NEW.id, NEW.name,
                json_object('image', NEW.image_ref, 'from', OLD.state, 'state', NEW.state,
                            'exit_code', NEW.exit_code, 'error', NEW.error));
    END;
    CREATE TRIGGER vms_event_rename AFTER UPDATE OF name ON vms WHEN NEW.name IS NOT OLD.name BEGIN
        INSERT INTO events (time, type, action, id, name, attrs)
        VALUES ((julianday('now') - 2440587.5) * 86400.0, 'vm', 'rename', NEW.id, NEW.name,
                json_object('image', NEW.image_ref, 'old_name', OLD.name));
    END;
    CREATE TRIGGER vms_event_destroy AFTER DELETE ON vms BEGIN
        INSERT INTO events (time, type, action, id, name, attrs)
        VALUES ((julianday('now') - 2440587.5) * 86400.0, 'vm', 'destroy', OLD.id, OLD.name,
                json_object('image', OLD.image_ref, 'exit_code', OLD.exit_code));
    END;
    CREATE TRIGGER images_event_load AFTER INSERT ON images BEGIN
        INSERT INTO events (time, type, action, id, name, attrs)
        VALUES ((julianday('now') - 2440587.5) * 86400.0, 'image', 'load', NEW.id, '', '{}');
    END;
    CREATE TRIGGER images_event_delete AFTER DELETE ON images BEGIN
        INSERT INTO events (time, type, action, id, name, attrs)
        VALUES ((julianday('now') - 2440587.5) * 86400.0, 'image', 'delete', OLD.id, '', '{}');
    END;
    CREATE TRIGGER image_tags_event_tag AFTER INSERT ON image_tags BEGIN
        INSERT INTO events (time, type, action, id, name, attrs)
        VALUES ((julianday('now') - 2440587.5) * 86400.0, 'image', 'tag', NEW.image_id, NEW.ref, '{}');
    END;
    CREATE TRIGGER image_tags_event_retag AFTER UPDATE OF image_id ON image_tags
    WHEN NEW.image_id IS NOT OLD.image_id BEGIN
        INSERT INTO events (time, type, action, id, name, attrs)
        VALUES ((julianday('now') - 2440587.5) * 86400.0, 'image', 'untag', OLD.image_id, OLD.ref, '{}');
        INSERT INTO events (time, type, action, id, name, attrs)
        VALUES ((julianday('now') - 2440587.5) * 86400.0, 'image', 'tag', NEW.image_id, NEW.ref, '{}');
    END;
    CREATE TRIGGER image_tags_event_untag AFTER DELETE ON image_tags BEGIN
        INSERT INTO events (time, type, action, id, name, attrs)
        VALUES ((julianday('now') - 2440587.5) * 86400.0, 'image', 'untag', OLD.image_id, OLD.ref, '{}');
    END;
    """,
    # 4: health status in the row, so its changes are events (Docker's health_status)
    """
    ALTER TABLE vms ADD COLUMN health TEXT;
    CREATE TRIGGER vms_event_health AFTER UPDATE OF health ON vms
    WHEN NEW.health IS NOT OLD.health AND NEW.health IS NOT NULL BEGIN
        INSERT INTO events (time, type, action, id, name, attrs)
        VALUES ((julianday('now') - 2440587.5) * 86400.0, 'vm', 'health_status: ' || NEW.health, NEW.id,
                NEW.name, json_object('image', NEW.image_ref, 'health', NEW.health));
    END;
    """,
    # 5: volumes: named and anonymous volumes, each a sparse ext4 disk image under
    # volumes/<name>/ (hypr_engine/volumes.py)
    """
    CREATE TABLE volumes (
        name         TEXT PRIMARY KEY,
        driver       TEXT NOT NULL DEFAULT 'local',
        labels_json  TEXT NOT NULL DEFAULT '{}',
        options_json TEXT NOT NULL DEFAULT '{}',
        size_bytes   INTEGER NOT NULL,         -- the file system's size (apparent size of the disk image)
        anonymous    INTEGER NOT NULL DEFAULT 0,
        created_at   REAL NOT NULL
    ) STRICT;
    """,
    # 6: networks (hypr_engine/net/): networks, a VM's endpoint on each (one NIC per network,
    # in `position` order), published ports; the `default` network (gvproxy's fixed subnet;
    # .254 is gvproxy's alias of the host's 127.0.0.1) exists in every data dir.
    """
    CREATE TABLE networks (
        id          TEXT PRIMARY KEY,          -- 64 hex digits
        name        TEXT UNIQUE NOT NULL,
        driver      TEXT NOT NULL,             -- gvproxy | bridge
        subnet      TEXT NOT NULL,             -- '192.168.127.0/24'
        gateway     TEXT NOT NULL,
        internal    INTEGER NOT NULL DEFAULT 0,
        labels_json TEXT NOT NULL DEFAULT '{}',
        created_at  REAL NOT NULL
    ) STRICT;
    CREATE TABLE endpoints (
        vm_id        TEXT NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
        network_id   TEXT NOT NULL REFERENCES networks(id),
        ip           TEXT NOT NULL,
        mac          TEXT NOT NULL,
        aliases_json TEXT NOT NULL DEFAULT '[]',
        position     INTEGER NOT NULL,          -- interface order in the guest
        PRIMARY KEY (vm_id, network_id),
        UNIQUE (network_id, ip),
        UNIQUE (mac)
    ) STRICT;
    CREATE TABLE ports (
        vm_id       TEXT NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
        host_ip     TEXT NOT NULL,
        host_port   INTEGER NOT NULL,
        guest_port  INTEGER NOT NULL,
        protocol    TEXT NOT NULL,             -- tcp | udp
        UNIQUE (host_ip, host_port, protocol)
    ) STRICT;
    INSERT INTO networks (id, name, driver, subnet, gateway, internal, labels_json, created_at)
    VALUES (lower(hex(randomblob(32))), 'default', 'gvproxy', '192.168.127.0/24', '192.168.127.1', 0, '{}',
            (julianday('now') - 2440587.5) * 86400.0);
    CREATE TRIGGER networks_event_create AFTER INSERT ON networks BEGIN
        INSERT INTO events (time, type, action, id, name, attrs)
        VALUES ((julianday('now') - 2440587.5) * 86400.0, 'network', 'create', NEW.id, NEW.name,
                json_object('driver', NEW.driver, 'subnet', NEW.subnet));
    END;
    CREATE TRIGGER networks_event_destroy AFTER DELETE ON networks BEGIN
        INSERT INTO events (time, type, action, id, name, attrs)
        VALUES ((julianday('now') - 2440587.5) * 86400.0, 'network', 'destroy', OLD.id, OLD.name,
                json_object('driver', OLD.driver));
    END;
    CREATE TRIGGER endpoints_event_connect AFTER INSERT ON endpoints BEGIN
        INSERT INTO events (time, type, action, id, name, attrs)
        VALUES ((julianday('now') - 2440587.5) * 86400.0, 'network', 'connect', NEW.network_id,
                COALESCE((SELECT name FROM networks WHERE id = NEW.network_id), ''),
                json_object('vm', NEW.vm_id, 'ip', NEW.ip));
    END;
    CREATE TRIGGER endpoints_event_disconnect AFTER DELETE ON endpoints BEGIN
        INSERT INTO events (time, type, action, id, name, attrs)
        VALUES ((julianday('now') - 2440587.5) * 86400.0, 'network', 'disconnect', OLD.network_id,
                COALESCE((SELECT name FROM networks WHERE id = OLD.network_id), ''),
                json_object('vm', OLD.vm_id, 'ip', OLD.ip));
    END;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


def connect(path: Path, *, timeout: float = 10.0) -> sqlite3.Connection:
    """Open hypr.db with the settings every user of it needs."""
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    conn.row_factory = sqlite3.Row
    _set_wal(conn, timeout)
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
    return conn


def _set_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Switch to WAL. On a new file the switch needs the file to itself, and SQLite answers
    "database is locked" at once (no busy handler) while another process is creating or
    migrating it: two `hypr` commands started together on a fresh data dir. So retry."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


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
            for statement in _statements(MIGRATIONS[number]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={number + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _statements(script: str) -> list[str]:
    """Split a migration into statements; a `;` inside a trigger's BEGIN ... END or a
    string does not end one (sqlite3.complete_statement decides)."""
    out: list[str] = []
    current = ""
    for piece in script.split(";"):
        current += piece + ";"
        if sqlite3.complete_statement(current):
            if current.strip(" \n\t;"):
                out.append(current.strip())
            current = ""
    if current.strip(" \n\t;"):
        out.append(current.strip())
    return out
