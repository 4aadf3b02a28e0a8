"""Recommendations from the history: each with the numbers behind it and its saving.

Pure rules over what the report measured:
- reserve the base load: units ready in every minute of the period could be
  rented reserved (committed) at `RESERVED_DISCOUNT` off;
- idle threshold: the `idle_cleanup_s` that would have released most of the
  idle stretches without paying more in re-provisioned lead time than it saved;
- GPU type: jobs that asked for the same thing ran cheaper on another type;
- budget: the cost-guard refused or held work, so the budget binds (performance);
- reliability: a provider whose units failed far more often than another's.
Savings are scaled to a week from the period, so reports of any length compare.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from contracts.api.report import Recommendation
from services.gateway.history.jobcost import JobRun
from services.gateway.history.load import PoolUse

WEEK_H = 168.0
RESERVED_DISCOUNT = 0.3
"""Saving of a reserved (committed) unit over on-demand: 30 % is typical of one-month
commitments on GPU clouds; an estimate, said so in every such recommendation."""
THRESHOLDS_MIN = (5, 10, 15, 20, 30, 45, 60, 120)
"""Idle-cleanup thresholds tried, minutes."""
MIN_JOBS = 3
"""Successful jobs a GPU type needs before its cost per job is compared."""


@dataclass(frozen=True)
class PoolFacts:
    """What the pool's settings say, as the rules need them."""

    min_units: int = 1
    idle_cleanup_s: float = 1800.0
    lead_time_s: float = 120.0
    slo_weight: float = 20.0


def _week(usd: float, days: float) -> float:
    return round(usd * 7.0 / max(days, 1e-9), 2)


def reserve_base(
    use: Mapping[str, PoolUse], prices: Mapping[str, float], days: float
) -> list[Recommendation]:
    """Reserve each pool's units that never went away, when the history covers most of
    the period (a day at least)."""
    out = []
    for pool, u in use.items():
        price = prices.get(pool, 0.0)
        covered_h = u.minutes / 60.0
        if u.base_units < 1 or price <= 0 or covered_h < min(24.0, 0.8 * days * 24):
            continue
        saving = u.base_units * price * WEEK_H * RESERVED_DISCOUNT
        out.append(
            Recommendation(
                kind="reserve_base",
                pool=pool,
                title=f"Reserve {u.base_units} unit(s) for pool {pool}'s base load.",
                detail=(
                    f"Pool {pool} had at least {u.base_units} unit(s) ready in 99 % of "
                    f"{covered_h:.0f} h of history (peak {u.peak_units}); at "
                    f"${price:.2f}/unit-hour, reserved capacity at "
                    f"{RESERVED_DISCOUNT:.0%} off saves about ${saving:,.2f} a week."
                ),
                numbers={
                    "base_units": float(u.base_units),
                    "peak_units": float(u.peak_units),
                    "usd_per_unit_hour": round(price, 4),
                    "hours_covered": round(covered_h, 1),
                    "reserved_discount": RESERVED_DISCOUNT,
                },
                saving_usd_per_week=round(saving, 2),
            )
        )
    return out


def threshold_outcome(runs: Sequence[int], minutes: float) -> tuple[float, int]:
    """(unit-hours released, units that had to come back) with cleanup after `minutes`."""
    released = sum(max(0.0, r - minutes) for r in runs) / 60.0
    returns = sum(1 for r in runs if r > minutes)
    return released, returns


def idle_threshold(
    pool: str, runs: Sequence[int], facts: PoolFacts, price: float, days: float
) -> Recommendation | None:
    """The threshold with the best net saving, when it beats the current one by $1 a week.

    A released unit that the load later needs comes back a lead time later, and an
    under-provisioned unit-second costs `slo_weight` times its price (the scaler's own
    trade-off), which is what a too-eager threshold pays."""
    if price <= 0 or not runs:
        return None

    def net(minutes: float) -> tuple[float, float, int]:
        released, returns = threshold_outcome(runs, minutes)
        penalty_h = returns * facts.lead_time_s / 3600.0 * facts.slo_weight
        return (released - penalty_h) * price, released, returns

    current_min = facts.idle_cleanup_s / 60.0
    now_net = net(current_min)[0] if facts.idle_cleanup_s > 0 else 0.0
    best = max(THRESHOLDS_MIN, key=lambda t: net(t)[0])
    best_net, released, returns = net(best)
    gain = _week(best_net - now_net, days)
    if best == current_min or gain < 1.0:
        return None
    now_text = f"{current_min:g} min" if facts.idle_cleanup_s > 0 else "off"
    return Recommendation(
        kind="idle_threshold",
        pool=pool,
        title=f"Set pool {pool}'s idle_cleanup_s to {best * 60:.0f} ({best} min; now {now_text}).",
        detail=(
            f"{len(runs)} stretches of ready units serving nothing (longest {max(runs)} min); "
            f"releasing after {best} min frees {released:.1f} unit-hours, and {returns} "
            f"unit(s) would come back at {facts.lead_time_s:.0f} s lead time each; net "
            f"about ${gain:,.2f} a week better than {now_text}."
        ),
        numbers={
            "current_min": current_min,
            "suggested_min": float(best),
            "released_unit_hours": round(released, 2),
            "units_back": float(returns),
            "usd_per_unit_hour": round(price, 4),
            "longest_idle_min": float(max(runs)),
        },
        saving_usd_per_week=gain,
    )


