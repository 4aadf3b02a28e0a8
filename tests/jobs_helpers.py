"""Shared pieces of the job tests: a gateway with pools, submitting, and watching events."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from contracts import subjects
from contracts.api.replies import SubmitReply
from contracts.jobs import JobEvent
from services.gateway.service import Gateway, GatewaySettings
from services.kit.config import load_settings

_EVENT = msgspec.json.Decoder(JobEvent)


def gateway(tmp_path: Path, nats_url: str, pools: dict[str, Any], **jobs: Any) -> Gateway:
    """A gateway that routes to `pools`, with quick re-checks of held jobs."""
    settings = load_settings(
        GatewaySettings,
        env={},
        overrides={
            "store": {"dir": str(tmp_path)},
            "stop_deadline_s": 2.0,
            "pools": pools,
            "gateway": {"upstream_timeout_s": 1.0},
            "jobs": {"held_recheck_s": 0.3, "budget_cache_s": 0.2, **jobs},
        },
    )
    return Gateway(settings, nats_url=nats_url)


async def submit(nc: Client, **call: Any) -> SubmitReply:
    """`fleet.api.jobs.submit` with `call`; the typed answer (raises on an error answer)."""
    reply = await nc.request(subjects.api("jobs.submit"), msgspec.json.encode(call), timeout=10)
    body = msgspec.json.decode(reply.data)
    assert "error" not in body, body
    return msgspec.convert(body, SubmitReply)


class JobWatch:
    """Every JobEvent published while it runs, by job id, with a way to wait for a state."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.events: dict[str, list[JobEvent]] = defaultdict(list)
        self._changed = asyncio.Event()
        self._sub: Any = None

    async def start(self) -> JobWatch:
        # Read from the stream (not core NATS) so de-duplicated publishes count once.
        self._sub = await self.nc.jetstream().subscribe(
            subjects.JOB_EVENTS_ALL, cb=self._on, ordered_consumer=True
        )
        return self

    async def stop(self) -> None:
        await self._sub.unsubscribe()

    async def _on(self, msg: Msg) -> None:
        event = _EVENT.decode(msg.data)
        events = self.events[event.job]
        events.append(event)
        events.sort(key=lambda e: e.ts)  # as `fleet jobs get` shows them
        self._changed.set()

    def states(self, job: str) -> list[str]:
        return [e.state for e in self.events.get(job, [])]

    def count(self, state: str) -> int:
        return sum(1 for evs in self.events.values() for e in evs if e.state == state)

    async def until(self, check: Callable[[], bool], within_s: float, what: str) -> None:
        """Wait until `check()` holds, woken by each event; fail with `what` after `within_s`."""

        async def loop() -> None:
            while not check():
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(loop(), within_s)
        except TimeoutError:
            raise AssertionError(f"timed out after {within_s:g} s waiting for {what}") from None


__all__ = ["JobWatch", "gateway", "submit"]
