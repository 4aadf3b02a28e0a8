"""A singleton's lease: one key in the JetStream KV bucket `fleet_leases`.

The holder is whoever wrote the key while it was free (absent, deleted, or expired);
every write is a compare-and-set on the key's last revision
(`Nats-Expected-Last-Subject-Sequence`), so two writers can never both win. Each write
carries a per-message TTL of the lease length (`Nats-TTL`, whole seconds, rounded up),
and the bucket's own TTL is the lease length too: a key that is not renewed disappears
on its own, whatever TTL the bucket was created with. The holder renews every
`lease_s / 3` and steps down the moment a renewal is refused, or when none has
succeeded for two thirds of the lease (measured from when the last good renewal was
*sent*, so the server's expiry is always later), before a standby can take the key.

A standby does not poll. It watches the key and tries to take it the moment the key is
deleted (a holder that stops releases it) or expires: nats-server 2.11+ writes a delete
marker (`Nats-Marker-Reason: MaxAge`) when a key expires in a bucket created with
`subject_delete_marker_ttl`; without one an expiry is silent and a watcher never sees
it. So the bucket is created with markers (contracts.buckets.LEASES), an older bucket
gets them added, and a fallback look every `lease_s / 2` (every `lease_s / 4` where the
server cannot write markers) bounds a missed marker. A marker is the key's latest
message for a second; nats-py's `kv.create` reads it as a live value, so the lease
reads and writes the key's messages itself. JetStream (Raft in a cluster) is the only
arbiter; nothing here votes.

Timings at the default `lease_s = 3`: renewals every 1 s; a holder that cannot renew
steps down after 2 s; a killed holder's key expires at most 3 s after its last renewal
and a standby holds the lease a few milliseconds later.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import APIError, NotFoundError
from nats.js.kv import KeyValue
from prometheus_client import CollectorRegistry, Gauge

from contracts.buckets import LEASES
from services.kit.buckets import ensure_bucket

BUCKET = LEASES.name
STREAM = f"KV_{BUCKET}"
log = logging.getLogger("fleet.lease")

EXPECTED_LAST = "Nats-Expected-Last-Subject-Sequence"
WRONG_LAST = (10071, 10164)
"""JetStream's error codes for a compare-and-set that found another revision."""
FREE_OPS = ("DEL", "PURGE")
MARKER = "Nats-Marker-Reason"


@dataclasses.dataclass(frozen=True)
class BucketShape:
    """What the lease needs to know about the bucket as the server has it."""

    max_age_s: float
    """The bucket's TTL in seconds; 0 for none."""
    markers: bool
    """The server writes a delete marker when a key expires."""
    msg_ttl: bool
    """Writes may carry their own TTL."""


async def lease_bucket(js: JetStreamContext, lease_s: float, replicas: int = 1) -> KeyValue:
    """The `fleet_leases` bucket, created with TTL `lease_s` and expiry markers if it does
    not exist yet; an existing bucket without markers gets them (see bucket_shape)."""
    return await ensure_bucket(js, LEASES, replicas=replicas, ttl_s=lease_s)


async def bucket_shape(js: JetStreamContext) -> BucketShape:
    """The bucket's TTL and whether it has expiry markers and per-message TTLs; a bucket
    created before the lease used them is updated to have both. Where the update is
    refused (a secured deployment's services may not edit streams, or an old server),
    standbys fall back to looking every `lease_s / 4`."""
    info = await js.stream_info(STREAM)
    config = info.config
    if not config.subject_delete_marker_ttl or not config.allow_msg_ttl:
        wanted = dataclasses.replace(
            config, allow_msg_ttl=True, subject_delete_marker_ttl=LEASES.marker_ttl_s
        )
        try:
            config = (await js.update_stream(wanted)).config
        except (APIError, NatsTimeout, TimeoutError) as exc:
            log.warning(
                "lease bucket has no expiry markers and could not be given them; standbys "
                "will look for an expired lease every lease_s / 4",
                extra={"bucket": BUCKET, "error": str(exc)[:300]},
            )
    return BucketShape(
        max_age_s=float(config.max_age or 0.0),
        markers=bool(config.subject_delete_marker_ttl),
        msg_ttl=bool(config.allow_msg_ttl),
    )


