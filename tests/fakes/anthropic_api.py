"""A local fake of the Anthropic Messages API (`POST /v1/messages`), streaming included.

It plays a script: each request takes the next turn. A turn is a list of
content blocks (`text(...)`, `tool(...)`), or `overloaded()` / `rate_limited()`
to answer with an error status. `repeat_last=True` keeps playing the last turn
(a model that never stops calling tools).

    with FakeAnthropic([[text("Let me look."), tool("get_stats", {})],
                        [text("All good.")]]) as fake:
        client = anthropic.AsyncAnthropic(base_url=fake.url, api_key=fake.api_key)
        fake.requests      # JSON bodies received, in order
"""

from __future__ import annotations

import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Turn = list[dict[str, Any]] | dict[str, Any]
_ids = itertools.count(1)


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def tool(name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": f"toolu_{next(_ids):06d}", "name": name, "input": args}


def overloaded() -> dict[str, Any]:
    return {"status": 529, "type": "overloaded_error", "message": "Overloaded"}


def rate_limited() -> dict[str, Any]:
    return {"status": 429, "type": "rate_limit_error", "message": "Rate limited"}


def echo_headers(status: int = 400) -> dict[str, Any]:
    """An error whose message repeats the request's headers, API key included.

    Not the Messages API's documented behaviour (its errors never echo credentials):
    this is the misbehaving proxy or gateway in front of it that the secret filter
    must survive (services.kit.redact)."""
    return {"status": status, "type": "invalid_request_error", "message": "", "echo": True}


class FakeAnthropic:
    """The fake server; see the module docstring."""

    api_key = "sk-ant-test-0000"

    def __init__(self, script: list[Turn], *, repeat_last: bool = False) -> None:
        self.script = list(script)
        self.repeat_last = repeat_last
        self.requests: list[dict[str, Any]] = []
        self.errors_sent = 0
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeAnthropic:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_a: Any) -> None:
                pass

            def do_POST(self) -> None:
                fake._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def tool_results(self) -> list[dict[str, Any]]:
        """The tool_result blocks the model was sent, in order (what it saw of each call)."""
        out = []
        for body in self.requests:
            last = body["messages"][-1]
            if last["role"] == "user" and isinstance(last["content"], list):
                out += [b for b in last["content"] if b["type"] == "tool_result"]
        return out

    # -- protocol ------------------------------------------------------------------------
    def _next(self) -> Turn:
        with self.lock:
            if len(self.script) > 1 or (self.script and not self.repeat_last):
                return self.script.pop(0)
            if self.script:
                return self.script[0]
            return [text("(the script is over)")]

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        size = int(h.headers.get("content-length", "0"))
        body = json.loads(h.rfile.read(size) or b"{}")
        if h.path.split("?")[0] != "/v1/messages":
            self._json(
                h, 404, {"type": "error", "error": {"type": "not_found_error", "message": h.path}}
            )
            return
        bearer = (h.headers.get("authorization") or "").removeprefix("Bearer ").strip()
        if self.api_key not in (h.headers.get("x-api-key"), bearer):
            self._json(
                h,
                401,
                {
                    "type": "error",
                    "error": {"type": "authentication_error", "message": "invalid x-api-key"},
                },
            )
            return
        with self.lock:
            self.requests.append(body)
        turn = self._next()
        if isinstance(turn, dict):
            with self.lock:
                self.errors_sent += 1
            message = turn["message"]
            if turn.get("echo"):
                message = "bad request; headers were: " + json.dumps(dict(h.headers.items()))
            self._json(
                h,
                turn["status"],
                {"type": "error", "error": {"type": turn["type"], "message": message}},
            )
            return
        blocks = [
            dict(b, id=f"toolu_{next(_ids):06d}") if b["type"] == "tool_use" else b for b in turn
        ]
        stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
        usage = {"input_tokens": 100 + len(json.dumps(body)) // 40, "output_tokens": 20}
        message = {
            "id": f"msg_{next(_ids):06d}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "fake"),
            "content": blocks,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }
        if body.get("stream"):
            self._stream(h, message)
        else:
            self._json(h, 200, message)

    @staticmethod
    def _json(h: BaseHTTPRequestHandler, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        h.send_response(status)
        h.send_header("content-type", "application/json")
        h.send_header("content-length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    @staticmethod
    def _stream(h: BaseHTTPRequestHandler, message: dict[str, Any]) -> None:
        h.send_response(200)
        h.send_header("content-type", "text/event-stream")
        h.send_header("cache-control", "no-cache")
        h.send_header("connection", "close")
        h.end_headers()

        def send(event: str, data: dict[str, Any]) -> None:
            h.wfile.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
            h.wfile.flush()

        start = dict(
            message,
            content=[],
            stop_reason=None,
            usage={"input_tokens": message["usage"]["input_tokens"], "output_tokens": 1},
        )
        send("message_start", {"type": "message_start", "message": start})
        for i, block in enumerate(message["content"]):
            if block["type"] == "text":
                send(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": i,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
                words = block["text"].split(" ")
                for j, word in enumerate(words):
                    piece = word if j == 0 else " " + word
                    send(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": i,
                            "delta": {"type": "text_delta", "text": piece},
                        },
                    )
            else:
                send(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": i,
                        "content_block": {
                            "type": "tool_use",
                            "id": block["id"],
                            "name": block["name"],
                            "input": {},
                        },
                    },
                )
                raw = json.dumps(block["input"])
                half = len(raw) // 2
                for piece in (raw[:half], raw[half:]):
                    send(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": i,
                            "delta": {"type": "input_json_delta", "partial_json": piece},
                        },
                    )
            send("content_block_stop", {"type": "content_block_stop", "index": i})
        send(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": message["usage"]["output_tokens"]},
            },
        )
        send("message_stop", {"type": "message_stop"})
        h.close_connection = True
