"""Prometheus gauges of the provisioner's own state, read when Prometheus scrapes.

An opened breaker or a crash loop is already an alert on `fleet.alert.*`, but
only for whoever tails the stream at that moment; as gauges they stay visible
for as long as the condition lasts, and Alertmanager can page on them.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.provisioner.breaker import Breaker
from services.provisioner.crashloop import CrashLoop

BREAKER_STATES = ("closed", "open", "half_open")


class ProvisionerGauges(Collector):
    """Breaker state per provider and crash-loop streak per pool."""

    def __init__(self, breakers: dict[str, Breaker], crashloop: CrashLoop) -> None:
        self.breakers = breakers
        self.crashloop = crashloop

    def collect(self) -> Iterator[GaugeMetricFamily]:
        states = GaugeMetricFamily(
            "fleet_provider_breaker_state",
            "1 for the provider's circuit breaker state (closed, open, half_open), 0 for the "
            "others; open: calls paused and failing over to the pool's next provider.",
            labels=["provider", "state"],
        )
        for provider, breaker in sorted(self.breakers.items()):
            for state in BREAKER_STATES:
                states.add_metric([provider, state], 1.0 if breaker.state == state else 0.0)
        yield states
        streak = GaugeMetricFamily(
            "fleet_pool_crash_loop_streak",
            "Units of the pool that failed in a row soon after creation; from 2 on, "
            "replacements wait with a growing backoff (a crash loop).",
            labels=["pool"],
        )
        for pool, n in sorted(self.crashloop.streak.items()):
            streak.add_metric([pool], float(n))
        yield streak
