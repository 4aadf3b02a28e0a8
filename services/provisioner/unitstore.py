"""The provisioner's durable state: units and the progress of approved commands.

One SQLite file (`<store.dir>/provisioner.db`). Units are also kept in memory
(the provisioner is their only writer), written through on every change, so
a restarted provisioner — even after SIGKILL — knows every unit it asked for
and every command it had not finished.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from contracts.commands import ProvisionRequest, ReleaseRequest
from services.kit.store import Store
from services.provisioner.inventory import Unit, is_live

MIGRATIONS = [
    """
    CREATE TABLE units (
        unit TEXT PRIMARY KEY,
        pool TEXT NOT NULL,
        provider TEXT NOT NULL,
        state TEXT NOT NULL,
        data BLOB NOT NULL,
        updated_ts REAL NOT NULL
    );
    CREATE INDEX units_state ON units(state);
    CREATE TABLE commands (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        pool TEXT NOT NULL,
        status TEXT NOT NULL,
        payload BLOB NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        created_ts REAL NOT NULL,
        updated_ts REAL NOT NULL
    );
    CREATE INDEX commands_status ON commands(status)
    """,
    # The fencing token of the instance carrying the command out (its lease revision):
    # a run whose token is lower has been taken over and must stop.
    "ALTER TABLE commands ADD COLUMN fence INTEGER NOT NULL DEFAULT 0",
]

AnyApproved = ProvisionRequest | ReleaseRequest
_UNIT = msgspec.json.Decoder(Unit)
_CMD = msgspec.json.Decoder(AnyApproved)
_ENC = msgspec.json.Encoder()
KEEP_ENDED_S = 7 * 86400.0
"""Terminated and failed units are forgotten after a week (the event stream keeps them)."""


class Inventory:
    """Units in memory, written through to the store; command progress in the store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.units: dict[str, Unit] = {}

    async def load(self, now: float | None = None) -> None:
        """Read every unit; drop ended ones older than a week."""
        now = time.time() if now is None else now
        await self.store.execute(
            "DELETE FROM units WHERE state IN ('terminated', 'failed') AND updated_ts < ?",
            (now - KEEP_ENDED_S,),
        )
        rows = await self.store.fetchall("SELECT data FROM units")
        self.units = {u.unit: u for u in (_UNIT.decode(r["data"]) for r in rows)}

    def get(self, name: str) -> Unit | None:
        return self.units.get(name)

    def all(self) -> list[Unit]:
        return list(self.units.values())

    def live(self, pool: str | None = None) -> list[Unit]:
        """Units not ended, optionally of one pool."""
        return [u for u in self.units.values() if is_live(u) and (pool is None or u.pool == pool)]

    async def put(self, unit: Unit) -> None:
        """Record `unit` (insert or replace)."""
        unit.updated_ts = unit.updated_ts or time.time()
        self.units[unit.unit] = unit
        await self.store.execute(
            "INSERT INTO units(unit, pool, provider, state, data, updated_ts) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(unit) DO UPDATE SET pool=excluded.pool, "
            "provider=excluded.provider, state=excluded.state, data=excluded.data, "
            "updated_ts=excluded.updated_ts",
            (unit.unit, unit.pool, unit.provider, unit.state, _ENC.encode(unit), unit.updated_ts),
        )

    # -- commands --------------------------------------------------------------
    async def command_status(self, command_id: str) -> str | None:
        """`running`, `done` or `failed`; None for a command never seen."""
        rows = await self.store.fetchall("SELECT status FROM commands WHERE id = ?", (command_id,))
        return str(rows[0]["status"]) if rows else None

    async def begin(self, cmd: AnyApproved, fence: int = 0, now: float | None = None) -> bool:
        """Record that `cmd` is being carried out (before any provider is called) by the
        holder of fencing token `fence`, which takes it over from any holder with a lower
        one; False when a holder with a higher token has it (we must not touch it)."""
        now = time.time() if now is None else now
        await self.store.execute(
            "INSERT INTO commands(id, kind, pool, status, payload, created_ts, updated_ts, "
            "fence) VALUES (?, ?, ?, 'running', ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET fence = MAX(fence, excluded.fence)",
            (cmd.id, type(cmd).__name__, cmd.pool, _ENC.encode(cmd), now, now, fence),
        )
        return await self.owns(cmd.id, fence)

    async def owns(self, command_id: str, fence: int) -> bool:
        """True while no holder with a higher fencing token than `fence` has taken the
        command over (a shared store: compose's volume, or a restarted pod's claim)."""
        rows = await self.store.fetchall("SELECT fence FROM commands WHERE id = ?", (command_id,))
        return not rows or int(rows[0]["fence"]) <= fence

    async def finish(self, command_id: str, status: str, detail: str = "", fence: int = 0) -> None:
        """Mark the command `done` or `failed`, with a line saying what happened, unless a
        holder with a higher fencing token than `fence` has taken it over."""
        await self.store.execute(
            "UPDATE commands SET status = ?, detail = ?, updated_ts = ? "
            "WHERE id = ? AND fence <= ?",
            (status, detail[:2000], time.time(), command_id, fence),
        )

    async def unfinished(self) -> list[AnyApproved]:
        """Commands a previous run started and did not finish, oldest first."""
        rows = await self.store.fetchall(
            "SELECT payload FROM commands WHERE status = 'running' ORDER BY created_ts"
        )
        return [_CMD.decode(r["payload"]) for r in rows]

    async def commands(self, limit: int = 100) -> list[dict[str, Any]]:
        """The latest commands with their status, for operators."""
        rows = await self.store.fetchall(
            "SELECT id, kind, pool, status, detail, updated_ts FROM commands "
            "ORDER BY updated_ts DESC LIMIT ?",
            (limit,),
        )
        return [dict(r) for r in rows]
