"""A singleton service's part of the lease (services.kit.lease): wait as a standby
until it holds the lease, keep it renewed while it runs, and say when it is lost.

The service decides what losing it means (it stops, and `fleet run` exits with
LEASE_LOST_EXIT so a supervisor restarts it as a standby).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry

from services.kit.config import KitSettings
from services.kit.lease import Lease, lease_gauge

log = logging.getLogger("fleet.service")


class Standby:
    """One singleton instance's claim: its lease and the `fleet_lease_held` gauge."""

    def __init__(self, service: str, key: str, instance: str, registry: CollectorRegistry) -> None:
        self.service = service
        self.key = key
        self.instance = instance
        self._held = lease_gauge(registry).labels(service)
        self.lease: Lease | None = None
        self.lost = False
        """True once the lease was lost after it had been held."""

    async def wait(
        self,
        js: JetStreamContext,
        settings: KitSettings,
        stopping: asyncio.Event,
        standing_by: Callable[[], None],
    ) -> bool:
        """Wait until we hold the lease (True) or `stopping` is set first (False);
        `standing_by()` is called once the wait begins."""
        watch = settings.lease.watch
        if watch is None:
            watch = not (settings.nats.creds_file or settings.nats.user)
        self.lease = await Lease.open(
            js, self.key, self.instance, settings.lease.lease_s, settings.nats.replicas, watch
        )
        self._held.set(0)
        if stopping.is_set():
            return False
        standing_by()
        log.info("standby: waiting for the lease", extra={"service": self.service})
        if not await self.lease.acquire(stopping) or stopping.is_set():
            return False
        self._held.set(1)
        log.info("lease acquired", extra={"service": self.service, "key": self.key})
        return True

    async def keep(self, stopping: asyncio.Event) -> bool:
        """Renew until `stopping` is set (True) or the lease is lost (False, and `lost`)."""
        assert self.lease is not None
        if await self.lease.keep(stopping):
            return True
        self.lost = True
        self._held.set(0)
        log.error("lost the lease; stopping so that a standby takes over")
        return False

    async def release(self) -> None:
        """Give the lease up (after the service's last writes) so a standby takes over now."""
        if self.lease is not None:
            await self.lease.release()
