"""`fleet.api.fleet_report`: what the fleet did over the last N days, what it cost, and
what to change.

Built from the streams (the per-minute rollup, unit events, verdicts, audit
and job events) by the gateway; `fleet report`, the brain's `report` tool and
the advisors all read this one shape. Money is in USD, time in hours unless a
field's name says otherwise, and every recommendation carries the numbers
behind it and the saving it expects.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from contracts.base import Token

MAX_REPORT_DAYS = 35.0
"""The longest report: the rollup's default retention."""


class FleetReportQuery(msgspec.Struct, frozen=True, kw_only=True):
    """`fleet_report`: the last `days` days, every pool or one."""

    days: Annotated[float, Meta(gt=0, le=MAX_REPORT_DAYS)] = 7.0
    """How far back, in days (as far as the streams keep: `[retention] days`)."""
    pool: Token | None = None


class LoadSlot(msgspec.Struct, frozen=True, kw_only=True):
    """Mean load in one hour of the day (0-23, UTC) or one day of the week (Mon-Sun)."""

    slot: str
    demand: float
    """Mean requests in flight or queued, summed over the pools."""
    peak_demand: float
    units_ready: float
    utilization: float
    minutes: int
    """Minutes of rollup behind the figures."""


class Spend(msgspec.Struct, frozen=True, kw_only=True):
    """Spend over the period, accrued by the second from unit events as the ledger does:
    a unit bills from its first billed event to its terminal one at the event's price."""

    total_usd: float
    unit_hours: float
    by_gpu: dict[str, float]
    by_provider: dict[str, float]
    by_pool: dict[str, float]
    by_day: dict[str, float]
    """UTC date (YYYY-MM-DD) -> USD."""
    ledger_today_usd: float | None = None
    """The cost-guard's own figure for today, to compare with `by_day`'s today."""


class PoolIdle(msgspec.Struct, frozen=True, kw_only=True):
    """A pool's paid capacity and how much of it served nothing."""

    pool: str
    unit_hours: float
    idle_unit_hours: float
    """Ready units' capacity with nothing in flight: sum over minutes of ready units times
    (1 - utilization)."""
    idle_usd: float
    """Idle unit-hours at the pool's mean price per unit-hour: money burned."""
    usd_per_unit_hour: float
    utilization: float
    base_units: int
    """Units ready in all but 1 % of the minutes: the base load, never released."""
    peak_units: int


class JobGroup(msgspec.Struct, frozen=True, kw_only=True):
    """Jobs that ran on one GPU type, for one model (the job's `data.model`, or `-`)."""

    gpu_model: str
    model: str
    jobs: int
    succeeded: int
    dead: int
    mean_s: float
    """Mean run time of the succeeded jobs, seconds (started to succeeded)."""
    p95_s: float
    mean_cost_usd: float
    """Mean of run time x the unit's price; the whole unit's price, an upper bound when a
    unit runs several jobs at once."""
    total_cost_usd: float


class BudgetEvents(msgspec.Struct, frozen=True, kw_only=True):
    """The cost-guard's refusals and holds over the period."""

    denied: int
    held: int
    denied_usd_per_hour: float
    """Burn rate the denied commands asked for."""
    by_pool: dict[str, dict[str, int]]
    reasons: dict[str, int]
    """The first words of each denial's reason -> how often."""


class Failures(msgspec.Struct, frozen=True, kw_only=True):
    """Units that failed and the replacements asked for them."""

    failed: int
    replacements: int
    by_pool: dict[str, int]
    by_provider: dict[str, int]
    reasons: dict[str, int]


RecommendationKind = Literal[
    "reserve_base", "policy", "gpu_type", "idle_threshold", "budget", "reliability"
]


class Recommendation(msgspec.Struct, frozen=True, kw_only=True):
    """One change worth making, with the numbers behind it."""

    kind: RecommendationKind
    title: str
    """One sentence saying what to change."""
    detail: str
    """Why, in words, with the figures."""
    numbers: dict[str, float]
    """The figures the recommendation rests on, by name."""
    saving_usd_per_week: float
    """Expected saving, scaled to a week from the period; 0 when it buys performance."""
    pool: str | None = None
    source: str = "report"
    """Who found it: the report's rules, the replay, or an advisor."""


class FleetReport(msgspec.Struct, frozen=True, kw_only=True):
    """The answer of `fleet_report`."""

    days: float
    since_ts: float
    until_ts: float
    pools: list[str]
    load_by_hour: list[LoadSlot]
    load_by_weekday: list[LoadSlot]
    peak_hours: list[int]
    spend: Spend
    idle: list[PoolIdle]
    jobs: list[JobGroup]
    budget: BudgetEvents
    failures: Failures
    recommendations: list[Recommendation]
    read: dict[str, int]
    """Messages read per stream, so an empty section can be told from an empty stream."""
    notes: list[str] = msgspec.field(default_factory=list)
    """What the report could not see (a stream that did not answer, a short history)."""


__all__ = [
    "MAX_REPORT_DAYS",
    "BudgetEvents",
    "Failures",
    "FleetReport",
    "FleetReportQuery",
    "JobGroup",
    "LoadSlot",
    "PoolIdle",
    "Recommendation",
    "RecommendationKind",
    "Spend",
]
