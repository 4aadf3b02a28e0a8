"""A circuit breaker per provider. Pure: state in, state and transition out.

closed: calls go through; `failure_threshold` consecutive failures open it.
open: calls are refused until `cooldown_s` has passed, then one probe is let
through (half-open). half_open: the probe's success closes the breaker, its
failure opens it again for another cooldown. Only provider hiccups count as
failures (5xx, timeouts, 429s); "no capacity" and "not found" are answers.
"""

from __future__ import annotations

from typing import Literal

import msgspec

BreakerState = Literal["closed", "open", "half_open"]
Transition = Literal["opened", "closed", "half_opened"]


class BreakerPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """When a breaker opens and for how long."""

    failure_threshold: int = 5
    """Consecutive failed calls that open the breaker."""
    cooldown_s: float = 30.0
    """Seconds an open breaker refuses calls before letting one probe through."""


class Breaker(msgspec.Struct, frozen=True, kw_only=True):
    """One provider's breaker."""

    state: BreakerState = "closed"
    failures: int = 0
    """Consecutive failures while closed."""
    opened_ts: float = 0.0
    probing: bool = False
    """True while the single half-open probe is out."""


def allow(b: Breaker, now: float, policy: BreakerPolicy) -> tuple[Breaker, bool, Transition | None]:
    """May a call go out now? Moves open to half-open once the cooldown has passed."""
    if b.state == "closed":
        return b, True, None
    if b.state == "open":
        if now - b.opened_ts < policy.cooldown_s:
            return b, False, None
        return msgspec.structs.replace(b, state="half_open", probing=True), True, "half_opened"
    if b.probing:
        return b, False, None
    return msgspec.structs.replace(b, probing=True), True, None


def is_open(b: Breaker, now: float, policy: BreakerPolicy) -> bool:
    """True while calls would be refused (open and cooling down)."""
    return b.state == "open" and now - b.opened_ts < policy.cooldown_s


def on_success(b: Breaker) -> tuple[Breaker, Transition | None]:
    """A call succeeded: reset the count; a half-open breaker closes."""
    if b.state == "closed":
        return (b if b.failures == 0 else Breaker()), None
    return Breaker(), "closed"


def on_failure(b: Breaker, now: float, policy: BreakerPolicy) -> tuple[Breaker, Transition | None]:
    """A call failed: count it; open at the threshold, or again if the probe failed."""
    if b.state == "half_open":
        return Breaker(state="open", failures=b.failures + 1, opened_ts=now), "opened"
    if b.state == "open":
        return b, None
    failures = b.failures + 1
    if failures >= policy.failure_threshold:
        return Breaker(state="open", failures=failures, opened_ts=now), "opened"
    return msgspec.structs.replace(b, failures=failures), None
