"""JSON-RPC 2.0 dispatch of the A2A methods: parse, validate, admit, route, answer.

`RpcDispatch` is the request side of `A2AServer` (services.kit.a2a), which
provides the task runs, the store and the tenant limits it uses.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import msgspec
from nats.aio.msg import Msg

from contracts import subjects
from contracts.a2a import (
    HEADER_STREAM_END,
    HEADER_TENANT,
    HEADER_VERSION,
    INTERNAL_ERROR,
    INTERRUPTED_STATES,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    METHODS,
    PARSE_ERROR,
    STREAMING_METHODS,
    TASK_NOT_CANCELABLE,
    TASK_NOT_FOUND,
    TERMINAL_STATES,
    UNSUPPORTED_OPERATION,
    V03_ALIASES,
    VERSION_NOT_SUPPORTED,
    CancelTaskRequest,
    GetTaskRequest,
    JsonRpcError,
    JsonRpcErrorResponse,
    JsonRpcResponse,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    SendMessageRequest,
    SendMessageResponse,
    StreamResponse,
    SubscribeToTaskRequest,
    Task,
    TaskState,
    TaskStatus,
    iso_now,
)
from services.kit.a2a_compat import upgrade_params
from services.kit.a2a_tasks import ProgressWrites, TaskStore, trimmed
from services.kit.a2a_tenants import A2ASettings, Refused, TenantLimits, valid_tenant

if TYPE_CHECKING:
    from services.kit.a2a import Run

log = logging.getLogger("fleet.a2a")
_ENC = msgspec.json.Encoder()

PARAM_TYPES: dict[str, type[Any]] = {
    "SendMessage": SendMessageRequest,
    "SendStreamingMessage": SendMessageRequest,
    "GetTask": GetTaskRequest,
    "ListTasks": ListTasksRequest,
    "CancelTask": CancelTaskRequest,
    "SubscribeToTask": SubscribeToTaskRequest,
}


class RpcFailure(Exception):
    """An error answer: JSON-RPC code, message and optional data."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data

    @classmethod
    def not_found(cls, task_id: str) -> RpcFailure:
        return cls(TASK_NOT_FOUND, f"task {task_id!r} not found", {"taskId": task_id})


