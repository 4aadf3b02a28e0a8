"""An aiosqlite database per service, with numbered schema migrations.

Each service owns its file (`<store.dir>/<service>.db`): services share no
tables, only the wire. Migrations are a list of SQL scripts; the position in
the list is the version, applied once each, in order, inside a transaction.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from services.kit.redact import scrub, scrub_bytes

_BOOK = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    applied_ts REAL NOT NULL
)
"""

_KV = """
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    updated_ts REAL NOT NULL
)
"""


class Store:
    """A service's SQLite database: migrations applied, plus a small key/value table."""

    def __init__(self, db: aiosqlite.Connection, path: str) -> None:
        self.db = db
        self.path = path

    @classmethod
    async def open(cls, path: str | Path, migrations: Sequence[str] = ()) -> Store:
        """Open (creating) the database at `path` and bring its schema up to date."""
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(str(path))
        db.row_factory = aiosqlite.Row
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute("PRAGMA busy_timeout=5000")
        store = cls(db, str(path))
        await store.migrate(migrations)
        return store

    async def version(self) -> int:
        async with self.db.execute("SELECT MAX(version) FROM schema_migrations") as cur:
            row = await cur.fetchone()
        return int(row[0] or 0) if row else 0

    async def migrate(self, migrations: Sequence[str]) -> int:
        """Apply the migrations not yet applied; returns the schema version.

        Version 1 is the store's own key/value table; a service's first migration is 2."""
        await self.db.execute(_BOOK)
        current = await self.version()
        for number, script in enumerate([_KV, *migrations], start=1):
            if number <= current:
                continue
            await self.db.execute("BEGIN")
            try:
                for statement in _statements(script):
                    await self.db.execute(statement)
                await self.db.execute(
                    "INSERT INTO schema_migrations(version, applied_ts) VALUES (?, ?)",
                    (number, time.time()),
                )
                await self.db.commit()
            except Exception:
                await self.db.rollback()
                raise
        return await self.version()

    async def get(self, key: str) -> bytes | None:
        async with self.db.execute("SELECT value FROM kv WHERE key = ?", (key,)) as cur:
            row = await cur.fetchone()
        return bytes(row[0]) if row else None

    async def put(self, key: str, value: bytes) -> None:
        await self.db.execute(
            "INSERT INTO kv(key, value, updated_ts) VALUES (?, ?, ?) ON CONFLICT(key) "
            "DO UPDATE SET value = excluded.value, updated_ts = excluded.updated_ts",
            (key, scrub_bytes(value), time.time()),
        )
        await self.db.commit()

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        async with self.db.execute(sql, tuple(params)) as cur:
            return list(await cur.fetchall())

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> None:
        """Run one writing statement; text and blob parameters have the secrets masked."""
        await self.db.execute(sql, _clean(params))
        await self.db.commit()

    async def execute_all(self, writes: Iterable[tuple[str, Iterable[Any]]]) -> None:
        """Run writing statements with one commit, so a crash before it leaves none of
        them (secrets masked as in `execute`). No rollback on a failed statement: the
        connection is shared, and a rollback would also drop other tasks' pending writes."""
        for sql, params in writes:
            await self.db.execute(sql, _clean(params))
        await self.db.commit()

    async def close(self) -> None:
        await self.db.close()


def _clean(params: Iterable[Any]) -> tuple[Any, ...]:
    # What a service writes may hold an outside service's echo of a secret (an error
    # text with the request's headers in it): masked here, before it reaches the
    # database file or its WAL.
    return tuple(
        scrub(p) if isinstance(p, str) else scrub_bytes(p) if isinstance(p, bytes) else p
        for p in params
    )


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
