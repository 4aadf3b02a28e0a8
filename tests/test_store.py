"""The store: numbered migrations applied once, in order, and a key/value table."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.kit.store import Store

V1 = "CREATE TABLE units (id TEXT PRIMARY KEY, state TEXT NOT NULL)"
V2 = "ALTER TABLE units ADD COLUMN usd_per_hour REAL NOT NULL DEFAULT 0"


async def test_migrations_apply_once_and_data_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "svc.db"
    store = await Store.open(path, [V1])
    assert await store.version() == 2  # the built-in kv table is migration 1
    await store.execute("INSERT INTO units(id, state) VALUES ('u1', 'ready')")
    await store.put("cursor", b"42")
    await store.close()

    store = await Store.open(path, [V1, V2])
    try:
        assert await store.version() == 3
        rows = await store.fetchall("SELECT id, state, usd_per_hour FROM units")
        assert [tuple(r) for r in rows] == [("u1", "ready", 0.0)]
        assert await store.get("cursor") == b"42"
        assert await store.get("missing") is None
    finally:
        await store.close()


async def test_a_failing_migration_changes_nothing(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "svc.db", [V1])
    with pytest.raises(Exception, match="syntax"):
        await store.migrate([V1, "CREATE TABLE ok (x INT); THIS IS NOT SQL"])
    try:
        assert await store.version() == 2
        assert await store.fetchall("SELECT name FROM sqlite_master WHERE name = 'ok'") == []
    finally:
        await store.close()
