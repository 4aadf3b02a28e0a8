"""What the cost-guard does about a unit event it refused: raise the alarm, or, for an
unsigned end of a unit it still bills, first ask the provisioner (services/costguard/
trust.py holds the rules; this is their I/O).

The check waits `[budget] unsigned_end_check_s`, so that a true end (the watcher's
failure reports are not signed by the provisioner) has time to arrive signed from
the provisioner, then asks `fleet.api.units.list`. At most MAX_INVESTIGATIONS run at
once and one per unit, so a flood of forged ends costs a bounded number of requests;
every refused event is dead-lettered by the caller whatever happens here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec
from nats.aio.client import Client

from contracts import subjects
from contracts.api import UnitsQuery
from contracts.events import Alert, UnitEvent
from services.costguard.trust import forged_event_alert, investigation_alert, should_investigate
from services.kit.service import encode

log = logging.getLogger("fleet.costguard")

MAX_INVESTIGATIONS = 1000
"""Unsigned ends of billed units checked at once; a flood beyond it is only dead-lettered."""
ASK_TIMEOUT_S = 2.0


class Refusals:
    """Alerts on refused unit events, with the provisioner's word on unsigned ends."""

    def __init__(
        self,
        nc: Callable[[], Client],
        alert: Callable[[Alert], Awaitable[None]],
        billed: Callable[[], Mapping[str, object]],
        spawn: Callable[[Awaitable[Any], str], object],
        count: Callable[[str], None],
        check_after_s: Callable[[], float],
    ) -> None:
        self._nc = nc
        self._alert = alert
        self._billed = billed
        self._spawn = spawn
        self._count = count
        self._after_s = check_after_s
        self._open: set[str] = set()

    async def refused(self, event: UnitEvent, problem: str) -> None:
        """Alert at once, or start checking an unsigned end of a billed unit."""
        key = f"{event.pool}/{event.unit}"
        if not should_investigate(event, self._billed()):
            await self._alert(forged_event_alert(event, problem))
        elif key not in self._open and len(self._open) < MAX_INVESTIGATIONS:
            self._open.add(key)
            self._spawn(self._investigate(event, problem, key), f"investigate:{key}")

    async def _investigate(self, event: UnitEvent, problem: str, key: str) -> None:
        try:
            await asyncio.sleep(self._after_s())
            row: dict[str, Any] | None = None
            try:
                reply = await self._nc().request(
                    subjects.api("units.list"),
                    encode(UnitsQuery(pool=event.pool)),
                    timeout=ASK_TIMEOUT_S,
                )
                units = msgspec.json.decode(reply.data).get("units", [])
                row = next((u for u in units if u.get("unit") == event.unit), {})
            except Exception as exc:
                log.warning("could not ask the provisioner", extra={"why": str(exc)[:200]})
            alert = investigation_alert(event, problem, key in self._billed(), row)
            if alert is None:
                self._count("unsigned_ends_confirmed")
            else:
                self._count("unsigned_ends_refuted")
                await self._alert(alert)
        finally:
            self._open.discard(key)
