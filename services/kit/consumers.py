"""Durable JetStream pull consumers: ack on success, nak with a delay on Retryable or
an error, dead-letter and term on Permanent, undecodable, or the last allowed
delivery; on stop, finish what is in hand until a deadline and nak the rest."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry.trace import Tracer

from contracts.base import UNDECODABLE
from contracts.streams import stream_for
from services.kit.binding import pull
from services.kit.deadletters import DeadLetters
from services.kit.errors import Permanent, Retryable
from services.kit.messages import (
    Delivery,
    Handler,
    decoder,
    label_of,
    reason_class,
    retry_delay,
    settle,
)
from services.kit.metrics import ServiceMetrics
from services.kit.tracing import extract

log = logging.getLogger("fleet.service")


@dataclass
class _Consumer:
    subject: str
    durable: str
    task: asyncio.Task[None] | None = None
    current: Msg | None = None
    pending: list[Msg] = field(default_factory=list)
    idle: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Route:
    dec: msgspec.json.Decoder[Any]
    label: str
    handler: Handler[Any]
    max_deliver: int


class Consumers:
    """The service's pull consumers and their fetch loops."""

    def __init__(
        self,
        service: str,
        js: Callable[[], JetStreamContext],
        metrics: ServiceMetrics,
        tracer: Tracer,
        dead: DeadLetters,
        stopping: asyncio.Event,
        spawn: Callable[[Awaitable[Any], str], asyncio.Task[Any]],
    ) -> None:
        self.service = service
        self._js = js
        self.metrics = metrics
        self.tracer = tracer
        self.dead = dead
        self.stopping = stopping
        self._spawn = spawn
        self._consumers: list[_Consumer] = []

    async def consume(
        self,
        subject: str,
        kind: Any,
        handler: Handler[Any],
        *,
        durable: str,
        max_deliver: int = 10,
        ack_wait_s: float = 30.0,
        batch: int = 32,
        deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
    ) -> None:
        """Start a durable pull consumer of `subject`, decoding each message as `kind`."""
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait_s,
            max_deliver=max_deliver,
            deliver_policy=deliver_policy,
            filter_subject=subject,
        )
        stream = stream_for(subject)
        psub = await pull(self._js(), subject, durable, stream.name if stream else None, config)
        consumer = _Consumer(subject, durable)
        consumer.idle.set()
        self._consumers.append(consumer)
        route = _Route(decoder(kind), label_of(kind), handler, max_deliver)

        async def loop() -> None:
            while not self.stopping.is_set():
                # A long poll for a whole batch returns only when the batch is full or
                # the poll expires, which would hold a lone message for up to the poll's
                # length. So: long-poll for one message, then take whatever else is
                # already waiting without blocking.
                try:
                    msgs = await psub.fetch(1, timeout=1.0)
                except (NatsTimeout, TimeoutError):
                    continue
                except ConnectionClosedError:
                    return
                except Exception:
                    log.warning("fetch failed", exc_info=True, extra={"durable": durable})
                    await asyncio.sleep(0.5)
                    continue
                if batch > 1:
                    with contextlib.suppress(NatsTimeout, TimeoutError):
                        msgs += await psub.fetch(batch - 1, timeout=0.05)
                consumer.pending = list(msgs)
                while consumer.pending:
                    msg = consumer.pending.pop(0)
                    if self.stopping.is_set():
                        await settle(msg.nak())
                        continue
                    consumer.current = msg
                    consumer.idle.clear()
                    try:
                        await self._handle(msg, route)
                    finally:
                        consumer.current = None
                        consumer.idle.set()

        consumer.task = self._spawn(loop(), f"consume:{durable}")

    async def _handle(self, msg: Msg, route: _Route) -> None:
        meta = msg.metadata
        attempt = meta.num_delivered or 1
        try:
            obj = route.dec.decode(msg.data)
        except UNDECODABLE as exc:
            await self.dead.send(msg.subject, msg.data, str(exc), reason_class(exc))
            await settle(msg.term())
            return
        delivery = Delivery(
            msg.subject,
            msg.headers or {},
            attempt=attempt,
            stream_seq=meta.sequence.stream,
            data=msg.data,
        )
        label = route.label
        started = time.perf_counter()
        try:
            with self.tracer.start_as_current_span(
                f"process {label}", context=extract(msg.headers)
            ):
                await route.handler(obj, delivery)
        except asyncio.CancelledError:
            await settle(msg.nak())
            raise
        except Retryable as exc:
            self.metrics.message(label, "retried")
            await settle(msg.nak(delay=exc.after_s))
            return
        except Permanent as exc:
            await self.dead.send(msg.subject, msg.data, str(exc), "permanent")
            await settle(msg.term())
            return
        except Exception as exc:
            if attempt >= route.max_deliver:
                await self.dead.send(
                    msg.subject, msg.data, f"failed {attempt} times, last: {exc}", "exhausted"
                )
                await settle(msg.term())
            else:
                self.metrics.message(label, "error")
                log.exception("handler failed; will retry", extra={"subject": msg.subject})
                await settle(msg.nak(delay=retry_delay(attempt)))
            return
        finally:
            self.metrics.handler_seconds.labels(self.service, label).observe(
                time.perf_counter() - started
            )
        self.metrics.message(label, "ok")
        await settle(msg.ack())

    async def drain(self, deadline_s: float) -> None:
        """Let handlers in progress finish for up to `deadline_s`, stop fetching, and hand
        back (nak) what was fetched but not handled, so JetStream redelivers it."""
        if not self._consumers:
            return
        waits = [c.idle.wait() for c in self._consumers]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), deadline_s)
        except TimeoutError:
            log.warning("in-flight work did not finish in time; handing it back")
        for consumer in self._consumers:
            if consumer.task is not None:
                consumer.task.cancel()
        await asyncio.gather(
            *(c.task for c in self._consumers if c.task is not None), return_exceptions=True
        )
        for consumer in self._consumers:
            for msg in consumer.pending:
                await settle(msg.nak())
            consumer.pending.clear()