def gpu_type(job_runs: Sequence[JobRun], days: float) -> list[Recommendation]:
    """Where jobs with the same requirements succeeded on several GPU types, the cheapest
    type per job (as reliable, within 5 points) for the jobs that ran on dearer ones."""
    by_need: dict[str, dict[str, list[JobRun]]] = defaultdict(lambda: defaultdict(list))
    for r in job_runs:
        by_need[r.needs][r.gpu_model].append(r)
    out = []
    for needs, types in by_need.items():
        stats = {}
        for gpu, rs in types.items():
            ok = [r for r in rs if r.state == "succeeded"]
            if len(ok) >= MIN_JOBS and gpu != "unknown":
                stats[gpu] = (sum(r.cost_usd for r in ok) / len(ok), len(ok) / len(rs), len(rs))
        if len(stats) < 2:
            continue
        cheap = min(stats, key=lambda g: stats[g][0])
        c_cost, c_rate, c_jobs = stats[cheap]
        dear = {g: v for g, v in stats.items() if g != cheap and v[1] <= c_rate + 0.05}
        saving = sum((v[0] - c_cost) * v[2] for v in dear.values())
        if not dear or saving <= 0:
            continue
        worst = max(dear, key=lambda g: dear[g][0])
        instead = ", ".join(sorted(dear))
        out.append(
            Recommendation(
                kind="gpu_type",
                title=f"Prefer {cheap} for jobs needing {needs} (instead of {instead}).",
                detail=(
                    f"{c_jobs} such jobs on {cheap} cost ${c_cost:.4f} each ("
                    f"{c_rate:.0%} succeeded); on {worst} ${dear[worst][0]:.4f} each over "
                    f"{dear[worst][2]} jobs. Routing them to {cheap} saves about "
                    f"${_week(saving, days):,.2f} a week (set the jobs' gpu_models or the pool)."
                ),
                numbers={
                    "cheap_usd_per_job": round(c_cost, 6),
                    "dear_usd_per_job": round(dear[worst][0], 6),
                    "jobs_on_dearer": float(sum(v[2] for v in dear.values())),
                    "cheap_success_rate": round(c_rate, 3),
                },
                saving_usd_per_week=_week(saving, days),
            )
        )
    return out


def budget(events: Mapping[str, object], peak: Sequence[int]) -> list[Recommendation]:
    """Refused or held work means the budget, not the load, set the fleet's size."""
    denied, held = int(str(events["denied"])), int(str(events["held"]))
    if denied + held < 3:
        return []
    rate = float(str(events["denied_usd_per_hour"]))
    hours = ", ".join(f"{h:02d}:00" for h in peak) or "the peak"
    return [
        Recommendation(
            kind="budget",
            title="The budget bound: raise the daily budget or move low-priority work off-peak.",
            detail=(
                f"The cost-guard denied {denied} and held {held} commands in the period, "
                f"asking for ${rate:,.2f}/h in all; load peaks at {hours} UTC. Either give "
                "the peak room in [budget] or submit low-priority jobs outside those hours."
            ),
            numbers={"denied": float(denied), "held": float(held), "denied_usd_per_hour": rate},
            saving_usd_per_week=0.0,
        )
    ]


def reliability(
    fails: Mapping[str, int], hours: Mapping[str, float], days: float
) -> list[Recommendation]:
    """A provider failing at least twice as often per unit-hour as the steadiest one."""
    rates = {p: fails.get(p, 0) / h * 100 for p, h in hours.items() if h >= 1.0}
    if len(rates) < 2:
        return []
    steady = min(rates, key=lambda p: rates[p])
    out = []
    for p, r in sorted(rates.items(), key=lambda kv: -kv[1]):
        if p == steady or fails.get(p, 0) < 3 or r < 2 * max(rates[steady], 0.01):
            continue
        out.append(
            Recommendation(
                kind="reliability",
                title=f"Put {steady} ahead of {p} in the pools' provider lists.",
                detail=(
                    f"{p} units failed {fails[p]} times, {r:.1f} per 100 unit-hours, against "
                    f"{rates[steady]:.1f} on {steady}; each failure costs a replacement's boot "
                    "time and the work in flight."
                ),
                numbers={
                    "failures": float(fails[p]),
                    "per_100_unit_hours": round(r, 2),
                    "steady_per_100_unit_hours": round(rates[steady], 2),
                },
                saving_usd_per_week=0.0,
            )
        )
    return out


def ranked(recs: Sequence[Recommendation]) -> list[Recommendation]:
    """Savings first, the largest first; then what buys performance."""
    return sorted(recs, key=lambda r: (-r.saving_usd_per_week, r.kind, r.pool or ""))
