"""What a handler receives and answers with, and the one JSON encoder services share.

Kept apart from the Service so that the parts that deliver messages (core
subscriptions, JetStream consumers, request endpoints) and the services'
handlers agree on these types without importing one another.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

T = TypeVar("T")
log = logging.getLogger("fleet.service")

_ENCODER = msgspec.json.Encoder()
_DECODERS: dict[Any, msgspec.json.Decoder[Any]] = {}


@dataclass(slots=True)
class Delivery:
    """Where and how a message arrived."""

    subject: str
    headers: dict[str, str]
    attempt: int = 1
    """1 on first delivery; JetStream's delivery count on redeliveries."""
    stream_seq: int | None = None
    reply: str = ""
    data: bytes = b""
    """The payload exactly as it arrived: what a signature covers (services.kit.signing)."""


Handler = Callable[[T, Delivery], Awaitable[None]]
Responder = Callable[[T, Delivery], Awaitable[Any]]


class RequestError(Exception):
    """Raised by a request handler to answer with a clear error instead of a result."""

    def __init__(self, message: str, code: int = 400) -> None:
        super().__init__(message)
        self.code = code


def encode(obj: Any) -> bytes:
    """JSON bytes of a Struct, dict or list (the one encoder every service shares)."""
    return _ENCODER.encode(obj)


def decoder(kind: Any) -> msgspec.json.Decoder[Any]:
    """The JSON decoder of `kind`, built once per type (msgspec's advice: reuse decoders)."""
    dec = _DECODERS.get(kind)
    if dec is None:
        dec = _DECODERS[kind] = msgspec.json.Decoder(kind)
    return dec


def label_of(kind: Any) -> str:
    """The kind's name in metrics and spans."""
    return getattr(kind, "__name__", "message")


def retry_delay(attempt: int, base_s: float = 0.5, cap_s: float = 30.0) -> float:
    """Exponential backoff for the n-th failed delivery, capped."""
    return float(min(cap_s, base_s * 2 ** max(0, attempt - 1)))


def reason_class(exc: Exception) -> str:
    """`invalid` for a payload of the wrong shape, `decode` for one that is not JSON."""
    return "invalid" if isinstance(exc, msgspec.ValidationError) else "decode"


async def settle(ack: Awaitable[None]) -> None:
    """Ack, nak or term a JetStream message; a failure (connection closing) is only logged."""
    try:
        await ack
    except Exception:
        log.debug("ack/nak failed (connection closing?)", exc_info=True)
