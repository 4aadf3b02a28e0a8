"""A singleton's lease: one key in the JetStream KV bucket `fleet_leases`.

The bucket's TTL is the lease length, so a key that is not renewed disappears
on its own. The holder is whoever created the key (`kv.create` fails when the
key exists); it renews with a compare-and-set on the revision it wrote
(`kv.update(last=revision)`) every `lease_s / 3`, and steps down the moment a
renewal is refused or when no renewal has succeeded for two thirds of the
lease, which is before a standby can possibly take the key. A standby retries
`create` until the key has expired or been released. JetStream (Raft in a
cluster) is the only arbiter; nothing here votes.
"""

from __future__ import annotations

import asyncio
import logging
import time

from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from prometheus_client import CollectorRegistry, Gauge

from contracts.buckets import LEASES
from services.kit.buckets import ensure_bucket

BUCKET = LEASES.name
log = logging.getLogger("fleet.lease")


async def lease_bucket(js: JetStreamContext, lease_s: float, replicas: int = 1) -> KeyValue:
    """The `fleet_leases` bucket, created with TTL `lease_s` if it does not exist yet.

    The first instance to start fixes the TTL; later ones use the bucket as it is,
    so every singleton of a deployment should share one `[lease] lease_s`.
    """
    return await ensure_bucket(js, LEASES, replicas=replicas, ttl_s=lease_s)


class Lease:
    """One holder's claim on `key`: acquire, keep renewed, release."""

    def __init__(self, kv: KeyValue, key: str, holder: str, lease_s: float) -> None:
        self.kv = kv
        self.key = key
        self.holder = holder
        self.lease_s = lease_s
        self.revision = 0
        """Revision of our last write; 0 while we do not hold the lease."""
        self.renewed_at = 0.0
        """Monotonic time of the last successful create or renewal."""

    @property
    def held(self) -> bool:
        """True while we believe we hold the lease."""
        return self.revision > 0

    @property
    def renew_every_s(self) -> float:
        """Renewal period: three chances to renew within one lease."""
        return self.lease_s / 3

    async def try_acquire(self) -> bool:
        """Create the key if it is absent; True if we hold the lease now."""
        try:
            self.revision = await self.kv.create(self.key, self.holder.encode())
        except KeyWrongLastSequenceError:
            return False  # someone holds it
        self.renewed_at = time.monotonic()
        return True

    async def acquire(self, stop: asyncio.Event, poll_s: float | None = None) -> bool:
        """Wait as a standby until we hold the lease (True) or `stop` is set (False)."""
        poll = poll_s if poll_s is not None else max(0.05, self.lease_s / 4)
        while not stop.is_set():
            try:
                if await self.try_acquire():
                    return True
            except (NatsTimeout, TimeoutError, NatsError) as exc:
                log.warning(
                    "lease: acquire attempt failed", extra={"key": self.key, "error": str(exc)}
                )
            try:
                await asyncio.wait_for(stop.wait(), poll)
            except TimeoutError:
                pass
        return False

    async def renew(self) -> bool:
        """Renew once; False when the lease is lost (refused, or stale for too long)."""
        try:
            self.revision = await self.kv.update(self.key, self.holder.encode(), last=self.revision)
        except (KeyWrongLastSequenceError, KeyNotFoundError):
            log.error("lease: renewal refused, someone else holds it", extra={"key": self.key})
            self.revision = 0
            return False
        except (NatsTimeout, TimeoutError, NatsError) as exc:
            # Not conclusive: keep trying while a standby cannot have the key yet.
            if time.monotonic() - self.renewed_at < self.lease_s * 2 / 3:
                log.warning("lease: renewal failed, retrying", extra={"error": str(exc)})
                return True
            log.error("lease: could not renew in time; stepping down", extra={"key": self.key})
            self.revision = 0
            return False
        self.renewed_at = time.monotonic()
        return True

    async def keep(self, stop: asyncio.Event) -> bool:
        """Renew every `renew_every_s` until `stop` is set (True) or the lease is lost (False)."""
        while True:
            try:
                await asyncio.wait_for(stop.wait(), self.renew_every_s)
                return True
            except TimeoutError:
                pass
            if not await self.renew():
                return False

    async def release(self) -> None:
        """Give the lease up now (if still ours) so a standby need not wait for the TTL."""
        if not self.held:
            return
        revision, self.revision = self.revision, 0
        try:
            await self.kv.delete(self.key, last=revision)
        except Exception:
            log.debug("lease: release failed; it will expire", exc_info=True)


def lease_gauge(registry: CollectorRegistry) -> Gauge:
    """`fleet_lease_held{service}`: 1 on the instance holding its lease, 0 on standbys."""
    return Gauge(
        "fleet_lease_held",
        "1 while this instance holds its singleton lease, 0 while it stands by.",
        ["service"],
        registry=registry,
    )
