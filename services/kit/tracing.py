"""W3C trace context in NATS headers, with opentelemetry-sdk.

Spans are always created and their context always propagated; where they are
exported is a setting (none by default, console, or OTLP when its exporter
package is installed).
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()
_configured = False


def setup_tracing(service: str, exporter: str = "none", sample_ratio: float = 1.0) -> None:
    """Install a tracer provider for this process once."""
    global _configured
    if _configured:
        return
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"fleetplane-{service}"}),
        sampler=TraceIdRatioBased(sample_ratio),
    )
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter,
            )
        except ImportError as exc:
            raise RuntimeError(
                "tracing.exporter=otlp needs `pip install opentelemetry-exporter-otlp-proto-http`"
            ) from exc
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _configured = True


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(f"fleetplane.{name}")


def inject(headers: dict[str, str] | None = None) -> dict[str, str]:
    """Headers carrying the current span's context (`traceparent`, `tracestate`)."""
    out = dict(headers or {})
    _PROPAGATOR.inject(out)
    return out


def extract(headers: Mapping[str, str] | None) -> otel_context.Context:
    """The context a message's headers carry (empty context when there is none)."""
    return _PROPAGATOR.extract(dict(headers or {}))
