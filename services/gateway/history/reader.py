"""The history a report needs, read from the streams at once.

Unit events are read whole (a unit billing since before the period began still
bills inside it); the other streams from the period's start, job events a day
earlier (a job that ended in the period may have started before it). A stream
that cannot be read leaves its section empty and says so in the report's notes,
rather than failing the whole report.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

from nats.js import JetStreamContext

from contracts import subjects
from contracts.commands import Verdict
from contracts.events import AuditRecord, UnitEvent
from contracts.jobs import JobEvent
from contracts.streams import FLEET_AUDIT, FLEET_CMDS, FLEET_EVENTS, FLEET_JOBEVENTS, FLEET_ROLLUP
from contracts.telemetry import PoolMinute
from services.gateway.history.build import History
from services.kit.history import HistoryError, read_since

T = TypeVar("T")
DAY_S = 86_400.0


async def _read(
    js: JetStreamContext,
    stream: str,
    subject: str,
    since: float,
    kind: type[T],
    history: History,
) -> list[T]:
    try:
        got, bad = await read_since(js, stream, subject, since, kind)
    except HistoryError as exc:
        history.notes.append(str(exc))
        return []
    history.read[stream] = history.read.get(stream, 0) + len(got)
    if bad:
        history.notes.append(f"{bad} message(s) on {subject} did not decode and were skipped")
    return got


async def read_history(js: JetStreamContext, since: float, pool: str | None = None) -> History:
    """Every message a report of the period from `since` needs."""
    h = History()
    rollup_subject = subjects.rollup(pool) if pool else subjects.ROLLUP_ALL
    (h.rollup, h.units, h.verdicts, h.audit, h.jobs) = await asyncio.gather(
        _read(js, FLEET_ROLLUP.name, rollup_subject, since, PoolMinute, h),
        _read(js, FLEET_EVENTS.name, subjects.UNIT_ALL, 0.0, UnitEvent, h),
        _read(js, FLEET_CMDS.name, "fleet.budget.*", since, Verdict, h),
        _read(js, FLEET_AUDIT.name, subjects.audit("provisioner"), since, AuditRecord, h),
        _read(js, FLEET_JOBEVENTS.name, subjects.JOB_EVENTS_ALL, since - DAY_S, JobEvent, h),
    )
    return h
