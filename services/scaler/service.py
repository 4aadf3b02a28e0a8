"""The scaler service: PoolMetrics in, ScaleProposals out, state kept in the store.

Wiring only; `policy.decide()` decides. Per pool it loads the PoolState,
calls decide() with the metrics' own time as `now` (so a redelivered
message yields the same proposal id, which JetStream de-duplicates),
publishes the proposal, stores the new state (a restarted scaler keeps its
history and forecast) and audits the proposal with its reason. It also
learns each pool's lead time from unit lifecycle events (requested -> ready).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated, Any

import msgspec
from msgspec import Meta
from nats.js.api import DeliverPolicy

from contracts import subjects
from contracts.events import TERMINAL_STATES, AuditRecord, UnitEvent
from contracts.telemetry import PoolMetrics
from services.kit import ConfigError, Delivery, Service
from services.kit.config import KitSettings
from services.scaler.policy import (
    Policy,
    PoolState,
    decide,
    learn_lead_time,
    state_from_bytes,
    state_to_bytes,
)

log = logging.getLogger("fleet.scaler")

MIGRATIONS = [
    """
    CREATE TABLE pool_state (
        pool TEXT PRIMARY KEY,
        state BLOB NOT NULL,
        last_ts REAL NOT NULL,
        updated_ts REAL NOT NULL
    );
    CREATE TABLE unit_requested (
        pool TEXT NOT NULL,
        unit TEXT NOT NULL,
        ts REAL NOT NULL,
        PRIMARY KEY (pool, unit)
    )
    """,
]


class ScalerOptions(msgspec.Struct, kw_only=True):
    """`[scaler]`."""

    stale_after_s: Annotated[float, Meta(gt=0)] = 5.0
    """Metrics older than this (seconds, by their `ts`) are skipped: after a restart the
    backlog describes a past that no proposal can fix. A few of the watcher's 1 s ticks."""
    default_policy: dict[str, Any] = msgspec.field(default_factory=dict)
    """Policy keys for pools without a `[pools.<pool>]` table, and the base the tables
    override; empty means Policy's own defaults."""


class ScalerSettings(KitSettings, kw_only=True):
    """Settings of the scaler service."""

    scaler: ScalerOptions = msgspec.field(default_factory=ScalerOptions)
    pools: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    """`[pools.<pool>]`: the keys named as Policy's fields; other services' keys are ignored."""


def build_policy(where: str, keys: dict[str, Any], base: dict[str, Any] | None = None) -> Policy:
    """A Policy from config keys (over `base`); a bad key or value names itself and the fix."""
    known = set(Policy.__struct_fields__)
    data = {**(base or {}), **{k: v for k, v in keys.items() if k in known}}
    try:
        policy = msgspec.convert(data, Policy, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"setting {where!r}: {exc}") from exc
    problems = []
    if not 0 <= policy.min <= policy.max:
        problems.append(f"min={policy.min} and max={policy.max} need 0 <= min <= max")
    if policy.unit_capacity <= 0:
        problems.append(f"unit_capacity={policy.unit_capacity} must be > 0")
    if not 0 < policy.target_utilization <= 1:
        problems.append(f"target_utilization={policy.target_utilization} must be in (0, 1]")
    if problems:
        raise ConfigError(f"setting {where!r}: " + "; ".join(problems))
    return policy


