"""Acknowledged JetStream writes and direct reads for the KV stores' hot path (A2A tasks, sessions).

nats-py's `js.publish` and `kv.get` go through `nc.request`: a random token
from the OS for every call (a syscall), an `asyncio.wait_for`, a JSON parse of
the ack with the stdlib, and for a KV read a JSON + base64 round of
`STREAM.MSG.GET`. `JetStreamLink` does the same exchanges with one reply
subscription per connection, counter tokens, a timer per call, msgspec for
the ack, and `$JS.API.DIRECT.GET.<stream>.<subject>` for reads (buckets opened
with `allow_direct`). The guarantees are the same: `put` returns once the
server has stored the message, or raises.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import APIError, KeyWrongLastSequenceError, NoStreamResponseError

_STATUS = "Status"
_NO_RESPONDERS = "503"
_NOT_FOUND = "404"
_WRONG_LAST_SEQUENCE = 10071


class _ApiError(msgspec.Struct):
    code: int = 0
    err_code: int = 0
    description: str = ""


class _Ack(msgspec.Struct):
    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: _ApiError | None = None


_ACK = msgspec.json.Decoder(_Ack)
_LINKS: weakref.WeakKeyDictionary[Client, JetStreamLink] = weakref.WeakKeyDictionary()


class JetStreamLink:
    """Acked publishes and direct gets over one client, sharing one reply subscription."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self._prefix = nc.new_inbox() + "."
        self._cut = len(self._prefix)
        self._waiting: dict[str, asyncio.Future[Msg]] = {}
        self._n = 0
        self._ready: asyncio.Future[None] | None = None

    @classmethod
    async def of(cls, js_or_nc: JetStreamContext | Client) -> JetStreamLink:
        """The link of this connection (created, and subscribed, on first use)."""
        nc: Client = js_or_nc._nc if isinstance(js_or_nc, JetStreamContext) else js_or_nc
        link = _LINKS.get(nc)
        if link is None:
            link = _LINKS[nc] = cls(nc)
        await link._subscribe()
        return link

    async def _subscribe(self) -> None:
        if self._ready is None:
            self._ready = asyncio.get_running_loop().create_future()
            try:
                await self.nc.subscribe(self._prefix + "*", cb=self._on_reply)
            except BaseException as exc:
                self._ready.set_exception(exc)
                self._ready = None
                raise
            self._ready.set_result(None)
        await self._ready

    async def _on_reply(self, msg: Msg) -> None:
        fut = self._waiting.pop(msg.subject[self._cut :], None)
        if fut is not None and not fut.done():
            fut.set_result(msg)

    def _expire(self, token: str) -> None:
        fut = self._waiting.pop(token, None)
        if fut is not None and not fut.done():
            fut.set_exception(TimeoutError("no answer from the NATS server in time"))

    async def _exchange(
        self, subject: str, data: bytes, headers: dict[str, str] | None, timeout_s: float
    ) -> Msg:
        self._n += 1
        token = str(self._n)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Msg] = loop.create_future()
        self._waiting[token] = fut
        timer = loop.call_later(timeout_s, self._expire, token)
        try:
            await self.nc.publish(subject, data, reply=self._prefix + token, headers=headers)
            return await fut
        finally:
            timer.cancel()
            self._waiting.pop(token, None)

    async def put(
        self,
        subject: str,
        data: bytes,
        *,
        headers: dict[str, str] | None = None,
        timeout_s: float = 5.0,
    ) -> int:
        """Publish to the stream that keeps `subject`; the stored sequence once acknowledged."""
        msg = await self._exchange(subject, data, headers, timeout_s)
        if msg.headers and msg.headers.get(_STATUS) == _NO_RESPONDERS:
            raise NoStreamResponseError
        ack = _ACK.decode(msg.data)
        if ack.error is not None:
            if ack.error.err_code == _WRONG_LAST_SEQUENCE:
                raise KeyWrongLastSequenceError(description=ack.error.description)
            raise APIError(
                code=ack.error.code,
                err_code=ack.error.err_code,
                description=ack.error.description,
            )
        return ack.seq

    async def last(self, stream: str, subject: str, *, timeout_s: float = 5.0) -> Msg | None:
        """The last message of `subject` in `stream` (which allows direct gets), or None."""
        msg = await self._exchange(f"$JS.API.DIRECT.GET.{stream}.{subject}", b"", None, timeout_s)
        status = msg.headers.get(_STATUS) if msg.headers else None
        if status == _NOT_FOUND:
            return None
        if status == _NO_RESPONDERS:
            raise NoStreamResponseError
        if status is not None:
            raise APIError(code=int(status), description=msg.headers.get("Description", ""))  # type: ignore[union-attr]
        return msg


class KvView:
    """Fast reads and writes of one KV bucket; the `KeyValue` still does everything else."""

    def __init__(self, link: JetStreamLink, bucket: str, direct: bool, kv: Any) -> None:
        self.link = link
        self.bucket = bucket
        self.stream = f"KV_{bucket}"
        self.prefix = f"$KV.{bucket}."
        self.direct = direct
        self.kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str, kv: Any) -> KvView:
        """A view of `kv` (bucket `bucket`); reads are direct when the bucket allows it."""
        info = await js.stream_info(f"KV_{bucket}")
        return cls(await JetStreamLink.of(js), bucket, bool(info.config.allow_direct), kv)

    async def get(self, key: str) -> tuple[bytes | None, int]:
        """(value, revision) of `key`; (None, 0) when absent, (None, rev) when deleted."""
        if not self.direct:
            try:
                entry = await self.kv.get(key)
            except Exception as exc:
                if type(exc).__name__ in ("KeyNotFoundError", "KeyDeletedError", "NotFoundError"):
                    return None, 0
                raise
            return (entry.value or None), int(entry.revision or 0)
        msg = await self.link.last(self.stream, self.prefix + key)
        if msg is None:
            return None, 0
        headers = msg.headers or {}
        revision = int(headers.get("Nats-Sequence", 0))
        if headers.get("KV-Operation") in ("DEL", "PURGE"):
            return None, revision
        return (msg.data or None), revision

    async def put(self, key: str, value: bytes, *, last: int | None = None) -> int:
        """Write `key`; its new revision once the server stored it. With `last`, only if
        the key's revision is still `last` (0: only if it does not exist), else
        KeyWrongLastSequenceError."""
        headers = None if last is None else {"Nats-Expected-Last-Subject-Sequence": str(last)}
        return await self.link.put(self.prefix + key, value, headers=headers)