class RpcDispatch:
    """Request handling of an A2AServer (its base; see services.kit.a2a)."""

    service: Any
    agent: str
    store: TaskStore
    settings: A2ASettings
    limits: TenantLimits
    runs: dict[str, Run]

    progress: ProgressWrites

    def begin(self, task: Task, message: Message, tenant: str, headers: dict[str, str]) -> Run:
        raise NotImplementedError

    def new_task(self, message: Message) -> tuple[Task, Message]:
        raise NotImplementedError

    async def cancel(self, task: Task, tenant: str) -> Task:
        raise NotImplementedError

    async def reply_stream(self, msg: Msg, rpc_id: Any, items: AsyncIterator[Any]) -> None:
        """Send each item as a JSON-RPC response to the inbox, then the end-of-stream marker.

        An error raised by `items` propagates without the marker: handle() answers it
        and then ends the stream, so a call refused before its first event sees why."""
        try:
            async for item in items:
                await self.service.nc.publish(msg.reply, self.envelope(rpc_id, item))
        except asyncio.CancelledError:
            await self.service.nc.publish(msg.reply, b"", headers={HEADER_STREAM_END: "true"})
            raise
        await self.service.nc.publish(msg.reply, b"", headers={HEADER_STREAM_END: "true"})

    @staticmethod
    def tenant_of(msg: Msg) -> str | None:
        return (msg.headers or {}).get(HEADER_TENANT)

    @staticmethod
    def version_of(msg: Msg) -> str | None:
        return (msg.headers or {}).get(HEADER_VERSION)

    @staticmethod
    def now() -> float:
        return time.monotonic()

    async def handle(self, msg: Msg) -> None:
        """Answer one request on `a2a.<agent>.rpc`; never raises."""
        rpc_id: Any = None
        streaming = False
        try:
            body = self._body_of(msg.data)
            rpc_id = body.get("id")
            if not isinstance(rpc_id, str | int | None) or isinstance(rpc_id, bool):
                rpc_id = None
                raise RpcFailure(INVALID_REQUEST, "id must be a string, a number or null")
            method, params = self._method_of(body)
            streaming = method in STREAMING_METHODS
            version = self.version_of(msg)
            if version and not version.strip().startswith("1."):
                raise RpcFailure(
                    VERSION_NOT_SUPPORTED,
                    f"A2A-Version {version} is not supported; this agent speaks 1.0",
                )
            tenant = self._tenant(msg, params)
            self.limits.admit(tenant, self.now())
            self.service.metrics.count(f"a2a.{method}")
            if streaming:
                if not msg.reply:
                    raise RpcFailure(INVALID_REQUEST, f"{method} needs a reply inbox")
                await self.reply_stream(msg, rpc_id, self._stream(method, params, tenant, msg))
                return
            result = await self._call(method, params, tenant, msg)
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
            await self.service.nc.publish(msg.reply, self.envelope(rpc_id, result))

    def envelope(self, rpc_id: Any, result: Any) -> bytes:
        """A JSON-RPC success response carrying `result`."""
        return _ENC.encode(JsonRpcResponse(id=rpc_id, result=result))

    async def _fail(self, msg: Msg, rpc_id: Any, exc: RpcFailure, streaming: bool) -> None:
        if not msg.reply:
            return
        err = JsonRpcError(code=exc.code, message=str(exc), data=exc.data)
        await self.service.nc.publish(
            msg.reply, _ENC.encode(JsonRpcErrorResponse(id=rpc_id, error=err))
        )
        if streaming:
            await self.service.nc.publish(msg.reply, b"", headers={HEADER_STREAM_END: "true"})

    @staticmethod
    def _body_of(data: bytes) -> dict[str, Any]:
        try:
            body = msgspec.json.decode(data)
        except msgspec.DecodeError as exc:
            raise RpcFailure(PARSE_ERROR, f"parse error: {exc}") from None
        if not isinstance(body, dict):
            raise RpcFailure(INVALID_REQUEST, "a JSON-RPC request is a JSON object")
        return body

    @staticmethod
    def _method_of(body: dict[str, Any]) -> tuple[str, Any]:
        method = body.get("method")
        if body.get("jsonrpc") != "2.0" or not isinstance(method, str):
            raise RpcFailure(
                INVALID_REQUEST, 'expected {"jsonrpc": "2.0", "method": "...", "id": ...}'
            )
        params = body.get("params") or {}
        if not isinstance(params, dict):
            raise RpcFailure(INVALID_PARAMS, "params must be an object")
        if method in V03_ALIASES:
            method, params = V03_ALIASES[method], upgrade_params(params)
        if method not in METHODS:
            raise RpcFailure(
                METHOD_NOT_FOUND,
                f"method {method!r} not found; this agent serves {', '.join(METHODS)}",
            )
        try:
            return method, msgspec.convert(params, PARAM_TYPES[method])
        except msgspec.ValidationError as exc:
            raise RpcFailure(INVALID_PARAMS, f"invalid params for {method}: {exc}") from None

    def _tenant(self, msg: Msg, params: Any) -> str:
        tenant = self.tenant_of(msg)
        if tenant is None:
            if self.settings.require_tenant:
                raise RpcFailure(INVALID_REQUEST, "a Fleet-Tenant header is required")
            tenant = self.settings.default_tenant
        if not valid_tenant(tenant):
            raise RpcFailure(INVALID_REQUEST, f"tenant {tenant[:40]!r} is not a valid tenant id")
        return tenant

    # -- methods -------------------------------------------------------------------------
    async def _call(self, method: str, params: Any, tenant: str, msg: Msg) -> Any:
        match method:
            case "SendMessage":
                return await self._send(params, tenant, msg)
            case "GetTask":
                task = await self._task(params.id, tenant)
                return trimmed(task, params.history_length)
            case "ListTasks":
                return await self._list(params, tenant)
            case "CancelTask":
                task = await self._task(params.id, tenant)
                if task.status.state in TERMINAL_STATES:
                    raise RpcFailure(
                        TASK_NOT_CANCELABLE,
                        f"task {task.id} is {task.status.state.value}; it cannot be canceled",
                        {"taskId": task.id, "state": task.status.state.value},
                    )
                return await self.cancel(task, tenant)
        raise RpcFailure(METHOD_NOT_FOUND, f"method {method!r} not found")

    async def _task(self, task_id: str, tenant: str) -> Task:
        run = self.runs.get(task_id)
        if run is not None and run.tenant == tenant:
            return run.task  # running here: fresher than the store
        task = await self.store.get(task_id, tenant)
        if task is None:
            raise RpcFailure.not_found(task_id)
        return task

    async def _start(
        self, params: SendMessageRequest, tenant: str, msg: Msg, *, store_now: bool = True
    ) -> Run:
        """Create (or continue) the task and start it. With `store_now` the task is stored
        before this returns, because the caller is about to hand out its id; a blocking
        call hands it out only with the result, so its task is stored with its progress
        (after `progress_write_s`) or its end, whichever comes first."""
        message = params.message
        if not message.parts:
            raise RpcFailure(INVALID_PARAMS, "message.parts must not be empty")
        if message.task_id:
            task = await self._task(message.task_id, tenant)
            state = task.status.state
            if message.task_id in self.runs or state not in (
                TaskState.INPUT_REQUIRED,
                TaskState.AUTH_REQUIRED,
            ):
                raise RpcFailure(
                    UNSUPPORTED_OPERATION,
                    f"task {task.id} is {state.value}; only a task waiting for input takes a "
                    "further message (send without taskId to start a new task)",
                )
            message = msgspec.structs.replace(message, context_id=task.context_id)
            task = msgspec.structs.replace(
                task,
                history=[*task.history, message],
                status=TaskStatus(state=TaskState.SUBMITTED, timestamp=iso_now()),
            )
        else:
            task, message = self.new_task(message)
        self.limits.start(tenant)
        if not store_now:
            self.progress.mark(task, tenant)
            return self.begin(task, message, tenant, dict(msg.headers or {}))
        try:
            await self.store.put(task, tenant)
        except Exception:
            self.limits.finish(tenant)
            raise
        return self.begin(task, message, tenant, dict(msg.headers or {}))

    async def _send(self, params: SendMessageRequest, tenant: str, msg: Msg) -> SendMessageResponse:
        config = params.configuration
        history = config.history_length if config else None
        if config is not None and config.return_immediately:
            run = await self._start(params, tenant, msg)
            return SendMessageResponse(task=trimmed(run.task, history))
        queue: asyncio.Queue[StreamResponse | None] = asyncio.Queue()
        run = await self._start(params, tenant, msg, store_now=False)
        run.listeners.append(queue)
        try:
            async with asyncio.timeout(self.settings.blocking_timeout_s):
                while (item := await queue.get()) is not None:
                    update = item.status_update
                    if update is not None and _ends(update.status.state):
                        break
        except TimeoutError:
            # The caller learns the id of a task still running: it must be readable.
            await self.progress.write_now(run.task, tenant)
        return SendMessageResponse(task=trimmed(run.task, history))

    async def _stream(
        self, method: str, params: Any, tenant: str, msg: Msg
    ) -> AsyncIterator[StreamResponse]:
        if method == "SendStreamingMessage":
            queue: asyncio.Queue[StreamResponse | None] = asyncio.Queue()
            run = await self._start(params, tenant, msg)
            run.listeners.append(queue)
            yield StreamResponse(task=run.task)
            while (item := await queue.get()) is not None:
                yield item
                if item.status_update and _ends(item.status_update.status.state):
                    return
            return
        async for item in self._subscribe(params.id, tenant):
            yield item

    async def _subscribe(self, task_id: str, tenant: str) -> AsyncIterator[StreamResponse]:
        task = await self._task(task_id, tenant)
        if task.status.state in TERMINAL_STATES:
            raise RpcFailure(
                UNSUPPORTED_OPERATION,
                f"task {task_id} is {task.status.state.value}; read it with GetTask",
            )
        run = self.runs.get(task_id)
        if run is not None:
            queue: asyncio.Queue[StreamResponse | None] = asyncio.Queue()
            run.listeners.append(queue)
            yield StreamResponse(task=run.task)
            while (item := await queue.get()) is not None:
                yield item
                if item.status_update and _ends(item.status_update.status.state):
                    return
            return
        # Another process runs it: follow its events on the task subject.
        sub = await self.service.nc.subscribe(subjects.a2a_task(self.agent, task_id))
        try:
            latest = await self._task(task_id, tenant)
            yield StreamResponse(task=latest)
            if _ends(latest.status.state):
                return
            while True:
                event = await sub.next_msg(timeout=self.settings.blocking_timeout_s)
                item = msgspec.json.decode(event.data, type=StreamResponse)
                yield item
                if item.status_update and _ends(item.status_update.status.state):
                    return
        finally:
            await sub.unsubscribe()

    async def _list(self, params: ListTasksRequest, tenant: str) -> ListTasksResponse:
        size = params.page_size or 50
        if not 1 <= size <= self.settings.max_page_size:
            raise RpcFailure(
                INVALID_PARAMS, f"pageSize must be 1..{self.settings.max_page_size}, got {size}"
            )
        try:
            offset = int(params.page_token or 0)
        except ValueError:
            raise RpcFailure(INVALID_PARAMS, "pageToken is not one this agent gave") from None
        recs = await self.store.list(tenant)
        tasks = [
            r.task
            for r in recs
            if (params.context_id is None or r.task.context_id == params.context_id)
            and (params.status is None or r.task.status.state == params.status)
        ]
        page = tasks[offset : offset + size]
        more = offset + size < len(tasks)
        include = bool(params.include_artifacts)
        return ListTasksResponse(
            tasks=[trimmed(t, params.history_length, include) for t in page],
            next_page_token=str(offset + size) if more else "",
            page_size=len(page),
            total_size=len(tasks),
        )


def _ends(state: TaskState) -> bool:
    return state in TERMINAL_STATES or state in INTERRUPTED_STATES
