"""Spend over a period from unit events, by the ledger's rule, and the units that failed.

A unit bills from its first billed event (booting, ready, draining) to its
terminal event (terminated, failed) at the event's `usd_per_hour`; a billed
event at another price closes the interval and opens one at the new price. That
is the cost-guard's ledger rule (services/costguard/ledger.py), applied here to
whole intervals rather than to one day, so a report over any days adds up to
what the ledger accrued on each of them. Events are taken in `ts` order, and an
end dated (beyond the clock skew) before the unit began billing is not believed,
as in the ledger.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from contracts.base import MAX_CLOCK_SKEW_S
from contracts.events import BILLED_STATES, TERMINAL_STATES, UnitEvent

HOUR_S = 3600.0
DAY_S = 86_400.0


@dataclass(frozen=True)
class Interval:
    """A unit billing at one price from `start` to `end` (the period's end when open)."""

    pool: str
    unit: str
    gpu_model: str
    provider: str
    usd_per_hour: float
    start: float
    end: float

    def overlap_h(self, lo: float, hi: float) -> float:
        """Hours of this interval inside [lo, hi)."""
        return max(0.0, min(self.end, hi) - max(self.start, lo)) / HOUR_S


@dataclass
class _Open:
    price: float
    since: float


def intervals(events: Iterable[UnitEvent], until: float) -> list[Interval]:
    """Every billing interval the events describe, open ones ending at `until`."""
    ordered = sorted((e for e in events if e.ts <= until + MAX_CLOCK_SKEW_S), key=lambda e: e.ts)
    kind: dict[str, tuple[str, str]] = {}
    for e in ordered:  # a unit's GPU and provider: whichever event names them
        gpu, provider = kind.get(f"{e.pool}/{e.unit}", ("", "unknown"))
        kind[f"{e.pool}/{e.unit}"] = (
            e.gpu_model or gpu,
            e.provider if e.provider != "unknown" else provider,
        )
    open_: dict[str, _Open] = {}
    ended: set[str] = set()
    out: list[Interval] = []

    def emit(key: str, e: UnitEvent, o: _Open, end: float) -> None:
        gpu, provider = kind[key]
        out.append(Interval(e.pool, e.unit, gpu or "unknown", provider, o.price, o.since, end))

    for e in ordered:
        key = f"{e.pool}/{e.unit}"
        if key in ended:
            continue
        current = open_.get(key)
        price = e.usd_per_hour
        if e.state in BILLED_STATES:
            if current is None:
                open_[key] = _Open(price, e.ts)
            elif current.price != price:
                emit(key, e, current, e.ts)
                open_[key] = _Open(price, max(current.since, e.ts))
        elif e.state in TERMINAL_STATES:
            if current is not None and e.ts < current.since - MAX_CLOCK_SKEW_S:
                continue
            if current is not None:
                emit(key, e, current, e.ts)
                del open_[key]
            ended.add(key)
    last = {f"{e.pool}/{e.unit}": e for e in ordered}
    for key, o in open_.items():
        emit(key, last[key], o, max(o.since, until))
    return out


def day_name(ts: float) -> str:
    """The UTC date of `ts`, YYYY-MM-DD."""
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def _by(pairs: Iterable[tuple[str, float]]) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for key, usd in pairs:
        out[key] += usd
    return {k: round(v, 6) for k, v in sorted(out.items(), key=lambda kv: -kv[1]) if v > 0}


def spend(spans: list[Interval], lo: float, hi: float) -> dict[str, object]:
    """Total spend and unit-hours in [lo, hi), and spend by GPU, provider, pool and UTC day."""
    usd = [(s, s.overlap_h(lo, hi) * s.usd_per_hour) for s in spans]
    days: list[tuple[str, float]] = []
    for s, _ in usd:
        start = max(s.start, lo)
        while start < min(s.end, hi):
            midnight = (start // DAY_S + 1) * DAY_S
            part = s.overlap_h(start, min(midnight, hi)) * s.usd_per_hour
            days.append((day_name(start), part))
            start = midnight
    return {
        "total_usd": round(sum(u for _, u in usd), 6),
        "unit_hours": round(sum(s.overlap_h(lo, hi) for s in spans), 4),
        "by_gpu": _by((s.gpu_model, u) for s, u in usd),
        "by_provider": _by((s.provider, u) for s, u in usd),
        "by_pool": _by((s.pool, u) for s, u in usd),
        "by_day": dict(sorted(_by(days).items())),
    }


def pool_prices(spans: list[Interval], lo: float, hi: float) -> dict[str, float]:
    """Each pool's mean USD per billed unit-hour over the period."""
    usd: dict[str, float] = defaultdict(float)
    hours: dict[str, float] = defaultdict(float)
    for s in spans:
        h = s.overlap_h(lo, hi)
        usd[s.pool] += h * s.usd_per_hour
        hours[s.pool] += h
    return {p: usd[p] / hours[p] for p in hours if hours[p] > 0}


def reason_key(reason: str, words: int = 6) -> str:
    """A reason's first clause, short enough to count alike reasons together."""
    head = reason.replace(";", ":").split(":")[0].strip() or "(no reason)"
    return " ".join(head.split()[:words])


def count(keys: Iterable[str]) -> dict[str, int]:
    """How often each key occurs, most frequent first."""
    out: dict[str, int] = defaultdict(int)
    for k in keys:
        out[k] += 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def failures(
    events: Iterable[UnitEvent], replacements: int, lo: float, hi: float
) -> dict[str, object]:
    """Units that failed in [lo, hi), by pool, provider and reason."""
    seen: dict[str, UnitEvent] = {}
    providers: dict[str, str] = {}
    for e in events:
        if e.provider != "unknown":
            providers[f"{e.pool}/{e.unit}"] = e.provider
        if e.state == "failed" and lo <= e.ts < hi:
            seen.setdefault(f"{e.pool}/{e.unit}", e)
    failed = list(seen.values())
    return {
        "failed": len(failed),
        "replacements": replacements,
        "by_pool": count(e.pool for e in failed),
        "by_provider": count(providers.get(f"{e.pool}/{e.unit}", e.provider) for e in failed),
        "reasons": count(reason_key(e.reason) for e in failed),
    }
