"""Workload trace readers: three shapes, plain or in a bzip2 archive.

Every reader returns a `Trace`: arrivals per second, and where the trace gives
per-request token counts, the busy time each second under the token service
model below. Shapes, detected from the content:

- per-second counts: whitespace-separated numbers, one per second;
- per-minute counts: CSV `period,count` (a header row is optional), spread
  evenly over the minute's 60 seconds;
- request timestamps: CSV whose header starts with `TIMESTAMP`; one row per
  request, times like `2023-11-16 18:15:46.6805900` (any number of
  fractional digits). Optional columns `ContextTokens` and `GeneratedTokens`.

Archives (`.tbz2`, `.tar.bz2`, `.bz2`) are read as streams, never extracted.

Token service model (request timestamps with token columns): a request stays
in flight for `PREFILL_S_PER_TOKEN x ContextTokens + DECODE_S_PER_TOKEN x
GeneratedTokens` seconds, i.e. prompt processing at 5,000 tokens/s and
generation at 50 tokens/s per request, a typical batched LLM server. Its
in-flight time is spread over the seconds it spans, so `busy[t]` is the mean
number of requests in flight during second t.
"""

from __future__ import annotations

import bz2
import io
import math
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

PREFILL_S_PER_TOKEN = 1 / 5000
DECODE_S_PER_TOKEN = 1 / 50


class TraceError(ValueError):
    """A trace that cannot be read; the message names the file and the problem."""


@dataclass
class Trace:
    """A workload: arrivals per second, optionally token-modelled busy time."""

    name: str
    arrivals: list[float]
    """Requests arriving in each second."""
    busy: list[float] | None = None
    """Mean requests in flight in each second under the token model, if known."""
    shape: str = "per-second"


def read_trace(path: str | Path) -> Trace:
    """Read a trace file in any supported shape; raises TraceError on bad input."""
    p = Path(path)
    if not p.is_file():
        raise TraceError(f"{p}: no such file")
    name = p.name
    lower = name.lower()
    try:
        if lower.endswith((".tbz2", ".tar.bz2", ".tbz")):
            return _from_tar(p)
        if lower.endswith(".bz2"):
            with bz2.open(p, "rt", encoding="utf-8", errors="replace") as f:
                return parse_lines(f, name)
        with p.open("rt", encoding="utf-8", errors="replace") as f:
            return parse_lines(f, name)
    except (OSError, EOFError, tarfile.TarError) as exc:
        raise TraceError(f"{p}: cannot read ({exc})") from exc


def _from_tar(p: Path) -> Trace:
    with tarfile.open(p, mode="r|bz2") as tar:
        for member in tar:
            if not member.isfile():
                continue
            raw = tar.extractfile(member)
            if raw is None:
                continue
            # The stream is not seekable; decode the member in memory (no disk).
            text = raw.read().decode("utf-8", errors="replace")
            return parse_lines(io.StringIO(text), f"{p.name}:{member.name}")
    raise TraceError(f"{p}: archive holds no file")


def parse_lines(lines: Iterable[str], name: str = "trace") -> Trace:
    """Detect the shape from the first non-empty line and parse the rest."""
    it = iter(lines)
    first = ""
    for line in it:
        if line.strip():
            first = line.strip()
            break
    if not first:
        raise TraceError(f"{name}: empty trace")
    head = first.split(",")[0].strip().strip('"').upper()
    if head == "TIMESTAMP":
        return _timestamps(first, it, name)
    if "," in first:
        return _per_minute(first, it, name)
    return _per_second(first, it, name)


def _per_second(first: str, rest: Iterable[str], name: str) -> Trace:
    out: list[float] = []
    lineno = 1
    for line in _chain(first, rest):
        for tok in line.split():
            try:
                v = float(tok)
            except ValueError:
                raise TraceError(f"{name}: line {lineno}: {tok!r} is not a number") from None
            if not math.isfinite(v) or v < 0:
                raise TraceError(f"{name}: line {lineno}: count {tok} must be >= 0")
            out.append(v)
        lineno += 1
    if not out:
        raise TraceError(f"{name}: no counts")
    return Trace(name=name, arrivals=out, shape="per-second")


