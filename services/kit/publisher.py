"""Publishing: to JetStream with an ack when a stream keeps the subject, else core NATS.

The contract (contracts.streams) decides which subjects are durable, so a
service publishes the same way whatever it sends; a retried JetStream publish
with the same `msg_id` lands once (the stream's duplicate window).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext

from contracts.streams import stream_for
from services.kit.messages import encode, retry_delay
from services.kit.tracing import inject

MAX_CACHED_SUBJECTS = 10_000
"""Subjects whose stream lookup is remembered; enough for every pool and unit of a fleet."""


class Publisher:
    """Publishes a service's messages, with trace context in the headers."""

    def __init__(self, nc: Callable[[], Client], js: Callable[[], JetStreamContext]) -> None:
        self._nc = nc
        self._js = js
        self._stream_of: dict[str, bool] = {}

    async def publish(
        self,
        subject: str,
        msg: Any,
        *,
        msg_id: str | None = None,
        headers: dict[str, str] | None = None,
        attempts: int = 5,
    ) -> None:
        """Publish `msg`; to JetStream with an ack (and de-dup id) if a stream keeps `subject`."""
        data = msg if isinstance(msg, bytes) else encode(msg)
        hdrs = inject(headers)
        in_stream = self._stream_of.get(subject)
        if in_stream is None:
            in_stream = stream_for(subject) is not None
            if len(self._stream_of) < MAX_CACHED_SUBJECTS:
                self._stream_of[subject] = in_stream
        if not in_stream:
            await self._nc().publish(subject, data, headers=hdrs)
            return
        if msg_id:
            hdrs["Nats-Msg-Id"] = msg_id
        for attempt in range(1, attempts + 1):
            try:
                await self._js().publish(subject, data, headers=hdrs, timeout=5)
                return
            except (NatsTimeout, NoRespondersError, TimeoutError):
                if attempt == attempts:
                    raise
                await asyncio.sleep(retry_delay(attempt, 0.2, 2.0))
