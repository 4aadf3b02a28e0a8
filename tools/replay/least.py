"""A yardstick, not a policy: the least under-provisioning any policy could reach.

Given a trace and the unit-hours a baseline spent, how few under-provisioned
unit-seconds could any schedule of units have left, knowing the whole future?
If even that is above the goal (0.6x the baseline's), the goal is out of reach
on that trace for every policy, ours included, and the table says so instead
of leaving a miss unexplained.

The model is the sim's, relaxed where that can only lower the answer:
- a unit is billed from the second it is asked for and serves from one lead
  time later, so each spell of a unit serving costs its length plus the lead
  time; a unit-second short costs `max(0, demand / unit_capacity - ready)`;
- the pool never holds fewer than `min_units`; the first count is free (as
  the sim's warm start), and so is a unit asked for across seconds the sim
  skips (missing telemetry is neither billed nor scored);
- relaxed: no cap on units, any number of actions, demand known ahead.

The problem splits by unit: the k-th unit above the floor saves
`clip(demand / capacity - (min + k), 0, 1)` each second it serves. For a
price `lam` of a billed unit-second, each unit's best schedule is a two-state
dynamic programme (serving or not, switching on costs `lam` x lead), and
min over schedules of (under + lam x (billed - budget)) is a lower bound of
the under at the budget for every `lam` (weak Lagrange duality); the answer
is the best such bound over a grid of prices, refined once around the best.
Runs of seconds where a unit saves the same amount are one step of the
programme (its cost is linear in where a switch falls within the run), so a
60-day per-second trace takes seconds, not hours.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from services.scaler.policy import Policy
from tools.replay.frontier import Reading
from tools.replay.workload import Workload

Floats = npt.NDArray[np.float64]

PRICES = np.concatenate(([0.0], np.logspace(-6, 0, 37)))
"""Prices of a billed unit-second (in under unit-seconds) the bound is tried at:
above 1 no unit is worth serving, since one saves at most one unit-second a second."""
REFINE = 25
"""Prices tried again between the two neighbours of the best one."""


def least_under(
    work: Workload, *, unit_capacity: float, lead_s: float, min_units: int, unit_hours: float
) -> Reading:
    """The least under unit-s any policy could leave on the scored seconds of
    `work` spending `unit_hours`: a lower bound, exact up to the price grid."""
    keep = np.frombuffer(bytes(work.skip), dtype=np.uint8) == 0
    demand = np.asarray(work.demand, dtype=np.float64)[keep] / unit_capacity
    resets = _resets(keep)
    budget = unit_hours * 3600.0 - max(0, min_units) * len(demand)
    bound = _bound(demand, max(0, min_units), max(0.0, lead_s), budget, resets)
    return Reading(unit_hours=unit_hours, under_unit_s=bound, actions=0.0)


def _resets(keep: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """Indices, among the scored seconds, of those that follow skipped ones."""
    scored = keep.astype(np.int64)
    scored_before: npt.NDArray[np.int64] = np.cumsum(scored) - scored  # before each second
    after_skip = keep & np.concatenate(([False], ~keep[:-1]))
    return scored_before[after_skip]


def _bound(
    units: Floats, floor: int, lead_s: float, budget: float, resets: npt.NDArray[np.int64]
) -> float:
    if len(units) == 0:
        return 0.0
    levels = max(0, math.ceil(float(units.max()) - 1e-9) - floor)
    if levels == 0:
        return 0.0
    coarse = _duals(units, floor, levels, lead_s, budget, resets, PRICES)
    i = int(np.argmax(coarse))
    if i == 0:  # free units: the bound is the price-0 one, nothing to refine
        return max(0.0, float(coarse[0]))
    around = np.linspace(PRICES[max(0, i - 1)], PRICES[min(len(PRICES) - 1, i + 1)], REFINE)
    finer = _duals(units, floor, levels, lead_s, budget, resets, around)
    return max(0.0, float(coarse.max()), float(finer.max()))


def _duals(
    units: Floats,
    floor: int,
    levels: int,
    lead_s: float,
    budget: float,
    resets: npt.NDArray[np.int64],
    prices: Floats,
) -> Floats:
    """The dual bound at each price: sum over units of the programme's least
    (under + price x billed), less price x budget."""
    total = np.zeros_like(prices)
    n = len(units)
    for k in range(levels):
        saves = np.clip(units - (floor + k), 0.0, 1.0)
        total += _programme(saves, n, lead_s, resets, prices)
    return total - prices * budget


def _programme(
    saves: Floats, n: int, lead_s: float, resets: npt.NDArray[np.int64], prices: Floats
) -> Floats:
    """One unit's least (under + price x billed) at each price: serving or not in each
    run of equal saving; switching on costs the lead time's rent, except after skipped
    seconds (and at the start, the warm count)."""
    cuts = np.flatnonzero(np.diff(saves)) + 1
    starts = np.union1d(np.concatenate(([0], cuts)), resets[resets < n])
    lengths = np.diff(np.append(starts, n)).tolist()
    values = saves[starts].tolist()
    reset = np.zeros(len(starts), dtype=bool)
    reset[np.searchsorted(starts, resets[resets < n])] = True
    switch = prices * lead_s
    on = np.zeros_like(prices)
    off = np.zeros_like(prices)
    for length, value, free in zip(lengths, values, reset.tolist(), strict=True):
        if free:
            np.minimum(on, off, out=on)
        serving = np.minimum(on, off + switch)
        serving += prices * length
        np.minimum(on, off, out=off)
        off += value * length
        on = serving
    return np.minimum(on, off)


def least_for(work: Workload, policy: Policy) -> Callable[[float], Reading]:
    """Unit-hours -> the least under unit-s any policy with `policy`'s unit capacity,
    lead time and fewest units could leave on `work` (the headline's yardstick)."""
    return lambda unit_hours: least_under(
        work,
        unit_capacity=policy.unit_capacity,
        lead_s=policy.lead_time_s,
        min_units=policy.min,
        unit_hours=unit_hours,
    )
