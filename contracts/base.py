"""The base every wire message shares, and the constrained scalar types.

Constraints live in the types so that decoding rejects bad values and the JSON
Schema states them. Upper bounds are deliberately generous: they exist to reject
absurd input (1e308 in-flight requests), not to second-guess real fleets.
"""

from __future__ import annotations

import math
import time
from typing import Annotated

import msgspec
from msgspec import Meta

UNDECODABLE: tuple[type[Exception], ...] = (msgspec.DecodeError, UnicodeDecodeError)
"""What decoding untrusted bytes raises: msgspec's errors, and `UnicodeDecodeError` for a
string that is not UTF-8, which msgspec raises as it is. Catch this, not DecodeError alone."""

SCHEMA_VERSION = 1
"""Bumped only for a breaking change; additive changes keep the version."""

Token = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]
"""One NATS subject token: pool names, unit ids, actors, agent names."""

Id = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]
"""A message or command id; also used as the JetStream de-duplication id."""

Text = Annotated[str, Meta(max_length=4096)]
"""Free text such as reasons; bounded so a message stays small."""

Fraction = Annotated[float, Meta(ge=0.0, le=1.0)]
"""A ratio in 0..1, such as utilization."""

Count = Annotated[int, Meta(ge=0, le=1_000_000)]
"""A non-negative count of units, requests or sessions."""

Positive = Annotated[float, Meta(gt=0.0)]
"""A duration or interval that must pass: a setting of 0 or less would spin a loop."""

NonNegative = Annotated[float, Meta(ge=0.0)]
"""A duration that may be zero (no wait), never negative."""

Tries = Annotated[int, Meta(ge=1, le=1_000_000)]
"""How many times something is tried or counted before giving up: at least once."""

Amount = Annotated[float, Meta(ge=0.0, le=1e9)]
"""A non-negative finite quantity (requests, seconds, tokens)."""

Usd = Annotated[float, Meta(ge=0.0, le=1e7)]
"""A non-negative amount of US dollars (or dollars per hour)."""

Seconds = Annotated[float, Meta(ge=0.0, le=1e9)]
"""A non-negative duration in seconds."""


MAX_CLOCK_SKEW_S = 300.0
"""How far ahead of the receiver's clock a message's `ts` may be, in seconds.

A receiver refuses a message dated further ahead than this. Five minutes is far
above what NTP-synced hosts drift and far below what would let one message move
money to another day: one unit event dated three days ahead used to roll the
cost-guard's ledger to that day and erase today's spend. The past is not bounded
here: a message read back from a stream is old for a good reason; a receiver that
must bound it does so against its own records (the ledger ignores a unit's end
dated before the unit began billing).
"""


def clock_skew_problem(ts: float, now: float, max_skew_s: float = MAX_CLOCK_SKEW_S) -> str | None:
    """Why a message dated `ts` cannot be believed at `now`, or None when it can."""
    if not math.isfinite(ts):
        return f"ts {ts!r} is not a time; send unix seconds"
    if ts - now > max_skew_s:
        return (
            f"ts {ts:.3f} is {ts - now:.0f} s ahead of this clock (at most {max_skew_s:g} s "
            "allowed); check the sender's clock (NTP)"
        )
    return None


def now() -> float:
    """Unix time in seconds; the default for every message's `ts`."""
    return time.time()


class Message(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=False):
    """Fields every message carries: schema version `v` and unix time `ts`."""

    v: int = SCHEMA_VERSION
    ts: float = msgspec.field(default_factory=now)
