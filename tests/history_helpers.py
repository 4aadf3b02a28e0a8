"""A simulated week in the streams, and what the cost-guard's ledger makes of its events."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import msgspec
from nats.js import JetStreamContext

from contracts import subjects
from contracts.events import UnitEvent
from services.costguard.ledger import DAY_S, Ledger, apply_unit_event, day_of, spent_today
from services.gateway.history.spend import day_name
from services.kit.bus import ensure_streams
from tools.report.week import Week


def ledger_by_day(events: Iterable[UnitEvent], end: float) -> dict[str, float]:
    """What the cost-guard's ledger accrued on each UTC day, fed the events in time order
    and read at each midnight (and at `end` for the last day)."""
    ordered = sorted(events, key=lambda e: e.ts)
    ledger, out = Ledger(), {}
    day = day_of(ordered[0].ts)
    for e in ordered:
        while day_of(e.ts) > day:
            out[day_name(day * DAY_S)] = spent_today(ledger, (day + 1) * DAY_S - 1e-6)
            day += 1
        ledger = apply_unit_event(ledger, e, e.ts)
    out[day_name(day * DAY_S)] = spent_today(ledger, end)
    return {d: usd for d, usd in out.items() if usd > 0}


def messages(week: Week) -> list[tuple[str, Any]]:
    """Every message of the week with the subject it travels on, in publish order."""
    return [
        *((subjects.unit(e.pool, e.unit), e) for e in week.units),
        *((subjects.budget(v.decision), v) for v in week.verdicts),
        *((subjects.audit(a.actor), a) for a in week.audit),
        *((subjects.job(j.job), j) for j in week.jobs),
        *((subjects.rollup(m.pool), m) for m in week.rollup),
    ]


async def publish_week(js: JetStreamContext, week: Week, chunk: int = 500) -> int:
    """Put the week into the streams (acked, in order per chunk); the messages' own `ts`
    carry their past times."""
    await ensure_streams(js)
    msgs = messages(week)
    for i in range(0, len(msgs), chunk):
        await asyncio.gather(
            *(js.publish(s, msgspec.json.encode(m)) for s, m in msgs[i : i + chunk])
        )
    return len(msgs)
