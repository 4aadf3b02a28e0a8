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
    return LeastUnder(work, unit_capacity=unit_capacity, lead_s=lead_s, min_units=min_units).at(
        unit_hours
    )


class LeastUnder:
    """The bound on one workload, read at any spend: the programmes at the coarse
    prices do not depend on the spend, so they run once for every baseline read."""

    def __init__(
        self, work: Workload, *, unit_capacity: float, lead_s: float, min_units: int
    ) -> None:
        keep = np.frombuffer(bytes(work.skip), dtype=np.uint8) == 0
        self.units: Floats = np.asarray(work.demand, dtype=np.float64)[keep] / unit_capacity
        self.floor = max(0, min_units)
        self.lead_s = max(0.0, lead_s)
        self.resets = _resets(keep)
        top = float(self.units.max()) if len(self.units) else 0.0
        self.levels = max(0, math.ceil(top - 1e-9) - self.floor)
        self._coarse: Floats | None = None

    def at(self, unit_hours: float) -> Reading:
        """The bound at `unit_hours` of spend."""
        budget = unit_hours * 3600.0 - self.floor * len(self.units)
        return Reading(unit_hours=unit_hours, under_unit_s=self._bound(budget), actions=0.0)

    def _bound(self, budget: float) -> float:
        if self.levels == 0:
            return 0.0
        if self._coarse is None:
            self._coarse = self._totals(PRICES)
        coarse = self._coarse - PRICES * budget
        i = int(np.argmax(coarse))
        if i == 0:  # free units: the bound is the price-0 one, nothing to refine
            return max(0.0, float(coarse[0]))
        around = np.linspace(PRICES[max(0, i - 1)], PRICES[min(len(PRICES) - 1, i + 1)], REFINE)
        finer = self._totals(around) - around * budget
        return max(0.0, float(coarse.max()), float(finer.max()))

    def _totals(self, prices: Floats) -> Floats:
        """Sum over units above the floor of the programme's least (under + price x
        billed) at each price: the dual bound at a budget, before price x budget."""
        total = np.zeros_like(prices)
        n = len(self.units)
        for k in range(self.levels):
            saves = np.clip(self.units - (self.floor + k), 0.0, 1.0)
            total += _programme(saves, n, self.lead_s, self.resets, prices)
        return total


def _resets(keep: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """Indices, among the scored seconds, of those that follow skipped ones."""
    scored = keep.astype(np.int64)
    scored_before: npt.NDArray[np.int64] = np.cumsum(scored) - scored  # before each second
    after_skip = keep & np.concatenate(([False], ~keep[:-1]))
    return scored_before[after_skip]


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
    return LeastUnder(
        work, unit_capacity=policy.unit_capacity, lead_s=policy.lead_time_s, min_units=policy.min
    ).at