class Lease:
    """One holder's claim on `key`: acquire, keep renewed, release."""

    def __init__(
        self,
        js: JetStreamContext,
        kv: KeyValue,
        key: str,
        holder: str,
        lease_s: float,
        shape: BucketShape | None = None,
        watch: bool = True,
        bucket: str = BUCKET,
    ) -> None:
        self.js = js
        self.stream = f"KV_{bucket}"
        """The bucket's stream: `fleet_leases` for the singletons; another bucket of
        leases (one batch run's driver, for instance) names its own."""
        self.watch = watch
        """Standbys watch the key (else they look every `lease_s / 4`)."""
        self.kv = kv
        self.key = key
        self.subject = f"$KV.{bucket}.{key}"
        self.holder = holder
        self.shape = shape or BucketShape(max_age_s=lease_s, markers=True, msg_ttl=True)
        self.lease_s = min(lease_s, self.shape.max_age_s or lease_s)
        """The lease as it really lasts: ours, or the bucket's TTL where that is shorter."""
        self.revision = 0
        """Revision of our last write; 0 while we do not hold the lease."""
        self.token = 0
        """The revision at which we took the lease: constant while we hold it, and higher
        for every later holder, so a write stamped with it can be fenced off."""
        self.renewed_at = 0.0
        """Monotonic time the last successful write was sent."""
        self.waiting = False
        """True while `acquire` waits for the key to be freed (someone else holds it)."""

    @classmethod
    async def open(
        cls,
        js: JetStreamContext,
        key: str,
        holder: str,
        lease_s: float,
        replicas: int = 1,
        watch: bool = True,
    ) -> Lease:
        """The lease on `key` in the `fleet_leases` bucket (created or brought up to date)."""
        kv = await lease_bucket(js, lease_s, replicas)
        return cls(js, kv, key, holder, lease_s, await bucket_shape(js), watch)

    @property
    def held(self) -> bool:
        """True while we believe we hold the lease."""
        return self.revision > 0

    @property
    def renew_every_s(self) -> float:
        """Renewal period: three chances to renew within one lease."""
        return self.lease_s / 3

    @property
    def fallback_s(self) -> float:
        """How often a standby looks at the key without being woken by the watch."""
        return self.lease_s / (2 if self.shape.markers and self.watch else 4)

    async def _free_revision(self) -> int | None:
        """The key's last revision when it is free (0: never written), None when held."""
        try:
            msg = await self.js.get_msg(self.stream, subject=self.subject)
        except NotFoundError:
            return 0
        headers = msg.headers or {}
        if headers.get("KV-Operation") in FREE_OPS or MARKER in headers:
            return int(msg.seq or 0)
        return None

    async def _write(self, last: int) -> int | None:
        """Write our name if the key's last revision is still `last`: the new revision,
        or None when someone else wrote in between."""
        headers = {EXPECTED_LAST: str(last)}
        if self.shape.msg_ttl:
            headers["Nats-TTL"] = str(max(1, math.ceil(self.lease_s)))
        try:
            ack = await self.js.publish(self.subject, self.holder.encode(), headers=headers)
        except APIError as exc:
            if exc.err_code in WRONG_LAST:
                return None
            raise
        return int(ack.seq)

    async def try_acquire(self, free_at: int | None = None) -> bool:
        """Take the key if it is free; True if we hold the lease now. `free_at` is the
        revision of a delete or marker the watch just saw, which saves a read."""
        last = free_at if free_at is not None else await self._free_revision()
        if last is None:
            return False
        sent = time.monotonic()
        revision = await self._write(last)
        if revision is None and free_at is not None:
            return await self.try_acquire()  # the marker was not the latest after all
        if revision is None:
            return False
        self.revision, self.token, self.renewed_at = revision, revision, sent
        return True

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait as a standby until we hold the lease (True) or `stop` is set (False)."""
        freed: asyncio.Queue[int] = asyncio.Queue()
        watch: Subscription | None = None
        try:
            free_at: int | None = None
            first = True
            while not stop.is_set():
                try:
                    if await self.try_acquire(free_at):
                        return True
                except (NatsTimeout, TimeoutError, NatsError) as exc:
                    log.warning(
                        "lease: acquire attempt failed", extra={"key": self.key, "error": str(exc)}
                    )
                if first and self.watch:
                    # Held: watch the key from now on, then look once more (a release
                    # between the first look and the watch would go unseen).
                    first, free_at = False, None
                    watch = await self._watch(freed)
                    continue
                wait_s = self.fallback_s if watch is not None else self.lease_s / 4
                self.waiting = True
                free_at = await _next(freed, stop, wait_s)
        finally:
            self.waiting = False
            if watch is not None:
                try:
                    await watch.unsubscribe()
                except Exception:
                    log.debug("lease: could not stop watching", exc_info=True)
        return False

    async def _watch(self, freed: asyncio.Queue[int]) -> Subscription | None:
        """Put the revision of every delete, purge or expiry marker of the key on `freed`
        (an ordered consumer of new messages only); None when the server does not set it
        up within `fallback_s` (the standby then looks every `lease_s / 4`)."""

        async def on(msg: Msg) -> None:
            headers = msg.headers or {}
            if headers.get("KV-Operation") in FREE_OPS or MARKER in headers:
                freed.put_nowait(int(msg.metadata.sequence.stream))

        try:
            # The consumer is created before the subscription is bound, so giving up
            # on a slow server leaves no subscription behind (the server drops an
            # ephemeral consumer nobody listens to).
            return await asyncio.wait_for(
                self.js.subscribe(
                    self.subject,
                    stream=self.stream,
                    cb=on,
                    ordered_consumer=True,
                    deliver_policy=DeliverPolicy.NEW,
                    headers_only=True,
                ),
                self.fallback_s,
            )
        except (NatsTimeout, TimeoutError, NatsError) as exc:
            log.warning(
                "lease: cannot watch the key; looking every lease_s / 4",
                extra={"key": self.key, "error": str(exc)},
            )
            return None

    async def renew(self) -> bool:
        """Renew once; False when the lease is lost (refused, or stale for too long)."""
        sent = time.monotonic()
        try:
            revision = await self._write(self.revision)
        except (NatsTimeout, TimeoutError, NatsError) as exc:
            # Not conclusive: keep trying while a standby cannot have the key yet.
            if time.monotonic() - self.renewed_at < self.lease_s * 2 / 3:
                log.warning("lease: renewal failed, retrying", extra={"error": str(exc)})
                return True
            log.error("lease: could not renew in time; stepping down", extra={"key": self.key})
            self.revision = 0
            return False
        if revision is None:
            log.error("lease: renewal refused, someone else holds it", extra={"key": self.key})
            self.revision = 0
            return False
        self.revision, self.renewed_at = revision, sent
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


async def _next(freed: asyncio.Queue[int], stop: asyncio.Event, wait_s: float) -> int | None:
    """The next freed revision the watch reports, or None when `wait_s` passes or `stop`
    is set first."""
    got = asyncio.ensure_future(freed.get())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({got, stopped}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
        return got.result() if got.done() else None
    finally:
        for task in (got, stopped):
            task.cancel()
        await asyncio.gather(got, stopped, return_exceptions=True)


def lease_gauge(registry: CollectorRegistry) -> Gauge:
    """`fleet_lease_held{service}`: 1 on the instance holding its lease, 0 on standbys."""
    return Gauge(
        "fleet_lease_held",
        "1 while this instance holds its singleton lease, 0 while it stands by.",
        ["service"],
        registry=registry,
    )
