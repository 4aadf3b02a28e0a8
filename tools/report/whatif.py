"""Policy changes found by replaying the recorded history under alternatives.

The per-minute rollup of a pool becomes a per-second trace (each minute's peak
demand held for its 60 s, so a hotter setting is judged against the minute's
worst, not its mean; a missing minute is missing telemetry, which the replay
skips), and the scaler's own `decide()` runs over it in virtual time
(tools/replay) as configured and at other target utilizations. The alternative
that costs least, counting each under-provisioned unit-second at the pool's
SLO weight (the scaler's own trade-off), is recommended when it beats the
configured policy by at least a dollar a week.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from contracts.api.report import Recommendation
from contracts.telemetry import PoolMinute
from services.scaler.policy import Policy
from tools.replay.sim import Totals
from tools.replay.traces import Trace
from tools.replay.workload import prepare, run_policy

KNOBS = (0.5, 0.6, 0.7, 0.8, 0.9)
"""Target utilizations tried besides the configured one. Only the target changes
(the SLO weight stays the pool's), since that is the change recommended."""


def rollup_trace(minutes: Sequence[PoolMinute], pool: str) -> Trace | None:
    """A per-second trace of the pool's minutes; None with fewer than an hour of them."""
    ms = sorted((m for m in minutes if m.pool == pool), key=lambda m: m.ts)
    if len(ms) < 60:
        return None
    busy: array[float] = array("f")
    arrivals: array[float] = array("f")
    t0 = ms[0].ts
    for m in ms:
        gap = int((m.ts - t0) // 60) * 60 - len(busy)
        if gap > 0:  # minutes the watcher did not record: missing, not silent
            busy.extend([0.0] * gap)
            arrivals.extend([0.0] * gap)
        busy.extend([m.demand_max] * 60)
        arrivals.extend([m.arrival_rate] * 60)
    return Trace(name=f"fleet.rollup.{pool}", arrivals=arrivals, busy=busy, shape="stream")


@dataclass(frozen=True)
class Outcome:
    """One policy's replay, priced."""

    label: str
    policy: Policy
    totals: Totals
    price: float

    @property
    def total_usd(self) -> float:
        """Cost plus the under-provisioned unit-seconds at the SLO weight."""
        under = self.totals.under_unit_s / 3600.0 * self.price * self.policy.slo_weight
        return self.totals.cost_usd + under


def replay(trace: Trace, policy: Policy, price: float) -> list[Outcome]:
    """The configured policy (first) and each alternative, replayed over the trace."""
    work = prepare(trace, service_s=1.0)
    out = []
    for label, pol in [("configured", policy)] + [
        (f"target_utilization {k:g}", msgspec.structs.replace(policy, target_utilization=k))
        for k in KNOBS
        if abs(k - policy.target_utilization) > 1e-9
    ]:
        totals, _ = run_policy(work, "ours", pol, price=price)
        out.append(Outcome(label, pol, totals, price))
    return out


def policy_advice(pool: str, outcomes: Sequence[Outcome], hours: float) -> Recommendation | None:
    """The alternative worth taking, with the replay's numbers, or None."""
    current, rest = outcomes[0], outcomes[1:]
    if not rest or hours <= 0:
        return None
    best = min(rest, key=lambda o: o.total_usd)
    week = 168.0 / hours
    saving = (current.total_usd - best.total_usd) * week
    if saving < 1.0:
        return None
    c, b = current.totals, best.totals
    knob = best.policy.target_utilization
    return Recommendation(
        kind="policy",
        pool=pool,
        source="replay",
        title=f"Run pool {pool} at target_utilization {knob:g} "
        f"(now {current.policy.target_utilization:g}).",
        detail=(
            f"Replaying the last {hours:.0f} h of pool {pool}'s load (each minute at its "
            "peak) under the scaler's own "
            f"decide(): {b.unit_hours:.1f} unit-hours (${b.cost_usd:,.2f}) and "
            f"{b.under_unit_s:,.0f} under-provisioned unit-seconds, against "
            f"{c.unit_hours:.1f} (${c.cost_usd:,.2f}) and {c.under_unit_s:,.0f} as configured; "
            f"with a short unit-second priced at {current.policy.slo_weight:g}x, about "
            f"${saving:,.2f} a week better."
        ),
        numbers={
            "replayed_hours": round(hours, 2),
            "current_target": current.policy.target_utilization,
            "suggested_target": knob,
            "current_cost_usd": round(c.cost_usd, 2),
            "suggested_cost_usd": round(b.cost_usd, 2),
            "current_under_unit_s": round(c.under_unit_s, 1),
            "suggested_under_unit_s": round(b.under_unit_s, 1),
            "slo_weight": current.policy.slo_weight,
        },
        saving_usd_per_week=round(saving, 2),
    )
