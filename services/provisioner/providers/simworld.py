"""The simulated world behind the `sim` provider: pool load patterns and unit telemetry.

Every `sim` provider instance (`sim`, `sim2`, ...) registers its units here; once
handed a publish callback, one task publishes a UnitTelemetry per ready unit every
`interval_s` on `fleet.telemetry.<pool>.<unit>`, as a real unit's agent would. The
world runs in the units' own process (simhost.py) unless `[sim] units = "inline"`
keeps it inside the provisioner; then `host` is set in the provisioner's copy, and
starting the world there only keeps that process running.
A pool's demand at time t (a compressed day plus bursts) is shared evenly
across its ready, non-draining units across all sim instances: each serves
min(capacity, share) and the rest waits as queue depth.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

import msgspec
from nats.aio.client import Client

from contracts import subjects
from contracts.telemetry import UnitTelemetry
from services.provisioner.providers.simjobs import SimJobs

log = logging.getLogger("fleet.sim")

Publish = Callable[[str, UnitTelemetry], Awaitable[None]]
BUSY = 0.05
"""Requests in flight above which a unit counts as busy (not idle)."""


class LoadPattern(msgspec.Struct, frozen=True, kw_only=True):
    """`[sim.load.<pool>]`: the pool's demand, in requests in flight."""

    base: float = 0.0
    """Demand at the quietest point of the day."""
    peak: float = 0.0
    """Demand at the busiest point of the day."""
    period_s: float = 600.0
    """Length of one simulated day in seconds (600 compresses a day into 10 minutes)."""
    phase_s: float = 0.0
    """Shift of the daily curve, in seconds."""
    burst_every_s: float = 0.0
    """Seconds between bursts; 0 for none."""
    burst_factor: float = 1.0
    """Demand multiplier during a burst."""
    burst_s: float = 0.0
    """How long a burst lasts, in seconds."""
    service_s: float = 1.0
    """Mean time one request takes, seconds: a unit with `inflight` requests completes
    inflight / service_s of them per second (what the watcher's arrival rate counts)."""


def demand(p: LoadPattern, t: float) -> float:
    """Requests in flight the pool sees `t` seconds into the simulation: a daily cosine
    from base (at t = 0) to peak (half a period later), times `burst_factor` during bursts."""
    wave = (1 - math.cos(2 * math.pi * ((t + p.phase_s) % max(p.period_s, 1e-9)) / p.period_s)) / 2
    level = p.base + (max(p.peak, p.base) - p.base) * wave
    if p.burst_every_s > 0 and p.burst_s > 0 and (t % p.burst_every_s) < p.burst_s:
        level *= p.burst_factor
    return max(level, 0.0)


class SimUnitView(Protocol):
    """What the world needs to know about one simulated unit."""

    pool: str
    unit: str
    draining: bool
    last_busy_ts: float


class UnitSource(Protocol):
    """A sim provider, as the world sees it."""

    name: str

    def ready_units(self, now: float) -> Iterable[Any]:
        """Units that are up now (booted, not failed, not destroyed)."""
        ...


class Host(Protocol):
    """The process the units report from (simhost.SimHost), as the world sees it."""

    async def keep(self) -> None:
        """Keep the host running until cancelled."""
        ...


