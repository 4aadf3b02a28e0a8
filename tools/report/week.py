"""A simulated week of fleet history, as the streams would have kept it.

Minute by minute over `days` days ending at `end`, three pools serve a daily
load curve (quieter at weekends) the way the fleet would: units are asked for
when the load needs them and ready two minutes later, released after the load
has stayed lower for `hold_min` minutes, and never below the pool's minimum;
units on one provider fail now and then and are replaced; jobs needing 24 GB
run on both the A100 and the RTX 4090 pool; the cost-guard denies and holds a
few proposals at the weekday peaks. Every message carries its own past `ts`,
so publishing them now plays the week in seconds (the acceptance tests and the
README's screenshot use it). Deterministic for a seed.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from contracts.commands import ScaleProposal, Verdict
from contracts.events import AuditRecord, UnitEvent
from contracts.jobs import Job, JobEvent, JobRequirements
from contracts.telemetry import PoolMinute

MINUTE_S = 60.0
BOOT_S = 120.0


@dataclass(frozen=True)
class PoolPlan:
    """One simulated pool."""

    name: str
    gpu_model: str
    usd_per_hour: float
    base: float
    """Requests in flight at night."""
    peak: float
    """Extra requests in flight at the day's peak (15:00 UTC)."""
    min_units: int = 1
    unit_capacity: float = 8.0
    flaky_share: float = 0.0
    """Share of new units rented on the flaky provider."""


POOLS = (
    PoolPlan(
        name="h100",
        gpu_model="H100",
        usd_per_hour=2.8,
        base=14,
        peak=46,
        min_units=2,
        flaky_share=0.3,
    ),
    PoolPlan(name="a100", gpu_model="A100-80GB", usd_per_hour=1.6, base=0, peak=6),
    PoolPlan(name="rtx4090", gpu_model="RTX4090", usd_per_hour=0.45, base=0, peak=6),
)
SPEED = {"A100-80GB": 0.6, "RTX4090": 0.5, "H100": 1.0}
"""How fast each GPU runs a job, relative to an H100 (as the sim provider has it)."""


@dataclass
class Week:
    """The messages of a simulated history, by stream."""

    rollup: list[PoolMinute] = field(default_factory=list)
    units: list[UnitEvent] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    audit: list[AuditRecord] = field(default_factory=list)
    jobs: list[JobEvent] = field(default_factory=list)


@dataclass
class _Unit:
    name: str
    provider: str
    ready_at: float
    ends_at: float | None = None


