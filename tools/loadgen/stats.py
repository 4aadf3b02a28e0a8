"""What a load run measured, and its summary (pure)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import msgspec

A2A_ERROR_KINDS = {
    -32700: "parse_error",
    -32600: "invalid_request",
    -32601: "method_not_found",
    -32602: "invalid_params",
    -32603: "internal_error",
    -32001: "task_not_found",
    -32004: "unsupported_operation",
    -32029: "rate_limited",
    -32030: "quota_exceeded",
}


def error_kind(code: int) -> str:
    """A readable kind for a JSON-RPC error code."""
    return A2A_ERROR_KINDS.get(code, f"rpc_{code}")


@dataclass
class Tally:
    """Counts of a run in progress."""

    sent: int = 0
    ok: int = 0
    inflight: int = 0
    peak_inflight: int = 0
    latencies_s: list[float] = field(default_factory=list)
    first_event_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def done(self) -> int:
        return self.ok + sum(self.errors.values())


class Summary(msgspec.Struct, kw_only=True):
    """The result of a run, as `--json` prints it."""

    agent: str
    users: int
    tenants: int
    target_rate: float
    duration_s: float
    stream: bool
    sent: int
    completed: int
    ok: int
    unfinished: int
    requests_per_s: float
    """Successful requests per second of the arrival window."""
    peak_inflight: int
    p50_s: float | None
    p95_s: float | None
    p99_s: float | None
    max_s: float | None
    first_event_p50_s: float | None = None
    success_rate: float
    errors: dict[str, int]


def percentile(sorted_values: list[float], q: float) -> float | None:
    """The q-quantile (0..1) by nearest rank; None for no values."""
    if not sorted_values:
        return None
    rank = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[rank]


def summarize(
    tally: Tally,
    *,
    agent: str,
    users: int,
    tenants: int,
    rate: float,
    duration_s: float,
    stream: bool,
) -> Summary:
    """The summary of a finished (or stopped) run."""
    lat = sorted(tally.latencies_s)
    first = sorted(tally.first_event_s)
    errors = dict(tally.errors)
    unfinished = tally.sent - tally.done
    if unfinished > 0:
        errors["unfinished"] = unfinished
    return Summary(
        agent=agent,
        users=users,
        tenants=tenants,
        target_rate=rate,
        duration_s=round(duration_s, 3),
        stream=stream,
        sent=tally.sent,
        completed=tally.done,
        ok=tally.ok,
        unfinished=max(0, unfinished),
        requests_per_s=round(tally.ok / duration_s, 1) if duration_s > 0 else 0.0,
        peak_inflight=tally.peak_inflight,
        p50_s=percentile(lat, 0.50),
        p95_s=percentile(lat, 0.95),
        p99_s=percentile(lat, 0.99),
        max_s=lat[-1] if lat else None,
        first_event_p50_s=percentile(first, 0.50),
        success_rate=round(tally.ok / tally.sent, 5) if tally.sent else 0.0,
        errors=dict(sorted(errors.items(), key=lambda kv: -kv[1])),
    )
