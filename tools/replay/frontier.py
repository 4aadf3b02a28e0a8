"""A policy's cost/under-provisioning frontier and the headline read off it.

A sweep runs each policy at several settings of one aggressiveness knob; each
setting gives a `Point` (unit-hours, under-provisioned unit-seconds, actions).
A policy's frontier is its points sorted by unit-hours. All points are kept
(none dropped as dominated), so what is read off it is what some setting
between two swept ones would plausibly give, not a best case.

The headline compares ours with a baseline at equal spend: ours' under unit-s
and actions at the baseline's default unit-hours, by linear interpolation
between the two points of ours' frontier that bracket those unit-hours. Outside
ours' range there is no answer (no extrapolation): the sweep must be widened.

The better baseline is the one with fewer under-provisioned unit-seconds at
its default setting (ties: fewer unit-hours), i.e. the one that serves the
load better as shipped. The acceptance rule: at that baseline's default
unit-hours, ours' under unit-s <= `UNDER_RATIO_GOAL` x the baseline's, and ours'
actions <= the baseline's.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

UNDER_RATIO_GOAL = 0.6
"""Ours' under unit-s as a fraction of the better baseline's, at equal unit-hours."""


@dataclass(frozen=True)
class Point:
    """One policy at one knob setting."""

    knob: float
    unit_hours: float
    under_unit_s: float
    actions: int


@dataclass(frozen=True)
class Reading:
    """Ours' frontier read at one unit-hours value."""

    unit_hours: float
    under_unit_s: float
    actions: float


@dataclass(frozen=True)
class Headline:
    """Ours against one baseline's default setting, at its unit-hours."""

    baseline: str
    base: Point
    ours: Reading | None
    """None when the baseline's unit-hours lie outside ours' frontier."""
    lo: float
    hi: float
    """Ours' frontier's unit-hours range, for the message when out of range."""
    fixed: Reading | None = None
    """A fixed count chosen in hindsight at the baseline's unit-hours (tools.replay.fixed):
    a yardstick beside the verdict, which does not use it."""
    least: Reading | None = None
    """The least under unit-s any policy could leave at the baseline's unit-hours
    (tools.replay.least): when above the goal, no policy can meet it on this trace."""

    def _to_base(self, reading: Reading | None) -> float | None:
        """A reading's under unit-s over the baseline's (None: no reading)."""
        return None if reading is None else _ratio(reading.under_unit_s, self.base.under_unit_s)

    @property
    def least_ratio(self) -> float | None:
        """The least possible under unit-s over the baseline's (None: not computed)."""
        return self._to_base(self.least)

    @property
    def out_of_reach(self) -> bool:
        """No policy, even one knowing the future, meets the under-ratio goal here."""
        r = self.least_ratio
        return r is not None and r > UNDER_RATIO_GOAL

    @property
    def verdict(self) -> str:
        """Met, missed, or missed where no policy could have met it."""
        if self.met:
            return "met"
        return "missed (out of reach)" if self.out_of_reach else "missed"

    @property
    def fixed_ratio(self) -> float | None:
        """The fixed count's under unit-s over the baseline's (None: not computed)."""
        return self._to_base(self.fixed)

    @property
    def under_ratio(self) -> float | None:
        """Ours' interpolated under unit-s over the baseline's (None: out of range)."""
        return self._to_base(self.ours)

    @property
    def actions_ratio(self) -> float | None:
        """Ours' interpolated actions over the baseline's (None: out of range)."""
        if self.ours is None:
            return None
        return _ratio(self.ours.actions, float(self.base.actions))

    @property
    def met(self) -> bool:
        """The acceptance rule against this baseline; out of range is missed."""
        r = self.under_ratio
        if r is None or self.ours is None:
            return False
        return r <= UNDER_RATIO_GOAL and self.ours.actions <= self.base.actions + 1e-9


def _ratio(a: float, b: float) -> float:
    if b == 0:
        return 0.0 if a == 0 else float("inf")
    return a / b


def frontier(points: Iterable[Point]) -> list[Point]:
    """The points sorted by unit-hours (then knob, so the order is stable)."""
    return sorted(points, key=lambda p: (p.unit_hours, p.knob))


def interpolate(front: Sequence[Point], unit_hours: float) -> Reading | None:
    """Under unit-s and actions at `unit_hours` on a sorted frontier, linearly
    between the two bracketing points; None outside the frontier's range."""
    if not front or unit_hours < front[0].unit_hours or unit_hours > front[-1].unit_hours:
        return None
    for a, b in itertools.pairwise(front):
        if a.unit_hours <= unit_hours <= b.unit_hours:
            span = b.unit_hours - a.unit_hours
            f = 0.0 if span == 0 else (unit_hours - a.unit_hours) / span
            return Reading(
                unit_hours=unit_hours,
                under_unit_s=a.under_unit_s + f * (b.under_unit_s - a.under_unit_s),
                actions=a.actions + f * (b.actions - a.actions),
            )
    p = front[0]  # a single point, exactly at its unit-hours
    return Reading(unit_hours=unit_hours, under_unit_s=p.under_unit_s, actions=float(p.actions))


def better_baseline(defaults: dict[str, Point]) -> str | None:
    """The baseline with fewer under unit-s at its default (ties: fewer unit-hours)."""
    if not defaults:
        return None
    return min(defaults, key=lambda n: (defaults[n].under_unit_s, defaults[n].unit_hours, n))


def headlines(
    ours: Sequence[Point],
    defaults: dict[str, Point],
    fixed: Callable[[float], Reading] | None = None,
    least: Callable[[float], Reading] | None = None,
) -> list[Headline]:
    """Ours' frontier read at each baseline's default unit-hours, in name order; with
    `fixed` and `least` (unit-hours -> a yardstick's reading), those beside it."""
    front = frontier(ours)
    lo = front[0].unit_hours if front else 0.0
    hi = front[-1].unit_hours if front else 0.0
    return [
        Headline(
            baseline=name,
            base=base,
            ours=interpolate(front, base.unit_hours),
            lo=lo,
            hi=hi,
            fixed=fixed(base.unit_hours) if fixed is not None else None,
            least=least(base.unit_hours) if least is not None else None,
        )
        for name, base in sorted(defaults.items())
    ]
