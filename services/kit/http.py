"""A tiny HTTP endpoint for /metrics, /healthz and /readyz.

Three read-only paths do not justify a web framework; asyncio's streams serve
them with no extra dependency.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

StatusFn = Callable[[], tuple[bool, dict[str, object]]]


class HealthServer:
    """Serves /metrics from `registry`; /healthz and /readyz from the two callbacks."""

    def __init__(self, registry: CollectorRegistry, healthz: StatusFn, readyz: StatusFn) -> None:
        self.registry = registry
        self.healthz = healthz
        self.readyz = readyz
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._handle, host, port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = line.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) > 1 else "/"
            status, ctype, body = self._route(path)
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def _route(self, path: str) -> tuple[str, str, bytes]:
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self.registry)
        if path in ("/healthz", "/readyz"):
            ok, doc = (self.healthz if path == "/healthz" else self.readyz)()
            status = "200 OK" if ok else "503 Service Unavailable"
            return status, "application/json", json.dumps(doc).encode()
        return "404 Not Found", "text/plain", b"not found: try /metrics, /healthz or /readyz\n"
