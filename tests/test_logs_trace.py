"""A JSON log line written while a service handles a traced message carries that
message's trace id, so an operator goes from a log line to the whole trace (and back)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from services.kit import Delivery, Service
from services.kit.config import KitSettings, load_settings
from services.kit.logs import JsonFormatter

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
log = logging.getLogger("fleet.test.lookup")


class Lookup(Service):
    """Answers `lookup.unit` and logs what it does, as any handler would."""

    name = "lookup"

    async def setup(self) -> None:
        await self.endpoint("unit", "lookup.unit", dict, self.on_unit)

    async def on_unit(self, req: dict[str, Any], d: Delivery) -> dict[str, str]:
        log.info("looking up a unit", extra={"unit": req.get("unit")})
        return {"state": "ready"}


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter("lookup", secrets=[]))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield out
    finally:
        log.removeHandler(handler)


async def test_a_handler_log_line_carries_the_requests_trace_id(
    nats_url: str, nc: Client, tmp_path: Path, json_lines: io.StringIO
) -> None:
    settings = load_settings(KitSettings, env={}, overrides={"store": {"dir": str(tmp_path)}})
    svc = Lookup(settings, nats_url=nats_url)
    await svc.start()
    try:
        reply = await nc.request(
            "lookup.unit", b'{"unit": "u1"}', timeout=5, headers={"traceparent": TRACEPARENT}
        )
        assert json.loads(reply.data) == {"state": "ready"}
        await nc.request("lookup.unit", b'{"unit": "u2"}', timeout=5)  # no trace context
    finally:
        await svc.stop()
    traced, untraced = (json.loads(line) for line in json_lines.getvalue().splitlines())
    assert traced["msg"] == "looking up a unit" and traced["unit"] == "u1"
    assert traced["trace_id"] == TRACE_ID
    assert len(traced["span_id"]) == 16 and int(traced["span_id"], 16) != 0
    assert untraced["unit"] == "u2"
    # A request without a traceparent starts a trace of its own (or none, untraced).
    assert untraced.get("trace_id") != TRACE_ID
