"""The Service base: connect, typed subscribe, JetStream consumers, health, graceful stop.

A service subclasses `Service`, sets `name`, and in `setup()` calls
`subscribe`, `consume`, `endpoint` and `every`. Lifecycle:
created -> starting -> ready -> draining -> stopped. `stop()` stops taking work,
lets in-flight handlers finish until `stop_deadline_s`, naks what is still
running (JetStream redelivers it), then closes connections.

A service with `singleton = True` waits in state `standby` after connecting
until it holds its lease (services/kit/lease.py), and only then runs setup();
losing the lease stops it, and `main()` exits non-zero so a supervisor
restarts it as a standby.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import Service as MicroService

from contracts import subjects
from contracts.events import DeadLetter
from contracts.streams import stream_for
from services.kit.bus import connect, ensure_streams
from services.kit.config import KitSettings, load_settings, resolve_nats_url
from services.kit.errors import ConfigError, Permanent, Retryable
from services.kit.http import HealthServer
from services.kit.lease import Lease, lease_bucket, lease_gauge
from services.kit.logs import setup_logging
from services.kit.metrics import ServiceMetrics
from services.kit.store import Store
from services.kit.tracing import extract, inject, setup_tracing, tracer

T = TypeVar("T")
State = Literal["created", "starting", "standby", "ready", "draining", "stopped"]
log = logging.getLogger("fleet.service")

_ENCODER = msgspec.json.Encoder()
LEASE_LOST_EXIT = 3
"""Exit code of `fleet run` when a singleton lost its lease (restart it as a standby)."""
MAX_PREVIEW = 256
"""Bytes of a bad payload kept in its dead letter: enough to see what it was."""


@dataclass(slots=True)
class Delivery:
    """Where and how a message arrived."""

    subject: str
    headers: dict[str, str]
    attempt: int = 1
    """1 on first delivery; JetStream's delivery count on redeliveries."""
    stream_seq: int | None = None
    reply: str = ""


Handler = Callable[[T, Delivery], Awaitable[None]]
Responder = Callable[[T, Delivery], Awaitable[Any]]


class RequestError(Exception):
    """Raised by a request handler to answer with a clear error instead of a result."""

    def __init__(self, message: str, code: int = 400) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class _Consumer:
    subject: str
    durable: str
    task: asyncio.Task[None] | None = None
    current: Msg | None = None
    pending: list[Msg] = field(default_factory=list)
    idle: asyncio.Event = field(default_factory=asyncio.Event)


def encode(obj: Any) -> bytes:
    """JSON bytes of a Struct, dict or list (the one encoder every service shares)."""
    return _ENCODER.encode(obj)


def retry_delay(attempt: int, base_s: float = 0.5, cap_s: float = 30.0) -> float:
    """Exponential backoff for the n-th failed delivery, capped."""
    return float(min(cap_s, base_s * 2 ** max(0, attempt - 1)))


