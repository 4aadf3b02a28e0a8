"""The cost-guard service: wires `judge` to NATS and the store.

Durable consumers read proposals, provision and release requests, and unit
events. Every request gets exactly one verdict (approved, denied or held) on
`fleet.budget.<decision>` plus an audit record; a held one gets a second when a
person decides (`fleet.budget.decide.<id>`) or its hold times out.

State: the store is authoritative. The ledger is saved whole after every
change, in the same transaction as the verdict it produced, and a message is
acked only after that, so a restart resumes from the store and the durable
consumers deliver what it had not yet taken. A verdict is recorded before it is
published and marked published after, so a crash in between republishes it on
start with the same `Nats-Msg-Id` (JetStream drops the duplicate), and a
redelivered request finds its verdict and is not judged twice. With no store
(a new disk, a standby taking over) the unit-event consumer is recreated from
the start of FLEET_EVENTS: spend and burn are rebuilt from the events'
own times; held requests and reservations of the lost store are not.

Trust (services/costguard/trust.py): every verdict is signed with the
cost-guard's key over its bytes and its fencing token (the lease revision it
took the lease at); the ledger moves only on unit events the provisioner signed,
and a held request is decided only by an operator key from `[signing]`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec
from nats.js.errors import NotFoundError
from prometheus_client import Counter, Gauge

from contracts import subjects
from contracts.api import NoArgs
from contracts.api.replies import OffersReply
from contracts.base import UNDECODABLE, clock_skew_problem
from contracts.commands import (
    AnyCommand,
    DecideReply,
    DecideRequest,
    ProvisionRequest,
    ReleaseRequest,
    ScaleProposal,
    Verdict,
)
from contracts.events import Alert, AuditRecord, UnitEvent
from contracts.signatures import NO_FENCE
from contracts.subjects import agent_of_pool, is_adhoc
from services.costguard import checks
from services.costguard.judge import NotHeld, decide, expire, judge
from services.costguard.ledger import Ledger, apply_unit_event, oldest_held_age_s, summary
from services.costguard.quote import Quote, best_offer, offer_filter
from services.costguard.refusals import Refusals
from services.costguard.settings import CostguardSettings, with_adhoc, with_agent_pool
from services.costguard.trust import Refused, Trust
from services.kit import Delivery, Permanent, Service
from services.kit.lag import track_lag
from services.kit.service import RequestError, encode

log = logging.getLogger("fleet.costguard")

UNITS_DURABLE = "costguard-units"
LEDGER_KEY = "ledger"
DECIDE_PREFIX = "fleet.budget.decide."

MIGRATIONS = [
    """
    CREATE TABLE verdicts (
        id TEXT NOT NULL,
        decision TEXT NOT NULL,
        verdict BLOB NOT NULL,
        audit BLOB NOT NULL,
        published INTEGER NOT NULL DEFAULT 0,
        ts REAL NOT NULL,
        PRIMARY KEY (id, decision)
    )
    """,
]


class CostGuard(Service[CostguardSettings]):
    """The budget gate: the only publisher of `fleet.budget.approved`."""

    name = "costguard"
    description = "budget gate: approves, denies or holds every command that costs money"
    singleton = True
    """Two active cost-guards would keep two ledgers; a second replica stands by."""
    migrations = MIGRATIONS
    clock: Callable[[], float] = staticmethod(time.time)
    """Unix seconds that every judgement, accrual and clock-skew check reads. Only
    this clock decides which UTC day it is, so tests give it a chosen day and hour."""

    async def setup(self) -> None:
        """Load the ledger, finish unpublished verdicts, then start consuming."""
        assert self.store is not None
        self.trust = Trust.from_settings(self.settings.signing)
        self.fence = self.lease.revision if self.lease is not None else NO_FENCE
        """The fencing token every verdict is signed with: the lease revision this holder
        took the lease at (a later holder's is higher; renewals do not change it)."""
        self.refusals = Refusals(
            lambda: self.nc,
            lambda alert: self.publish(subjects.alert(alert.severity), alert),
            lambda: self.ledger.units,
            self.spawn,
            self.metrics.count,
            lambda: self.policy.budget.unsigned_end_check_s,
        )
        self.policy = self.settings.policy()
        self.lock = asyncio.Lock()
        self._ledger_dec = msgspec.json.Decoder(Ledger)
        raw = await self.store.get(LEDGER_KEY)
        if raw is None:
            self.ledger = Ledger()
            await self._replay_unit_events()
        else:
            self.ledger = self._ledger_dec.decode(raw)
        await self._publish_pending()
        await self.consume(subjects.UNIT_ALL, UnitEvent, self.on_unit, durable=UNITS_DURABLE)
        for subject, kind, durable in (
            (subjects.SCALE_PROPOSED_ALL, ScaleProposal, "costguard-proposals"),
            (subjects.PROVISION_REQUESTED, ProvisionRequest, "costguard-provisions"),
            (subjects.RELEASE_REQUESTED, ReleaseRequest, "costguard-releases"),
        ):
            await self.consume(subject, msgspec.Raw, self._on_raw(kind), durable=durable)
        track_lag(self)
        await self.endpoint("decide", subjects.BUDGET_DECIDE_ALL, DecideRequest, self.on_decide)
        await self.api_endpoint("budget", NoArgs, self.on_budget)
        self._gauges()
        self.every(self.policy.budget.held_sweep_s, self.sweep, "held-sweep")

    def _gauges(self) -> None:
        """Prometheus metrics of the budget, for the dashboard and the alert rules."""
        reg = self.metrics.registry
        self.m_verdicts = Counter(
            "fleet_verdicts_total", "Verdicts published, by decision.", ["decision"], registry=reg
        )
        self.m_spent = Gauge(
            "fleet_budget_spent_today_usd",
            "USD spent today (UTC), accrued by the second.",
            registry=reg,
        )
        self.m_daily = Gauge("fleet_budget_daily_usd", "The daily budget, USD.", registry=reg)
        self.m_burn = Gauge(
            "fleet_budget_burn_usd_per_hour", "USD/hour of the units billing now.", registry=reg
        )
        self.m_projected = Gauge(
            "fleet_budget_projected_today_usd",
            "Spend by midnight UTC at the current burn and reservations, USD.",
            registry=reg,
        )
        self.m_daily.set(self.policy.budget.daily_usd)
        # Read at scrape: a held command's age grows between ledger changes.
        budget = self.policy.budget
        Gauge(
            "fleet_held_requests",
            "Commands waiting for a person (`fleet approve ID`).",
            registry=reg,
        ).set_function(lambda: len(self.ledger.held))
        Gauge(
            "fleet_held_oldest_age_seconds",
            "How long the longest-waiting held command has waited, seconds (0: none held).",
            registry=reg,
        ).set_function(lambda: oldest_held_age_s(self.ledger, budget.hold_timeout_s, self.clock()))
        Gauge(
            "fleet_held_timeout_seconds",
            "Seconds a held command waits before it is denied ([budget] hold_timeout_s).",
            registry=reg,
        ).set(budget.hold_timeout_s)
        self._refresh_gauges()

    def _refresh_gauges(self) -> None:
        figures = summary(self.ledger, self.clock())
        self.m_spent.set(figures["spent_today_usd"])
        self.m_burn.set(figures["burn_usd_per_hour"])
        self.m_projected.set(figures["projected_today_usd"])

    async def _replay_unit_events(self) -> None:
        """A fresh store: read every unit event again from the start of the stream."""
        try:
            await self.js.delete_consumer("FLEET_EVENTS", UNITS_DURABLE)
            log.info("no ledger in the store; replaying unit events from FLEET_EVENTS")
        except NotFoundError:
            pass

    # -- requests ------------------------------------------------------------
    def _on_raw(self, kind: type[AnyCommand]) -> Any:
        dec = msgspec.json.Decoder(kind)

        async def handle(raw: msgspec.Raw, d: Delivery) -> None:
            try:
                request = dec.decode(raw)
            except UNDECODABLE as exc:
                self.metrics.count("requests_rejected")
                raise Permanent(f"not a valid {kind.__name__}: {exc}") from exc
            skewed = clock_skew_problem(request.ts, self.clock())
            if skewed is not None:
                self.metrics.count("requests_rejected")
                raise Permanent(f"{kind.__name__} {request.id}: {skewed}")
            await self.on_request(request, d)

        return handle

    async def on_request(self, request: AnyCommand, d: Delivery) -> None:
        """Judge `request` once; a redelivery finds its verdict and publishes nothing new."""
        if await self._judged(request.id):
            return
        if is_adhoc(request.pool):
            self.policy = with_adhoc(self.policy, request.pool)
        elif agent_of_pool(request.pool) and request.pool not in self.settings.pools:
            provider = request.provider if isinstance(request, ProvisionRequest) else None
            self.policy = with_agent_pool(self.policy, request.pool, provider)
        quote = await self._quote(request)
        async with self.lock:
            if await self._judged(request.id):
                return
            if checks.problem(request, self.policy) is not None:
                self.metrics.count("requests_rejected")
            ledger, verdict, audit = judge(self.ledger, request, self.policy, self.clock(), quote)
            await self._record(ledger, verdict, audit)

    async def _judged(self, request_id: str) -> bool:
        assert self.store is not None
        rows = await self.store.fetchall(
            "SELECT decision, published FROM verdicts WHERE id = ?", (request_id,)
        )
        for row in rows:
            if not row["published"]:
                await self._publish_pending()
        return bool(rows)

    async def _quote(self, request: AnyCommand) -> Quote | None:
        """The cheapest current offer for a provision, or None (no answer in time)."""
        pool = self.policy.pools.get(request.pool)
        if pool is None or checks.problem(request, self.policy) is not None:
            return None
        size: tuple[int | None, int | None] = (None, None)
        if isinstance(request, ScaleProposal):
            if request.desired <= request.current:
                return None
            gpu_model, provider, ceiling = pool.gpu_model, None, pool.max_usd_per_hour
        elif isinstance(request, ProvisionRequest):
            gpu_model, provider = request.gpu_model, request.provider
            ceiling = min(pool.max_usd_per_hour, request.max_usd_per_hour or pool.max_usd_per_hour)
            size = (request.cores, request.memory_mb)
        else:
            return None
        query = offer_filter(pool, gpu_model, ceiling, provider, size)
        try:
            reply = await self.nc.request(
                subjects.api("gpus.available"),
                encode(query),
                timeout=self.policy.budget.offers_timeout_s,
            )
            offers = msgspec.json.decode(reply.data, type=OffersReply).offers
        except Exception as exc:
            log.info("no offers; pricing at the pool's ceiling", extra={"why": str(exc)[:200]})
            return None
        return best_offer(offers, pool, ceiling, provider)

    # -- unit events -----------------------------------------------------------
    async def on_unit(self, event: UnitEvent, d: Delivery) -> None:
        """Accrue spend and settle reservations from a unit's lifecycle event. An event the
        provisioner did not sign, or whose `ts` is beyond the contract's clock skew, is
        dead-lettered and never counted. The watcher's failure report is passed over: the
        provisioner acts on it and its own signed `failed` ends the unit here."""
        if self.trust.watcher_report(d):
            self.metrics.count("watcher_reports")
            return
        unsigned = self.trust.unit_event_problem(d)
        if unsigned is not None:
            self.metrics.count("unit_events_refused")
            await self.refusals.refused(event, unsigned)
            raise Permanent(unsigned)
        skewed = clock_skew_problem(event.ts, self.clock())
        if skewed is not None:
            self.metrics.count("unit_events_rejected")
            raise Permanent(f"unit event {event.pool}/{event.unit} {event.state}: {skewed}")
        async with self.lock:
            ledger = apply_unit_event(self.ledger, event, self.clock())
            if ledger != self.ledger:
                await self._save(ledger)

    # -- people ------------------------------------------------------------------
    async def on_decide(self, req: DecideRequest, d: Delivery) -> DecideReply:
        """`fleet approve|reject ID`: decide a held request (approval re-checks the cap).
        Only an operator key from `[signing] operators` decides, and the audit trail names
        the operator that key belongs to, whatever the message says."""
        request_id = d.subject[len(DECIDE_PREFIX) :]
        try:
            operator = self.trust.operator(d, req.ts, self.clock())
        except Refused as exc:
            self.metrics.count("decisions_refused")
            await self._refused_decision(request_id, req, str(exc))
            raise RequestError(str(exc), 403) from None
        async with self.lock:
            try:
                ledger, verdict, audit = decide(
                    self.ledger,
                    request_id,
                    req.approve,
                    operator,
                    req.reason,
                    self.policy,
                    self.clock(),
                )
            except NotHeld:
                assert self.store is not None
                rows = await self.store.fetchall(
                    "SELECT decision FROM verdicts WHERE id = ? ORDER BY ts", (request_id,)
                )
                if rows:
                    raise RequestError(
                        f"request {request_id} is not held: it was {rows[-1]['decision']}", 409
                    ) from None
                raise RequestError(
                    f"no held request {request_id!r}; `fleet tail fleet.budget.held` shows them",
                    404,
                ) from None
            await self._record(ledger, verdict, audit)
        wanted = "approved" if req.approve else "denied"
        return DecideReply(
            ok=verdict.decision == wanted,
            id=request_id,
            decision=verdict.decision,
            error=None if verdict.decision == wanted else verdict.reason,
        )

    async def on_budget(self, _req: NoArgs, d: Delivery) -> dict[str, Any]:
        """`fleet.api.budget`: the day's figures and the requests waiting for a person."""
        now = self.clock()
        budget = self.policy.budget
        ledger = self.ledger
        return {
            "daily_usd": budget.daily_usd,
            "hard_cap_usd": budget.cap_usd,
            "max_burn_usd_per_hour": budget.max_burn_usd_per_hour,
            "approval_threshold_usd_per_hour": budget.approval_threshold_usd_per_hour,
            **summary(ledger, now),
            "held": [
                {
                    "id": rid,
                    "pool": h.pool,
                    "units": h.units,
                    "usd_per_hour": round(h.usd_per_hour, 6),
                    "requester": getattr(h.request, "requester", ""),
                    "expires_in_s": round(max(0.0, h.expires_at - now), 1),
                }
                for rid, h in sorted(ledger.held.items())
            ],
        }

    async def sweep(self) -> None:
        """Deny held requests that timed out; drop stale reservations."""
        async with self.lock:
            ledger, outcomes = expire(self.ledger, self.policy, self.clock())
            for verdict, audit in outcomes:
                await self._record(ledger, verdict, audit)
            if not outcomes and ledger != self.ledger:
                await self._save(ledger)
        self._refresh_gauges()

    # -- store and wire ----------------------------------------------------------
    async def _save(self, ledger: Ledger) -> None:
        assert self.store is not None
        await self.store.put(LEDGER_KEY, encode(ledger))
        self.ledger = ledger

    async def _refused_decision(self, request_id: str, req: DecideRequest, why: str) -> None:
        """An attempt to decide a held request with a key that is not an operator's moves
        money if believed: audited and a critical alert, as a forged verdict or unit event
        is, not only a 403 to whoever sent it."""
        what = "approve" if req.approve else "reject"
        said = f"refused an attempt to {what} held request {request_id} ({why})"
        audit = AuditRecord(
            ts=self.clock(),
            actor="costguard",
            action="decision refused",
            reasoning=said[:4096],
            result="refused",
            refs={"request": request_id[:128], "claimed_operator": req.operator},
        )
        alert = Alert(kind="decision_refused", severity="critical", message=said[:4000])
        for subject, msg in (
            (subjects.audit("costguard"), audit),
            (subjects.alert("critical"), alert),
        ):
            try:
                await self.publish(subject, msg)
            except Exception:
                log.warning("could not publish a refused decision", exc_info=True)

    async def _record(self, ledger: Ledger, verdict: Verdict, audit: AuditRecord) -> None:
        """Store the ledger and the verdict in one transaction, then publish both."""
        assert self.store is not None
        db = self.store.db
        await db.execute(
            "INSERT OR IGNORE INTO verdicts(id, decision, verdict, audit, ts) VALUES (?,?,?,?,?)",
            (verdict.id, verdict.decision, encode(verdict), encode(audit), verdict.ts),
        )
        await db.execute(
            "INSERT INTO kv(key, value, updated_ts) VALUES (?, ?, ?) ON CONFLICT(key) "
            "DO UPDATE SET value = excluded.value, updated_ts = excluded.updated_ts",
            (LEDGER_KEY, encode(ledger), self.clock()),
        )
        await db.commit()
        self.ledger = ledger
        self.metrics.count(f"verdicts_{verdict.decision}")
        self.m_verdicts.labels(verdict.decision).inc()
        await self._publish_pending()

    async def _publish_pending(self) -> None:
        """Publish every recorded verdict not yet published (de-duplicated by msg id)."""
        assert self.store is not None
        rows = await self.store.fetchall(
            "SELECT id, decision, verdict, audit FROM verdicts WHERE published = 0 ORDER BY ts"
        )
        for row in rows:
            key = f"{row['id']}:{row['decision']}"
            subject, body = subjects.budget(row["decision"]), bytes(row["verdict"])
            signature = self.trust.signer.sign(subject, body, self.fence)
            await self.publish(subject, body, msg_id=key, headers=signature)
            await self.publish(
                subjects.audit("costguard"), bytes(row["audit"]), msg_id=f"audit:{key}"
            )
            await self.store.execute(
                "UPDATE verdicts SET published = 1 WHERE id = ? AND decision = ?",
                (row["id"], row["decision"]),
            )


SERVICE = CostGuard
