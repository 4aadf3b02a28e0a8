"""The per-tenant request rate limit, held across every runner process of an agent.

Each tenant has one counter per minute window in the `fleet_rates` KV bucket
(key `<agent>.<tenant>.<window>`). A runner takes a grant of `chunk` requests
from it with compare-and-set (a concurrent runner makes the update fail, and it
reads again) and spends the grant locally, so a tenant never gets more than the
limit in a window across the cluster, at one KV round trip per `chunk`
requests. A runner may end a window with some of its grant unspent; that only
ever admits fewer, never more. Windows are fixed minutes: a burst straddling a
boundary may see up to twice the limit within 60 s, as with any fixed window.
"""

from __future__ import annotations

import re

from nats.js.client import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from contracts.a2a import RATE_LIMITED
from contracts.buckets import RATES
from services.a2a import Refused
from services.kit.buckets import ensure_bucket

WINDOW_S = 60.0
CAS_TRIES = 20


def grant(count: int, limit: int, chunk: int) -> int:
    """Requests a runner may take from a window that has given out `count`; pure."""
    return max(0, min(chunk, limit - count))


def window_of(now: float) -> int:
    return int(now // WINDOW_S)


def _token(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", value)[:100]


class ClusterRate:
    """One agent's per-tenant limit; see the module docstring."""

    def __init__(self, kv: KeyValue, agent: str, limit: int, chunk: int) -> None:
        self.kv = kv
        self.agent = _token(agent)
        self.limit = limit
        self.chunk = max(1, chunk)
        self.left: dict[tuple[str, int], int] = {}
        """(tenant, window) -> requests of this runner's grant not yet spent."""

    @classmethod
    async def open(
        cls, js: JetStreamContext, agent: str, limit: int, chunk: int, replicas: int = 1
    ) -> ClusterRate:
        return cls(await ensure_bucket(js, RATES, replicas=replicas), agent, limit, chunk)

    async def take(self, tenant: str, now: float) -> None:
        """Count one request of `tenant`; Refused (RATE_LIMITED) over the cluster's limit."""
        window = window_of(now)
        key = (tenant, window)
        if self.left.get(key, 0) > 0:
            self.left[key] -= 1
            return
        self.left = {k: v for k, v in self.left.items() if k[1] == window}
        got = await self._reserve(tenant, window)
        if got <= 0:
            retry = (window + 1) * WINDOW_S - now
            raise Refused(
                RATE_LIMITED,
                f"tenant {tenant!r} sent more than {self.limit} requests this minute (across "
                f"every runner); retry in {retry:.0f} s",
                {"tenant": tenant, "limitPerMin": self.limit, "retryAfterS": round(retry, 1)},
            )
        self.left[key] = got - 1

    async def _reserve(self, tenant: str, window: int) -> int:
        name = f"{self.agent}.{_token(tenant)}.{window}"
        for _ in range(CAS_TRIES):
            try:
                entry = await self.kv.get(name)
                count, revision = int(entry.value or b"0"), entry.revision
            except (KeyNotFoundError, NotFoundError):
                count, revision = 0, None
            n = grant(count, self.limit, self.chunk)
            if n == 0:
                return 0
            data = str(count + n).encode()
            try:
                if revision is None:
                    await self.kv.create(name, data)
                else:
                    await self.kv.update(name, data, last=revision)
            except Exception as exc:
                if isinstance(exc, KeyWrongLastSequenceError) or "wrong last sequence" in str(exc):
                    continue
                raise
            return n
        return 0


__all__ = ["ClusterRate", "grant"]
