"""Core NATS subscriptions of a service: typed handlers, and raw callbacks where a
service needs the message as it is (telemetry at high rate, the A2A binding).

Every subscription made here, or handed over with `add`, is unsubscribed first
when the service stops, before in-flight work is drained, so nothing new
arrives while it finishes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from opentelemetry.trace import Tracer

from contracts.base import UNDECODABLE
from services.kit.deadletters import DeadLetters
from services.kit.errors import Permanent
from services.kit.messages import Delivery, Handler, decoder, label_of, reason_class
from services.kit.metrics import ServiceMetrics
from services.kit.tracing import extract

log = logging.getLogger("fleet.service")

PENDING_MSGS = 1_000_000
PENDING_BYTES = 512 * 1024 * 1024
"""A typed subscription's client-side buffer: bursts wait here instead of being dropped
as a slow consumer."""


class Subscriptions:
    """The service's core subscriptions."""

    def __init__(
        self,
        nc: Callable[[], Client],
        metrics: ServiceMetrics,
        tracer: Tracer,
        dead: DeadLetters,
    ) -> None:
        self._nc = nc
        self.metrics = metrics
        self.tracer = tracer
        self.dead = dead
        self._subs: list[Subscription] = []

    def add(self, sub: Subscription) -> Subscription:
        """Have the service unsubscribe `sub` when it stops (for subscriptions made elsewhere)."""
        self._subs.append(sub)
        return sub

    def discard(self, sub: Subscription) -> None:
        """Forget `sub` (its owner unsubscribed it already)."""
        if sub in self._subs:
            self._subs.remove(sub)

    async def listen(
        self,
        subject: str,
        cb: Callable[[Msg], Awaitable[None]],
        *,
        queue: str = "",
        buffered: bool = False,
    ) -> Subscription:
        """Call `cb` with each raw message on `subject`; unsubscribed when the service stops.
        `buffered` gives it the large client-side buffer of a typed subscription."""
        if not buffered:
            return self.add(await self._nc().subscribe(subject, queue=queue, cb=cb))
        return self.add(
            await self._nc().subscribe(
                subject,
                queue=queue,
                cb=cb,
                pending_msgs_limit=PENDING_MSGS,
                pending_bytes_limit=PENDING_BYTES,
            )
        )

    async def typed(
        self,
        subject: str,
        kind: Any,
        handler: Handler[Any],
        *,
        queue: str = "",
        traced: bool = True,
    ) -> Subscription:
        """Handle each message on `subject` decoded as `kind`; bad ones are dead-lettered."""
        dec = decoder(kind)
        label = label_of(kind)

        async def on_msg(msg: Msg) -> None:
            try:
                obj = dec.decode(msg.data)
            except UNDECODABLE as exc:
                await self.dead.send(msg.subject, msg.data, str(exc), reason_class(exc))
                return
            delivery = Delivery(
                msg.subject, msg.headers or {}, reply=msg.reply or "", data=msg.data
            )
            try:
                if traced:
                    with self.tracer.start_as_current_span(
                        f"process {label}", context=extract(msg.headers)
                    ):
                        await handler(obj, delivery)
                else:
                    await handler(obj, delivery)
                self.metrics.message(label, "ok")
            except Permanent as exc:
                await self.dead.send(msg.subject, msg.data, str(exc), "permanent")
            except Exception:
                self.metrics.message(label, "error")
                log.exception("handler failed", extra={"subject": msg.subject})

        return await self.listen(subject, on_msg, queue=queue, buffered=True)

    async def close(self) -> None:
        """Unsubscribe everything; a failure (connection gone) is only logged."""
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception:
                log.debug("unsubscribe failed", exc_info=True)
