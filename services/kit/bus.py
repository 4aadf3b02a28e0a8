"""NATS connection and JetStream set-up, shared by services and the CLI."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

import msgspec
from nats.aio.client import Client
from nats.errors import NoServersError
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from contracts.base import UNDECODABLE
from contracts.streams import ALL_STREAMS, StreamSpec
from services.kit.redact import scrub_bytes, scrub_headers

log = logging.getLogger("fleet.bus")


class RedactingClient(Client):
    """A NATS client that masks the process's loaded secrets in everything it sends.

    Every way a message leaves the process passes `publish`: events, replies
    (`msg.respond`), requests, JetStream publishes and KV writes. So a secret that an
    outside service echoed into an error text cannot reach a stream, a KV bucket or
    another process, whichever path formatted it (services.kit.redact).
    """

    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        reply: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        await super().publish(subject, scrub_bytes(payload), reply, scrub_headers(headers))


async def connect(
    url: str,
    name: str,
    *,
    connect_timeout_s: float = 2.0,
    deadline_s: float = 60.0,
    reconnect_wait_s: float = 0.5,
    user: str = "",
    password: str = "",
    creds_file: str = "",
    nkeys_seed: str = "",
    inbox_prefix: str = "",
    stopping: Callable[[], bool] = lambda: False,
) -> Client:
    """Connect within `deadline_s`, retrying with backoff; reconnect forever once connected.

    Each attempt gives up after two tries per server (nats-py would otherwise retry the
    first connection forever, and can swallow a cancellation while doing so); between
    attempts the caller's `stopping()` is checked, so a stop signal ends the wait
    promptly. A server of a cluster list that was down at start is dropped from the
    client's pool; the servers the cluster announces are used instead.
    """
    servers = [u.strip() for u in url.split(",") if u.strip()]
    log.info("connecting to NATS", extra={"url": url, "deadline_s": deadline_s})
    give_up = time.monotonic() + deadline_s
    delay = 0.1
    while True:
        nc = RedactingClient()
        try:
            await nc.connect(
                servers=servers,
                name=name,
                connect_timeout=connect_timeout_s,  # type: ignore[arg-type]
                reconnect_time_wait=reconnect_wait_s,  # type: ignore[arg-type]
                max_reconnect_attempts=1,  # nats-py never gives up a server at <= 0
                allow_reconnect=True,
                user=user or None,
                password=password or None,
                user_credentials=creds_file or None,
                nkeys_seed=nkeys_seed or None,
                inbox_prefix=inbox_prefix or "_INBOX",
                error_cb=_on_error,
                disconnected_cb=_disconnect_logger(nc),
                reconnected_cb=_on_reconnect,
            )
        except (NoServersError, OSError, TimeoutError) as exc:
            if stopping():
                raise asyncio.CancelledError from exc
            if time.monotonic() + delay > give_up:
                raise ConnectionError(
                    f"cannot reach NATS at {url} within {deadline_s:.0f} s ({exc}); start it "
                    "with `fleet up`, or pass --nats URL / set FLEET_NATS_URL"
                ) from exc
            log.info("NATS not reachable yet; retrying", extra={"url": url, "in_s": delay})
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)
            continue
        nc.options["max_reconnect_attempts"] = -1  # from now on, ride out any outage
        return nc


class ConnectSettings(Protocol):
    """What `connect_as` reads of the `[nats]` settings (services.kit.config.NatsSettings)."""

    connect_timeout_s: float
    connect_deadline_s: float
    reconnect_wait_s: float
    user: str
    password: str
    creds_file: str
    nkeys_seed: str
    inbox_prefix: str


async def connect_as(
    url: str, name: str, s: ConnectSettings, stopping: Callable[[], bool] = lambda: False
) -> Client:
    """`connect` with the identity and timings of the `[nats]` settings `s`."""
    return await connect(
        url,
        name,
        connect_timeout_s=s.connect_timeout_s,
        deadline_s=s.connect_deadline_s,
        reconnect_wait_s=s.reconnect_wait_s,
        user=s.user,
        password=s.password,
        creds_file=s.creds_file,
        nkeys_seed=s.nkeys_seed,
        inbox_prefix=s.inbox_prefix,
        stopping=stopping,
    )


async def settled(nc: Client, timeout_s: int = 10) -> None:
    """Return once the server has processed everything this client has sent so far.

    nats-py 2.16's `flush()` writes its PING straight to the socket while SUB and PUB
    commands wait for the client's flusher task, so a flush can return before the
    subscriptions it was meant to cover reach the server (a request sent right after
    then finds "no responders"). The flusher runs while the first PONG is on its way,
    so a second flush comes back only after what was pending.
    """
    await nc.flush(timeout_s)
    await nc.flush(timeout_s)


async def gather_replies(
    nc: Client, subject: str, payload: bytes = b"", wait_s: float = 0.5
) -> list[Any]:
    """Every JSON reply to one request within `wait_s` (for $SRV.PING/INFO/STATS, where
    each service instance answers); replies that are not JSON are skipped."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    out: list[Any] = []
    try:
        await nc.publish(subject, payload, reply=inbox)
        deadline = time.monotonic() + wait_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = await sub.next_msg(timeout=left)
            except Exception:  # nats-py raises its own TimeoutError when the wait ends
                break
            try:
                out.append(msgspec.json.decode(msg.data))
            except UNDECODABLE:
                continue
    finally:
        await sub.unsubscribe()
    return out


async def _on_error(exc: Exception) -> None:
    log.warning("nats error", extra={"error": str(exc)})


def _disconnect_logger(nc: Client) -> Callable[[], Awaitable[None]]:
    """A warning when the server goes away; nothing when we close the connection ourselves
    (nats-py calls the same callback for both, and a stopping service's own close is not
    an outage)."""

    async def on_disconnect() -> None:
        if nc.is_closed:
            log.debug("nats connection closed")
        else:
            log.warning("nats disconnected")

    return on_disconnect


async def _on_reconnect() -> None:
    log.info("nats reconnected")


def stream_config(spec: StreamSpec, replicas: int = 1) -> StreamConfig:
    return StreamConfig(
        name=spec.name,
        description=spec.description,
        subjects=list(spec.subjects),
        retention=RetentionPolicy.WORK_QUEUE
        if spec.retention == "workqueue"
        else RetentionPolicy.LIMITS,
        storage=StorageType.FILE if spec.storage == "file" else StorageType.MEMORY,
        max_age=spec.max_age_s,
        duplicate_window=spec.duplicate_window_s,
        max_msg_size=spec.max_msg_size,
        max_msgs_per_subject=spec.max_msgs_per_subject,
        discard=DiscardPolicy.OLD,
        num_replicas=replicas,
    )


async def ensure_streams(
    js: JetStreamContext, specs: Iterable[StreamSpec] = ALL_STREAMS, replicas: int = 1
) -> None:
    """Create each stream, or bring an existing one to the contract's config."""
    for spec in specs:
        config = stream_config(spec, replicas)
        try:
            await js.stream_info(spec.name)
        except NotFoundError:
            try:
                await js.add_stream(config)
                continue
            except BadRequestError as exc:
                if "already in use" not in str(exc):
                    raise
        await js.update_stream(config)
