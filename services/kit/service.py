"""The Service base: connect, typed subscribe, JetStream consumers, health, graceful stop.

A service subclasses `Service[ItsSettings]`, sets `name`, and in `setup()` calls
`subscribe`, `listen`, `consume`, `endpoint`/`api_endpoint` and `every`.
Lifecycle: created -> starting -> ready -> draining -> stopped. `stop()` stops
taking work, lets in-flight handlers finish until `stop_deadline_s`, naks what
is still running (JetStream redelivers it), then closes connections.

The parts live in modules of their own and the Service composes them: core
subscriptions (services.kit.subscriptions), pull consumers (consumers),
request endpoints (endpoints), background tasks (background), dead letters
(deadletters) and, for a service with `singleton = True`, the lease
(standby): it waits in state `standby` after connecting until it holds its
lease, and only then runs setup(); losing the lease stops it at once (every
task it runs is cancelled before it takes another step, handlers in flight hand
their messages back), and `main()` exits non-zero so a supervisor restarts it as
a standby.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar, cast, get_args, get_origin

import msgspec
from nats.aio.client import Client
from nats.js import JetStreamContext
from opentelemetry.trace import Tracer

from contracts import subjects
from contracts.streams import ALL_STREAMS, retained
from services.kit.background import Background, unless_stopped
from services.kit.binding import creates
from services.kit.bus import connect_as, ensure_streams, settled
from services.kit.config import KitSettings, load_settings, resolve_nats_url
from services.kit.consumers import Consumers
from services.kit.deadletters import DeadLetters
from services.kit.endpoints import Endpoints
from services.kit.http import HealthServer
from services.kit.lease import Lease
from services.kit.messages import (
    Delivery,
    Handler,
    RequestError,
    Responder,
    decoder,
    encode,
    retry_delay,
)
from services.kit.metrics import ServiceMetrics
from services.kit.process import LEASE_LOST_EXIT, run_main, serve
from services.kit.publisher import Publisher
from services.kit.redact import add_secret, load_secrets
from services.kit.standby import Standby
from services.kit.store import Store
from services.kit.subscriptions import Subscriptions
from services.kit.tracing import inject, tracer

__all__ = [
    "LEASE_LOST_EXIT",
    "Delivery",
    "Handler",
    "RequestError",
    "Responder",
    "Service",
    "encode",
    "retry_delay",
]

S = TypeVar("S", bound=KitSettings)
State = Literal["created", "starting", "standby", "ready", "draining", "stopped"]
log = logging.getLogger("fleet.service")


class Service(Generic[S]):
    """Base of every fleetplane service; `S` is the type of its settings."""

    name: ClassVar[str] = "service"
    version: ClassVar[str] = "0.1.0"
    description: ClassVar[str] = ""
    settings_type: ClassVar[type[KitSettings]] = KitSettings
    """Set from the generic parameter: `class Scaler(Service[ScalerSettings])`."""
    migrations: ClassVar[Sequence[str] | None] = None
    """SQL migrations of the service's store; None for a service with no store."""
    singleton: ClassVar[bool] = False
    """True: only the instance holding the lease runs; others wait as standbys."""

    settings: S

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            if get_origin(base) is Service:
                (kind,) = get_args(base)
                if isinstance(kind, type) and issubclass(kind, KitSettings):
                    cls.settings_type = kind

    def __init__(self, settings: S | None = None, *, nats_url: str | None = None):
        self.settings = (
            settings if settings is not None else cast(S, load_settings(self.settings_type))
        )
        self.instance = f"{socket.gethostname()}-{os.getpid()}-{id(self) % 10000}"
        self.state: State = "created"
        self.metrics = ServiceMetrics(self.name)
        self.nats_url = resolve_nats_url(nats_url, self.settings.nats.url)
        self.store: Store | None = None
        self.http_port = 0
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._stopping = asyncio.Event()
        self._set_up = False
        self._stopped = asyncio.Event()
        self._http = HealthServer(self.metrics.registry, self._healthz, self._readyz)
        self._started = time.time()
        self._tracer = tracer(self.name)
        self.background = Background(self.name, self._stopping)
        self.dead_letters = DeadLetters(self.name, self.metrics, lambda: self.js)
        self.subscriptions = Subscriptions(
            lambda: self.nc, self.metrics, self._tracer, self.dead_letters
        )
        self.consumers = Consumers(
            self.name,
            lambda: self.js,
            self.metrics,
            self._tracer,
            self.dead_letters,
            self._stopping,
            self.background.spawn,
        )
        self.endpoints = Endpoints(
            self.name, self.version, self.instance, self.metrics, self._tracer
        )
        self.publisher = Publisher(lambda: self.nc, lambda: self.js)
        self.standby: Standby | None = None
        # The public API of the parts (what setup() calls), documented where each lives.
        self.spawn = self.background.spawn
        self.every = self.background.every
        self.dead_letter = self.dead_letters.send
        self.publish = self.publisher.publish
        self.subscribe = self.subscriptions.typed
        self.listen = self.subscriptions.listen
        self.consume = self.consumers.consume
        self.endpoint = self.endpoints.add
        self.api_endpoint = self.endpoints.add_api
        self.decoder = decoder
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

    @property
    def tracer(self) -> Tracer:
        """This service's tracer: a span started with it is one of the service's spans, and
        what the service publishes or asks inside it carries its trace context."""
        return self._tracer

    @property
    def lease(self) -> Lease | None:
        """A singleton's lease once it has asked for it; None for other services."""
        return self.standby.lease if self.standby is not None else None

    @property
    def lease_lost(self) -> bool:
        """True once a singleton lost its lease; it then stops."""
        return self.standby is not None and self.standby.lost

    @property
    def lease_token(self) -> int:
        """A singleton's fencing token: the lease revision at which it took the lease
        (higher for every later holder); 0 for other services and before the lease."""
        lease = self.lease
        return lease.token if lease is not None else 0

    @property
    def stopping(self) -> bool:
        """True from the moment a stop was asked for."""
        return self._stopping.is_set()

    def request_stop(self) -> None:
        """Ask the service to stop, as SIGTERM does: serve() returns after a graceful stop."""
        self._stopping.set()

    async def api_call(self, op: str, body: Any, timeout_s: float) -> dict[str, Any]:
        """The `fleet.api.<op>` answer to `body`, in this service's trace; when no service
        answers, `{"error": {...}}` naming the operation, so a caller (a model's tool
        call) gets an answer it can read rather than an exception."""
        try:
            reply = await self.nc.request(
                subjects.api(op), encode(body), timeout=timeout_s, headers=inject()
            )
            answer = msgspec.json.decode(reply.data)
        except Exception as exc:
            return {
                "error": {
                    "code": 503,
                    "message": f"fleet.api.{op} did not answer "
                    f"({type(exc).__name__}); is its service running?",
                }
            }
        return answer if isinstance(answer, dict) else {"result": answer}

    async def start(self) -> None:
        """Connect, ensure streams, open the store, register, run setup(); then ready."""
        self.state = "starting"
        s = self.settings
        load_secrets()  # before anything can be sent or stored: see services.kit.redact
        add_secret(s.nats.password)
        self.http_port = await self._http.start(s.http.host, s.http.port)
        self._nc = await connect_as(
            self.nats_url, f"fleet-{self.name}", s.nats, self._stopping.is_set
        )
        self._js = self._nc.jetstream()
        creates(s.nats.create_resources)
        if s.nats.create_resources:  # else `fleet init` made them, and we may only bind
            keep = s.retention
            specs = retained(ALL_STREAMS, keep.days, keep.rollup_days, keep.metrics_days)
            await ensure_streams(self._js, specs, replicas=s.nats.replicas)
        await self.endpoints.open(
            self._nc,
            self.description or self.name,
            {"instance": self.instance, "http_port": str(self.http_port)},
            self.status,
        )
        if self.singleton and not await self._stand_by():
            return  # stopped while waiting for the lease
        try:
            if self.migrations is not None:  # a standby leaves the store to the holder
                path = Path(s.store.dir) / f"{self.name}.db"
                self.store = await Store.open(path, self.migrations)
            await self.setup()
            self._set_up = True
            # Subscriptions are live on the server before we say ready; a stop that
            # comes meanwhile (a takeover stopped at once) does not wait the flush out.
            await unless_stopped(settled(self._nc), self._stopping)
        except Exception:
            # A stop that came while we took over closed what setup() was using.
            if not self._stopping.is_set():
                raise
        if self._stopping.is_set():
            log.info("stopped while starting", extra={"service": self.name})
            return
        self.state = "ready"
        if self.standby is not None:
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
        await self.subscriptions.close()
        await self.consumers.drain(self.settings.stop_deadline_s)
        await self.background.cancel_all()
        try:
            if self._set_up:  # nothing to flush for a service stopped before setup()
                await self.teardown()
        finally:
            if self.standby is not None:
                await self.standby.release()  # after teardown: the next holder sees our writes
            await self.endpoints.close()
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

    async def stop_asked(self) -> None:
        """Return once a stop was asked for (a signal, request_stop, a lost lease)."""
        await self._stopping.wait()

    async def serve(self) -> None:
        """Start, run until SIGTERM/SIGINT (or stop()), then stop gracefully."""
        await serve(self)

    @classmethod
    def main(cls, config: str | None = None, nats_url: str | None = None) -> int:
        """Entry point of `fleet run <service>`: settings, logging, serve; exit code."""
        return run_main(
            cls.name, cls.settings_type, lambda s: cls(cast(S, s), nats_url=nats_url), config
        )

    # -- singleton lease -----------------------------------------------------
    async def _stand_by(self) -> bool:
        """Wait as `standby` until we hold the lease; False if stopped first."""
        self.standby = Standby(self.name, self.lease_key(), self.instance, self.metrics.registry)

        def standing_by() -> None:
            self.state = "standby"

        return await self.standby.wait(self.js, self.settings, self._stopping, standing_by)

    async def _keep_lease(self) -> None:
        assert self.standby is not None
        if await self.standby.keep(self._stopping):
            return
        # No longer entitled to act: every task (consumers with their handlers in flight,
        # timers, runs a service spawned) is cancelled before it takes another step, with
        # no await in between; cancelled handlers hand their messages back (nak).
        self._stopping.set()
        self.background.halt()
        self._lease_stop = asyncio.ensure_future(self.stop())

    # -- health ------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """What /readyz, `$SRV.STATS` and `fleet status` show about this instance."""
        lease = self.lease
        return {
            "service": self.name,
            "state": self.state,
            "instance": self.instance,
            "uptime_s": round(time.time() - self._started, 1),
            "connected": bool(self._nc and self._nc.is_connected),
            "counts": dict(self.metrics.counts),
            **({"lease": "held" if lease.held else "none"} if lease else {}),
        }

    def _healthz(self) -> tuple[bool, dict[str, object]]:
        return self.state not in ("stopped",), self.status()

    def _readyz(self) -> tuple[bool, dict[str, object]]:
        # A standby is ready: it is healthy and waiting to take over, and a rolling
        # update must be able to replace the holder while it stands by.
        ok = self.state in ("ready", "standby") and bool(self._nc and self._nc.is_connected)
        return ok, self.status()
