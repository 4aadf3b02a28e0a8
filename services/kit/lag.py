"""JetStream consumer lag per durable, as Prometheus gauges.

A durable that falls behind (a slow or stuck handler, a service down while its
consumer stays) shows nowhere in the service's own counters: they count what
it handled, not what waits. The server knows, per consumer: `num_pending`
(stored messages not yet delivered) and `num_ack_pending` (delivered, not yet
acked). The service that owns a durable reads them on a timer; durables are
named `<service>-<what>`, so each service reports its own and nobody else's.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry, Gauge

from contracts.streams import ALL_STREAMS

if TYPE_CHECKING:
    from services.kit.service import Service

log = logging.getLogger("fleet.lag")

LAG_INTERVAL_S = 5.0
"""Seconds between reads: a third of a typical 15 s scrape, and one small request per
stream each time."""


class ConsumerLag:
    """The lag gauges of one service's durables, refreshed by `sample()`."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.service = service
        self.prefix = f"{service}-"
        self.pending = Gauge(
            "fleet_consumer_pending_messages",
            "Messages in the stream the durable has not been given yet (its backlog).",
            ["service", "stream", "durable"],
            registry=registry,
        )
        self.ack_pending = Gauge(
            "fleet_consumer_ack_pending_messages",
            "Messages given to the durable and not acked yet (in flight or stuck).",
            ["service", "stream", "durable"],
            registry=registry,
        )
        self.redelivered = Gauge(
            "fleet_consumer_redelivered_messages",
            "Messages the durable got more than once and has not acked yet.",
            ["service", "stream", "durable"],
            registry=registry,
        )

    async def sample(self, js: JetStreamContext) -> dict[str, int]:
        """Read every stream's consumers; set the gauges of ours. Returns pending by durable."""
        seen: dict[str, int] = {}
        for spec in ALL_STREAMS:
            try:
                infos = await js.consumers_info(spec.name)
            except Exception as exc:  # a stream not created yet, a slow server: try next time
                log.debug("consumer info failed", extra={"stream": spec.name, "error": str(exc)})
                continue
            for info in infos:
                name = info.name or ""
                if not name.startswith(self.prefix):
                    continue
                labels = (self.service, spec.name, name)
                self.pending.labels(*labels).set(info.num_pending or 0)
                self.ack_pending.labels(*labels).set(info.num_ack_pending or 0)
                self.redelivered.labels(*labels).set(info.num_redelivered or 0)
                seen[name] = info.num_pending or 0
        return seen


def track_lag(service: Service[Any], interval_s: float = LAG_INTERVAL_S) -> ConsumerLag:
    """Export the lag of `service`'s durables, read every `interval_s` until it stops.

    Call from `setup()`, after the service's `consume()` calls.
    """
    lag = ConsumerLag(service.metrics.registry, service.name)

    async def tick() -> None:
        await lag.sample(service.js)

    service.every(interval_s, tick, "consumer-lag")
    return lag
