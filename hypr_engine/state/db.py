"""The engine's async access to hypr.db (aiosqlite over the schema in schema.py)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any, Iterable

import aiosqlite

from hypr_engine.state.schema import connect, migrate


class Database:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        # One connection serves every task of the process (hyprd serves many clients at
        # once): a write must not slip into another task's open transaction.
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> "Database":
        # Migrate with the stdlib module first (one code path for every user of the file).
        sync = connect(path)
        try:
            migrate(sync)
        finally:
            sync.close()
        conn = await aiosqlite.connect(path, isolation_level=None, timeout=10)
        conn.row_factory = sqlite3.Row
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=10000"):
            await conn.execute(f"PRAGMA {pragma}")
        return cls(conn)

    async def close(self) -> None:
        await self._conn.close()

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        async with self._conn.execute(sql, tuple(params)) as cur:
            return list(await cur.fetchall())

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        async with self._conn.execute(sql, tuple(params)) as cur:
            return await cur.fetchone()

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Run one statement in its own transaction; returns the number of rows changed."""
        async with self._write_lock:
            async with self._conn.execute(sql, tuple(params)) as cur:
                return cur.rowcount

    async def transaction(self, statements: list[tuple[str, Iterable[Any]]]) -> None:
        """Several statements, all or nothing."""
        async with self._write_lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    await self._conn.execute(sql, tuple(params))
                await self._conn.execute("COMMIT")
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
