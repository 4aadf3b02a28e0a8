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
from typing import Any

import msgspec
from nats.js.api import DeliverPolicy

from contracts import subjects
from contracts.api import NoArgs
from contracts.events import TERMINAL_STATES, AuditRecord, UnitEvent
from contracts.telemetry import PoolMetrics
from services.kit import Delivery, Service
from services.kit.lag import track_lag
from services.scaler.policy import (
    Policy,
    PoolState,
    decide,
    lead_time,
    learn_lead_time,
    state_from_bytes,
    state_to_bytes,
)
from services.scaler.settings import ScalerSettings, policies

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


class Scaler(Service[ScalerSettings]):
    """Proposes each pool's unit count from its metrics."""

    name = "scaler"
    singleton = True  # one scaler decides per pool; a standby takes over from the stored state
    description = "PoolMetrics -> ScaleProposal per pool (steady, panic, predictive)"
    migrations = MIGRATIONS

    def __init__(self, settings: ScalerSettings | None = None, *, nats_url: str | None = None):
        super().__init__(settings, nats_url=nats_url)
        s = self.settings
        self.opts = s.scaler
        self.default_policy, self.policies = policies(s)
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
        track_lag(self)
        await self.api_endpoint("scaling", NoArgs, self.on_scaling)

    async def on_scaling(self, _req: NoArgs, d: Delivery) -> dict[str, Any]:
        """`fleet.api.scaling`: per pool, the count the scaler wants and why."""
        pools = {}
        for pool, (state, last_ts) in sorted(self.states.items()):
            policy = self.policy_for(pool)
            pools[pool] = {
                "desired": state.last_desired,
                "panic": state.panic,
                "lead_time_s": round(lead_time(state, policy), 1),
                "min": policy.min,
                "max": policy.max,
                "last_metrics_ts": last_ts if last_ts != float("-inf") else None,
            }
        return {"pools": pools}

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
