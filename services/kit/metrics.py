"""Prometheus metrics every service keeps, in a registry of its own.

A registry per service lets several services live in one test process; the
same numbers are kept in `counts` so tests read what Prometheus would scrape.
The process collectors (`process_*`: CPU, memory, open files; `python_info`)
are on the same registry, so a leaking or spinning service shows on the
dashboard next to its own counters.
"""

from __future__ import annotations

from collections import Counter as _Tally

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)


class ServiceMetrics:
    """The metrics every service exports, plus room for its own."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.counts: _Tally[str] = _Tally()
        self.messages = Counter(
            "fleet_messages_total",
            "Messages handled, by subject kind and outcome (ok, retried, dead, error).",
            ["service", "kind", "outcome"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "fleet_dead_letters_total",
            "Messages dead-lettered, by reason class (decode, invalid, permanent, exhausted).",
            ["service", "reason"],
            registry=self.registry,
        )
        self.handler_seconds = Histogram(
            "fleet_handler_seconds",
            "Time spent in message handlers.",
            ["service", "kind"],
            buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
            registry=self.registry,
        )
        self.requests = Counter(
            "fleet_requests_total",
            "Requests answered, by endpoint and outcome (ok; rejected: did not decode; "
            "refused: the handler said no; failed: the handler raised, answered 500).",
            ["service", "endpoint", "outcome"],
            registry=self.registry,
        )
        self.up = Gauge(
            "fleet_service_ready",
            "1 when the service is ready, 0 otherwise.",
            ["service"],
            registry=self.registry,
        )

    def count(self, name: str, n: int = 1) -> None:
        """Bump a plain tally that tests and `$SRV.STATS` read."""
        self.counts[name] += n

    def message(self, kind: str, outcome: str) -> None:
        self.messages.labels(self.service, kind, outcome).inc()
        self.counts[f"{kind}.{outcome}"] += 1

    def request(self, endpoint: str, outcome: str) -> None:
        """Count one answered request; `requests.<outcome>` in the tally as before."""
        self.requests.labels(self.service, endpoint, outcome).inc()
        self.counts[f"requests.{outcome}"] += 1

    def dead(self, reason: str) -> None:
        self.dead_letters.labels(self.service, reason).inc()
        self.counts["dead"] += 1
        self.counts[f"dead.{reason}"] += 1
