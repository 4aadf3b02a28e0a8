"""The report itself: every section and recommendation from what the streams kept.

`build` is pure: the history's messages, the pools' settings and the period in,
a FleetReport out. The reader (services.gateway.history.reader) fetches the
messages; tests and `fleet report` get the same answer from the same input.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import msgspec

from contracts.api.report import FleetReport, Recommendation
from contracts.commands import Verdict
from contracts.events import AuditRecord, UnitEvent
from contracts.jobs import JobEvent
from contracts.telemetry import PoolMinute
from services.gateway.history import advice, jobcost, load, spend
from services.gateway.history.advice import PoolFacts

REPLACEMENT_ACTION = "request_replacement"
"""The provisioner's audit action when it asks for a failed unit's replacement."""


@dataclass
class History:
    """What the streams kept, as read."""

    rollup: Sequence[PoolMinute] = ()
    units: Sequence[UnitEvent] = ()
    verdicts: Sequence[Verdict] = ()
    audit: Sequence[AuditRecord] = ()
    jobs: Sequence[JobEvent] = ()
    read: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    ledger_today_usd: float | None = None


def budget_events(verdicts: Sequence[Verdict], lo: float, hi: float) -> dict[str, object]:
    """Denials and holds in [lo, hi), once per request id."""
    seen = {(v.id, v.decision): v for v in verdicts if lo <= v.ts < hi}
    chosen = [v for v in seen.values() if v.decision in ("denied", "held")]
    by_pool: dict[str, dict[str, int]] = defaultdict(lambda: {"denied": 0, "held": 0})
    for v in chosen:
        by_pool[v.request.pool][v.decision] += 1
    denied = [v for v in chosen if v.decision == "denied"]
    return {
        "denied": len(denied),
        "held": len(chosen) - len(denied),
        "denied_usd_per_hour": round(sum(v.usd_per_hour for v in denied), 4),
        "by_pool": dict(sorted(by_pool.items())),
        "reasons": spend.count(spend.reason_key(v.reason) for v in denied),
    }


def build(
    history: History,
    facts: Mapping[str, PoolFacts],
    since: float,
    until: float,
    pool: str | None = None,
) -> FleetReport:
    """The report of [since, until), for every pool or `pool`."""
    days = (until - since) / 86_400.0

    def mine(p: str) -> bool:
        return pool is None or p == pool

    minutes = load.in_period((m for m in history.rollup if mine(m.pool)), since, until)
    units = [e for e in history.units if mine(e.pool)]
    spans = spend.intervals(units, until)
    money = spend.spend(spans, since, until)
    prices = spend.pool_prices(spans, since, until)
    use = load.pool_use(minutes)
    hours = load.by_hour(minutes)
    unit_pool = {e.unit: e.pool for e in history.units}
    replaced = sum(
        1
        for a in history.audit
        if a.action == REPLACEMENT_ACTION
        and since <= a.ts < until
        and mine(unit_pool.get(a.refs.get("unit", ""), ""))
    )
    fails = spend.failures(units, replaced, since, until)
    job_runs = jobcost.runs(
        (j for j in history.jobs if j.pool is None or mine(j.pool)), spans, since, until
    )
    verdicts = [v for v in history.verdicts if mine(v.request.pool)]
    budget = budget_events(verdicts, since, until)
    peak = load.peak_hours(hours)

    recs: list[Recommendation] = advice.reserve_base(use, prices, days)
    for p in use:
        f = facts.get(p, PoolFacts())
        runs = load.excess_runs([m for m in minutes if m.pool == p], f.min_units)
        rec = advice.idle_threshold(p, runs, f, prices.get(p, 0.0), days)
        if rec is not None:
            recs.append(rec)
    recs += advice.gpu_type(job_runs, days)
    recs += advice.budget(budget, peak)
    provider_hours: dict[str, float] = defaultdict(float)
    for s in spans:
        provider_hours[s.provider] += s.overlap_h(since, until)
    by_provider = fails["by_provider"]
    assert isinstance(by_provider, dict)
    recs += advice.reliability(by_provider, provider_hours, days)

    idle = [
        {
            "pool": p,
            "unit_hours": round(u.unit_hours, 3),
            "idle_unit_hours": round(u.idle_unit_hours, 3),
            "idle_usd": round(u.idle_unit_hours * prices.get(p, 0.0), 4),
            "usd_per_unit_hour": round(prices.get(p, 0.0), 4),
            "utilization": round(u.utilization, 4),
            "base_units": u.base_units,
            "peak_units": u.peak_units,
        }
        for p, u in use.items()
    ]
    notes = list(history.notes)
    if minutes and minutes[0].ts - since > 3600:
        covered_h = (until - minutes[0].ts) / 3600
        notes.append(
            f"utilization covers only the last {covered_h:.1f} h of the {days * 24:.0f} h "
            "period: the watcher's rollup starts there (a newer fleet, or shorter "
            "retention, than the report)"
        )
    by_pool = money["by_pool"]
    assert isinstance(by_pool, dict)
    pools = sorted({*use, *by_pool})
    return msgspec.convert(
        {
            "days": round(days, 4),
            "since_ts": since,
            "until_ts": until,
            "pools": pools,
            "load_by_hour": hours,
            "load_by_weekday": load.by_weekday(minutes),
            "peak_hours": peak,
            "spend": {**money, "ledger_today_usd": history.ledger_today_usd},
            "idle": idle,
            "jobs": jobcost.groups(job_runs),
            "budget": budget,
            "failures": fails,
            "recommendations": advice.ranked(recs),
            "read": history.read,
            "notes": notes,
        },
        FleetReport,
    )
