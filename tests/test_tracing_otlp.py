"""`[tracing] exporter = "otlp"`: spans reach an OTLP collector over HTTP or gRPC with the
`fleetplane[otlp]` extra, and without it `fleet run` stops at start with one line that
names the extra."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from services.kit.errors import ConfigError
from services.kit.tracing import otlp_exporter
from tests.test_cli_up import env_for
from tools.natsserver import free_port

REPO = Path(__file__).resolve().parents[1]
EXPORTERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
)


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_without_the_extra_fleet_run_fails_at_start_with_one_line(
    protocol: str, tmp_path: Path
) -> None:
    # As if the extra were not installed: a None in sys.modules makes `import` fail.
    blocked = "; ".join(f"sys.modules[{m!r}] = None" for m in EXPORTERS)
    code = f"import sys; {blocked}; from tools.cli import main; sys.exit(main())"
    env = env_for(tmp_path) | {
        "FLEET_TRACING__EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "FLEET_STORE__DIR": str(tmp_path),
    }
    nobody = f"nats://127.0.0.1:{free_port()}"
    run = subprocess.run(
        [sys.executable, "-c", code, "run", "watcher", "--nats", nobody],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert run.stdout == ""
    [line] = run.stderr.splitlines()
    assert line.startswith("fleet run watcher: tracing.exporter = otlp")
    assert "pip install 'fleetplane[otlp]'" in line


def test_an_unknown_protocol_is_refused_with_the_choices() -> None:
    with pytest.raises(ConfigError, match="grpc or http/protobuf"):
        otlp_exporter({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})


class HttpCollector:
    """OTLP/HTTP receiver: POST /v1/traces with an ExportTraceServiceRequest (protobuf)."""

    def __init__(self) -> None:
        pb = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")
        self.requests: list[Any] = []
        self.got = threading.Event()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path == "/v1/traces":
                    request = pb.ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    collector.requests.append(request)
                    collector.got.set()
                reply = pb.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class GrpcCollector:
    """OTLP/gRPC receiver: the TraceService of the OTLP protocol definition."""

    def __init__(self) -> None:
        grpc = pytest.importorskip("grpc")
        svc = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc")
        pb = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")
        self.requests: list[Any] = []
        self.got = threading.Event()
        collector = self

        class Servicer(svc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                collector.requests.append(request)
                collector.got.set()
                return pb.ExportTraceServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        svc.add_TraceServiceServicer_to_server(Servicer(), self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.url = f"http://127.0.0.1:{port}"


@pytest.fixture(params=["http/protobuf", "grpc"])
def collector(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Any]]:
    pytest.importorskip(EXPORTERS[0] if request.param != "grpc" else EXPORTERS[1])
    fake = HttpCollector() if request.param != "grpc" else GrpcCollector()
    # The exporters read the standard variables themselves.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", fake.url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    try:
        yield request.param, fake
    finally:
        if isinstance(fake, HttpCollector):
            fake.server.shutdown()
        else:
            fake.server.stop(None)


def test_spans_reach_an_otlp_collector(collector: tuple[str, Any]) -> None:
    protocol, fake = collector
    exporter = otlp_exporter({"OTEL_EXPORTER_OTLP_PROTOCOL": protocol})
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("test").start_as_current_span("process ScaleProposal"):
        pass
    provider.shutdown()
    assert fake.got.wait(10), f"no export reached the {protocol} collector"
    names = [
        span.name
        for request in fake.requests
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]
    assert names == ["process ScaleProposal"]
