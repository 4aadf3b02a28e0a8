"""The watcher: telemetry in, PoolMetrics out every tick, silent or sick units failed.

Wiring only: the unit table (`units`), the windows (`windows`) and the
Prometheus parsing (`prometheus`) are pure; this module feeds them from
NATS, publishes what they return and keeps lifecycle states in the store so
a restarted watcher still knows which units are ready, pending or ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import msgspec
from nats.aio.msg import Msg
from prometheus_client import Counter, Gauge

from contracts import subjects
from contracts.api import PoolQuery
from contracts.base import UNDECODABLE
from contracts.events import TERMINAL_STATES, Alert, UnitEvent
from contracts.telemetry import PoolMetrics, PoolMinute, UnitTelemetry
from services.kit import Delivery, Permanent, Service
from services.kit.jobqueue import PoolDepth, queue_depths
from services.kit.lag import track_lag
from services.kit.pools import PoolConfig
from services.kit.service import RequestError, encode
from services.kit.signing import Authors, has_own_key, own_signer, trusted_keys, unkeyed
from services.watcher import rollup
from services.watcher.backlog import with_jobs
from services.watcher.burst import Bursts
from services.watcher.prometheus import PrometheusError, PrometheusSource, query
from services.watcher.settings import WatcherSettings
from services.watcher.units import (
    Failure,
    UnitTable,
    apply_event,
    check_telemetry,
    failures,
    forget_ended,
    ingest,
    mark_failed,
    unit_key,
)
from services.watcher.windows import PoolWindow, aggregate, with_external

log = logging.getLogger("fleet.watcher")
_TELEMETRY = msgspec.json.Decoder(UnitTelemetry)

MIGRATIONS = [
    """
    CREATE TABLE units (
        pool TEXT NOT NULL,
        unit TEXT NOT NULL,
        state TEXT NOT NULL,
        ts REAL NOT NULL,
        PRIMARY KEY (pool, unit)
    )
    """,
]


class Watcher(Service[WatcherSettings]):
    """Turns unit telemetry into pool metrics and declares dead units failed."""

    name = "watcher"
    description = "telemetry -> per-pool metrics; missed heartbeats -> failed units"
    migrations = MIGRATIONS

    def __init__(self, settings: WatcherSettings | None = None, *, nats_url: str | None = None):
        super().__init__(settings, nats_url=nats_url)
        self.opts = self.settings.watcher
        self.configured: set[str] = set(self.settings.pools)
        self.table = UnitTable()
        self.windows: dict[str, PoolWindow] = {}
        self.latest: dict[str, PoolMetrics] = {}
        self._depths: dict[str, PoolDepth] = {}
        self.bursts = Bursts(
            factor=self.opts.burst_factor,
            rate_per_s=self.opts.burst_rate_per_s,
            burst=self.opts.burst_size,
            scale_up_at={p: c.scale_up_at for p, c in self.settings.pools.items()},
            default_scale_up_at=PoolConfig().scale_up_at,
        )
        self._fast_seq = 0
        self.minutes: dict[str, rollup.OpenMinute] = {}
        """Each pool's minute of metrics being rolled up (services.watcher.rollup)."""
        self.external: dict[str, tuple[float, float]] = {}
        """pool -> (value, read at) from its Prometheus source."""
        self._client: httpx.AsyncClient | None = None
        self._last_tick = 0.0
        self._tick_index = 0
        self._ingested = Counter(
            "fleet_telemetry_ingested_total",
            "Unit heartbeats folded into the unit table.",
            registry=self.metrics.registry,
        )
        self._ingested_seen = 0
        self._units = Gauge(
            "fleet_pool_units",
            "Units per pool: ready (serving) or pending (requested or booting).",
            ["pool", "state"],
            registry=self.metrics.registry,
        )
        self._utilization = Gauge(
            "fleet_pool_utilization",
            "In-flight work over the pool's ready capacity, 0..1.",
            ["pool"],
            registry=self.metrics.registry,
        )

    # -- lifecycle ---------------------------------------------------------
    async def setup(self) -> None:
        signing = self.settings.signing
        # Its `failed` reports are signed: the provisioner replaces a unit on no one else's.
        self.signer = own_signer(signing, "watcher") if has_own_key(signing) else None
        binding = not self.settings.nats.create_resources
        unkeyed(
            None
            if self.signer is not None
            else "no [signing] seed_file: failure reports go unsigned, and the provisioner "
            "will refuse them (set FLEET_SIGNING__SEED_FILE; `fleet up` does it for you)",
            binding=binding,
            log=log,
        )
        self.authors = Authors(trusted_keys(signing, "provisioner", "watcher"))
        unkeyed(
            self.authors.unkeyed_warning("unit events", "provisioner_key"),
            binding=binding,
            log=log,
        )
        await self._load_units()
        self._last_tick = time.time()
        self._tick_index = int(self._last_tick / self.opts.tick_s)
        await self.listen(subjects.TELEMETRY_ALL, self._telemetry_callback(), buffered=True)
        await self.consume(subjects.UNIT_ALL, UnitEvent, self.on_event, durable="watcher-units")
        track_lag(self)
        await self.api_endpoint("pools", PoolQuery, self.on_pools)
        if self.opts.prometheus:
            self._client = httpx.AsyncClient()
            for pool, source in self.opts.prometheus.items():
                subjects.token(pool, "pool")
                self.every(source.interval_s, self._poller(pool, source), f"prometheus:{pool}")
        self.every(self.opts.tick_s, self.tick, "tick")

    async def teardown(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def _load_units(self) -> None:
        assert self.store is not None
        now = time.time()
        for row in await self.store.fetchall("SELECT pool, unit, state, ts FROM units"):
            ev = UnitEvent(pool=row["pool"], unit=row["unit"], state=row["state"], ts=row["ts"])
            apply_event(self.table, ev, now)
            if row["state"] in TERMINAL_STATES:
                self.table.units[unit_key(ev.pool, ev.unit)].failed_at = row["ts"]

    # -- input ----------------------------------------------------------------
    def _telemetry_callback(self) -> Callable[[Msg], Awaitable[None]]:
        """The hot path, 100k+ messages/s: decode, check, fold into the unit table, count.

        A lean core-NATS callback rather than `Service.subscribe`: no span, no
        Delivery and no labelled Prometheus counter per heartbeat (the tally goes
        to Prometheus once per tick), and what it uses bound once as locals; bad
        input is still dead-lettered and counted.
        """
        table, units, counts = self.table, self.table.units, self.metrics.counts
        ratio, decode, clock = self.opts.max_load_ratio, _TELEMETRY.decode, time.time
        burst = self.bursts.heartbeat

        async def on_telemetry(msg: Msg) -> None:
            try:
                t = decode(msg.data)
            except UNDECODABLE as exc:
                kind = "invalid" if isinstance(exc, msgspec.ValidationError) else "decode"
                await self.dead_letter(msg.subject, msg.data, str(exc), kind)
                return
            subject = msg.subject
            rec = units.get(subject)
            known = rec is not None and rec.unit == t.unit and rec.pool == t.pool
            problem = check_telemetry(t, subject, ratio, known)
            if problem is not None:
                counts["telemetry_rejected"] += 1
                await self.dead_letter(subject, msg.data, problem, "permanent")
                return
            now = clock()
            if rec is None or rec.failed_at is None:  # a failed unit's beats count for nothing
                fast = burst(rec.last if rec is not None else None, t, now)
                if fast is not None:
                    self.spawn(self._publish_fast(t.pool, fast), "burst")
            ingest(table, subject, t, now)
            counts["telemetry_ingested"] += 1

        return on_telemetry

    async def on_event(self, ev: UnitEvent, d: Delivery) -> None:
        """A lifecycle step: remember it (store first, so a restart knows it too). Only the
        provisioner's (and the watcher's own reports) are believed: a forged `terminated`
        would hide a live unit from the pool's metrics."""
        assert self.store is not None
        forged = self.authors.problem(d)
        if forged is not None:
            self.metrics.count("unit_events_refused")
            raise Permanent(f"unit event not signed by the provisioner: {forged}")
        await self.store.execute(
            "INSERT INTO units(pool, unit, state, ts) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(pool, unit) DO UPDATE SET state = excluded.state, ts = excluded.ts "
            "WHERE excluded.ts >= units.ts",
            (ev.pool, ev.unit, ev.state, ev.ts),
        )
        apply_event(self.table, ev, time.time())
        self.metrics.count("unit_events")

    # -- every tick -------------------------------------------------------------
    async def tick(self) -> None:
        """Fail dead units, then publish each pool's metrics."""
        now = time.time()
        ingested = self.metrics.counts["telemetry_ingested"]
        self._ingested.inc(ingested - self._ingested_seen)
        self._ingested_seen = ingested
        dt = max(now - self._last_tick, 1e-3)
        self._last_tick = now
        self._tick_index = max(self._tick_index + 1, int(now / self.opts.tick_s))
        failed = failures(self.table, now, self.opts.heartbeat_timeout_s, self.opts.unhealthy_limit)
        if failed:
            mark_failed(self.table, failed, now)
            for f in failed:
                await self._declare_failed(f, now)
        if forget_ended(self.table, now, self.opts.forget_after_s):
            await self._forget_rows(now)
        known = set(self.external) | self.configured
        samples = aggregate(self.table, now, dt, self.opts.heartbeat_timeout_s, known)
        for pool, sample in samples.items():
            ext = self.external.get(pool)
            if ext is not None:
                source = self.opts.prometheus[pool]
                stale_s = source.stale_after_s or 3 * source.interval_s
                if now - ext[1] <= stale_s:
                    with_external(sample, source.measures, ext[0])
            window = self.windows.get(pool)
            if window is None:
                window = self.windows[pool] = PoolWindow()
            window.add(sample, self.opts.window_s)
            self.latest[pool] = window.metrics(pool)
            self.bursts.published(self.latest[pool], sample)
        for pool in [p for p in self.windows if p not in samples]:
            self.minutes, last = rollup.forget(self.minutes, pool)
            await self._publish_minute(last)
            del self.windows[pool]
            self.latest.pop(pool, None)
            self.bursts.forget(pool)
            for state in ("ready", "pending"):
                with contextlib.suppress(KeyError):
                    self._units.remove(pool, state)
            with contextlib.suppress(KeyError):
                self._utilization.remove(pool)
        depths = self._depths = await self._job_depths()
        for pool in samples:
            self.latest[pool] = with_jobs(self.latest[pool], depths.get(pool))
        for pool, m in self.latest.items():
            self._units.labels(pool, "ready").set(m.units_ready)
            self._units.labels(pool, "pending").set(m.units_pending)
            self._utilization.labels(pool).set(m.utilization)
        idle = rollup.idle_units(self.table)
        for pool in samples:
            # A span per pool's metrics: the scaler's decision, the verdict and the units it
            # brings are one trace from here.
            with self.tracer.start_as_current_span("publish metrics", attributes={"pool": pool}):
                try:
                    await self.publish(
                        subjects.metrics(pool),
                        self.latest[pool],
                        msg_id=f"{pool}:{self._tick_index}",
                    )
                except Exception:
                    log.warning("could not publish metrics", exc_info=True, extra={"pool": pool})
                    continue
            self.metrics.count("metrics_published")
            self.minutes, done = rollup.fold(self.minutes, self.latest[pool], idle.get(pool, 0))
            await self._publish_minute(done)

    async def _publish_minute(self, minute: PoolMinute | None) -> None:
        """A pool's finished minute on `fleet.rollup.<pool>`, once per pool and minute."""
        if minute is None:
            return
        try:
            await self.publish(
                subjects.rollup(minute.pool), minute, msg_id=f"{minute.pool}:{minute.ts:.0f}"
            )
        except Exception:
            log.warning("could not publish the rollup", exc_info=True, extra={"pool": minute.pool})
            return
        self.metrics.count("rollup_published")

    async def _publish_fast(self, pool: str, fast: PoolMetrics | float) -> None:
        """A pool's load jumped between ticks (see `burst`): its metrics now, or, when the
        pool's rate limit holds it, as soon as the limit allows."""
        if not isinstance(fast, PoolMetrics):
            await asyncio.sleep(max(0.0, fast - time.time()))
            m = self.bursts.flush(pool, time.time())
            if m is None:
                return
        else:
            m = fast
        m = with_jobs(m, self._depths.get(pool))  # the backlog as of the last tick
        self._fast_seq += 1
        if m.ts >= getattr(self.latest.get(m.pool), "ts", 0.0):  # no tick overtook it
            # Before the publish: whoever reads the message may ask fleet.api.pools next.
            self.latest[m.pool] = m
        with self.tracer.start_as_current_span(
            "publish metrics (burst)", attributes={"pool": m.pool}
        ):
            try:
                await self.publish(
                    subjects.metrics(m.pool),
                    m,
                    msg_id=f"{m.pool}:{self._tick_index}:b{self._fast_seq}",
                )
            except Exception:
                log.warning(
                    "could not publish burst metrics", exc_info=True, extra={"pool": m.pool}
                )
                return
        self.metrics.count("metrics_published")
        self.metrics.count("metrics_published_fast")

    async def _job_depths(self) -> dict[str, PoolDepth]:
        """Each pool's job backlog from the work-queue streams; empty when unreadable."""
        try:
            return await queue_depths(self.js)
        except Exception:
            log.warning("could not read the job queues", exc_info=True)
            return {}

    async def _declare_failed(self, f: Failure, now: float) -> None:
        event = UnitEvent(ts=now, pool=f.pool, unit=f.unit, state="failed", reason=f.reason)
        alert = Alert(
            ts=now,
            kind="unit_failed",
            severity="warning",
            pool=f.pool,
            unit=f.unit,
            message=f"unit {f.unit} in pool {f.pool} failed: {f.reason}",
        )
        try:
            subject, data = subjects.unit(f.pool, f.unit), encode(event)
            await self.publish(
                subject,
                data,
                msg_id=f"watcher-failed:{f.key}:{now:.3f}",
                headers=self.signer.sign(subject, data) if self.signer else None,
            )
            await self.publish(
                subjects.alert("warning"), alert, msg_id=f"watcher-alert:{f.key}:{now:.3f}"
            )
        except Exception:
            log.warning("could not declare a unit failed; will retry", exc_info=True)
            rec = self.table.units.get(f.key)
            if rec is not None:
                rec.failed_at = None
                rec.state = ""
            return
        self.metrics.count("units_failed")
        log.warning("unit failed", extra={"pool": f.pool, "unit": f.unit, "reason": f.reason})

    async def _forget_rows(self, now: float) -> None:
        assert self.store is not None
        await self.store.execute(
            "DELETE FROM units WHERE state IN ('failed', 'terminated') AND ts < ?",
            (now - self.opts.forget_after_s,),
        )

    # -- Prometheus -------------------------------------------------------------
    def _poller(self, pool: str, source: PrometheusSource) -> Any:
        async def poll() -> None:
            assert self._client is not None
            try:
                value = await query(self._client, source)
            except PrometheusError as exc:
                self.metrics.count("prometheus_errors")
                log.warning("prometheus query failed", extra={"pool": pool, "error": str(exc)})
                return
            self.external[pool] = (value, time.time())
            self.metrics.count("prometheus_reads")

        return poll

    # -- API ------------------------------------------------------------------------
    async def on_pools(self, q: PoolQuery, d: Delivery) -> dict[str, Any]:
        """`fleet.api.pools`: the latest PoolMetrics per pool, with unit counts."""
        counts: dict[str, dict[str, int]] = {}
        for rec in self.table.units.values():
            c = counts.setdefault(rec.pool, {"known": 0, "ended": 0})
            c["known"] += 1
            if rec.failed_at is not None:
                c["ended"] += 1
        pools = []
        for pool, m in sorted(self.latest.items()):
            if q.pool is not None and pool != q.pool:
                continue
            pools.append({"metrics": m, "units": counts.get(pool, {"known": 0, "ended": 0})})
        if q.pool is not None and not pools:
            known = ", ".join(sorted(self.latest)) or "none yet"
            raise RequestError(f"no metrics for pool {q.pool!r}; pools with metrics: {known}", 404)
        return {"pools": pools, "tick_s": self.opts.tick_s}


SERVICE = Watcher
