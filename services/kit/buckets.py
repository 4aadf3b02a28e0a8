"""Open a KV bucket of the contract (contracts.buckets), creating it if it is missing.

Every process that uses a bucket calls `ensure_bucket`, so several may find it
missing at once (a deployment starting, runners of one agent scaling out). The
server settles the race: creating a bucket that exists with the same config
succeeds, and one that exists with another config (a different TTL setting) is
refused as "already in use"; the loser then binds to the bucket the winner
created, as it is. The first creator fixes the bucket's shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging

import msgspec
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import (
    BadRequestError,
    BucketNotFoundError,
    KeyValueLimitMarkerTTLNotSupportedError,
    NoKeysError,
    NotFoundError,
)
from nats.js.kv import KeyValue

from contracts.buckets import BucketSpec
from services.kit.binding import creating, missing

log = logging.getLogger("fleet.bus")


def bucket_config(spec: BucketSpec, replicas: int = 1) -> KeyValueConfig:
    """The nats-py config of `spec` with `replicas` (1 on one machine, 3 on a cluster)."""
    return KeyValueConfig(
        bucket=spec.name,
        description=spec.description,
        history=spec.history,
        ttl=spec.ttl_s or None,
        storage=StorageType.MEMORY if spec.storage == "memory" else StorageType.FILE,
        replicas=replicas,
        direct=spec.direct,
        limit_marker_ttl=spec.marker_ttl_s or None,
    )


async def ensure_bucket(
    js: JetStreamContext,
    spec: BucketSpec,
    *,
    replicas: int = 1,
    ttl_s: float | None = None,
    storage: str | None = None,
    create: bool | None = None,
) -> KeyValue:
    """The bucket of `spec`, bound if it exists, else created (`ttl_s` and `storage`
    override the spec's where a setting decides them); safe against a concurrent creator.
    `create` False only binds (NotInitialized when missing); None: as the process does
    (services.kit.binding), True: always (`fleet init`)."""
    if spec.per_agent:
        raise ValueError(f"bucket family {spec.name}: open one agent's bucket (for_agent)")
    changes: dict[str, object] = {}
    if ttl_s is not None:
        changes["ttl_s"] = ttl_s
    if storage is not None:
        changes["storage"] = storage
    if changes:
        spec = msgspec.structs.replace(spec, **changes)
    try:
        return await js.key_value(spec.name)
    except (BucketNotFoundError, NotFoundError):
        if not (creating() if create is None else create):
            raise missing("KV bucket", spec.name) from None
    config = bucket_config(spec, replicas)
    try:
        try:
            return await js.create_key_value(config)
        except KeyValueLimitMarkerTTLNotSupportedError:
            log.warning(
                "the server writes no expiry markers (it predates 2.11); watchers of this "
                "bucket see no expiry",
                extra={"bucket": spec.name},
            )
            return await js.create_key_value(dataclasses.replace(config, limit_marker_ttl=None))
    except BadRequestError as exc:
        if "already in use" not in str(exc):
            raise
        log.info("bucket created by another process; binding to it", extra={"bucket": spec.name})
        return await js.key_value(spec.name)


async def bucket_keys(kv: KeyValue) -> list[str]:
    """Every key of the bucket; [] when it has none.

    nats-py lists keys through a watcher (an ordered push consumer with heartbeat and
    flow-control tasks) and stops it only when the listing completes; a listing
    cancelled midway (a service stopping during a periodic sweep) would leave those
    tasks running. So the listing runs in a task of its own, and a cancelled caller
    waits for it to finish before it stops.
    """
    listing = asyncio.ensure_future(_keys(kv))
    try:
        return await asyncio.shield(listing)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await listing
        raise


async def _keys(kv: KeyValue) -> list[str]:
    try:
        return list(await kv.keys())
    except (NoKeysError, NotFoundError):
        return []