class SimWorld:
    """Load patterns, the sim providers that share them, and the telemetry task."""

    def __init__(
        self,
        loads: Mapping[str, LoadPattern] | None = None,
        capacities: Mapping[str, float] | None = None,
        interval_s: float = 1.0,
        default_capacity: float = 4.0,
    ) -> None:
        self.loads = dict(loads or {})
        self.capacities = dict(capacities or {})
        self.interval_s = interval_s
        self.default_capacity = default_capacity
        self.sources: list[UnitSource] = []
        self._task: asyncio.Task[None] | None = None
        self.jobs: SimJobs | None = None
        """The units' job workers, once the provisioner hands the world a connection."""
        self.started = time.time()
        """The simulated day starts when the world does, so every run of the demo shows
        the same story: a quiet start, the rise, bursts, and the fall."""
        self.host: Host | None = None
        """Set when the units report from a process of their own (simhost.py)."""

    @classmethod
    def from_section(cls, sim: Mapping[str, Any], capacities: Mapping[str, float]) -> SimWorld:
        """A world from fleet.toml's `[sim]` table (its `load` subtables and
        `telemetry_interval_s`); a bad value raises ValueError naming the key."""
        try:
            loads = msgspec.convert(dict(sim.get("load", {})), dict[str, LoadPattern], strict=False)
            interval = float(sim.get("telemetry_interval_s", 1.0))
            cap = float(sim.get("unit_capacity", 4.0))
        except (msgspec.ValidationError, TypeError, ValueError) as exc:
            raise ValueError(f"[sim] {exc}") from None
        return cls(loads, capacities, interval, cap)

    def add(self, source: UnitSource) -> None:
        """Let the world see `source`'s units."""
        if source not in self.sources:
            self.sources.append(source)

    def telemetry(self, now: float) -> list[UnitTelemetry]:
        """One heartbeat per ready unit at `now`; updates each unit's last busy time."""
        per_pool: dict[str, list[tuple[str, Any]]] = {}
        for source in self.sources:
            for u in source.ready_units(now):
                per_pool.setdefault(u.pool, []).append((source.name, u))
        out: list[UnitTelemetry] = []
        for pool, members in sorted(per_pool.items()):
            capacity = self.capacities.get(pool, self.default_capacity)
            serving = [m for m in members if not m[1].draining]
            pattern = self.loads.get(pool)
            load = demand(pattern, now - self.started) if pattern is not None else 0.0
            share = load / len(serving) if serving else 0.0
            service_s = max(pattern.service_s, 1e-3) if pattern is not None else 1.0
            for provider, u in members:
                inflight = 0.0 if u.draining else min(capacity, share)
                if self.jobs is not None:
                    inflight += self.jobs.busy(u.unit)
                queue = 0.0 if u.draining else max(share - capacity, 0.0)
                if inflight > BUSY:
                    u.last_busy_ts = now
                util = inflight / capacity if capacity > 0 else 0.0
                out.append(
                    UnitTelemetry(
                        ts=now,
                        pool=pool,
                        unit=u.unit,
                        provider=provider,
                        inflight=round(inflight, 3),
                        capacity=capacity,
                        queue_depth=round(queue, 3),
                        utilization=min(round(util, 4), 1.0),
                        gpu_util=min(round(util * 0.95, 4), 1.0),
                        idle_s=round(max(now - u.last_busy_ts, 0.0), 3),
                        completed=round(inflight * self.interval_s / service_s, 3),
                    )
                )
        return out

    def start(self, publish: Publish) -> None:
        """Start publishing telemetry with `publish` (once, however many sims call it);
        with a host, keep the host running instead."""
        if self._task is None and self.host is not None:
            self._task = asyncio.get_running_loop().create_task(self.host.keep())
        elif self._task is None and self.interval_s > 0:
            self._task = asyncio.get_running_loop().create_task(self._run(publish))

    def start_jobs(self, nc: Client) -> None:
        """Let ready units pull and run their pools' jobs (once, however many sims call it);
        with a host, the host's world does."""
        if self.jobs is None and self.host is None:
            self.jobs = SimJobs(
                nc, self._ready_now, self.capacities, default_capacity=self.default_capacity
            )
            self.jobs.start()

    def _ready_now(self) -> list[Any]:
        now = time.time()
        return [u for source in self.sources for u in source.ready_units(now)]

    async def _run(self, publish: Publish) -> None:
        while True:
            now = time.time()
            for beat in self.telemetry(now):
                try:
                    await publish(subjects.telemetry(beat.pool, beat.unit), beat)
                except Exception:
                    log.debug("sim telemetry publish failed", exc_info=True)
            await asyncio.sleep(self.interval_s)

    async def stop(self) -> None:
        """Stop the telemetry task and the job workers (their jobs are handed back)."""
        if self.jobs is not None:
            await self.jobs.stop()
            self.jobs = None
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
