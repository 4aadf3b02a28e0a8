"""Workload trace readers: five shapes, plain, gzip, bzip2 or tar.

Every reader returns a `Trace`: arrivals per second, and where the trace says
how long each request is served, the requests in flight each second. Shapes,
told apart by the first non-empty line:

- per-second counts: whitespace-separated numbers, one per second, any number
  to a line;
- per-interval counts: CSV `period,count`, two columns. A header row is
  optional; one with a `count` column makes the file per-interval whatever
  the other column is called (`timestamp,count` too), and a header with
  neither `count` nor `timestamp` is refused unless `time_column` names a
  request CSV's. The period is a number (seconds, or units of `period_s`
  seconds: 60 for minute numbers) or a date-time such as
  `1998-04-30 21:30:00`. The interval is the step between the first two
  rows; every period must lie on that grid after the one before (gaps are
  zero counts), and an interval's count is spread evenly over its seconds;
- per-interval columns ("wide"): CSV with a header whose last columns are
  numbered in even steps (Azure Functions' invocation counts: `HashOwner,
  HashApp,HashFunction,Trigger,1,2,...,1440`), one row per series (a
  function); each numbered column is an interval, its number a period as
  above (x `period_s`), and its count is the sum over the rows. An empty
  cell is a zero count;
- requests: CSV with a header naming a time column (`time_column`, by
  default a column called `timestamp`), one row per request, times in
  epoch seconds (units of `period_s`) or as date-times (any number of
  fractional digits; UTC unless they carry an offset, `+00:00` or
  `-0530`). With `duration_column` each request is in flight for that many
  seconds; with `end_column` until that column's time (read as the time
  column; an empty end: until the trace's last time, a pod still running);
  else, with token columns (`ContextTokens`/`GeneratedTokens`, or the two
  `token_columns` names), for the token model below; else demand follows
  from arrivals and a fixed service time later;
- requests as JSON Lines, one object a line (a first line starting `{`):
  read as a request CSV whose header is the first object's keys (Mooncake's
  `{"timestamp": ..., "input_length": ..., "output_length": ...}` with
  `token_columns` `input_length,output_length` and `period_s` 0.001).

Numeric times past year 5000 read as seconds are noted (`Trace.notes`) as
likely epoch milliseconds.

Token service model: a request stays in flight `PREFILL_S_PER_TOKEN x
ContextTokens + DECODE_S_PER_TOKEN x GeneratedTokens` seconds, i.e. prompt
processing at 5,000 tokens/s and generation at 50 tokens/s per request, a
typical batched LLM server. In-flight time is spread over the seconds it
spans, so `busy[t]` is the mean number of requests in flight in second t.

Everything is read as a stream into `array('f')` (4 bytes a second), so a
60-day per-second trace stays well under 500 MB. A bad row is a TraceError
naming the file, the line and the value.
"""

from __future__ import annotations

import csv
import itertools
import math
import re
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from tools.replay.archive import TraceError, open_lines
from tools.replay.grid import Grid, SpanError

__all__ = ["Trace", "TraceError", "parse_lines", "parse_time", "parse_timestamp", "read_trace"]

PREFILL_S_PER_TOKEN = 1 / 5000
DECODE_S_PER_TOKEN = 1 / 50
DEFAULT_TIME_COLUMN = "timestamp"
COUNT_COLUMN = "count"
"""A header with this column (and no --time-column) is a per-interval CSV."""
MINUTES_A_DAY = 1440
"""Numbered columns this many, read as seconds, are noted as likely minutes."""
EPOCH_MS_ABOVE = 1e11
"""Epoch seconds beyond this (year 5138) are surely milliseconds."""
_TOKEN = re.compile(r"\S+")


@dataclass
class Trace:
    """A workload: arrivals per second, optionally the requests in flight."""

    name: str
    arrivals: array[float]
    """Requests arriving in each second."""
    busy: array[float] | None = None
    """Mean requests in flight in each second, when the trace says how long they last."""
    shape: str = "per-second"
    interval_s: int = 1
    """Seconds per row of a per-interval trace."""
    notes: list[str] = field(default_factory=list)
    """What the reader noticed that may make the numbers wrong (one line each)."""