def _per_minute(first: str, rest: Iterable[str], name: str) -> Trace:
    rows: list[tuple[float, float]] = []
    for lineno, line in enumerate(_chain(first, rest), start=1):
        line = line.strip()
        if not line:
            continue
        cols = [c.strip().strip('"') for c in line.split(",")]
        if len(cols) < 2:
            raise TraceError(f"{name}: line {lineno}: expected `period,count`")
        try:
            period, count = float(cols[0]), float(cols[1])
        except ValueError:
            if lineno == 1:
                continue  # header row
            raise TraceError(f"{name}: line {lineno}: {line!r} is not `period,count`") from None
        if count < 0 or not math.isfinite(count) or not math.isfinite(period):
            raise TraceError(f"{name}: line {lineno}: count must be >= 0")
        rows.append((period, count))
    if not rows:
        raise TraceError(f"{name}: no rows")
    rows.sort()
    base = rows[0][0]
    minutes = int(rows[-1][0] - base) + 1
    out = [0.0] * (minutes * 60)
    for period, count in rows:
        m = int(period - base)
        for s in range(60):
            out[m * 60 + s] += count / 60.0
    return Trace(name=name, arrivals=out, shape="per-minute")


def parse_timestamp(text: str) -> float:
    """Seconds since the epoch (UTC) of `YYYY-MM-DD HH:MM:SS[.fraction]`, any digits."""
    text = text.strip().strip('"').replace("T", " ").rstrip("Z")
    main, _, frac = text.partition(".")
    try:
        dt = datetime.strptime(main, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise TraceError(f"bad timestamp {text!r}") from None
    secs = (dt - datetime(1970, 1, 1)).total_seconds()
    if frac:
        if not frac.isdigit():
            raise TraceError(f"bad timestamp {text!r}")
        secs += int(frac) / 10 ** len(frac)
    return secs


def _timestamps(header: str, rest: Iterable[str], name: str) -> Trace:
    cols = [c.strip().strip('"').lower() for c in header.split(",")]
    ctx = cols.index("contexttokens") if "contexttokens" in cols else None
    gen = cols.index("generatedtokens") if "generatedtokens" in cols else None
    reqs: list[tuple[float, float]] = []
    for lineno, line in enumerate(rest, start=2):
        if not line.strip():
            continue
        parts = line.split(",")
        try:
            t = parse_timestamp(parts[0])
            work = 0.0
            if ctx is not None:
                work += float(parts[ctx]) * PREFILL_S_PER_TOKEN
            if gen is not None:
                work += float(parts[gen]) * DECODE_S_PER_TOKEN
        except (TraceError, ValueError, IndexError) as exc:
            raise TraceError(f"{name}: line {lineno}: {exc}") from None
        reqs.append((t, max(0.0, work)))
    if not reqs:
        raise TraceError(f"{name}: no requests")
    reqs.sort()
    t0 = math.floor(reqs[0][0])
    tokens = ctx is not None or gen is not None
    end = max(t + w for t, w in reqs) if tokens else reqs[-1][0]
    n = int(end - t0) + 1
    arrivals = [0.0] * n
    busy = [0.0] * n if tokens else None
    for t, w in reqs:
        arrivals[int(t - t0)] += 1.0
        if busy is not None:
            _spread(busy, t - t0, t - t0 + w)
    # Trailing seconds that only hold service time keep their busy value.
    return Trace(name=name, arrivals=arrivals, busy=busy, shape="timestamps")


def _spread(busy: list[float], start: float, end: float) -> None:
    """Add one request in flight over [start, end) to the per-second mean."""
    s = int(start)
    while start < end and s < len(busy):
        stop = min(end, s + 1)
        busy[s] += stop - start
        start, s = stop, s + 1


def _chain(first: str, rest: Iterable[str]) -> Iterable[str]:
    yield first
    yield from rest
