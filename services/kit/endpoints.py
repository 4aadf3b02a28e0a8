"""Request/reply endpoints of a service, as NATS micro services.

Each service registers itself as a micro service named after it (so `$SRV.PING`
and `fleet status` find every instance, with a `status` endpoint); endpoints
of the shared `fleet.api.<op>` API belong to a second micro service,
`fleet-api`, whichever service serves them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import Service as MicroService
from opentelemetry.trace import Tracer

from contracts import subjects
from contracts.base import UNDECODABLE
from services.kit.messages import Delivery, RequestError, Responder, decoder, encode
from services.kit.metrics import ServiceMetrics
from services.kit.tracing import extract

log = logging.getLogger("fleet.service")


class Endpoints:
    """The service's micro services and the endpoints added to them."""

    def __init__(
        self,
        service: str,
        version: str,
        instance: str,
        metrics: ServiceMetrics,
        tracer: Tracer,
    ) -> None:
        self.service = service
        self.version = version
        self.instance = instance
        self.metrics = metrics
        self.tracer = tracer
        self._nc: Client | None = None
        self._micro: MicroService | None = None
        self._api: MicroService | None = None

    async def open(
        self,
        nc: Client,
        description: str,
        metadata: dict[str, str],
        status: Callable[[], dict[str, Any]],
    ) -> None:
        """Register the service's own micro service, with its `status` endpoint."""
        self._nc = nc
        self._micro = await add_service(
            nc,
            name=self.service,
            version=self.version,
            description=description,
            metadata=metadata,
            stats_handler=lambda _stats: status(),
        )

        async def on_status(req: Request) -> None:
            await req.respond(encode(status()))

        await self._micro.add_endpoint(
            name="status", subject=f"fleet.svc.{self.service}.status", handler=on_status
        )

    async def add(
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

        A request that does not decode, or is empty, gets
        `{"error": {"code": 400, "message": ...}}` and the NATS micro error headers; the
        handler is not called. With `api=True` the endpoint belongs to the shared
        `fleet-api` micro service.
        """
        dec = decoder(kind)

        async def on_request(req: Request) -> None:
            if not req.data.strip():
                # Never read as `{}`: on a destructive op that would run it with defaults.
                self.metrics.count("requests.rejected")
                await _respond_error(
                    req, 400, f"empty request on {req.subject}: send a JSON object ({{}} for none)"
                )
                return
            try:
                obj = dec.decode(req.data)
            except UNDECODABLE as exc:
                self.metrics.request(name, "rejected")
                await _respond_error(req, 400, f"bad request on {req.subject}: {exc}")
                return
            delivery = Delivery(req.subject, req.headers or {}, data=req.data)
            try:
                with self.tracer.start_as_current_span(
                    f"handle {name}", context=extract(req.headers)
                ):
                    result = await handler(obj, delivery)
            except RequestError as exc:
                self.metrics.request(name, "refused")
                await _respond_error(req, exc.code, str(exc))
                return
            except Exception as exc:
                self.metrics.request(name, "failed")
                log.exception("request handler failed", extra={"subject": req.subject})
                await _respond_error(req, 500, f"{name} failed: {exc}")
                return
            self.metrics.request(name, "ok")
            await req.respond(result if isinstance(result, bytes) else encode(result))

        if api and self._api is None and self._nc is not None:
            self._api = await add_service(
                self._nc,
                name="fleet-api",
                version=self.version,
                description="fleetplane request/reply API (fleet.api.<op>)",
                metadata={"served_by": self.service, "instance": self.instance},
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

    async def add_api(self, op: str, kind: Any, handler: Responder[Any]) -> None:
        """Serve `fleet.api.<op>` as part of the `fleet-api` micro service."""
        await self.add(op, subjects.api(op), kind, handler, api=True)

    async def close(self) -> None:
        """Stop both micro services; a failure (connection gone) is only logged."""
        for micro in (self._micro, self._api):
            if micro is not None:
                try:
                    await micro.stop()
                except Exception:
                    log.debug("micro stop failed", exc_info=True)


async def _respond_error(req: Request, code: int, message: str) -> None:
    body = encode({"error": {"code": code, "message": message}})
    await req.respond_error(str(code), message[:200].replace("\n", " "), data=body)
