"""A small A2A-over-NATS client: send, stream, get, list, cancel, subscribe, card.

    async with A2AClient.connect(url, "fleet", tenant="acme") as client:
        task = await client.send("where should a 70B model run?")
        async for event in client.stream("scale pool llm to 4"):
            ...

Results are the contract's Structs (contracts.a2a); an error answer raises
A2AError with the JSON-RPC code, message and data.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from types import TracebackType
from typing import Any

import msgspec
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError

from contracts import subjects
from contracts.a2a import (
    A2A_VERSION,
    HEADER_STREAM_END,
    HEADER_TENANT,
    HEADER_VERSION,
    AgentCard,
    ListTasksResponse,
    Message,
    Part,
    Role,
    SendMessageResponse,
    StreamResponse,
    Task,
)
from services.kit.tracing import inject

_ENC = msgspec.json.Encoder()


class A2AError(Exception):
    """An A2A JSON-RPC error answer."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.message = message
        self.data = data


class AgentUnreachable(A2AError):
    """No agent of that name answered on NATS: not an answer of the agent's, so its text
    has no JSON-RPC code (the code kept for callers that branch on one is -32603)."""

    def __init__(self, agent: str) -> None:
        super().__init__(-32603, f"no agent {agent!r} is answering on NATS")

    def __str__(self) -> str:
        return self.message


NO_RESPONDER_RETRIES_S = (0.05, 0.1, 0.2, 0.4, 0.8)
"""Pauses before retrying a request nobody received: agents restarting, runners that left
their queue group because they are full, interest still propagating after a (re)subscribe."""


async def request(
    nc: Client,
    subject: str,
    data: bytes,
    *,
    timeout_s: float,
    headers: dict[str, str] | None = None,
) -> Msg:
    """nc.request, retried with backoff while the server answers "no responders".

    The server sends that answer only when no subscriber received the message, so
    retrying cannot run a request twice.
    """
    for pause in (*NO_RESPONDER_RETRIES_S, None):
        try:
            return await nc.request(subject, data, timeout=timeout_s, headers=headers)
        except NoRespondersError:
            if pause is None:
                raise
            await asyncio.sleep(pause)
    raise AssertionError("unreachable")