def demand(plan: PoolPlan, ts: float, rng: random.Random) -> float:
    """Requests in flight at `ts`: a daily curve peaking at 15:00 UTC, 40 % lower on
    Saturdays and Sundays, with noise."""
    hour = (ts % 86_400.0) / 3600.0
    weekday = int(ts // 86_400.0 + 3) % 7  # 1970-01-01 was a Thursday
    day = max(0.0, math.sin(math.pi * (hour - 6.0) / 18.0)) if 6 <= hour <= 24 else 0.0
    scale = 0.6 if weekday >= 5 else 1.0
    return max(0.0, (plan.base + plan.peak * day**2) * scale * rng.uniform(0.9, 1.1))


class _Pool:
    def __init__(self, plan: PoolPlan, week: Week, rng: random.Random) -> None:
        self.plan, self.week, self.rng = plan, week, rng
        self.units: list[_Unit] = []
        self.low_since: float | None = None
        self.seq = 0

    def event(self, u: _Unit, state: str, ts: float, reason: str = "") -> None:
        self.week.units.append(
            UnitEvent(
                ts=ts,
                pool=self.plan.name,
                unit=u.name,
                state=state,  # type: ignore[arg-type]
                provider=u.provider,
                gpu_model=self.plan.gpu_model,
                usd_per_hour=self.plan.usd_per_hour,
                reason=reason,
            )
        )

    def add(self, ts: float, why: str) -> _Unit:
        self.seq += 1
        flaky = self.rng.random() < self.plan.flaky_share
        u = _Unit(f"{self.plan.name}-{self.seq:05d}", "vastai" if flaky else "sim", ts + BOOT_S)
        self.units.append(u)
        self.event(u, "requested", ts, why)
        self.event(u, "booting", ts + 5.0)
        self.event(u, "ready", u.ready_at)
        return u

    def live(self, ts: float) -> list[_Unit]:
        return [u for u in self.units if u.ends_at is None or u.ends_at > ts]

    def step(self, ts: float, load: float, hold_min: float) -> None:
        cap = self.plan.unit_capacity
        want = max(self.plan.min_units, math.ceil(load / (cap * 0.7) - 1e-9))
        live = [u for u in self.live(ts) if u.ends_at is None]
        if want > len(live):
            self.low_since = None
            for _ in range(want - len(live)):
                self.add(ts + self.rng.uniform(0, 30), "scale up")
        elif want < len(live):
            self.low_since = ts if self.low_since is None else self.low_since
            if ts - self.low_since >= hold_min * MINUTE_S:
                for u in sorted(live, key=lambda u: u.ready_at)[want:]:
                    self.event(u, "draining", ts, "scale down")
                    u.ends_at = ts + 30.0
                    self.event(u, "terminated", u.ends_at, "scale down")
                self.low_since = None
        else:
            self.low_since = None
        for u in live:  # the flaky provider's units fail now and then
            if u.provider == "vastai" and u.ready_at <= ts and self.rng.random() < 0.002:
                u.ends_at = ts + 1.0
                self.event(u, "failed", u.ends_at, "missed heartbeats for 10 s")
                new = self.add(ts + 10.0, f"replace {u.name}")
                self.week.audit.append(
                    AuditRecord(
                        ts=ts + 10.0,
                        actor="provisioner",
                        action="request_replacement",
                        reasoning=f"{u.name} failed on vastai",
                        refs={
                            "unit": u.name,
                            "request": f"replace-{u.name}",
                            "replacement": new.name,
                        },
                    )
                )
        ready = [u for u in self.live(ts) if u.ready_at <= ts]
        n = len(ready)
        busy = min(n, math.ceil(load / cap - 1e-9)) if load > 0 else 0
        self.week.rollup.append(
            PoolMinute(
                ts=ts,
                pool=self.plan.name,
                samples=60,
                units_ready=float(n),
                units_ready_min=n,
                units_ready_max=n,
                units_idle_min=n - busy,
                demand=round(load, 3),
                demand_max=round(load * 1.1, 3),
                capacity=n * cap,
                utilization=min(1.0, load / (n * cap)) if n else 0.0,
                arrival_rate=round(load / 5.0, 3),
            )
        )

    def close(self, ts: float) -> None:
        for u in self.live(ts):
            if u.ends_at is None:
                self.event(u, "draining", ts, "end of the simulated week")
                u.ends_at = ts + 30.0
                self.event(u, "terminated", u.ends_at, "end of the simulated week")


def _jobs(week: Week, pools: dict[str, _Pool], ts: float, rng: random.Random) -> None:
    """A batch of 4 jobs needing 24 GB every 30 minutes from 08:00 to 20:00 UTC, routed
    alternately to the A100 and the RTX 4090 pool."""
    hour = (ts % 86_400.0) / 3600.0
    if not 8 <= hour < 20 or int(ts // MINUTE_S) % 30:
        return
    for i in range(4):
        n = len(week.jobs)
        pool = pools["a100" if (n // 4 + i) % 2 else "rtx4090"]
        units = [u for u in pool.live(ts) if u.ready_at <= ts]
        if not units:
            continue
        unit = rng.choice(units)
        job_id = f"job-{int(ts)}-{i}"
        spec = Job(
            id=job_id,
            est_s=600.0,
            requirements=JobRequirements(min_vram_gb=24),
            data={"model": "sdxl" if i % 2 else "llama-13b"},
        )
        run_s = 600.0 / SPEED[pool.plan.gpu_model] * rng.uniform(0.9, 1.1)
        end = min(ts + 1 + run_s, unit.ends_at or math.inf)
        ok = rng.random() > 0.03 and end == ts + 1 + run_s
        p, u = pool.plan.name, unit.name
        week.jobs += [
            JobEvent(ts=ts, job=job_id, pool=p, unit=u, state="routed", spec=spec),
            JobEvent(ts=ts + 1, job=job_id, pool=p, unit=u, state="started", attempt=1),
            JobEvent(
                ts=end,
                job=job_id,
                pool=p,
                unit=u,
                state="succeeded" if ok else "dead",
                attempt=1,
                reason="" if ok else "exit code 1 on every attempt",
            ),
        ]


def _verdicts(week: Week, ts: float, rng: random.Random) -> None:
    """At the weekday peak (14:00-16:00 UTC) the budget binds: a few proposals are denied
    or held."""
    hour = (ts % 86_400.0) / 3600.0
    weekday = int(ts // 86_400.0 + 3) % 7
    if weekday >= 5 or not 14 <= hour < 16 or rng.random() > 0.03:
        return
    held = rng.random() < 0.3
    prop = ScaleProposal(ts=ts, id=f"prop-h100-{int(ts)}", pool="h100", current=9, desired=11)
    week.verdicts.append(
        Verdict(
            ts=ts + 0.1,
            id=prop.id,
            decision="held" if held else "denied",
            request=prop,
            usd_per_hour=5.6,
            reason="over the approval threshold"
            if held
            else "daily budget: projected $1,040 would pass $1,000",
            spent_today_usd=600.0,
            budget_usd=1000.0,
        )
    )


def simulate(end: float, days: float = 7.0, seed: int = 7, hold_min: float = 45.0) -> Week:
    """A history of `days` days ending at `end` (the last unit ends by then)."""
    rng = random.Random(seed)
    week = Week()
    pools = {p.name: _Pool(p, week, rng) for p in POOLS}
    start = math.ceil((end - days * 86_400.0) / MINUTE_S) * MINUTE_S + MINUTE_S
    last = math.floor(end / MINUTE_S) * MINUTE_S - 2 * MINUTE_S
    ts = start
    while ts < last:
        for pool in pools.values():
            pool.step(ts, demand(pool.plan, ts, rng), hold_min)
        _jobs(week, pools, ts, rng)
        _verdicts(week, ts, rng)
        ts += MINUTE_S
    for pool in pools.values():
        pool.close(ts)
    return week
