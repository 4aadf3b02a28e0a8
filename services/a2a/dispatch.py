"""JSON-RPC 2.0 over NATS for A2A: parse, validate, admit, route by a method table, answer.

The Dispatcher knows nothing of tasks: the methods (services.a2a.methods) are
entries of its table, each a params type and a handler, unary (one answer) or
streaming (answers sent in order to the reply inbox, then an empty message
with `A2A-Stream-End: true`). Before a handler runs the request has a valid
envelope, a known method (v0.3 names are upgraded), params of the method's
type, a supported A2A-Version, a valid tenant, and the tenant's rate limit
has admitted it. Every failure is answered with the spec's error code.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from nats.aio.msg import Msg

from contracts import subjects
from contracts.a2a import (
    HEADER_STREAM_END,
    HEADER_TENANT,
    HEADER_VERSION,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    NOT_OFFERED,
    PARSE_ERROR,
    V03_ALIASES,
    VERSION_NOT_SUPPORTED,
    JsonRpcError,
    JsonRpcErrorResponse,
    JsonRpcResponse,
)
from contracts.base import UNDECODABLE
from services.a2a.compat import upgrade_params
from services.a2a.errors import RpcFailure
from services.a2a.tenants import A2ASettings, Refused, TenantLimits, valid_tenant
from services.kit import Service

log = logging.getLogger("fleet.a2a")
_ENC = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Call:
    """Who called and how: what a method handler gets besides its params."""

    tenant: str
    headers: dict[str, str] = field(default_factory=dict)


Unary = Callable[[Any, Call], Awaitable[Any]]
Streaming = Callable[[Any, Call], AsyncIterator[Any]]


@dataclass(frozen=True, slots=True)
class Method:
    """One entry of the method table."""

    params: type[Any]
    unary: Unary | None = None
    streaming: Streaming | None = None


class Dispatcher:
    """Answers requests on `a2a.<agent>.rpc` from a table of methods."""

    def __init__(
        self,
        service: Service[Any],
        agent: str,
        settings: A2ASettings,
        limits: TenantLimits,
    ) -> None:
        self.service = service
        self.agent = agent
        self.settings = settings
        self.limits = limits
        self.methods: dict[str, Method] = {}

    def add(self, name: str, params: type[Any], handler: Unary) -> None:
        """Serve `name`: `handler(params, call)` returns the result."""
        self.methods[name] = Method(params, unary=handler)

    def add_streaming(self, name: str, params: type[Any], handler: Streaming) -> None:
        """Serve `name` as a stream: each item `handler(params, call)` yields is an answer."""
        self.methods[name] = Method(params, streaming=handler)

    @staticmethod
    def now() -> float:
        return time.monotonic()

    async def handle(self, msg: Msg) -> None:
        """Answer one request; never raises."""
        rpc_id: Any = None
        streaming = False
        try:
            body = _body_of(msg.data)
            rpc_id = body.get("id")
            if not isinstance(rpc_id, str | int | None) or isinstance(rpc_id, bool):
                rpc_id = None
                raise RpcFailure(INVALID_REQUEST, "id must be a string, a number or null")
            name, method, raw = self._method_of(body)
            streaming = method.streaming is not None  # from here on, a failure ends the stream
            params = _params_of(name, method, raw)
            headers = msg.headers or {}
            version = headers.get(HEADER_VERSION)
            if version and not version.strip().startswith("1."):
                raise RpcFailure(
                    VERSION_NOT_SUPPORTED,
                    f"A2A-Version {version} is not supported; this agent speaks 1.0",
                )
            tenant = self._tenant(headers.get(HEADER_TENANT), subjects.rpc_tenant(msg.subject))
            self.limits.admit(tenant, self.now())
            self.service.metrics.count(f"a2a.{name}")
            call = Call(tenant, dict(headers))
            if method.streaming is not None:
                if not msg.reply:
                    raise RpcFailure(INVALID_REQUEST, f"{name} needs a reply inbox")
                await self.reply_stream(msg.reply, rpc_id, method.streaming(params, call))
                return
            assert method.unary is not None
            result = await method.unary(params, call)
        except Refused as exc:
            self.service.metrics.count("a2a.refused")
            await self._fail(msg, rpc_id, RpcFailure(exc.code, str(exc), exc.data), streaming)
            return
        except RpcFailure as exc:
            self.service.metrics.count("a2a.errors")
            await self._fail(msg, rpc_id, exc, streaming)
            return
        except Exception as exc:
            log.exception("a2a request failed", extra={"agent": self.agent})
            failure = RpcFailure(INTERNAL_ERROR, f"internal error: {exc}")
            await self._fail(msg, rpc_id, failure, streaming)
            return
        if msg.reply:
            await self.service.nc.publish(msg.reply, envelope(rpc_id, result))

    async def reply_stream(self, inbox: str, rpc_id: Any, items: AsyncIterator[Any]) -> None:
        """Send each item as a JSON-RPC response to the inbox, then the end-of-stream marker.

        An error raised by `items` propagates without the marker: handle() answers it
        and then ends the stream, so a call refused before its first event sees why."""
        nc = self.service.nc
        try:
            async for item in items:
                await nc.publish(inbox, envelope(rpc_id, item))
        except asyncio.CancelledError:
            await nc.publish(inbox, b"", headers={HEADER_STREAM_END: "true"})
            raise
        await nc.publish(inbox, b"", headers={HEADER_STREAM_END: "true"})

    async def _fail(self, msg: Msg, rpc_id: Any, exc: RpcFailure, streaming: bool) -> None:
        if not msg.reply:
            return
        err = JsonRpcError(code=exc.code, message=str(exc), data=exc.data)
        await self.service.nc.publish(
            msg.reply, _ENC.encode(JsonRpcErrorResponse(id=rpc_id, error=err))
        )
        if streaming:
            await self.service.nc.publish(msg.reply, b"", headers={HEADER_STREAM_END: "true"})

    def _method_of(self, body: dict[str, Any]) -> tuple[str, Method, dict[str, Any]]:
        name = body.get("method")
        if body.get("jsonrpc") != "2.0" or not isinstance(name, str):
            raise RpcFailure(
                INVALID_REQUEST, 'expected {"jsonrpc": "2.0", "method": "...", "id": ...}'
            )
        params = body.get("params") or {}
        if not isinstance(params, dict):
            raise RpcFailure(INVALID_PARAMS, "params must be an object")
        if name in V03_ALIASES:
            name, params = V03_ALIASES[name], upgrade_params(params)
        method = self.methods.get(name)
        if method is None and name in NOT_OFFERED:
            raise RpcFailure(
                NOT_OFFERED[name],
                f"{name} is not offered by this agent (see its card's capabilities); "
                f"it serves {', '.join(self.methods)}",
            )
        if method is None:
            raise RpcFailure(
                METHOD_NOT_FOUND,
                f"method {name!r} not found; this agent serves {', '.join(self.methods)}",
            )
        return name, method, params

    def _tenant(self, tenant: str | None, bound: str | None = None) -> str:
        """The caller's tenant: the subject's when the call came on `a2a.<agent>.rpc.<tenant>`
        (a secured server lets only that tenant's identity publish there), else the
        `Fleet-Tenant` header's. A header naming another tenant than the subject is refused."""
        if bound is not None:
            if tenant is not None and tenant != bound:
                raise RpcFailure(
                    INVALID_REQUEST,
                    f"Fleet-Tenant {tenant[:40]!r} is not the tenant of the subject this call "
                    f"came on ({bound}); drop the header or call as that tenant",
                )
            return bound
        if tenant is None:
            if self.settings.require_tenant:
                raise RpcFailure(INVALID_REQUEST, "a Fleet-Tenant header is required")
            tenant = self.settings.default_tenant
        if not valid_tenant(tenant):
            raise RpcFailure(INVALID_REQUEST, f"tenant {tenant[:40]!r} is not a valid tenant id")
        return tenant


def envelope(rpc_id: Any, result: Any) -> bytes:
    """A JSON-RPC success response carrying `result`."""
    return _ENC.encode(JsonRpcResponse(id=rpc_id, result=result))


def _params_of(name: str, method: Method, params: dict[str, Any]) -> Any:
    try:
        return msgspec.convert(params, method.params)
    except msgspec.ValidationError as exc:
        raise RpcFailure(INVALID_PARAMS, f"invalid params for {name}: {exc}") from None


def _body_of(data: bytes) -> dict[str, Any]:
    try:
        body = msgspec.json.decode(data)
    except UNDECODABLE as exc:
        raise RpcFailure(PARSE_ERROR, f"parse error: {exc}") from None
    if not isinstance(body, dict):
        raise RpcFailure(INVALID_REQUEST, "a JSON-RPC request is a JSON object")
    return body
