"""Per-tenant admission for A2A: a request rate limit and a concurrent-task quota.

Counts are per process: with N processes in a queue group a tenant may reach
N times the limits, which is the usual trade of a shared-nothing limiter.
"""

from __future__ import annotations

import re
from collections import defaultdict, deque
from dataclasses import dataclass

import msgspec

from contracts.a2a import QUOTA_EXCEEDED, RATE_LIMITED

_TENANT = re.compile(r"^[A-Za-z0-9_.@-]{1,128}$")


class A2ASettings(msgspec.Struct, kw_only=True):
    """How an agent serves A2A over NATS (the `[a2a]` section)."""

    rate_limit_per_min: int = 600
    """Requests per tenant per rolling minute, per process; generous for tools, finite for loops."""
    max_concurrent_tasks: int = 50
    """Tasks a tenant may have running at once, per process."""
    default_tenant: str = "public"
    """The tenant of a request without a `Fleet-Tenant` header."""
    require_tenant: bool = False
    """Refuse requests without a `Fleet-Tenant` header (secured deployments)."""
    blocking_timeout_s: float = 300.0
    """Longest a blocking SendMessage waits before answering with the task as it is."""
    max_page_size: int = 100
    """Most tasks one ListTasks page returns."""
    progress_write_s: float = 2.0
    """Seconds after it changes that a running task's progress (WORKING, artifact chunks)
    is stored, its latest state only. A task is stored before anyone learns its id: at
    submission for streaming and non-blocking calls; a blocking call's at its first
    progress write or its end (its caller learns the id with the result). Interrupted
    and final states are stored before anyone hears of them. Other processes' GetTask
    sees progress this late."""
    store: str = "sqlite"
    """`sqlite` (the service's store; one process) or `kv` (JetStream KV; any process)."""


class Refused(Exception):
    """A request refused for a tenant's limits; `code` is the JSON-RPC error code."""

    def __init__(self, code: int, message: str, data: dict[str, object]) -> None:
        super().__init__(message)
        self.code = code
        self.data = data


def valid_tenant(value: str) -> bool:
    """Tenant ids are 1-128 of letters, digits and `_ . @ -`."""
    return bool(_TENANT.match(value))


@dataclass
class TenantLimits:
    """Sliding-window rate limits and running-task counts per tenant."""

    rate_limit_per_min: int
    max_concurrent: int
    window_s: float = 60.0

    def __post_init__(self) -> None:
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self._running: dict[str, int] = defaultdict(int)

    def admit(self, tenant: str, now: float) -> None:
        """Count one request of `tenant`; raise Refused (RATE_LIMITED) over the limit."""
        hits = self._hits[tenant]
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        if len(hits) >= self.rate_limit_per_min:
            retry = max(0.0, hits[0] + self.window_s - now)
            raise Refused(
                RATE_LIMITED,
                f"tenant {tenant!r} sent more than {self.rate_limit_per_min} requests in the "
                f"last minute; retry in {retry:.0f} s",
                {"tenant": tenant, "limitPerMin": self.rate_limit_per_min, "retryAfterS": retry},
            )
        hits.append(now)

    def start(self, tenant: str) -> None:
        """Take a task slot of `tenant`; raise Refused (QUOTA_EXCEEDED) when none is free."""
        if self._running[tenant] >= self.max_concurrent:
            raise Refused(
                QUOTA_EXCEEDED,
                f"tenant {tenant!r} already has {self._running[tenant]} tasks running, its "
                f"quota; wait for one to finish or cancel one",
                {"tenant": tenant, "maxConcurrentTasks": self.max_concurrent},
            )
        self._running[tenant] += 1

    def finish(self, tenant: str) -> None:
        """Give back a task slot."""
        if self._running[tenant] > 0:
            self._running[tenant] -= 1

    def running(self, tenant: str) -> int:
        return self._running[tenant]
