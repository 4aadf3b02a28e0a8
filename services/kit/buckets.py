"""Open a KV bucket of the contract (contracts.buckets), creating it if it is missing.

Every process that uses a bucket calls `ensure_bucket`, so several may find it
missing at once (a deployment starting, runners of one agent scaling out). The
server settles the race: creating a bucket that exists with the same config
succeeds, and one that exists with another config (a different TTL setting) is
refused as "already in use"; the loser then binds to the bucket the winner
created, as it is. The first creator fixes the bucket's shape.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import msgspec
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import (
    APIError,
    BadRequestError,
    BucketNotFoundError,
    KeyValueLimitMarkerTTLNotSupportedError,
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
    """The keys of the bucket that hold, or last held, a value; [] when it has none.

    Read from the stream's per-subject message counts (`STREAM.INFO` with a subjects
    filter, paged by the server's offset), not through a watcher: nats-py's `keys()`
    creates an ordered push consumer, and an identity allowed to create consumers on a
    stream it writes could make one deliver anywhere (docs/adr/0013-least-privilege.md).
    So listing keys needs only the metadata every identity may read. A deleted or
    purged key keeps its marker until the bucket's history drops it, and is listed until
    then: callers read each key, and a deleted one reads as missing.
    """
    js: Any = kv._js  # nats-py's KeyValue keeps its context, stream and prefix private
    stream, pre = str(kv._stream), str(kv._pre)
    api = f"{js._prefix}.STREAM.INFO.{stream}"
    keys: list[str] = []
    while True:
        body = msgspec.json.encode({"subjects_filter": f"{pre}>", "offset": len(keys)})
        reply = _STREAM_INFO.decode((await js._nc.request(api, body, timeout=5.0)).data)
        if reply.error is not None:
            if reply.error.code == 404:  # no such stream: no bucket, no keys
                return []
            raise APIError(description=reply.error.description, code=reply.error.code)
        page = [s[len(pre) :] for s in reply.state.subjects or {} if s.startswith(pre)]
        keys.extend(page)
        if not page or len(keys) >= reply.total:
            return keys


class _Error(msgspec.Struct):
    code: int = 0
    description: str = ""


class _State(msgspec.Struct):
    subjects: dict[str, int] | None = None


class _StreamInfo(msgspec.Struct):
    """What `bucket_keys` reads of a STREAM.INFO reply (paged: `total` subjects in all)."""

    state: _State = msgspec.field(default_factory=_State)
    total: int = 0
    error: _Error | None = None


_STREAM_INFO = msgspec.json.Decoder(_StreamInfo)
