"""Taking a pool's jobs from its three priority queues: high before normal before low.

A unit binds to its pool's durable consumer on each priority stream and asks
`take(n)` for up to n jobs. A priority found empty is not looked at again for
`QUIET_S` (a look at an empty queue costs a round trip and a short wait);
when every queue is quiet, each is long-polled in turn for `IDLE_POLL_S` with a
batch of one (a batch fetch that gets fewer than it asked for waits out its
whole poll), so an idle unit sees new work of any priority within about three
polls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from contracts import subjects
from contracts.jobs import PRIORITIES
from contracts.streams import JOBS_STREAMS
from services.kit.binding import pull
from services.kit.jobqueue import consumer_name

log = logging.getLogger("fleet.jobs")

LOOK_S = 0.01
"""How long a look at one priority's queue waits for a job, seconds."""
QUIET_S = 0.25
"""How long a priority found empty is skipped, seconds: bounds how long a new high-
priority job can wait behind a busy stream of normal ones."""
IDLE_POLL_S = 0.05
"""Long-poll per priority when every queue is empty, seconds."""


def delivery(msg: Msg) -> int:
    """Which delivery of its job `msg` is (1 for the first), from its ack subject:
    `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`, or the
    form with `<domain>.<account hash>.` after `$JS.ACK.`. nats-py's `metadata` parses
    all of it into dataclasses and a datetime, about 5 % of what a job cost a unit
    that needs only this number; a subject of another shape falls back to it."""
    tokens = (msg.reply or "").split(".")
    if tokens[:2] == ["$JS", "ACK"]:
        if len(tokens) == 9 and tokens[4].isdigit():
            return int(tokens[4])
        if len(tokens) >= 11 and tokens[6].isdigit():
            return int(tokens[6])
    return int(msg.metadata.num_delivered or 1)


class PriorityPull:
    """One unit's pull subscriptions on its pool's priority queues."""

    def __init__(self, nc: Client, pool: str, *, ack_wait_s: float) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.pool = pool
        self.ack_wait_s = ack_wait_s
        self.fetching = False
        """True while a fetch is outstanding: stopping then must let it end."""
        self._subs: list[Any] = []
        self._quiet_until: list[float] = []

    async def bind(self) -> None:
        """Bind to (creating) the pool's consumer on each priority stream."""
        for prio in PRIORITIES:
            subject = subjects.jobs(prio, self.pool)
            config = ConsumerConfig(
                durable_name=consumer_name(self.pool),
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self.ack_wait_s,
                max_deliver=-1,  # the job's own `attempts` decides, with the reasons
                filter_subject=subject,
                max_ack_pending=10_000,
            )
            durable, stream = consumer_name(self.pool), JOBS_STREAMS[prio].name
            self._subs.append(await pull(self.js, subject, durable, stream, config))
        self._quiet_until = [0.0] * len(self._subs)

    async def take(self, n: int, stopping: asyncio.Event) -> list[Msg]:
        """Up to `n` jobs of the highest priority that has any; [] after a quiet round."""
        now = time.monotonic()
        looked = False
        for i, sub in enumerate(self._subs):
            if now < self._quiet_until[i]:
                continue
            looked = True
            msgs = await self._fetch(sub, max(n, 1), LOOK_S)
            if msgs:
                return msgs
            self._quiet_until[i] = now + QUIET_S
        if looked:
            return []
        for sub in self._subs:
            if stopping.is_set():
                break
            msgs = await self._fetch(sub, 1, IDLE_POLL_S)
            if msgs:
                self._quiet_until = [0.0] * len(self._subs)
                return msgs
        return []

    async def unsubscribe(self) -> None:
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception:
                log.debug("unsubscribe failed", exc_info=True)

    async def _fetch(self, sub: Any, n: int, timeout_s: float) -> list[Msg]:
        self.fetching = True
        try:
            msgs: list[Msg] = await sub.fetch(n, timeout=timeout_s)
        except (NatsTimeout, TimeoutError):
            return []
        except Exception:
            if not self.nc.is_closed:
                log.warning("job fetch failed", exc_info=True, extra={"pool": self.pool})
                await asyncio.sleep(0.5)
            return []
        finally:
            self.fetching = False
        return msgs


__all__ = ["IDLE_POLL_S", "LOOK_S", "QUIET_S", "PriorityPull", "delivery"]
