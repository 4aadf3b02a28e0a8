"""What a replay runs on: the demand series cut to a window, and one run of it.

A `Workload` holds compact arrays (`array('f')`, a `bytearray` of skip flags)
so a 60-day per-second trace fits in tens of MB and can be handed to worker
processes once, at their start.
"""

from __future__ import annotations

import time
from array import array
from dataclasses import dataclass

from services.scaler.policy import Policy, units_for
from tools.replay.policies import make_step
from tools.replay.sim import Series, Totals, demand_series, simulate, zero_runs
from tools.replay.traces import Trace


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
    first_demand: float
    """Demand at the first scored second, which sizes the pool at the start."""


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
    first = next((d for d, s in zip(demand, skip, strict=True) if not s), 0.0)
    return Workload(
        name=trace.name,
        demand=demand,
        arrivals=arrivals,
        skip=skip,
        start_t=start_s,
        first_demand=first,
    )


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
        initial_units=max(policy.min, units_for(work.first_demand, policy)),
        price_usd_per_hour=price,
        skip=work.skip,
        start_t=work.start_t,
        record=record,
    )
    tot.wall_s = time.perf_counter() - t0
    return tot, ser