class Service:
    """Base of every fleetplane service."""

    name: ClassVar[str] = "service"
    version: ClassVar[str] = "0.1.0"
    description: ClassVar[str] = ""
    settings_type: ClassVar[type[KitSettings]] = KitSettings
    migrations: ClassVar[Sequence[str] | None] = None
    """SQL migrations of the service's store; None for a service with no store."""
    singleton: ClassVar[bool] = False
    """True: only the instance holding the lease runs; others wait as standbys."""

    def __init__(self, settings: KitSettings | None = None, *, nats_url: str | None = None):
        self.settings = settings if settings is not None else load_settings(self.settings_type)
        self.instance = f"{socket.gethostname()}-{os.getpid()}-{id(self) % 10000}"
        self.state: State = "created"
        self.metrics = ServiceMetrics(self.name)
        self.nats_url = resolve_nats_url(nats_url, self.settings.nats.url)
        self.store: Store | None = None
        self.http_port = 0
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._micro: MicroService | None = None
        self._api: MicroService | None = None
        self._consumers: list[_Consumer] = []
        self._subs: list[Any] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = asyncio.Event()
        self._set_up = False
        self._stopped = asyncio.Event()
        self._http = HealthServer(self.metrics.registry, self._healthz, self._readyz)
        self._started = time.time()
        self._decoders: dict[Any, msgspec.json.Decoder[Any]] = {}
        self._stream_of: dict[str, bool] = {}
        self._tracer = tracer(self.name)
        self.lease: Lease | None = None
        self.lease_lost = False
        """True once a singleton lost its lease; it then stops."""
        self._lease_stop: asyncio.Future[None] | None = None

    # -- to override -------------------------------------------------------
    async def setup(self) -> None:
        """Subscribe, consume and register endpoints; called once connected."""

    async def teardown(self) -> None:
        """Flush state before connections close; called once work has stopped."""

    def lease_key(self) -> str:
        """The singleton's key in the lease bucket; one holder per key."""
        return self.name

    # -- lifecycle ---------------------------------------------------------
    @property
    def nc(self) -> Client:
        if self._nc is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._js

    async def start(self) -> None:
        """Connect, ensure streams, open the store, register, run setup(); then ready."""
        self.state = "starting"
        s = self.settings
        self.http_port = await self._http.start(s.http.host, s.http.port)
        self._nc = await connect(
            self.nats_url,
            f"fleet-{self.name}",
            connect_timeout_s=s.nats.connect_timeout_s,
            deadline_s=s.nats.connect_deadline_s,
            reconnect_wait_s=s.nats.reconnect_wait_s,
            user=s.nats.user,
            password=s.nats.password,
            creds_file=s.nats.creds_file,
            stopping=self._stopping.is_set,
        )
        self._js = self._nc.jetstream()
        await ensure_streams(self._js, replicas=s.nats.replicas)
        self._micro = await add_service(
            self._nc,
            name=self.name,
            version=self.version,
            description=self.description or self.name,
            metadata={"instance": self.instance, "http_port": str(self.http_port)},
            stats_handler=lambda _stats: self.status(),
        )
        await self._micro.add_endpoint(
            name="status", subject=f"fleet.svc.{self.name}.status", handler=self._status_endpoint
        )
        if self.singleton and not await self._stand_by():
            return  # stopped while waiting for the lease
        if self.migrations is not None:  # a standby leaves the store to the holder
            self.store = await Store.open(Path(s.store.dir) / f"{self.name}.db", self.migrations)
        await self.setup()
        self._set_up = True
        await self._nc.flush()  # subscriptions are live on the server before we say ready
        self.state = "ready"
        if self.lease is not None:
            self.spawn(self._keep_lease(), "lease")
        self.metrics.up.labels(self.name).set(1)
        log.info(
            "ready",
            extra={"service": self.name, "nats": self.nats_url, "http_port": self.http_port},
        )

    async def stop(self) -> None:
        """Stop taking work, finish or hand back in-flight messages, close."""
        if self.state in ("draining", "stopped"):
            await self._stopped.wait()
            return
        self.state = "draining"
        self.metrics.up.labels(self.name).set(0)
        self._stopping.set()
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception:
                log.debug("unsubscribe failed", exc_info=True)
        await self._drain_consumers(self.settings.stop_deadline_s)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            if self._set_up:  # nothing to flush for a service stopped before setup()
                await self.teardown()
        finally:
            if self.lease is not None:
                await self.lease.release()  # after teardown: the next holder sees our last writes
            for micro in (self._micro, self._api):
                if micro is not None:
                    try:
                        await micro.stop()
                    except Exception:
                        log.debug("micro stop failed", exc_info=True)
            if self._nc is not None and not self._nc.is_closed:
                try:
                    await self._nc.flush(timeout=2)
                except Exception:
                    log.debug("flush failed", exc_info=True)
                await self._nc.close()
            if self.store is not None:
                await self.store.close()
            await self._http.stop()
            self.state = "stopped"
            self._stopped.set()
            log.info("stopped", extra={"service": self.name})

    async def serve(self) -> None:
        """Start, run until SIGTERM/SIGINT (or stop()), then stop gracefully."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        starting = asyncio.ensure_future(self.start())
        stop_asked = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({starting, stop_asked}, return_when=asyncio.FIRST_COMPLETED)
            if starting.done():
                starting.result()  # a failed start raises here
                await stop_asked
            else:  # asked to stop while still connecting or waiting for the lease
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starting
        finally:
            stop_asked.cancel()
            await self.stop()

    @classmethod
    def main(cls, config: str | None = None, nats_url: str | None = None) -> int:
        """Entry point of `fleet run <service>`: settings, logging, serve; exit code."""
        try:
            settings = load_settings(cls.settings_type, config)
        except ConfigError as exc:
            print(f"fleet run {cls.name}: {exc}", file=sys.stderr)
            return 2
        # A process inherits its parent thread's blocked-signal mask across exec; a
        # service spawned from a thread that blocks SIGTERM would never hear it.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
        setup_logging(cls.name, settings.log.level, settings.log.json)
        setup_tracing(cls.name, settings.tracing.exporter, settings.tracing.sample_ratio)
        service = cls(settings, nats_url=nats_url)
        try:
            asyncio.run(service.serve())
        except ConnectionError as exc:
            log.error(str(exc))
            return 1
        return LEASE_LOST_EXIT if service.lease_lost else 0

    # -- singleton lease -----------------------------------------------------
    async def _stand_by(self) -> bool:
        """Wait as `standby` until we hold the lease; False if stopped first."""
        s = self.settings
        kv = await lease_bucket(self.js, s.lease.lease_s, s.nats.replicas)
        self.lease = Lease(kv, self.lease_key(), self.instance, s.lease.lease_s)
        self._lease_held = held = lease_gauge(self.metrics.registry).labels(self.name)
        held.set(0)
        if self._stopping.is_set():
            return False
        self.state = "standby"
        log.info("standby: waiting for the lease", extra={"service": self.name})
        if not await self.lease.acquire(self._stopping) or self._stopping.is_set():
            return False
        held.set(1)
        log.info("lease acquired", extra={"service": self.name, "key": self.lease_key()})
        return True

    async def _keep_lease(self) -> None:
        assert self.lease is not None
        if await self.lease.keep(self._stopping):
            return
        self.lease_lost = True
        self._lease_held.set(0)
        log.error("lost the lease; stopping so that a standby takes over")
        self._stopping.set()
        self._lease_stop = asyncio.ensure_future(self.stop())

    # -- health ------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """What /readyz, `$SRV.STATS` and `fleet status` show about this instance."""
        return {
            "service": self.name,
            "state": self.state,
            "instance": self.instance,
            "uptime_s": round(time.time() - self._started, 1),
            "connected": bool(self._nc and self._nc.is_connected),
            "counts": dict(self.metrics.counts),
            **({"lease": "held" if self.lease.held else "none"} if self.lease else {}),
        }

    def _healthz(self) -> tuple[bool, dict[str, object]]:
        return self.state not in ("stopped",), self.status()

    def _readyz(self) -> tuple[bool, dict[str, object]]:
        # A standby is ready: it is healthy and waiting to take over, and a rolling
        # update must be able to replace the holder while it stands by.
        ok = self.state in ("ready", "standby") and bool(self._nc and self._nc.is_connected)
        return ok, self.status()

    async def _status_endpoint(self, req: Request) -> None:
        await req.respond(encode(self.status()))

    # -- tasks ---------------------------------------------------------------
    def spawn(self, coro: Awaitable[Any], name: str = "") -> asyncio.Task[Any]:
        """Run `coro` in the background; cancelled when the service stops."""
        task = asyncio.ensure_future(coro)
        if name:
            task.set_name(f"{self.name}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "background task failed",
                exc_info=task.exception(),
                extra={"task": task.get_name()},
            )

    def every(self, interval_s: float, fn: Callable[[], Awaitable[None]], name: str = "") -> None:
        """Call `fn` every `interval_s` seconds until the service stops; errors are logged."""

        async def loop() -> None:
            next_at = time.monotonic()
            while not self._stopping.is_set():
                try:
                    await fn()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("periodic task failed", extra={"task": name})
                next_at += interval_s
                delay = next_at - time.monotonic()
                if delay < 0:
                    next_at, delay = time.monotonic(), 0.0
                try:
                    await asyncio.wait_for(self._stopping.wait(), delay)
                except TimeoutError:
                    pass

        self.spawn(loop(), name or "every")

    # -- decoding and dead letters ------------------------------------------
    def decoder(self, kind: Any) -> msgspec.json.Decoder[Any]:
        dec = self._decoders.get(kind)
        if dec is None:
            dec = self._decoders[kind] = msgspec.json.Decoder(kind)
        return dec

    async def dead_letter(self, subject: str, data: bytes, reason: str, kind: str) -> None:
        """Send `data` to fleet.dead.<subject> with the reason; count it; never raise."""
        self.metrics.dead(kind)
        letter = DeadLetter(
            subject=subject,
            reason=reason[:4000],
            service=self.name,
            size=len(data),
            preview=data[:MAX_PREVIEW].decode("utf-8", "replace"),
        )
        log.warning("dead-lettered", extra={"subject": subject, "reason": reason[:300]})
        try:
            await self.js.publish(subjects.dead(subject), encode(letter), timeout=5)
        except Exception:
            log.exception("could not publish dead letter", extra={"subject": subject})

    # -- publishing ----------------------------------------------------------
    async def publish(
        self,
        subject: str,
        msg: Any,
        *,
        msg_id: str | None = None,
        headers: dict[str, str] | None = None,
        attempts: int = 5,
    ) -> None:
        """Publish `msg`; to JetStream with an ack (and de-dup id) if a stream keeps `subject`."""
        data = msg if isinstance(msg, bytes) else encode(msg)
        hdrs = inject(headers)
        in_stream = self._stream_of.get(subject)
        if in_stream is None:
            in_stream = stream_for(subject) is not None
            if len(self._stream_of) < 10_000:
                self._stream_of[subject] = in_stream
        if not in_stream:
            await self.nc.publish(subject, data, headers=hdrs)
            return
        if msg_id:
            hdrs["Nats-Msg-Id"] = msg_id
        for attempt in range(1, attempts + 1):
            try:
                await self.js.publish(subject, data, headers=hdrs, timeout=5)
                return
            except (NatsTimeout, NoRespondersError, TimeoutError):
                if attempt == attempts:
                    raise
                await asyncio.sleep(retry_delay(attempt, 0.2, 2.0))

    # -- core subscriptions ------------------------------------------------
    async def subscribe(
        self,
        subject: str,
        kind: Any,
        handler: Handler[Any],
        *,
        queue: str = "",
        traced: bool = True,
    ) -> None:
        """Handle each message on `subject` decoded as `kind`; bad ones are dead-lettered."""
        dec = self.decoder(kind)
        label = getattr(kind, "__name__", "message")

        async def on_msg(msg: Msg) -> None:
            try:
                obj = dec.decode(msg.data)
            except msgspec.DecodeError as exc:
                await self.dead_letter(msg.subject, msg.data, str(exc), _reason_class(exc))
                return
            delivery = Delivery(msg.subject, msg.headers or {}, reply=msg.reply or "")
            try:
                if traced:
                    with self._tracer.start_as_current_span(
                        f"process {label}", context=extract(msg.headers)
                    ):
                        await handler(obj, delivery)
                else:
                    await handler(obj, delivery)
                self.metrics.message(label, "ok")
            except Permanent as exc:
                await self.dead_letter(msg.subject, msg.data, str(exc), "permanent")
            except Exception:
                self.metrics.message(label, "error")
                log.exception("handler failed", extra={"subject": msg.subject})

        self._subs.append(
            await self.nc.subscribe(
                subject,
                queue=queue,
                cb=on_msg,
                pending_msgs_limit=1_000_000,
                pending_bytes_limit=512 * 1024 * 1024,
            )
        )

    # -- JetStream consumers ---------------------------------------------------
    async def consume(
        self,
        subject: str,
        kind: Any,
        handler: Handler[Any],
        *,
        durable: str,
        max_deliver: int = 10,
        ack_wait_s: float = 30.0,
        batch: int = 32,
        deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
    ) -> None:
        """A durable pull consumer: ack on success, nak with delay on Retryable or error,
        dead-letter and term on Permanent, undecodable, or the last allowed delivery."""
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait_s,
            max_deliver=max_deliver,
            deliver_policy=deliver_policy,
            filter_subject=subject,
        )
        psub = await self.js.pull_subscribe(subject, durable=durable, config=config)
        consumer = _Consumer(subject, durable)
        consumer.idle.set()
        self._consumers.append(consumer)
        dec = self.decoder(kind)
        label = getattr(kind, "__name__", "message")

        async def loop() -> None:
            while not self._stopping.is_set():
                # A long poll for a whole batch returns only when the batch is full or
                # the poll expires, which would hold a lone message for up to the poll's
                # length. So: long-poll for one message, then take whatever else is
                # already waiting without blocking.
                try:
                    msgs = await psub.fetch(1, timeout=1.0)
                except (NatsTimeout, TimeoutError):
                    continue
                except ConnectionClosedError:
                    return
                except Exception:
                    log.warning("fetch failed", exc_info=True, extra={"durable": durable})
                    await asyncio.sleep(0.5)
                    continue
                if batch > 1:
                    with contextlib.suppress(NatsTimeout, TimeoutError):
                        msgs += await psub.fetch(batch - 1, timeout=0.05)
                consumer.pending = list(msgs)
                while consumer.pending:
                    msg = consumer.pending.pop(0)
                    if self._stopping.is_set():
                        await _settle(msg.nak())
                        continue
                    consumer.current = msg
                    consumer.idle.clear()
                    try:
                        await self._handle_js(msg, dec, label, handler, max_deliver)
                    finally:
                        consumer.current = None
                        consumer.idle.set()

        consumer.task = self.spawn(loop(), f"consume:{durable}")

    async def _handle_js(
        self,
        msg: Msg,
        dec: msgspec.json.Decoder[Any],
        label: str,
        handler: Handler[Any],
        max_deliver: int,
    ) -> None:
        meta = msg.metadata
        attempt = meta.num_delivered or 1
        try:
            obj = dec.decode(msg.data)
        except msgspec.DecodeError as exc:
            await self.dead_letter(msg.subject, msg.data, str(exc), _reason_class(exc))
            await _settle(msg.term())
            return
        delivery = Delivery(
            msg.subject, msg.headers or {}, attempt=attempt, stream_seq=meta.sequence.stream
        )
        started = time.perf_counter()
        try:
            with self._tracer.start_as_current_span(
                f"process {label}", context=extract(msg.headers)
            ):
                await handler(obj, delivery)
        except asyncio.CancelledError:
            await _settle(msg.nak())
            raise
        except Retryable as exc:
            self.metrics.message(label, "retried")
            await _settle(msg.nak(delay=exc.after_s))
            return
        except Permanent as exc:
            await self.dead_letter(msg.subject, msg.data, str(exc), "permanent")
            await _settle(msg.term())
            return
        except Exception as exc:
            if attempt >= max_deliver:
                await self.dead_letter(
                    msg.subject, msg.data, f"failed {attempt} times, last: {exc}", "exhausted"
                )
                await _settle(msg.term())
            else:
                self.metrics.message(label, "error")
                log.exception("handler failed; will retry", extra={"subject": msg.subject})
                await _settle(msg.nak(delay=retry_delay(attempt)))
            return
        finally:
            self.metrics.handler_seconds.labels(self.name, label).observe(
                time.perf_counter() - started
            )
        self.metrics.message(label, "ok")
        await _settle(msg.ack())

    async def _drain_consumers(self, deadline_s: float) -> None:
        if not self._consumers:
            return
        waits = [c.idle.wait() for c in self._consumers]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), deadline_s)
        except TimeoutError:
            log.warning("in-flight work did not finish in time; handing it back")
        for consumer in self._consumers:
            if consumer.task is not None:
                consumer.task.cancel()
        await asyncio.gather(
            *(c.task for c in self._consumers if c.task is not None), return_exceptions=True
        )
        for consumer in self._consumers:
            for msg in consumer.pending:
                await _settle(msg.nak())
            consumer.pending.clear()

    # -- request/reply -----------------------------------------------------------
    async def endpoint(
        self,
        name: str,
        subject: str,
        kind: Any,
        handler: Responder[Any],
        *,
        api: bool = False,
        queue_group: str | None = None,
    ) -> None:
        """Answer requests on `subject`, decoded as `kind`, with the handler's result as JSON.

        A request that does not decode gets `{"error": {"code": 400, "message": ...}}`
        and the NATS micro error headers; the handler is not called. With `api=True`
        the endpoint belongs to the shared `fleet-api` micro service.
        """
        dec = self.decoder(kind)

        async def on_request(req: Request) -> None:
            raw = req.data or b"{}"
            try:
                obj = dec.decode(raw)
            except msgspec.DecodeError as exc:
                self.metrics.count("requests.rejected")
                await _respond_error(req, 400, f"bad request on {req.subject}: {exc}")
                return
            delivery = Delivery(req.subject, req.headers or {})
            try:
                with self._tracer.start_as_current_span(
                    f"handle {name}", context=extract(req.headers)
                ):
                    result = await handler(obj, delivery)
            except RequestError as exc:
                self.metrics.count("requests.refused")
                await _respond_error(req, exc.code, str(exc))
                return
            except Exception as exc:
                self.metrics.count("requests.failed")
                log.exception("request handler failed", extra={"subject": req.subject})
                await _respond_error(req, 500, f"{name} failed: {exc}")
                return
            self.metrics.count("requests.ok")
            await req.respond(result if isinstance(result, bytes) else encode(result))

        if api:
            if self._api is None:
                self._api = await add_service(
                    self.nc,
                    name="fleet-api",
                    version=self.version,
                    description="fleetplane request/reply API (fleet.api.<op>)",
                    metadata={"served_by": self.name, "instance": self.instance},
                )
        micro = self._api if api else self._micro
        if micro is None:
            raise RuntimeError("endpoint() must be called from setup(), once connected")
        await micro.add_endpoint(
            name=name.replace(".", "_"),
            subject=subject,
            handler=on_request,
            queue_group=queue_group,
        )

    async def api_endpoint(self, op: str, kind: Any, handler: Responder[Any]) -> None:
        """Serve `fleet.api.<op>` as part of the `fleet-api` micro service."""
        await self.endpoint(op, subjects.api(op), kind, handler, api=True)


async def _respond_error(req: Request, code: int, message: str) -> None:
    body = encode({"error": {"code": code, "message": message}})
    await req.respond_error(str(code), message[:200].replace("\n", " "), data=body)


async def _settle(ack: Awaitable[None]) -> None:
    try:
        await ack
    except Exception:
        log.debug("ack/nak failed (connection closing?)", exc_info=True)


def _reason_class(exc: msgspec.DecodeError) -> str:
    return "invalid" if isinstance(exc, msgspec.ValidationError) else "decode"
