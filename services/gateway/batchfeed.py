"""A stream's messages on a subject from a point in time: those stored so far, read
before `follow` returns, then every new one as it is stored.

A batch run follows its units' and jobs' events this way, so a gateway that
takes a run over sees what happened while nobody drove it, and knows when it
has seen all of it (it must not release a unit it has not heard of yet). The
push consumer is ordered: JetStream restarts it from the last sequence it
delivered if a message goes missing, so nothing is skipped or delivered twice.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

log = logging.getLogger("fleet.gateway.batch")

Handle = Callable[[Msg], Awaitable[None]]
FETCH = 500
"""Messages per fetch while catching up."""
IDLE_S = 0.5
"""A fetch that waits this long for a message means there is none (yet)."""


def _start(since_ts: float) -> datetime:
    return datetime.fromtimestamp(since_ts, UTC)


async def read_since(
    js: JetStreamContext, stream: str, subject: str, since_ts: float, handle: Handle
) -> int:
    """Hand every message stored on `subject` since `since_ts` to `handle`, in stream
    order; the stream sequence of the last one (0: none)."""
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.BY_START_TIME,
        opt_start_time=_start(since_ts),
        filter_subject=subject,
        inactive_threshold=10.0,
        mem_storage=True,
    )
    psub = await js.pull_subscribe(subject, stream=stream, config=config)
    last = 0
    try:
        while True:
            try:
                msgs = await psub.fetch(FETCH, timeout=IDLE_S)
            except (NatsTimeout, TimeoutError):
                break
            for msg in msgs:
                await handle(msg)
                last = msg.metadata.sequence.stream
            if not msgs or msgs[-1].metadata.num_pending == 0:
                break
    finally:
        with contextlib.suppress(Exception):
            await psub.unsubscribe()
    return last


async def follow(
    js: JetStreamContext,
    stream: str,
    subject: str,
    since_ts: float,
    handle: Handle,
    *,
    catch_up: bool,
) -> Any:
    """Follow `subject` from `since_ts`: with `catch_up`, the stored messages are handled
    before this returns; the new ones as they come. The subscription, to unsubscribe."""
    config = ConsumerConfig(filter_subject=subject)
    last = await read_since(js, stream, subject, since_ts, handle) if catch_up else 0
    if last:
        config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
        config.opt_start_seq = last + 1
    else:
        config.deliver_policy = DeliverPolicy.BY_START_TIME
        config.opt_start_time = _start(since_ts)
    return await js.subscribe(
        subject, stream=stream, cb=handle, ordered_consumer=True, config=config
    )


__all__ = ["follow", "read_since"]
