"""A small real HTTP server (stdlib ThreadingHTTPServer on 127.0.0.1, free port) that
each provider fake builds on, with the fault injection every fake shares.

    with VastFake() as fake:
        fake.url, fake.api_key
        fake.fail_next(429, n=2)        # next two requests answer 429
        fake.fail_next("timeout")       # next request hangs past the client's timeout
        fake.fail_next("late")          # next request is carried out, then its answer hangs
        fake.fail_creates(True)         # creates fail the provider's way for "no capacity"
        fake.create_faults.append(Reply(422, {...}))  # the next create answers this
        fake.requests                   # (method, path, body) of every request seen
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from jsonschema import Draft202012Validator


def schema_errors(schema: dict[str, Any], instance: Any) -> list[str]:
    """Every way `instance` breaks `schema` (JSON Schema 2020-12), as `path: message`
    lines in a stable order; empty when it conforms. The fakes validate each request
    body with a schema written from the provider's published reference."""
    validator = Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.path)))
    return [f"{'.'.join(map(str, e.path)) or '$'}: {e.message}" for e in errors]


@dataclass
class Request:
    """One request as the fake saw it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    """Parsed JSON body, the raw text when it is not JSON, or None when empty."""


@dataclass
class Reply:
    """What a route answers: a status, a JSON-able body (or text), extra headers."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    text: str | None = None
    """Plain-text body instead of JSON."""


@dataclass
class _Fault:
    kind: int | str
    body: Any = None
    text: str | None = None
    retry_after: str | None = None


class FakeProvider:
    """Base of the provider fakes: lifecycle, auth check, faults, request log.

    Subclasses set `api_key`, implement `check_auth(req)` (None when allowed,
    else a Reply), `route(req)`, and may override `capacity_reply(req)` and
    `is_create(req)` for `fail_creates`.
    """

    provider = ""
    """Provider name the fake stands in for (`vastai`, `lambda`, ...)."""
    api_key = "test-key-0123456789"
    hang_s = 5.0
    """How long a "timeout" fault holds the response; longer than the tests' client timeout."""

    def __init__(self, api_key: str | None = None) -> None:
        if api_key is not None:
            self.api_key = api_key
        self.lock = threading.RLock()
        self.requests: list[Request] = []
        self._faults: list[_Fault] = []
        self._fail_creates = False
        self._late_creates = 0
        self.create_faults: list[Reply] = []
        """Replies for the next creates, in order (other requests are answered normally)."""
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ---------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL of the fake (the provider's API root)."""
        if self._server is None:
            raise RuntimeError("fake is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{self.root}"

    root = ""
    """Path prefix of the API on the fake, appended to `url` (e.g. `/v1`)."""

    def start(self) -> FakeProvider:
        """Listen on a free port in a background thread."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                fake._dispatch(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and release the port; hanging responses are abandoned."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """`FLEET_<NAME>_URL` / `FLEET_<NAME>_KEY` pointing at this fake."""
        name = self.provider.upper()
        out = {f"FLEET_{name}_URL": self.url}
        if self.api_key:
            out[f"FLEET_{name}_KEY"] = self.api_key
        return out

    # ---- fault injection ---------------------------------------------------------
    def fail_next(
        self,
        kind: int | str,
        n: int = 1,
        body: Any = None,
        text: str | None = None,
        retry_after: str | float | None = None,
    ) -> None:
        """Answer the next `n` requests with HTTP `kind` (e.g. 429, 503, 410) or hang
        ("timeout"). `body`/`text` override the default error body; `retry_after`
        sets the Retry-After header."""
        with self.lock:
            for _ in range(n):
                self._faults.append(
                    _Fault(kind, body, text, None if retry_after is None else str(retry_after))
                )

    def fail_creates(self, on: bool = True) -> None:
        """Make every create fail as the provider does when the offer or capacity is gone."""
        with self.lock:
            self._fail_creates = on

    def lose_create_answers(self, n: int = 1) -> None:
        """The next `n` creates are carried out, then their answers hang past the client's
        timeout: what a dropped connection after a provider billed looks like."""
        with self.lock:
            self._late_creates += n

    def clear_faults(self) -> None:
        """Drop pending faults."""
        with self.lock:
            self._faults.clear()
            self._fail_creates = False

    # ---- for subclasses ----------------------------------------------------------
    def check_auth(self, req: Request) -> Reply | None:
        """None when the request carries valid credentials, else the refusal."""
        return None

    def route(self, req: Request) -> Reply:
        """The provider's answer to an authorised request."""
        return Reply(404, {"error": "not found"})

    def is_create(self, req: Request) -> bool:
        """Whether `req` starts units (for `fail_creates`)."""
        return False

    def settle(self) -> None:
        """Bring the provider's listings up to date (for providers whose list lags)."""

    def capacity_reply(self, req: Request) -> Reply:
        """How the provider says there is no capacity."""
        return Reply(410, {"error": "no capacity"})

    def error_reply(self, status: int, req: Request) -> Reply:
        """The provider's usual body for an injected HTTP error."""
        return Reply(status, {"error": f"injected {status}"})

    # ---- plumbing ----------------------------------------------------------------
    def _dispatch(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        path = parts.path
        if self.root and path.startswith(self.root):
            path = path[len(self.root) :] or "/"
        req = Request(
            method=h.command,
            path=path,
            query={k: v[-1] for k, v in parse_qs(parts.query).items()},
            headers={k.lower(): v for k, v in h.headers.items()},
            body=body,
        )
        with self.lock:
            self.requests.append(req)
            fault = self._faults.pop(0) if self._faults else None
        late_create = False
        if fault is None and self._late_creates and self.is_create(req):
            with self.lock:
                self._late_creates -= 1
            late_create = True
        if late_create or (fault is not None and fault.kind == "late"):
            with self.lock:
                self.route(req)
            self._stopping.wait(self.hang_s)
            reply = Reply(504, {"error": "late"})
        elif fault is not None and fault.kind == "timeout":
            self._stopping.wait(self.hang_s)
            reply = Reply(504, {"error": "late"})
        elif fault is not None:
            status = int(fault.kind)
            if fault.text is not None:
                reply = Reply(status, text=fault.text)
            elif fault.body is not None:
                reply = Reply(status, fault.body)
            else:
                reply = self.error_reply(status, req)
            if fault.retry_after is not None:
                reply.headers["Retry-After"] = fault.retry_after
        else:
            denied = self.check_auth(req)
            if denied is not None:
                reply = denied
            elif self.create_faults and self.is_create(req):
                with self.lock:
                    reply = self.create_faults.pop(0)
            elif self._fail_creates and self.is_create(req):
                reply = self.capacity_reply(req)
            else:
                with self.lock:
                    reply = self.route(req)
        self._send(h, reply)

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, reply: Reply) -> None:
        if reply.text is not None:
            payload, ctype = reply.text.encode(), "text/plain; charset=utf-8"
        elif reply.body is None:
            payload, ctype = b"", "application/json"
        else:
            payload, ctype = json.dumps(reply.body).encode(), "application/json"
        try:
            h.send_response(reply.status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(payload)))
            for k, v in reply.headers.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout fault); nothing to answer

    def bearer_ok(self, req: Request) -> bool:
        """True when `Authorization: Bearer <api_key>` is present."""
        return req.headers.get("authorization") == f"Bearer {self.api_key}"
