"""The virtual pool: a demand series, a policy, and the units it asks for.

Model, one step per second of the trace:
- units asked for become ready `lead_s` seconds later; a scale-in cancels
  pending units first (newest first) and then removes ready units at once;
- every `tick_s` of the policy, it gets a PoolMetrics built from the virtual
  pool with demand averaged over the tick, and returns the count it wants;
- units are billed from the moment they are asked for (providers bill
  booting instances), so unit-hours = sum of `desired` over seconds / 3600;
- under-provisioning in a second = max(0, demand / unit_capacity - ready),
  no rounding; seconds flagged in `skip` (missing telemetry) are neither
  scored nor billed, and the policy is not called during them;
- a warm-up (`Warmup`) runs before the first second: a trace is a window of a
  running system, so the pool starts with its warm count and the policy has
  watched a steady load before the window opens. Warm-up seconds run exactly
  like the others (the policy is called, its asks are carried out) but are
  neither scored, billed nor counted as actions.
"""

from __future__ import annotations

import itertools
from array import array
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from contracts.telemetry import PoolMetrics

Step = Callable[[PoolMetrics, float], int | None]
"""A policy in the sim: (metrics, now) -> the count it wants, or None to keep."""


@dataclass(frozen=True)
class Warmup:
    """A steady load the policy watches before the window opens (unscored)."""

    seconds: int
    demand: float
    """Requests in flight in each warm-up second."""
    arrivals: float = 0.0
    """Requests arriving in each warm-up second."""


@dataclass
class Totals:
    """One policy's score over a replay."""

    policy: str
    under_unit_s: float = 0.0
    """Sum over seconds of max(0, demand/unit_capacity - ready units)."""
    under_seconds: int = 0
    """Seconds with any under-provisioning."""
    unit_hours: float = 0.0
    cost_usd: float = 0.0
    actions: int = 0
    """Times the asked-for count changed."""
    seconds: int = 0
    """Seconds scored (skipped seconds excluded)."""
    wall_s: float = 0.0


@dataclass
class Series:
    """Per-second record of a replay, enough to recompute every total; compact
    arrays, so a 60-day record costs ~80 MB, not a gigabyte of Python objects."""

    t: array[int] = field(default_factory=lambda: array("i"))
    demand: array[float] = field(default_factory=lambda: array("f"))
    desired: array[int] = field(default_factory=lambda: array("i"))
    ready: array[int] = field(default_factory=lambda: array("i"))


def simulate(
    name: str,
    demand: Sequence[float],
    arrivals: Sequence[float],
    step: Step,
    *,
    tick_s: float,
    lead_s: float,
    unit_capacity: float,
    initial_units: int,
    price_usd_per_hour: float = 1.0,
    skip: Sequence[int] | None = None,
    start_t: int = 0,
    record: bool = False,
    pool: str = "replay",
    warmup: Warmup | None = None,
) -> tuple[Totals, Series | None]:
    """Replay `demand` (requests in flight per second) against one policy,
    after the `warmup` if one is given."""
    tot = Totals(policy=name)
    series = Series() if record else None
    ready = initial_units
    pending: deque[float] = deque()
    lead = max(0.0, lead_s)
    tick = max(1, round(tick_s))
    acc_d = acc_a = 0.0
    acc_n = 0
    since_tick = tick  # call the policy on the first second
    under_sum = 0.0
    under_n = billed = actions = scored = 0
    warm_n = warmup.seconds if warmup is not None else 0
    prefix = itertools.repeat((warmup.demand, warmup.arrivals) if warmup else (0.0, 0.0), warm_n)
    for i, (d, a) in enumerate(itertools.chain(prefix, zip(demand, arrivals, strict=False))):
        i -= warm_n
        warm = i < 0
        if not warm and skip is not None and skip[i]:
            continue
        t = start_t + i
        while pending and pending[0] <= t:
            pending.popleft()
            ready += 1
        acc_d += d
        acc_a += a
        acc_n += 1
        if since_tick >= tick:
            since_tick = 0
            avg = acc_d / acc_n
            cap = ready * unit_capacity
            inflight = min(avg, cap)
            metrics = PoolMetrics(
                pool=pool,
                ts=float(t),
                window_s=float(acc_n),
                units_ready=ready,
                units_pending=len(pending),
                inflight=inflight,
                capacity=cap,
                queue_depth=avg - inflight,
                utilization=min(1.0, avg / cap) if cap else 0.0,
                arrival_rate=acc_a / acc_n,
            )
            acc_d = acc_a = 0.0
            acc_n = 0
            want = step(metrics, float(t))
            total = ready + len(pending)
            if want is not None and want != total:
                actions += not warm
                if want > total:
                    pending.extend([t + lead] * (want - total))
                    while pending and pending[0] <= t:  # zero lead time
                        pending.popleft()
                        ready += 1
                else:
                    drop = total - want
                    while drop and pending:
                        pending.pop()
                        drop -= 1
                    ready -= drop
        since_tick += 1
        if warm:
            continue
        short = d / unit_capacity - ready
        if short > 0:
            under_sum += short
            under_n += 1
        desired_now = ready + len(pending)
        billed += desired_now
        scored += 1
        if series is not None:
            series.t.append(t)
            series.demand.append(d)
            series.desired.append(desired_now)
            series.ready.append(ready)
    tot.under_unit_s = under_sum
    tot.under_seconds = under_n
    tot.unit_hours = billed / 3600.0
    tot.cost_usd = tot.unit_hours * price_usd_per_hour
    tot.actions = actions
    tot.seconds = scored
    return tot, series


def demand_series(
    arrivals: Sequence[float], service_s: float, busy: Sequence[float] | None = None
) -> array[float]:
    """Requests in flight per second: token-modelled `busy` when given, else
    Little's law over a box window: arrivals of the last `service_s` seconds
    (fractional part weighted), i.e. each request is served for `service_s`."""
    if busy is not None:
        return array("f", busy)
    whole = int(service_s)
    frac = service_s - whole
    out: array[float] = array("f")
    window = 0.0
    for i, a in enumerate(arrivals):
        window += a
        if whole and i >= whole:
            window -= arrivals[i - whole]
        extra = frac * arrivals[i - whole] if frac and i >= whole else 0.0
        out.append(window + extra if whole else a * frac)
    return out


def zero_runs(arrivals: Sequence[float], min_run_s: int) -> bytearray:
    """Flags (1) seconds inside runs of at least `min_run_s` zero arrivals."""
    flags = bytearray(len(arrivals))
    if min_run_s <= 0:
        return flags
    i, n = 0, len(arrivals)
    while i < n:
        if arrivals[i] == 0:
            j = i
            while j < n and arrivals[j] == 0:
                j += 1
            if j - i >= min_run_s:
                flags[i:j] = b"\x01" * (j - i)
            i = j
        else:
            i += 1
    return flags
