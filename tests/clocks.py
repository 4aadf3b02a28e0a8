"""Chosen days and hours for tests, so no logic test depends on when it runs.

A service under test reads an injected clock fixed at one of these instants;
the suite must pass at 23:59:59 UTC and on the first of the month alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable

DAY_S = 86_400.0
HOUR_S = 3_600.0


def next_noon(after: float) -> float:
    """The first 12:00 UTC at or after `after`: 12 hours from both ends of its day.

    A service clock fixed there is never behind the real clock, so messages the test
    stamps with the real time are never dated ahead of the service.
    """
    noon = (after // DAY_S) * DAY_S + DAY_S / 2
    return noon if noon >= after else noon + DAY_S


def noon_clock(real_now: float) -> Callable[[], float]:
    """A clock for a service under test: 12:00 UTC of the day after `real_now`'s last
    noon, moving at the real rate (timeouts still pass), so a test that runs for
    minutes never crosses midnight whenever it starts."""
    base, started = next_noon(real_now), time.monotonic()
    return lambda: base + (time.monotonic() - started)
