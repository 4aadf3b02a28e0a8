"""A per-second series built from events that arrive in any time order.

Request traces are not always sorted, and their first time is not known
before the end; `Grid` keeps seconds after the first event's second and
seconds before it in two growing `array('f')`, 4 bytes a second, so a 60-day
trace costs about 21 MB a series.
"""

from __future__ import annotations

import math
from array import array

MAX_SPAN_S = 400 * 86_400
"""Longest series a trace may span; a row beyond it is almost surely a bad time."""


class SpanError(ValueError):
    """An event too far from the first one (a wrong unit or a corrupt time)."""


class Grid:
    """Values per second, indexed by absolute second, growing either way."""

    def __init__(self) -> None:
        self.base: int | None = None
        self._fwd: array[float] = array("f")
        self._back: array[float] = array("f")
        self._steps: Grid | None = None
        """Whole seconds in flight as +1 where a span starts and -1 where it ends,
        summed up in `values()`: a months-long span costs two slots, not millions."""

    def _slot(self, second: int) -> tuple[array[float], int]:
        if self.base is None:
            self.base = second
        i = second - self.base
        if abs(i) > MAX_SPAN_S:
            raise SpanError(
                f"time {second} s lies {abs(i) / 86_400:,.0f} days from the trace's first, "
                f"more than {MAX_SPAN_S // 86_400} days"
            )
        arr, k = (self._fwd, i) if i >= 0 else (self._back, -i - 1)
        if k >= len(arr):
            arr.extend(array("f", [0.0]) * (k + 1 - len(arr)))
        return arr, k

    def add(self, t: float, value: float) -> None:
        """Add `value` to the second holding time `t`."""
        arr, k = self._slot(math.floor(t))
        arr[k] += value

    def spread(self, start: float, end: float) -> None:
        """Add one unit in flight over [start, end), as the mean per second."""
        if end <= start:
            return
        first, last = math.floor(start), math.ceil(end) - 1
        if first == last:
            self.add(start, end - start)
            return
        self.add(start, first + 1 - start)
        self.add(last, end - last)
        if last > first + 1:  # whole seconds first+1 .. last-1
            if self._steps is None:
                self._steps = Grid()
                self._steps._slot(self.base if self.base is not None else first)
            self._steps.add(first + 1, 1.0)
            self._steps.add(last, -1.0)

    def first(self) -> int | None:
        """The earliest second holding a slot, None when empty."""
        if self.base is None:
            return None
        return self.base - len(self._back)

    def values(self, first: int | None = None, length: int | None = None) -> array[float]:
        """The series from second `first` (default: the earliest), `length` seconds
        long (default: to the last slot), zero where nothing was added."""
        if self.base is None:
            return array("f")
        first = self.first() if first is None else first
        assert first is not None
        whole = self._back[::-1]
        whole.extend(self._fwd)
        off = first - (self.base - len(self._back))
        if off > 0:
            del whole[:off]
        elif off < 0:
            whole = array("f", [0.0]) * (-off) + whole
        if length is not None:
            if len(whole) > length:
                del whole[length:]
            else:
                whole.extend(array("f", [0.0]) * (length - len(whole)))
        if self._steps is not None:
            s_first = min(first, self._steps.first() or first)
            lead = first - s_first
            steps = self._steps.values(s_first, lead + len(whole))
            level = sum(steps[:lead])
            for i in range(len(whole)):
                level += steps[lead + i]
                if level:
                    whole[i] += level
        return whole
