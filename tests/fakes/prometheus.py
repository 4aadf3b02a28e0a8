"""A fake Prometheus HTTP API: `GET /api/v1/query` answering set values, as Prometheus does.

    with PrometheusFake() as prom:
        prom.set("sum(inflight)", ["12.5", "NaN", "+Inf"])   # a vector, values as strings
        prom.fail_next(503)
        prom.url, prom.queries

Values are strings in the JSON, like the real API (`"value": [1712.3, "12.5"]`).
An unknown query answers an empty vector; a query set to an error answers
`{"status": "error", "errorType": "bad_data", "error": ...}` with HTTP 400.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class PrometheusFake:
    """A real HTTP server on a free 127.0.0.1 port speaking Prometheus's query API."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: dict[str, list[str]] = {}
        self.errors: dict[str, str] = {}
        self.queries: list[str] = []
        self.answered = threading.Condition(self.lock)
        self._fail: list[int] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def set(self, query: str, values: list[str]) -> None:
        """Answer `query` with one vector sample per value (strings, e.g. "NaN")."""
        with self.lock:
            self.values[query] = list(values)
            self.errors.pop(query, None)

    def set_error(self, query: str, message: str) -> None:
        """Answer `query` with a Prometheus error (bad_data, HTTP 400)."""
        with self.lock:
            self.errors[query] = message

    def fail_next(self, status: int, n: int = 1) -> None:
        """The next `n` requests answer `status` with a non-JSON body."""
        with self.lock:
            self._fail.extend([status] * n)

    def wait_for_queries(self, n: int, timeout_s: float = 5.0) -> bool:
        """Block until `n` queries have been answered (for use from a thread)."""
        with self.answered:
            return self.answered.wait_for(lambda: len(self.queries) >= n, timeout_s)

    def _answer(self, path: str, query: str) -> tuple[int, bytes]:
        with self.lock:
            self.queries.append(query)
            self.answered.notify_all()
            if self._fail:
                return self._fail.pop(0), b"upstream unavailable"
            if path != "/api/v1/query":
                return 404, b"404 page not found"
            if query in self.errors:
                body: dict[str, Any] = {
                    "status": "error",
                    "errorType": "bad_data",
                    "error": self.errors[query],
                }
                return 400, json.dumps(body).encode()
            now = time.time()
            result = [
                {"metric": {"instance": f"i{i}"}, "value": [now, v]}
                for i, v in enumerate(self.values.get(query, []))
            ]
            body = {"status": "success", "data": {"resultType": "vector", "result": result}}
            return 200, json.dumps(body).encode()

    def __enter__(self) -> PrometheusFake:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query).get("query", [""])[0]
                status, body = fake._answer(parts.path, query)
                self.send_response(status)
                ctype = "application/json" if body.startswith(b"{") else "text/plain"
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
