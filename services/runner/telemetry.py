"""What a runner reports: Prometheus metrics and the per-second UnitTelemetry heartbeat."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from contracts.telemetry import UnitTelemetry

LATENCY_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.1, 1.25, 1.5, 2, 3, 5, 10, 30, 60)


class RunnerMetrics:
    """Prometheus series of one runner process (labelled by agent)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.sessions = Gauge(
            "fleet_runner_sessions_inflight", "Tasks executing now", ["agent"], registry=registry
        )
        self.queued = Gauge(
            "fleet_runner_queue_depth", "Requests waiting for a slot", ["agent"], registry=registry
        )
        self.capacity = Gauge(
            "fleet_runner_capacity",
            "Tasks this runner executes at once",
            ["agent"],
            registry=registry,
        )
        self.latency = Histogram(
            "fleet_runner_request_seconds",
            "Time from a task's start to its end, by final state",
            ["agent", "state"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.tokens = Counter(
            "fleet_runner_tokens", "Model tokens", ["agent", "model", "kind"], registry=registry
        )
        self.errors = Counter(
            "fleet_runner_errors", "Errors by kind", ["agent", "kind"], registry=registry
        )
        self.tool_calls = Counter(
            "fleet_runner_tool_calls",
            "Fleet tool calls of hosted agents' models, by outcome (ok, error, refused)",
            ["agent", "tool", "outcome"],
            registry=registry,
        )


@dataclass
class Tally:
    """Counts between two heartbeats of one agent on this runner."""

    tokens: int = 0
    completed: int = 0
    last_active: float = 0.0

    def take(self) -> tuple[int, int]:
        """(tokens, completed) since the previous call; resets both."""
        out = (self.tokens, self.completed)
        self.tokens = self.completed = 0
        return out


def heartbeat(
    *,
    pool: str,
    unit: str,
    provider: str,
    inflight: int,
    capacity: int,
    queued: int,
    tokens: int,
    completed: int,
    idle_s: float,
    healthy: bool,
) -> UnitTelemetry:
    """The UnitTelemetry of one agent pool on this runner."""
    return UnitTelemetry(
        pool=pool,
        unit=unit,
        provider=provider,
        inflight=float(inflight),
        capacity=float(capacity),
        queue_depth=float(queued),
        utilization=min(1.0, inflight / capacity) if capacity else 0.0,
        healthy=healthy,
        idle_s=max(0.0, idle_s),
        tokens=float(tokens),
        completed=float(completed),
    )