class A2AClient:
    """Calls one agent over a NATS connection."""

    def __init__(
        self,
        nc: Client,
        agent: str,
        *,
        tenant: str | None = None,
        timeout_s: float = 300.0,
        own_connection: bool = False,
    ) -> None:
        self.nc = nc
        self.agent = agent
        self.tenant = tenant
        self.timeout_s = timeout_s
        self._own = own_connection
        self._ids = 0

    @classmethod
    async def connect(cls, url: str, agent: str, **kw: Any) -> A2AClient:
        """A client with its own NATS connection (closed by `close()` / `async with`)."""
        nc = await nats.connect(url, name="fleet-a2a-client")
        return cls(nc, agent, own_connection=True, **kw)

    async def close(self) -> None:
        if self._own and not self.nc.is_closed:
            await self.nc.close()

    async def __aenter__(self) -> A2AClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- plumbing -------------------------------------------------------------------
    @property
    def subject(self) -> str:
        """Where calls go: `a2a.<agent>.rpc.<tenant>` as a tenant that can be a subject
        token (the only way a secured deployment lets a tenant call), else the bare
        `a2a.<agent>.rpc` with the tenant in the header."""
        if self.tenant:
            try:
                return subjects.a2a_rpc_as(self.agent, self.tenant)
            except subjects.SubjectError:
                pass
        return subjects.a2a_rpc(self.agent)

    def _headers(self) -> dict[str, str]:
        hdrs = {HEADER_VERSION: A2A_VERSION}
        if self.tenant:
            hdrs[HEADER_TENANT] = self.tenant
        return inject(hdrs)  # the caller's trace, when it has one

    def _request(self, method: str, params: Any) -> bytes:
        self._ids += 1
        return _ENC.encode({"jsonrpc": "2.0", "id": self._ids, "method": method, "params": params})

    async def call_raw(self, data: bytes, timeout_s: float | None = None) -> dict[str, Any]:
        """Send raw bytes to the agent's rpc subject; the decoded JSON answer."""
        reply = await request(
            self.nc,
            self.subject,
            data,
            timeout_s=timeout_s or self.timeout_s,
            headers=self._headers(),
        )
        body: dict[str, Any] = msgspec.json.decode(reply.data)
        return body

    async def call(self, method: str, params: Any, result_type: Any = Any) -> Any:
        """Call `method`; its result decoded as `result_type`, or A2AError."""
        body = await self.call_raw(self._request(method, params))
        return _result(body, result_type)

    async def stream_raw(self, method: str, params: Any) -> AsyncGenerator[dict[str, Any], None]:
        """The JSON envelopes a streaming method sends, until the end-of-stream marker."""
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox)
        try:
            await self.nc.publish(
                self.subject,
                self._request(method, params),
                reply=inbox,
                headers=self._headers(),
            )
            while True:
                msg = await sub.next_msg(timeout=self.timeout_s)
                headers = msg.headers or {}
                if headers.get(HEADER_STREAM_END) == "true":
                    return
                if headers.get("Status") == "503":
                    raise AgentUnreachable(self.agent)
                yield msgspec.json.decode(msg.data)
        finally:
            await sub.unsubscribe()

    async def _stream(self, method: str, params: Any) -> AsyncIterator[StreamResponse]:
        # Closed here, not left to the collector: an error envelope ends this generator,
        # and the inner one must unsubscribe while the connection is still open.
        async with contextlib.aclosing(self.stream_raw(method, params)) as bodies:
            async for body in bodies:
                yield _result(body, StreamResponse)

    # -- the methods ----------------------------------------------------------------
    @staticmethod
    def user_message(
        text: str, *, context_id: str | None = None, task_id: str | None = None, data: Any = None
    ) -> Message:
        """A user message with one text part (and a data part when `data` is given)."""
        parts = [Part(text=text)]
        if data is not None:
            parts.append(Part(data=data))
        return Message(
            message_id=uuid.uuid4().hex,
            role=Role.USER,
            parts=parts,
            context_id=context_id,
            task_id=task_id,
        )

    @staticmethod
    def _params(message: Message | str, return_immediately: bool = False) -> dict[str, Any]:
        msg = A2AClient.user_message(message) if isinstance(message, str) else message
        params: dict[str, Any] = {"message": msgspec.to_builtins(msg)}
        if return_immediately:
            params["configuration"] = {"returnImmediately": True}
        return params

    async def send(self, message: Message | str, *, return_immediately: bool = False) -> Task:
        """SendMessage; the task once terminal or interrupted (or at once if asked)."""
        resp: SendMessageResponse = await self.call(
            "SendMessage", self._params(message, return_immediately), SendMessageResponse
        )
        if resp.task is None:
            raise A2AError(-32006, "the agent answered with a message, not a task", resp)
        return resp.task

    def stream(self, message: Message | str) -> AsyncIterator[StreamResponse]:
        """SendStreamingMessage: the task, then its events until it ends or waits."""
        return self._stream("SendStreamingMessage", self._params(message))

    def subscribe(self, task_id: str) -> AsyncIterator[StreamResponse]:
        """SubscribeToTask: the task as it is, then its events."""
        return self._stream("SubscribeToTask", {"id": task_id})

    async def get(self, task_id: str, history_length: int | None = None) -> Task:
        params: dict[str, Any] = {"id": task_id}
        if history_length is not None:
            params["historyLength"] = history_length
        return await self.call("GetTask", params, Task)  # type: ignore[no-any-return]

    async def list(self, **params: Any) -> ListTasksResponse:
        """ListTasks with camelCase filters (contextId, status, pageSize, pageToken...)."""
        return await self.call("ListTasks", params, ListTasksResponse)  # type: ignore[no-any-return]

    async def cancel(self, task_id: str) -> Task:
        return await self.call("CancelTask", {"id": task_id}, Task)  # type: ignore[no-any-return]

    async def card(self) -> AgentCard:
        reply = await self.nc.request(subjects.a2a_card(self.agent), b"", timeout=self.timeout_s)
        return msgspec.json.decode(reply.data, type=AgentCard)


def _result(body: dict[str, Any], result_type: Any) -> Any:
    if "error" in body:
        err = body["error"] or {}
        raise A2AError(int(err.get("code", -32603)), str(err.get("message")), err.get("data"))
    return msgspec.convert(body.get("result"), result_type)