class Scaler(Service):
    """Proposes each pool's unit count from its metrics."""

    name = "scaler"
    description = "PoolMetrics -> ScaleProposal per pool (steady, panic, predictive)"
    settings_type = ScalerSettings
    migrations = MIGRATIONS

    def __init__(self, settings: ScalerSettings | None = None, *, nats_url: str | None = None):
        super().__init__(settings, nats_url=nats_url)
        s: ScalerSettings = self.settings  # type: ignore[assignment]
        self.opts = s.scaler
        self.default_policy = build_policy("scaler.default_policy", self.opts.default_policy)
        base = msgspec.structs.asdict(self.default_policy)
        self.policies = {
            pool: build_policy(f"pools.{pool}", keys, base) for pool, keys in s.pools.items()
        }
        self.states: dict[str, tuple[PoolState, float]] = {}
        """pool -> (state, ts of the last metrics decided on); a cache of the store."""
        self._lock = asyncio.Lock()

    async def setup(self) -> None:
        assert self.store is not None
        for row in await self.store.fetchall("SELECT pool, state, last_ts FROM pool_state"):
            try:
                self.states[row["pool"]] = (state_from_bytes(bytes(row["state"])), row["last_ts"])
            except (msgspec.DecodeError, TypeError):
                self.metrics.count("state_reset")
                log.warning("stored state unreadable; starting fresh", extra={"pool": row["pool"]})
        await self.consume(
            subjects.METRICS_ALL,
            PoolMetrics,
            self.on_metrics,
            durable="scaler-metrics",
            deliver_policy=DeliverPolicy.NEW,
        )
        await self.consume(subjects.UNIT_ALL, UnitEvent, self.on_unit, durable="scaler-units")

    def policy_for(self, pool: str) -> Policy:
        """The pool's configured policy, or the default one."""
        return self.policies.get(pool, self.default_policy)

    def state_for(self, pool: str) -> tuple[PoolState, float]:
        """The pool's remembered state and the time of the metrics it last decided on."""
        return self.states.get(pool, (PoolState(pool=pool), float("-inf")))

    async def _save(self, pool: str, state: PoolState, last_ts: float) -> None:
        assert self.store is not None
        await self.store.execute(
            "INSERT INTO pool_state(pool, state, last_ts, updated_ts) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(pool) DO UPDATE SET state = excluded.state, last_ts = excluded.last_ts, "
            "updated_ts = excluded.updated_ts",
            (pool, state_to_bytes(state), last_ts, time.time()),
        )
        self.states[pool] = (state, last_ts)

    # -- metrics -> decision --------------------------------------------------------
    async def on_metrics(self, m: PoolMetrics, d: Delivery) -> None:
        """Decide for one pool; skip stale and already-decided metrics."""
        age_s = time.time() - m.ts
        if age_s > self.opts.stale_after_s:
            self.metrics.count("metrics_stale")
            return
        async with self._lock:
            state, last_ts = self.state_for(m.pool)
            if m.ts <= last_ts:
                self.metrics.count("metrics_duplicate")
                return
            policy = self.policy_for(m.pool)
            new_state, proposal = decide(state, m, policy, m.ts)
            if proposal is not None:
                await self.publish(subjects.scale_proposed(m.pool), proposal, msg_id=proposal.id)
            await self._save(m.pool, new_state, m.ts)
        self.metrics.count("decisions")
        if proposal is None:
            return
        self.metrics.count("proposals")
        log.info(
            "proposed",
            extra={"pool": m.pool, "current": proposal.current, "desired": proposal.desired},
        )
        audit = AuditRecord(
            actor="scaler",
            action="scale.propose",
            reasoning=proposal.reason,
            result=f"{m.pool}: {proposal.current} -> {proposal.desired} units ({proposal.mode})",
            refs={"proposal": proposal.id, "pool": m.pool},
            id=f"audit:{proposal.id}",
        )
        await self.publish(subjects.audit("scaler"), audit, msg_id=audit.id)

    # -- unit events -> lead time ----------------------------------------------------------
    async def on_unit(self, ev: UnitEvent, d: Delivery) -> None:
        """Learn requested -> ready seconds per pool; each unit counts once."""
        assert self.store is not None
        self.metrics.count("unit_events")
        if ev.state == "requested":
            await self.store.execute(
                "INSERT OR IGNORE INTO unit_requested(pool, unit, ts) VALUES (?, ?, ?)",
                (ev.pool, ev.unit, ev.ts),
            )
            return
        if ev.state in TERMINAL_STATES:
            await self.store.execute(
                "DELETE FROM unit_requested WHERE pool = ? AND unit = ?", (ev.pool, ev.unit)
            )
            return
        if ev.state != "ready":
            return
        rows = await self.store.fetchall(
            "SELECT ts FROM unit_requested WHERE pool = ? AND unit = ?", (ev.pool, ev.unit)
        )
        if not rows:
            return
        observed_s = ev.ts - rows[0]["ts"]
        async with self._lock:
            state, last_ts = self.state_for(ev.pool)
            await self._save(ev.pool, learn_lead_time(state, observed_s), last_ts)
            await self.store.execute(
                "DELETE FROM unit_requested WHERE pool = ? AND unit = ?", (ev.pool, ev.unit)
            )
        self.metrics.count("lead_times_learned")


SERVICE = Scaler
