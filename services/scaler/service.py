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
from collections.abc import Callable
from typing import Any

import msgspec
from nats.js.api import DeliverPolicy

from contracts import subjects
from contracts.api import NoArgs
from contracts.commands import ReleaseRequest, Verdict
from contracts.events import TERMINAL_STATES, AuditRecord, UnitEvent
from contracts.subjects import agent_of_pool, is_adhoc
from contracts.telemetry import PoolMetrics
from services.kit import Delivery, Permanent, Service
from services.kit.fencing import VerdictGate
from services.kit.lag import track_lag
from services.kit.signing import unkeyed
from services.scaler import pins as pinning
from services.scaler.policy import (
    Policy,
    PoolState,
    decide,
    lead_time,
    learn_lead_time,
    same_history,
    state_from_parts,
    state_parts,
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
    "CREATE TABLE pins (id TEXT PRIMARY KEY, data BLOB NOT NULL)",
    # The forecaster's slow part (profile, kept errors: ~60 KB a pool after two
    # days), written when it changes, at most once a minute; pool_state, written
    # at every decision, then holds the rest (~10 KB).
    """
    CREATE TABLE pool_history (
        pool TEXT PRIMARY KEY,
        history BLOB NOT NULL,
        updated_ts REAL NOT NULL
    )
    """,
]


HANDS_OFF = frozenset({"scaler", "provisioner"})
"""Requesters whose releases are the machinery's own, not someone ending a pin by hand."""


