"""Retrying provider calls: exponential backoff with full jitter, honouring Retry-After.

`backoff_s` is pure; `call_with_retry` takes its sleep and random source as
arguments so tests and `fleet replay` run it without waiting.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from services.provisioner.providers.base import Retryable

T = TypeVar("T")


def backoff_s(
    attempt: int,
    base_s: float = 0.5,
    max_s: float = 30.0,
    rand: float = 1.0,
    after_s: float | None = None,
) -> float:
    """Delay before retry number `attempt` (1-based), in seconds.

    Full jitter: a uniform pick in [0, min(max_s, base_s * 2**(attempt-1))], with
    `rand` in [0, 1) as the pick. A provider's Retry-After (`after_s`) is a floor:
    coming back earlier only earns another 429.
    """
    ceiling = min(max_s, base_s * float(2 ** max(attempt - 1, 0)))
    delay = ceiling * min(max(rand, 0.0), 1.0)
    if after_s is not None:
        delay = max(delay, min(after_s, max_s))
    return delay


async def call_with_retry(
    fn: Callable[[], Awaitable[T]],
    *,
    attempts: int = 5,
    base_s: float = 0.5,
    max_s: float = 30.0,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    rand: Callable[[], float] = random.random,
    on_retry: Callable[[int, Retryable, float], None] | None = None,
) -> T:
    """Await `fn()` until it succeeds, retrying Retryable errors up to `attempts` calls in all.

    Every other error propagates at once: capacity, quota, auth and not-found
    errors are answers, not hiccups. The last Retryable is re-raised when the
    attempts run out. `on_retry(attempt, error, delay_s)` is called before each wait.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    attempt = 0
    while True:
        attempt += 1
        try:
            return await fn()
        except Retryable as exc:
            if attempt >= attempts:
                raise
            delay = backoff_s(attempt, base_s, max_s, rand(), exc.after_s)
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            await sleep(delay)
