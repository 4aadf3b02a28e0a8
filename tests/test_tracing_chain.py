"""One trace end to end: an operator's A2A request to the brain, its fleet.api call to
the gateway, the cost-guard's verdict, the provisioner's units and the unit events the
scaler and the watcher consume all carry one trace id; and the watcher's metrics start
a trace the scaler, the cost-guard and the provisioner continue.

The spans are read from an in-memory exporter on the process's tracer provider; each
service's spans come from its own tracer (`fleetplane.<service>`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from contracts import subjects
from contracts.a2a import TaskState
from contracts.events import UnitEvent
from contracts.telemetry import PoolMetrics
from services.a2a.client import A2AClient
from services.kit.service import Service
from tests.fleet_helpers import fleet
from tests.provisioner_helpers import Watch, states

POOLS = {"h100": {"gpu_model": "H100", "providers": ["sim"], "max_usd_per_hour": 10, "min": 0}}


class _Switch(SpanProcessor):
    """Forwards ended spans to the test's exporter only while the test runs (a tracer
    provider's processors cannot be removed once added)."""

    def __init__(self, inner: SpanProcessor) -> None:
        self.inner = inner
        self.on = True

    def on_end(self, span: ReadableSpan) -> None:
        if self.on:
            self.inner.on_end(span)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    switch = _Switch(SimpleSpanProcessor(exporter))
    provider.add_span_processor(switch)
    try:
        yield exporter
    finally:
        switch.on = False
        exporter.clear()


def _fleet(nats_url: str, tmp_path: Path) -> list[Service[Any]]:
    return fleet(nats_url, tmp_path, POOLS, watcher_pools=True, brain=True)


def _services(finished: tuple[ReadableSpan, ...], trace_id: int) -> set[str]:
    """The services with a span in trace `trace_id` (their tracer is fleetplane.<name>)."""
    names = set()
    for span in finished:
        if span.context is not None and span.context.trace_id == trace_id:
            scope = span.instrumentation_scope.name if span.instrumentation_scope else ""
            names.add(scope.removeprefix("fleetplane."))
    return names


async def test_one_trace_runs_from_an_a2a_request_through_fleet_api_to_the_units(
    nats_url: str, nc: Client, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    fleet = _fleet(nats_url, tmp_path)
    units = await Watch(UnitEvent).start(nc, subjects.UNIT_ALL)
    metrics = await Watch(PoolMetrics).start(nc, "fleet.metrics.>")
    for svc in fleet:
        await svc.start()
    try:
        operator = trace.get_tracer("test.operator")
        with operator.start_as_current_span("operator asks") as root:
            client = A2AClient(nc, "fleet", tenant="ops", timeout_s=30)
            task = await client.send("provision 2 H100 for 2 hours")
        assert task.status.state == TaskState.COMPLETED, task.status
        await units.until(lambda ev: len(states(ev, "ready")) == 2, 30)
        trace_id = root.get_span_context().trace_id

        def seen() -> set[str]:
            return _services(spans.get_finished_spans(), trace_id)

        wanted = {"brain", "gateway", "costguard", "provisioner", "scaler", "watcher"}
        for _ in range(50):  # the unit events' consumers end their spans a moment later
            if wanted <= seen():
                break
            await _next_tick(metrics)
        assert wanted <= seen(), f"services in the trace: {sorted(seen())}"
    finally:
        for svc in reversed(fleet):
            await svc.stop()


async def test_the_watchers_metrics_start_a_trace_the_scaler_continues(
    nats_url: str, nc: Client, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    fleet = _fleet(nats_url, tmp_path)[:4]  # provisioner, cost-guard, watcher, scaler
    metrics = await Watch(PoolMetrics).start(nc, "fleet.metrics.>")
    for svc in fleet:
        await svc.start()
    try:
        chains: list[set[str]] = []
        for _ in range(50):
            await _next_tick(metrics)
            finished = spans.get_finished_spans()
            roots = {
                s.context.trace_id
                for s in finished
                if s.context is not None
                and s.name == "publish metrics"
                and s.instrumentation_scope is not None
                and s.instrumentation_scope.name == "fleetplane.watcher"
            }
            chains = [_services(finished, t) for t in roots]
            if any({"watcher", "scaler"} <= c for c in chains):
                break
        assert any({"watcher", "scaler"} <= c for c in chains), chains
    finally:
        for svc in reversed(fleet):
            await svc.stop()


async def _next_tick(metrics: Watch) -> None:
    """Wait for the watcher's next metrics message (a tick is 0.2 s here)."""
    await metrics.until(lambda ev, n=len(metrics.items): len(ev) > n, 5)