@dataclass(frozen=True)
class Columns:
    """How to read a request CSV or JSON Lines file; None picks the default."""

    time: str | None = None
    duration: str | None = None
    end: str | None = None
    """Column with each request's end time (as the time column): in flight until then."""
    tokens: tuple[str, str] | None = None
    """(prompt, generated) token columns for the token model; default
    ContextTokens/GeneratedTokens when the header has them."""


def read_trace(
    path: str | Path,
    *,
    time_column: str | None = None,
    duration_column: str | None = None,
    period_s: float = 1.0,
    end_column: str | None = None,
    token_columns: str | Sequence[str] | None = None,
) -> Trace:
    """Read a trace file in any supported shape; raises TraceError on bad input.
    `token_columns` is `PROMPT,GENERATED` (or a pair): the token model's columns."""
    if period_s <= 0 or not math.isfinite(period_s):
        raise TraceError(f"period unit must be > 0 seconds, not {period_s}")
    columns = Columns(time_column, duration_column, end_column, _token_pair(token_columns))
    with open_lines(Path(path)) as (name, lines):
        return parse_lines(lines, name, columns=columns, period_s=period_s)


def _token_pair(text: str | Sequence[str] | None) -> tuple[str, str] | None:
    if text is None:
        return None
    parts = [p.strip() for p in (text.split(",") if isinstance(text, str) else text)]
    if len(parts) != 2 or not all(parts):
        raise TraceError(
            f"token columns are two names, PROMPT,GENERATED (e.g. `Request tokens,Response "
            f"tokens`), not {text!r}"
        )
    return parts[0], parts[1]


def parse_lines(
    lines: Iterable[str],
    name: str = "trace",
    *,
    columns: Columns | None = None,
    period_s: float = 1.0,
) -> Trace:
    """Detect the shape from the first non-empty line and parse the rest."""
    columns = columns or Columns()
    numbered = _numbered(lines)
    first, lineno = "", 0
    for n, line in numbered:
        if line.strip():
            first, lineno = line.strip(), n
            break
    if not first:
        raise TraceError(f"{name}: empty trace")
    if columns.duration is not None and columns.end is not None:
        raise TraceError(f"{name}: --duration-column and --end-column are alternatives; pass one")
    if first.startswith("{"):
        return _json_lines(first, lineno, numbered, name, columns, period_s)
    # A per-second trace may hold all its counts on one line: no CSV parse of that.
    cells = next(csv.reader([first])) if len(first) < 65_536 else [first]
    head = [c.strip().strip('"').lower() for c in cells]
    if columns.time is not None:
        if columns.time.lower() not in head:
            raise TraceError(
                f"{name}: line {lineno}: no column {columns.time!r} "
                f"(the header has {', '.join(head)})"
            )
        return _requests(head, _csv_cells(numbered), name, columns, period_s)
    per_request = columns.duration or columns.end or columns.tokens
    if COUNT_COLUMN in head and not per_request:
        return _per_interval(first, lineno, numbered, name, period_s, head)
    if DEFAULT_TIME_COLUMN in head:
        return _requests(head, _csv_cells(numbered), name, columns, period_s)
    if per_request:
        raise TraceError(
            f"{name}: --duration-column, --end-column and --token-columns need a request "
            "CSV with a time column (--time-column NAME)"
        )
    if "," not in first:
        return _per_second(first, lineno, numbered, name)
    if _is_header(head, period_s):
        numbers = _numbered_columns(head)
        if numbers is not None:
            return _wide(first, lineno, numbered, name, period_s, numbers)
        raise TraceError(
            f"{name}: line {lineno}: the header ({', '.join(head)}) has no `timestamp` column "
            "for a request CSV (pass --time-column NAME), no `count` column for a "
            "per-interval CSV (`period,count`) and no numbered last columns for a wide "
            "one (`name,...,1,2,3`)"
        )
    return _per_interval(first, lineno, numbered, name, period_s, None)


def _is_header(head: list[str], period_s: float) -> bool:
    """Whether a first CSV row names columns: its first cell is no period."""
    try:
        _period(head[0], period_s)
    except TraceError:
        return True
    return False


