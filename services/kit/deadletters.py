"""Dead letters: a message that cannot be handled goes to `fleet.dead.<subject>`.

One place builds them so every delivery path (core subscription, JetStream
consumer) says the same thing about a bad message, counts it the same way,
and never raises while doing so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from nats.js import JetStreamContext

from contracts import subjects
from contracts.events import DeadLetter
from services.kit.messages import encode
from services.kit.metrics import ServiceMetrics

log = logging.getLogger("fleet.service")

MAX_PREVIEW = 256
"""Bytes of a bad payload kept in its dead letter: enough to see what it was."""


class DeadLetters:
    """Publishes a service's dead letters to the FLEET_DEAD stream."""

    def __init__(
        self, service: str, metrics: ServiceMetrics, js: Callable[[], JetStreamContext]
    ) -> None:
        self.service = service
        self.metrics = metrics
        self._js = js

    async def send(self, subject: str, data: bytes, reason: str, kind: str) -> None:
        """Send `data` to fleet.dead.<subject> with the reason; count it; never raise."""
        self.metrics.dead(kind)
        letter = DeadLetter(
            subject=subject,
            reason=reason[:4000],
            service=self.service,
            size=len(data),
            preview=data[:MAX_PREVIEW].decode("utf-8", "replace"),
        )
        log.warning("dead-lettered", extra={"subject": subject, "reason": reason[:300]})
        try:
            await self._js().publish(subjects.dead(subject), encode(letter), timeout=5)
        except Exception:
            log.exception("could not publish dead letter", extra={"subject": subject})
