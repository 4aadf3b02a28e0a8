"""A simulated week in the streams, and what the cost-guard's ledger makes of its events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.js import JetStreamContext

from contracts import subjects
from contracts.events import UnitEvent
from services.brain.service import Brain
from services.costguard.ledger import DAY_S, Ledger, apply_unit_event, day_of, spent_today
from services.costguard.service import CostGuard
from services.gateway.history.spend import day_name
from services.gateway.service import Gateway
from services.kit.bus import ensure_streams
from services.kit.service import Service
from tests.fleet_helpers import fleet
from tests.signing_helpers import PROVISIONER
from tools.report.week import Week, simulate


def ledger_by_day(events: Iterable[UnitEvent], end: float) -> dict[str, float]:
    """What the cost-guard's ledger accrued on each UTC day, fed the events in time order
    and read at each midnight (and at `end` for the last day)."""
    ordered = sorted(events, key=lambda e: e.ts)
    ledger, out = Ledger(), {}
    day = day_of(ordered[0].ts)

    def close_days_before(ts: float) -> None:
        nonlocal day
        while day_of(ts) > day:
            out[day_name(day * DAY_S)] = spent_today(ledger, (day + 1) * DAY_S - 1e-6)
            day += 1

    for e in ordered:
        close_days_before(e.ts)
        ledger = apply_unit_event(ledger, e, e.ts)
    close_days_before(end)  # the last event's day, when `end` is already past its midnight
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

    async def put(subject: str, msg: Any) -> None:
        body = msgspec.json.encode(msg)
        # Unit events count in the ledger only when the provisioner signed them.
        headers = PROVISIONER.sign(subject, body) if isinstance(msg, UnitEvent) else None
        await js.publish(subject, body, headers=headers)

    for i in range(0, len(msgs), chunk):
        await asyncio.gather(*(put(s, m) for s, m in msgs[i : i + chunk]))
    return len(msgs)


POOLS: dict[str, Any] = {
    "h100": {"gpu_model": "H100", "min": 2, "max_usd_per_hour": 4.0},
    "a100": {"gpu_model": "A100-80GB", "max_usd_per_hour": 2.0},
    "rtx4090": {"gpu_model": "RTX4090", "max_usd_per_hour": 1.0},
}
"""The simulated week's pools, as fleet.toml would configure them."""


async def caught_up(nc: Client, stream: str, timeout_s: float = 60.0) -> None:
    """Wait until every durable consumer of `stream` has handled everything."""
    js = nc.jetstream()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        infos = await js.consumers_info(stream)
        if infos and all(c.num_pending == 0 and c.num_ack_pending == 0 for c in infos):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"consumers of {stream} did not catch up in {timeout_s} s")


@asynccontextmanager
async def week_services(
    nats_url: str, nc: Client, tmp_path: Path, *, brain: bool = False
) -> AsyncIterator[tuple[Week, float]]:
    """A simulated week in the streams (ending a minute ago), the cost-guard caught up with
    it and the gateway serving reports; the brain and its advisors too when asked."""
    end = time.time() - 60.0
    week = simulate(end, days=6.9, seed=11)
    await publish_week(nc.jetstream(), week)
    wanted = (CostGuard, Gateway, Brain) if brain else (CostGuard, Gateway)
    services = [s for s in fleet(nats_url, tmp_path, POOLS, brain=brain) if isinstance(s, wanted)]
    started: list[Service[Any]] = []
    try:
        for s in services:
            await s.start()
            started.append(s)
        await caught_up(nc, "FLEET_EVENTS")
        yield week, end
    finally:
        for s in reversed(started):
            await s.stop()