def _numbered(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    return enumerate(lines, start=1)


def _count(tok: str, name: str, lineno: int) -> float:
    try:
        v = float(tok)
    except ValueError:
        raise TraceError(f"{name}: line {lineno}: {tok!r} is not a number") from None
    if not math.isfinite(v) or v < 0:
        raise TraceError(f"{name}: line {lineno}: count {tok} must be a number >= 0")
    return v


def _per_second(first: str, lineno: int, rest: Iterator[tuple[int, str]], name: str) -> Trace:
    out: array[float] = array("f")
    for tok in _TOKEN.finditer(first):
        out.append(_count(tok.group(), name, lineno))
    for n, line in rest:
        for tok in _TOKEN.finditer(line):  # no list of tokens: lines can be days long
            out.append(_count(tok.group(), name, n))
    return Trace(name=name, arrivals=out, shape="per-second")


def _period(text: str, period_s: float) -> float:
    """Seconds of a period cell: a number (x `period_s`) or a date-time."""
    try:
        return float(text) * period_s
    except ValueError:
        return parse_timestamp(text)


def _per_interval(
    first: str,
    lineno: int,
    rest: Iterator[tuple[int, str]],
    name: str,
    period_s: float,
    header: list[str] | None,
) -> Trace:
    """A `period,count` CSV; `header` is the first row's cells when it names the columns."""
    rows = _csv_rows(first, lineno, rest)
    at_period = 0
    if header is not None:
        if len(header) != 2:
            raise TraceError(
                f"{name}: line {lineno}: a per-interval CSV has two columns, PERIOD,count; "
                f"the header has {', '.join(header)} (a request CSV: pass --time-column NAME)"
            )
        at_period = 1 - header.index(COUNT_COLUMN)
        next(rows)
    grid = Grid()
    base = step = None
    pending: tuple[int, float, float] | None = None
    last = (0, -math.inf)
    for n, cols in rows:
        if len(cols) != 2:
            raise TraceError(f"{name}: line {n}: expected `period,count`, got {','.join(cols)!r}")
        try:
            t = _period(cols[at_period], period_s)
        except TraceError:
            raise TraceError(
                f"{name}: line {n}: period {cols[at_period]!r} is not a number or date-time"
            ) from None
        if t <= last[1] and step is not None:
            raise TraceError(
                f"{name}: line {n}: period {cols[at_period]!r} is not after line {last[0]}'s; "
                "rows go in time order, each period once"
            )
        last = (n, t)
        count = _count(cols[1 - at_period], name, n)
        if base is None:
            base, pending = t, (n, t, count)
            continue
        if step is None:
            step = t - base
            if step <= 0 or step != round(step):
                raise TraceError(
                    f"{name}: line {n}: the interval, {step:g} s from the row before, must be "
                    "a whole number of seconds > 0 (rows in time order)"
                )
            assert pending is not None
            _put(grid, base, pending[2], base, int(step))
        _check_grid(name, n, t, base, step)
        _put(grid, t, count, base, int(step))
    if pending is None:
        raise TraceError(f"{name}: no rows")
    if step is None:  # one row: an interval of one period unit
        step = max(1.0, round(period_s))
        _put(grid, base or 0.0, pending[2], base or 0.0, int(step))
    notes = [] if base is None else _ms_note(base, "periods", period_s)
    return Trace(
        name=name,
        arrivals=grid.values(),
        shape="per-interval",
        interval_s=int(step),
        notes=notes,
    )


def _numbered_columns(head: list[str]) -> list[float] | None:
    """The numbers of a wide CSV's header's last columns, when at least two of its
    last columns are numbers (their run from the end)."""
    numbers: list[float] = []
    for cell in reversed(head):
        try:
            value = float(cell)
        except ValueError:
            break
        if not math.isfinite(value):
            break
        numbers.append(value)
    return numbers[::-1] if len(numbers) >= 2 else None


def _wide(
    first: str,
    lineno: int,
    rest: Iterator[tuple[int, str]],
    name: str,
    period_s: float,
    numbers: list[float],
) -> Trace:
    """Per-interval columns: each numbered column's count is the sum over the rows."""
    step = (numbers[1] - numbers[0]) * period_s
    if step <= 0 or abs(step - round(step)) > 1e-6:
        raise TraceError(
            f"{name}: line {lineno}: the numbered columns {numbers[0]:g}, {numbers[1]:g} are "
            f"{step:g} s apart (x {period_s:g} s); the interval must be a whole number of "
            "seconds > 0 (columns in time order; --period-s sets the unit)"
        )
    gap = numbers[1] - numbers[0]
    for k, number in enumerate(numbers):
        if abs(number - numbers[0] - k * gap) > 1e-6 * max(1.0, abs(number)):
            raise TraceError(
                f"{name}: line {lineno}: numbered column {number:g} is not {gap:g} after "
                "the one before it; the numbered columns of a wide CSV go in even steps"
            )
    rows = _csv_rows(first, lineno, rest)
    head = next(rows)[1]
    at = len(head) - len(numbers)
    sums = [0.0] * len(numbers)
    seen = 0
    for n, cols in rows:
        if len(cols) != len(head):
            raise TraceError(f"{name}: line {n}: {len(cols)} columns, the header has {len(head)}")
        cells = cols[at:]
        try:
            values = [float(c) for c in cells]
        except ValueError:
            values = [0.0 if c == "" else _count(c, name, n) for c in cells]
        if not all(math.isfinite(v) and v >= 0 for v in values):
            for c in cells:
                _count(c, name, n)  # names the bad cell
        sums = [a + b for a, b in zip(sums, values, strict=True)]
        seen += 1
    if not seen:
        raise TraceError(f"{name}: no rows under the header")
    grid, base, width = Grid(), numbers[0] * period_s, round(step)
    for k, total in enumerate(sums):
        _put(grid, base + k * width, total, base, width)
    notes = [f"{seen} rows summed per numbered column"]
    if len(numbers) == MINUTES_A_DAY and period_s == 1.0:
        notes.append(
            f"the {MINUTES_A_DAY} numbered columns look like the minutes of a day, read as "
            "seconds: pass --period-s 60 if they are minutes"
        )
    return Trace(
        name=name,
        arrivals=grid.values(),
        shape="per-interval columns",
        interval_s=width,
        notes=notes + _ms_note(base, "numbered columns", period_s),
    )


def _ms_note(first_s: float, what: str, period_s: float) -> list[str]:
    """A note when numeric times read as seconds lie past year 5000: epoch milliseconds."""
    if first_s <= EPOCH_MS_ABOVE:
        return []
    return [
        f"{what} look like epoch milliseconds (the first, {first_s / period_s:.4g} x "
        f"{period_s:g} s, is past year 5000): pass --period-s {period_s / 1000:g}"
    ]


def _check_grid(name: str, n: int, t: float, base: float, step: float) -> None:
    k = (t - base) / step
    if abs(k - round(k)) > 1e-6:
        raise TraceError(
            f"{name}: line {n}: period at {t - base:g} s from the first row is off the "
            f"{step:g}-second grid of the first two rows"
        )


def _put(grid: Grid, t: float, count: float, base: float, step: int) -> None:
    start = round(t - base)
    try:
        for s in range(step):
            grid.add(start + s, count / step)
    except SpanError as exc:
        raise TraceError(str(exc)) from None


def _csv_rows(
    first: str, lineno: int, rest: Iterator[tuple[int, str]]
) -> Iterator[tuple[int, list[str]]]:
    """Cells of each non-empty row, the first one's too, stripped, with its line number."""
    for n, cells in _csv_cells(itertools.chain([(lineno, first)], rest)):
        yield n, [c.strip().strip('"') for c in cells]


_EPOCH = datetime(1970, 1, 1)
_seconds_cache: dict[str, float] = {}


def _utc_offset(text: str) -> tuple[str, float]:
    """`text` without a trailing UTC offset (`+00:00`, `-0530`, `Z`, ` UTC`) after a
    time of day, and that offset in seconds (0 when there is none)."""
    tail = text[-6:]
    if "+" not in tail and "-" not in tail and tail[-1:].isdigit():
        return text, 0.0  # the common case, kept fast: a million rows a second
    if text.endswith("Z"):
        return text[:-1], 0.0
    if text.endswith(" UTC"):
        return text[:-4], 0.0
    for width, colon in ((6, True), (5, False)):  # +HH:MM, +HHMM
        if len(text) <= width + 5 or text[-width] not in "+-" or not text[-width - 1].isdigit():
            continue
        hh, mm = text[-width + 1 : -width + 3], text[-2:]
        if (text[-3] == ":") != colon or not (hh + mm).isdigit() or ":" not in text[:-width]:
            continue
        sign = 1.0 if text[-width] == "+" else -1.0
        return text[:-width], sign * (int(hh) * 3600 + int(mm) * 60)
    return text, 0.0


def parse_timestamp(text: str) -> float:
    """Seconds since the epoch (UTC) of `YYYY-MM-DD[ T]HH:MM[:SS][.fraction]`, with an
    optional UTC offset (`Z`, `+00:00`, `-0530`: Azure's 2024 LLM traces carry one)."""
    text = text.strip().strip('"')
    if len(text) > 10 and text[10] == "T":
        text = f"{text[:10]} {text[11:]}"
    text, offset = _utc_offset(text)
    main, _, frac = text.partition(".")
    secs = _seconds_cache.get(main)
    if secs is None:
        for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
            try:
                secs = (datetime.strptime(main, fmt) - _EPOCH).total_seconds()
                break
            except ValueError:
                continue
        else:
            raise TraceError(f"bad timestamp {text!r}")
        if len(_seconds_cache) > 4096:
            _seconds_cache.clear()
        _seconds_cache[main] = secs
    if frac:
        if not frac.isdigit():
            raise TraceError(f"bad timestamp {text!r}")
        secs += int(frac) / 10 ** len(frac)
    return secs - offset


def parse_time(text: str, unit_s: float = 1.0) -> float:
    """Epoch seconds of a cell holding a number (of `unit_s` seconds) or a date-time."""
    try:
        v = float(text)
    except ValueError:
        return parse_timestamp(text)
    if not math.isfinite(v):
        raise TraceError(f"bad time {text!r}")
    return v * unit_s


def _csv_cells(rest: Iterator[tuple[int, str]]) -> Iterator[tuple[int, list[str]]]:
    """The cells of each non-empty CSV row after the header, with its line number."""
    for n, line in rest:
        if line.strip():
            yield n, next(csv.reader([line]))


def _json_lines(
    first: str,
    lineno: int,
    rest: Iterator[tuple[int, str]],
    name: str,
    columns: Columns,
    period_s: float,
) -> Trace:
    """JSON Lines, one object a request (Mooncake's `{"timestamp": ms, "input_length":
    ..., "output_length": ...}`): read as a request CSV whose header is the first
    object's keys; each value as its text."""
    decoder = msgspec.json.Decoder(dict[str, Any])

    def obj(n: int, line: str) -> dict[str, Any]:
        try:
            return decoder.decode(line)
        except msgspec.DecodeError as exc:
            raise TraceError(
                f"{name}: line {n}: not a JSON object ({exc}); JSON Lines hold one object a line"
            ) from None

    head_obj = obj(lineno, first)
    keys = list(head_obj)
    head = [k.lower() for k in keys]
    if (columns.time or DEFAULT_TIME_COLUMN).lower() not in head:
        raise TraceError(
            f"{name}: line {lineno}: no key {columns.time or DEFAULT_TIME_COLUMN!r} for the "
            f"request time (the first object has {', '.join(keys)}; pass --time-column NAME)"
        )

    def cells(o: dict[str, Any]) -> list[str]:
        return ["" if (v := o.get(k)) is None else str(v) for k in keys]

    def rows() -> Iterator[tuple[int, list[str]]]:
        yield lineno, cells(head_obj)
        for n, line in rest:
            if line.strip():
                yield n, cells(obj(n, line))

    trace = _requests(head, rows(), name, columns, period_s)
    trace.shape = "requests (JSON Lines)"
    return trace


def _column(header: list[str], column: str | None, name: str) -> int | None:
    if column is None:
        return None
    if column.lower() not in header:
        raise TraceError(
            f"{name}: line 1: no column {column!r} (the header has {', '.join(header)})"
        )
    return header.index(column.lower())


def _requests(
    header: list[str],
    rows: Iterator[tuple[int, list[str]]],
    name: str,
    columns: Columns,
    period_s: float = 1.0,
) -> Trace:
    t_col = header.index((columns.time or DEFAULT_TIME_COLUMN).lower())
    d_col = _column(header, columns.duration, name)
    e_col = _column(header, columns.end, name)
    ctx_name, gen_name = columns.tokens or ("ContextTokens", "GeneratedTokens")
    if columns.tokens is not None:
        ctx, gen = _column(header, ctx_name, name), _column(header, gen_name, name)
    else:
        ctx = header.index("contexttokens") if "contexttokens" in header else None
        gen = header.index("generatedtokens") if "generatedtokens" in header else None
    modelled = d_col is not None or e_col is not None or ctx is not None or gen is not None
    arrivals, busy = Grid(), Grid() if modelled else None
    last_end = -math.inf
    open_ended: array[float] = array("d")
    """Starts of requests with an empty end cell: still in flight when the trace ends."""
    n = 0
    for n, cells in rows:
        try:
            t = parse_time(cells[t_col], period_s)
            work = 0.0
            if d_col is not None:
                work = _seconds(cells[d_col])
                if not math.isfinite(work) or work < 0:
                    raise ValueError(f"duration {cells[d_col]!r} must be >= 0 seconds")
            elif e_col is not None:
                if not cells[e_col].strip():
                    open_ended.append(t)  # spread once the trace's last time is known
                else:
                    end = parse_time(cells[e_col], period_s)
                    if end < t:
                        raise ValueError(
                            f"end {cells[e_col]!r} is before the request's time {cells[t_col]!r}"
                        )
                    work = end - t
            else:
                if ctx is not None:
                    work += _tokens(cells[ctx], ctx_name) * PREFILL_S_PER_TOKEN
                if gen is not None:
                    work += _tokens(cells[gen], gen_name) * DECODE_S_PER_TOKEN
            arrivals.add(t, 1.0)
            if busy is not None:
                busy.spread(t, t + max(0.0, work))
                last_end = max(last_end, t + work)
        except IndexError:
            raise TraceError(f"{name}: line {n}: too few columns ({len(cells)})") from None
        except (TraceError, ValueError) as exc:
            raise TraceError(f"{name}: line {n}: {exc}") from None
    first = arrivals.first()
    if first is None:
        raise TraceError(f"{name}: no requests")
    arr = arrivals.values()
    notes = _ms_note(first, "request times", period_s)
    if busy is None:
        return Trace(name=name, arrivals=arr, shape="requests", notes=notes)
    if open_ended:
        for t in open_ended:
            busy.spread(t, last_end)
        notes.append(
            f"{len(open_ended):,} request(s) with no end are in flight until the trace's last time"
        )
    # Trailing seconds that only hold service time keep their busy value.
    span = max(len(arr), math.ceil(last_end) - first)
    return Trace(
        name=name,
        arrivals=arrivals.values(first, span),
        busy=busy.values(first, span),
        shape="requests",
        notes=notes,
    )


def _tokens(cell: str, column: str) -> float:
    """A token count cell; ValueError naming the column and what the cell held."""
    count = _number(cell, column, "tokens")
    if not math.isfinite(count) or count < 0:
        raise ValueError(f"{column} {cell!r} must be a count of tokens >= 0")
    return count


def _seconds(cell: str) -> float:
    """A duration cell as seconds; ValueError saying what the cell held."""
    return _number(cell, "duration", "seconds")


def _number(cell: str, what: str, unit: str) -> float:
    """A numeric cell of column `what`; ValueError saying it is empty or not a number."""
    try:
        return float(cell)
    except ValueError:
        held = "is empty" if not cell.strip() else f"{cell!r} is not a number of {unit}"
        raise ValueError(f"{what} {held}") from None
