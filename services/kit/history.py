"""Reading a stream's recent past: every message on a subject since a time, decoded.

History reports and what-if replays read days of a stream at once. An ordered
consumer started at `since` (by the server's receive time) delivers them in
order without acks or durable state; messages that do not decode are counted,
not fatal, and the message's own `ts` is what callers filter on (a message
written late for an earlier time, as a replayed or imported history is, still
lands in its own hour).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from contracts.base import UNDECODABLE

T = TypeVar("T")

IDLE_S = 2.0
"""Seconds without a further message after which the stream is taken as read."""


class HistoryError(Exception):
    """A stream that cannot be read (missing, no permission); the message says which."""


def start_time(since_ts: float) -> str:
    """`since_ts` as the RFC 3339 text the server wants for a start time."""
    return datetime.fromtimestamp(since_ts, UTC).isoformat().replace("+00:00", "Z")


async def read_since(
    js: JetStreamContext,
    stream: str,
    subject: str,
    since_ts: float,
    kind: type[T],
    *,
    limit: int = 2_000_000,
) -> tuple[list[T], int]:
    """(messages on `subject` of `stream` received since `since_ts`, undecodable count).

    Stops at the stream's end as it was when reading started, after `limit`
    messages, or when nothing arrives for IDLE_S."""
    decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(kind)
    try:
        info = await js.stream_info(stream)
    except Exception as exc:
        raise HistoryError(f"stream {stream}: cannot read ({exc})") from None
    if info.state.messages == 0:
        return [], 0
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_TIME,
        opt_start_time=start_time(min(since_ts, time.time())),  # type: ignore[arg-type]
    )
    try:
        sub = await js.subscribe(subject, stream=stream, ordered_consumer=True, config=config)
    except Exception as exc:
        raise HistoryError(f"stream {stream}: cannot read {subject} ({exc})") from None
    out: list[T] = []
    bad = 0
    try:
        ci = await sub.consumer_info()
        delivered = ci.delivered.consumer_seq if ci.delivered is not None else 0
        any_match = (delivered or 0) + (ci.num_pending or 0) > 0
        while any_match and len(out) + bad < limit:
            try:
                msg = await sub.next_msg(timeout=IDLE_S)
            except (TimeoutError, NatsTimeout):
                break
            try:
                out.append(decoder.decode(msg.data))
            except UNDECODABLE:
                bad += 1
            if msg.metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return out, bad
