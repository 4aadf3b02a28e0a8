"""A stream's messages on a subject from a point in time: those stored so far, handled
before `follow` returns, then every new one as it is stored.

A batch run follows its units' and jobs' events this way, so a gateway that
takes a run over sees what happened while nobody drove it, and knows when it
has seen all of it (it must not release the units before it has heard of them).
The consumer is an unnamed ordered push consumer, the one kind a secured
gateway may create on streams that services' durables read: JetStream restarts
it from the last sequence it delivered if a message goes missing, so nothing is
skipped or delivered twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

Handle = Callable[[Msg], Awaitable[None]]
IDLE_S = 0.5
"""No message for this long after subscribing (or since the last one) means none is
stored: the server pushes the stored ones at once."""


async def follow(
    js: JetStreamContext,
    stream: str,
    subject: str,
    since_ts: float,
    handle: Handle,
    *,
    catch_up: bool,
) -> Any:
    """Follow `subject` from `since_ts`: with `catch_up`, the messages stored so far are
    handled before this returns; the new ones as they come. The subscription."""
    caught = asyncio.Event()
    last_at = time.monotonic()

    async def on(msg: Msg) -> None:
        nonlocal last_at
        await handle(msg)
        last_at = time.monotonic()
        if msg.metadata.num_pending == 0:
            caught.set()

    config = ConsumerConfig(
        filter_subject=subject,
        deliver_policy=DeliverPolicy.BY_START_TIME,
        opt_start_time=datetime.fromtimestamp(since_ts, UTC),
    )
    sub = await js.subscribe(subject, stream=stream, cb=on, ordered_consumer=True, config=config)
    while catch_up and not caught.is_set():
        try:
            await asyncio.wait_for(caught.wait(), IDLE_S)
        except TimeoutError:
            if time.monotonic() - last_at >= IDLE_S:
                break
    return sub


__all__ = ["follow"]
