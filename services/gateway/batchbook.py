"""Batch runs kept in JetStream, so that a run outlives the gateway that started it.

`fleet_batches` holds each run's `BatchRecord`; only the gateway that drives the
run writes it, with a compare-and-set on the revision it last wrote, so a
driver that lost its run (it stalled, another took over) finds out at its next
write instead of overwriting the new driver's record. Who drives a run is a
lease per run in `fleet_batch_drivers` (services.kit.lease): a key whose TTL
lapses when its gateway dies, and which any gateway may then create.
"""

from __future__ import annotations

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from contracts.base import UNDECODABLE
from contracts.batch import BatchRecord
from contracts.buckets import BATCH_DRIVERS, BATCHES
from services.kit.buckets import bucket_keys, ensure_bucket
from services.kit.lease import BucketShape, Lease

_RECORD = msgspec.json.Decoder(BatchRecord)
_ENC = msgspec.json.Encoder()


class RunLost(Exception):
    """Another gateway wrote the run's record since we last did: it drives the run now."""


def _conflict(exc: Exception) -> bool:
    return isinstance(exc, KeyWrongLastSequenceError) or "wrong last sequence" in str(exc)


class BatchBook:
    """The records and the drivers' leases; see the module docstring."""

    def __init__(
        self, js: JetStreamContext, records: KeyValue, drivers: KeyValue, holder: str
    ) -> None:
        self.js = js
        self.records = records
        self.drivers = drivers
        self.holder = holder
        """This gateway's instance name, the value of the leases it holds."""

    @classmethod
    async def open(cls, js: JetStreamContext, holder: str, replicas: int = 1) -> BatchBook:
        records = await ensure_bucket(js, BATCHES, replicas=replicas)
        drivers = await ensure_bucket(js, BATCH_DRIVERS, replicas=replicas)
        return cls(js, records, drivers, holder)

    def driver(self, batch_id: str) -> Lease:
        """The lease on driving run `batch_id` (not yet acquired)."""
        ttl = BATCH_DRIVERS.ttl_s
        # The drivers' bucket has a plain TTL (no expiry markers, no per-write TTL): a
        # gateway looks for lapsed runs on its own schedule rather than watching.
        shape = BucketShape(max_age_s=ttl, markers=False, msg_ttl=False)
        return Lease(
            self.js,
            self.drivers,
            batch_id,
            self.holder,
            ttl,
            shape,
            watch=False,
            bucket=BATCH_DRIVERS.name,
        )

    async def get(self, batch_id: str) -> tuple[BatchRecord | None, int]:
        """The run's record and its revision; (None, 0) when there is none, or when it
        does not decode (a record from a newer contract is left to the gateways that
        know it)."""
        try:
            entry = await self.records.get(batch_id)
        except (KeyNotFoundError, NotFoundError):
            return None, 0
        if not entry.value:
            return None, 0
        try:
            return _RECORD.decode(entry.value), int(entry.revision or 0)
        except UNDECODABLE:
            return None, 0

    async def create(self, record: BatchRecord) -> int | None:
        """Write a new run's record; its revision, or None when the id is taken."""
        try:
            return await self.records.create(record.id, _ENC.encode(record))
        except Exception as exc:
            if _conflict(exc):
                return None
            raise

    async def update(self, record: BatchRecord, revision: int) -> int:
        """Write the record if it is still at `revision`; the new revision, else RunLost."""
        try:
            return await self.records.update(record.id, _ENC.encode(record), last=revision)
        except Exception as exc:
            if _conflict(exc):
                raise RunLost(f"batch {record.id}: another gateway drives it now") from None
            raise

    async def all(self) -> list[tuple[BatchRecord, int]]:
        """Every run kept, with its revision."""
        out: list[tuple[BatchRecord, int]] = []
        for key in await bucket_keys(self.records):
            record, revision = await self.get(key)
            if record is not None:
                out.append((record, revision))
        return out


__all__ = ["BatchBook", "RunLost"]
