"""A yardstick, not a policy: a fixed count of units chosen in hindsight.

Many GPU users run a static fleet sized from last week's load. Its cost on a
trace is `count x scored hours`, and its shortfall the demand above `count` units
(at full capacity, as the sim scores every policy). Between two counts the
shortfall is read linearly, as on a policy's frontier. At a baseline's unit-hours
this says whether scaling paid at all on the trace: a policy that is short more
often than the fixed fleet costing the same is worse than not scaling. The count
needs the whole trace to choose, so it is no peer to the policies; it is shown
beside the headline, and no verdict uses it.
"""

from __future__ import annotations

import math

from tools.replay.frontier import Reading
from tools.replay.workload import Workload


def fixed_reading(work: Workload, unit_capacity: float, unit_hours: float) -> Reading:
    """The under unit-s of a fixed fleet spending `unit_hours` on the scored seconds of
    `work` (those the sim scores: not in a zero run), between the two whole counts.
    One pass over the arrays, no copy: a 60-day per-second trace stays small."""
    scored = len(work.skip) - sum(work.skip)
    if scored <= 0:
        return Reading(unit_hours=unit_hours, under_unit_s=0.0, actions=0.0)
    count = max(0.0, unit_hours * 3600.0 / scored)
    lo, hi = math.floor(count), math.ceil(count)
    under_lo = under_hi = 0.0
    for d, skip in zip(work.demand, work.skip, strict=True):
        units = d / unit_capacity
        if not skip and units > lo:
            under_lo += units - lo
            under_hi += max(0.0, units - hi)
    f = count - lo
    return Reading(
        unit_hours=unit_hours, under_unit_s=under_lo + f * (under_hi - under_lo), actions=0.0
    )
