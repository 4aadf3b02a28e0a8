"""W3C trace context in NATS headers, with opentelemetry-sdk.

Spans are always created and their context always propagated; where they are
exported is a setting (none by default, console, or OTLP over HTTP or gRPC
with the `fleetplane[otlp]` extra).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from services.kit.errors import ConfigError

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
        provider.add_span_processor(BatchSpanProcessor(otlp_exporter(os.environ)))
    trace.set_tracer_provider(provider)
    _configured = True


def otlp_exporter(env: Mapping[str, str]) -> SpanExporter:
    """The OTLP span exporter for the protocol the standard OTel variables ask for.

    `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` / `OTEL_EXPORTER_OTLP_PROTOCOL`: `grpc`, or
    `http/protobuf` (the default, as in the OTel spec); endpoint, headers and timeout come
    from the exporter's own OTEL_EXPORTER_OTLP_* variables. The exporters are the
    `fleetplane[otlp]` extra: without it, a ConfigError that names the extra.
    """
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol not in ("grpc", "http/protobuf"):
        raise ConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: fleetplane exports grpc or http/protobuf"
        )
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )

            exporter: SpanExporter = GrpcExporter()
            return exporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )

        exporter = HttpExporter()
        return exporter
    except ImportError:
        raise ConfigError(
            f"tracing.exporter = otlp ({protocol}) needs the otlp extra: "
            "pip install 'fleetplane[otlp]'"
        ) from None


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