class Scaler(Service[ScalerSettings]):
    """Proposes each pool's unit count from its metrics."""

    name = "scaler"
    singleton = True  # one scaler decides per pool; a standby takes over from the stored state
    description = "PoolMetrics -> ScaleProposal per pool (steady, panic, predictive)"
    migrations = MIGRATIONS
    clock: Callable[[], float] = staticmethod(time.time)
    """Unix seconds that the verdicts' clock-skew check reads (a test whose cost-guard
    runs on a chosen day gives the scaler the same clock)."""

    def __init__(self, settings: ScalerSettings | None = None, *, nats_url: str | None = None):
        super().__init__(settings, nats_url=nats_url)
        s = self.settings
        self.opts = s.scaler
        self.default_policy, self.policies = policies(s)
        self.states: dict[str, tuple[PoolState, float]] = {}
        """pool -> (state, ts of the last metrics decided on); a cache of the store."""
        self._lock = asyncio.Lock()
        self._history_saved: set[str] = set()
        """Pools whose forecaster's slow part in the store is that of their cached state."""
        self.pins: dict[str, pinning.Pin] = {}
        """Explicit capacity by provision id; a cache of the store."""

    async def setup(self) -> None:
        assert self.store is not None
        rows = await self.store.fetchall(
            "SELECT s.pool, s.state, s.last_ts, h.history FROM pool_state s "
            "LEFT JOIN pool_history h ON h.pool = s.pool"
        )
        for row in rows:
            history = bytes(row["history"]) if row["history"] is not None else None
            try:
                state = state_from_parts(bytes(row["state"]), history)
                self.states[row["pool"]] = (state, row["last_ts"])
                if history is not None:
                    self._history_saved.add(row["pool"])
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
        for row in await self.store.fetchall("SELECT data FROM pins"):
            pin = msgspec.json.decode(bytes(row["data"]), type=pinning.Pin)
            self.pins[pin.id] = pin
        self.verdicts: VerdictGate | None = None
        if self.settings.signing.costguard_key:
            self.verdicts = VerdictGate(self.settings.signing, self.store, "pins follow verdicts")
            await self.verdicts.load()
        else:
            unkeyed(
                "[signing] costguard_key is not set: pins are set from unsigned verdicts. Set "
                "FLEET_SIGNING__COSTGUARD_KEY (`fleet up` does it for you)",
                binding=not self.settings.nats.create_resources,
                log=log,
            )
        for subject in (subjects.BUDGET_APPROVED,):
            await self.consume(subject, Verdict, self.on_approved, durable="scaler-pins")
        self.every(self.opts.pin_check_s, self.end_pins, "pins")
        await self.api_endpoint("scaling", NoArgs, self.on_scaling)

    async def on_scaling(self, _req: NoArgs, d: Delivery) -> dict[str, Any]:
        """`fleet.api.scaling`: per pool, the count the scaler wants and why."""
        pools = {}
        now = time.time()
        for pool, (state, last_ts) in sorted(self.states.items()):
            policy = self.policy_for(pool)
            pinned = pinning.floor(list(self.pins.values()), pool, now)
            pools[pool] = {
                "desired": pinned
                if state.last_desired is None
                else max(state.last_desired, pinned),
                "load_desired": state.last_desired,
                "pinned": pinned,
                "pins": [
                    {"id": p.id, "count": p.count, "until_ts": p.until_ts, "state": p.state}
                    for p in self.pins.values()
                    if p.pool == pool
                ],
                "panic": state.panic,
                "lead_time_s": round(lead_time(state, policy), 1),
                "min": policy.min,
                "max": policy.max,
                "last_metrics_ts": last_ts if last_ts != float("-inf") else None,
            }
        return {"pools": pools}

    def policy_for(self, pool: str) -> Policy:
        """The pool's configured policy, or the default one; an ad-hoc pool holds only
        explicit capacity (its pins), so load never scales it: no minimum, no maximum.
        Otherwise the load of a batch that has just released its units would still be
        in the hold window, and units would be rented again for nobody. A hosted agent's
        own pool (not configured) holds only the runner the gateway pinned for it: load
        never adds one either, since only the gateway knows the agent's size."""
        if pool not in self.policies and (is_adhoc(pool) or agent_of_pool(pool)):
            return msgspec.structs.replace(self.default_policy, min=0, max=0)
        return self.policies.get(pool, self.default_policy)

    def state_for(self, pool: str) -> tuple[PoolState, float]:
        """The pool's remembered state and the time of the metrics it last decided on."""
        return self.states.get(pool, (PoolState(pool=pool), float("-inf")))

    async def _save(self, pool: str, state: PoolState, last_ts: float) -> None:
        """Store the pool's state; its forecaster's slow part only when it changed
        since the last write (`same_history`), in the same transaction."""
        assert self.store is not None
        changed = pool not in self._history_saved or not same_history(self.states[pool][0], state)
        light, history = state_parts(state, history=changed)
        now = time.time()
        writes: list[tuple[str, tuple[Any, ...]]] = [
            (
                "INSERT INTO pool_state(pool, state, last_ts, updated_ts) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(pool) DO UPDATE SET state = excluded.state, "
                "last_ts = excluded.last_ts, updated_ts = excluded.updated_ts",
                (pool, light, last_ts, now),
            )
        ]
        if history is not None:
            writes.append(
                (
                    "INSERT INTO pool_history(pool, history, updated_ts) VALUES (?, ?, ?) "
                    "ON CONFLICT(pool) DO UPDATE SET history = excluded.history, "
                    "updated_ts = excluded.updated_ts",
                    (pool, history, now),
                )
            )
        await self.store.execute_all(writes)
        if len(writes) > 1:
            self.metrics.count("history_writes")
        self._history_saved.add(pool)
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
            pinned = pinning.floor(list(self.pins.values()), m.pool, m.ts)
            proposal = pinning.apply_floor(proposal, pinned)
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

    # -- explicit capacity ----------------------------------------------------------------
    async def _save_pin(self, pin: pinning.Pin) -> None:
        assert self.store is not None
        await self.store.execute(
            "INSERT INTO pins(id, data) VALUES (?, ?) "
            "ON CONFLICT(id) DO UPDATE SET data = excluded.data",
            (pin.id, msgspec.json.encode(pin)),
        )
        self.pins[pin.id] = pin

    async def _audit_pin(self, action: str, pin: pinning.Pin, why: str, result: str) -> None:
        audit = AuditRecord(
            actor="scaler",
            action=action,
            reasoning=why,
            result=result,
            refs={"provision": pin.id, "pool": pin.pool},
            id=f"audit:{action}:{pin.id}"[:128],
        )
        await self.publish(subjects.audit("scaler"), audit, msg_id=audit.id)

    async def on_approved(self, verdict: Verdict, d: Delivery) -> None:
        """An approved pinned provision sets a floor; a hand release lowers the floors. Only
        verdicts the cost-guard signed under a current fence count: a forged approval of a
        pinned provision would otherwise keep units (and their cost) against the load."""
        refused = (
            None
            if self.verdicts is None
            else await self.verdicts.refusal(verdict.ts, d, self.clock())
        )
        if refused is not None:
            self.metrics.count("verdicts_refused")
            raise Permanent(f"verdict {verdict.id}: {refused}")
        pin = pinning.pin_of(verdict)
        async with self._lock:
            if pin is not None and pin.id not in self.pins:
                await self._save_pin(pin)
                kept = (
                    "until released"
                    if pin.until_ts is None
                    else (f"until {time.strftime('%H:%M:%S', time.gmtime(pin.until_ts))} UTC")
                )
                await self._audit_pin(
                    "pin.set",
                    pin,
                    f"explicit provision by {pin.requester}: the load must not remove it",
                    f"{pin.pool}: {pin.count} x {pin.gpu_model} kept {kept}",
                )
                return
            cmd = verdict.request
            if isinstance(cmd, ReleaseRequest) and cmd.requester not in HANDS_OFF:
                before = list(self.pins.values())
                for p in pinning.after_release(before, cmd):
                    if p != self.pins.get(p.id):
                        await self._save_pin(p)

    async def end_pins(self) -> None:
        """Release each pin whose time is up, through the cost-guard; forget old ones."""
        now = time.time()
        async with self._lock:
            pins = list(self.pins.values())
            for pin in pinning.due(pins, now):
                release = pinning.end_release(pin, now)
                await self.publish(subjects.RELEASE_REQUESTED, release, msg_id=release.id)
                await self._save_pin(pinning.releasing(pin, now))
                await self._audit_pin(
                    "pin.expired", pin, release.reason, f"asked to release {pin.count} units"
                )
                self.metrics.count("pins_ended")
            assert self.store is not None
            for pin in pinning.forgotten(list(self.pins.values()), now):
                await self.store.execute("DELETE FROM pins WHERE id = ?", (pin.id,))
                self.pins.pop(pin.id, None)

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
