"""What a replay runs on: the demand series cut to a window, and one run of it.

A `Workload` holds compact arrays (`array('f')`, a `bytearray` of skip flags)
so a 60-day per-second trace fits in tens of MB and can be handed to worker
processes once, at their start.
"""

from __future__ import annotations

import math
import time
from array import array
from dataclasses import dataclass

import msgspec

from services.scaler.policy import Policy, units_for
from tools.replay.policies import KNOBS, make_step
from tools.replay.sim import Series, Totals, Warmup, demand_series, simulate, zero_runs
from tools.replay.traces import Trace

WARM_S = 60
"""Scored seconds at the start whose peak demand sizes every policy's first count.

A trace is a window of a running system: its pool was already serving the
load when the window opened. Starting every policy on one unit would score
each of them short for the first lead time (no unit asked for at t >= 0 is
ready before t = lead), the same for all and caused by the harness, not by
any policy. So every policy, ours and the baselines alike, starts warm with
the units its own sizing rule gives the first minute's peak demand, and has
watched that peak for `WARM_S` seconds (unscored, unbilled) before the window
opens, so its memory (HPA's scale-down window, KPA's stable window, ours'
hold) is that of a pool already serving the load, not of one just started."""


MAX_FLOOR = 1000
"""The fewest units a replay allows when neither --max nor --config says."""


@dataclass
class Workload:
    """Demand (requests in flight) and arrivals per second of one window."""

    name: str
    demand: array[float]
    arrivals: array[float]
    skip: bytearray
    """1 where a second lies in a long zero run (missing telemetry)."""
    start_t: int
    """Second of the trace the window starts at."""
    warmup: Warmup
    """The steady load every policy watches before the window (`WARM_S`)."""


def prepare(
    trace: Trace,
    *,
    service_s: float,
    start_s: int = 0,
    duration_s: int | None = None,
    skip_zero_runs_s: int = 600,
) -> Workload:
    """Cut the trace's demand to the window; raises ValueError on an empty one."""
    demand = demand_series(trace.arrivals, service_s, trace.busy)
    end = len(demand) if duration_s is None else min(len(demand), start_s + duration_s)
    if start_s >= end:
        raise ValueError(f"the window starts at {start_s} s, after the trace's end")
    arrivals = array("f", trace.arrivals[start_s:end])
    if len(arrivals) < end - start_s:  # service time past the last arrival
        arrivals.extend([0.0] * (end - start_s - len(arrivals)))
    demand = demand[start_s:end]
    # Missing telemetry is a long stretch with no demand at all: with requests
    # in flight (long jobs) the pool is observed even when nothing arrives.
    skip = zero_runs(demand, skip_zero_runs_s)
    first = [(d, a) for d, a, s in zip(demand, arrivals, skip, strict=True) if not s][:WARM_S]
    warm = Warmup(
        seconds=WARM_S,
        demand=max((d for d, _ in first), default=0.0),
        arrivals=sum(a for _, a in first) / len(first) if first else 0.0,
    )
    return Workload(
        name=trace.name,
        demand=demand,
        arrivals=arrivals,
        skip=skip,
        start_t=start_s,
        warmup=warm,
    )


def warm_units(work: Workload, policy: Policy) -> int:
    """Units a policy starts with: what its sizing rule (the policy's unit
    capacity and target utilization) gives the first minute's peak demand,
    within its bounds. The same rule for every policy (`WARM_S`)."""
    return max(policy.min, min(policy.max, units_for(work.warmup.demand, policy)))


def run_policy(
    work: Workload, name: str, policy: Policy, *, price: float, record: bool = False
) -> tuple[Totals, Series | None]:
    """Replay the workload against the named policy with these settings."""
    step, tick = make_step(name, policy)
    t0 = time.perf_counter()
    tot, ser = simulate(
        name,
        work.demand,
        work.arrivals,
        step,
        tick_s=tick,
        lead_s=policy.lead_time_s,
        unit_capacity=policy.unit_capacity,
        initial_units=warm_units(work, policy),
        price_usd_per_hour=price,
        skip=work.skip,
        start_t=work.start_t,
        record=record,
        warmup=work.warmup,
    )
    tot.wall_s = time.perf_counter() - t0
    return tot, ser


def sized_max(work: Workload, policy: Policy) -> tuple[Policy, str | None]:
    """The policy with `max` raised to the units the window's peak demand needs
    at the sweep's lowest target utilization, when that is above `MAX_FLOOR`,
    and a note saying so. For a replay whose --max nobody chose: a cap that
    binds makes every policy short by the same amount where it binds, which
    says nothing about any of them and draws the ratios towards 1."""
    peak = max(work.demand, default=0.0)
    need = math.ceil(peak / (policy.unit_capacity * min(KNOBS)) - 1e-9)
    if need <= max(policy.max, MAX_FLOOR):
        return policy, None
    note = (
        f"--max not given: {need:,} units, enough for the peak of {peak:,.0f} in flight "
        f"at {min(KNOBS):g} target utilization"
    )
    return msgspec.structs.replace(policy, max=need), note
