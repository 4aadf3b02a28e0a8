"""Acked JetStream publishes, pipelined over one reply subscription.

nats-py's `publish_async` does this job too, but for each publish it waits on a
semaphore through `wait_for`, draws a NUID and random bytes for the reply
token, and parses the stream's ack with `json.loads` into a dataclass; at
thousands of jobs a second that was a third of what a job cost a unit and the
gateway (docs/adr/0011-jobs.md). Here a publish is a counter, a future and one
PUB; the ack is decoded by msgspec; one timer fails the publishes the stream
did not answer in time.

The semantics are JetStream's own: the stream's ack (or its error, or "no
responders" when no stream takes the subject) is the publish's result, and
`Nats-Msg-Id` makes a repeated publish a `duplicate` that is stored once.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from contracts.base import UNDECODABLE


class Stored(msgspec.Struct, frozen=True):
    """The stream's ack of one publish."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False


class _ApiError(msgspec.Struct, frozen=True):
    code: int = 0
    err_code: int = 0
    description: str = ""


class _Reply(msgspec.Struct, frozen=True):
    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: _ApiError | None = None


class PublishRefused(Exception):
    """The stream answered the publish with an error, or no stream takes the subject."""


_REPLY = msgspec.json.Decoder(_Reply)


class PubAcks:
    """Acked publishes on `nc` with one reply subscription; `start` before use and
    `close` when done (closing the connection also ends the subscription)."""

    def __init__(self, nc: Client, *, timeout_s: float = 5.0) -> None:
        self.nc = nc
        self.timeout_s = timeout_s
        """How long a publish waits for the stream's ack before it fails, seconds."""
        self._prefix = ""
        self._sub: Any = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, tuple[asyncio.Future[Stored], float]] = {}
        """Publishes waiting for their ack with their deadlines (loop time), oldest first:
        one timeout for all, so insertion order is deadline order."""
        self._timer: asyncio.TimerHandle | None = None

    @property
    def pending(self) -> int:
        """Publishes still waiting for the stream's ack."""
        return len(self._waiting)

    async def start(self) -> None:
        """Subscribe to this publisher's replies."""
        if self._sub is None:
            self._prefix = self.nc.new_inbox() + "."
            self._sub = await self.nc.subscribe(self._prefix + "*", cb=self._on_reply)

    async def close(self) -> None:
        """Stop listening; publishes still waiting fail with `TimeoutError`."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        sub, self._sub = self._sub, None
        if sub is not None and not self.nc.is_closed:
            try:
                await sub.unsubscribe()
            except Exception:  # the connection is going away: nothing left to stop
                pass
        waiting, self._waiting = self._waiting, {}
        for fut, _ in waiting.values():
            if not fut.done():
                fut.set_exception(TimeoutError("the publisher closed before the stream acked"))

    async def send(self, subject: str, data: bytes, msg_id: str) -> asyncio.Future[Stored]:
        """Publish with the de-duplication id `msg_id`; a future of the stream's ack."""
        if self._sub is None:
            await self.start()
        n = next(self._ids)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Stored] = loop.create_future()
        deadline = loop.time() + self.timeout_s
        self._waiting[n] = (fut, deadline)
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._expire)
        try:
            await self.nc.publish(
                subject, data, reply=f"{self._prefix}{n}", headers={"Nats-Msg-Id": msg_id}
            )
        except BaseException:
            self._waiting.pop(n, None)
            raise
        return fut

    async def publish(self, subject: str, data: bytes, msg_id: str) -> Stored:
        """Publish and wait for the stream's ack (`PublishRefused`, `TimeoutError`)."""
        return await (await self.send(subject, data, msg_id))

    def _expire(self) -> None:
        """Fail the publishes past their deadline, then wait for the next oldest."""
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._waiting:
            n, (fut, deadline) = next(iter(self._waiting.items()))
            if deadline > now:
                self._timer = loop.call_at(deadline, self._expire)
                return
            del self._waiting[n]
            if not fut.done():
                fut.set_exception(TimeoutError(f"no ack from the stream in {self.timeout_s:g} s"))

    async def _on_reply(self, msg: Msg) -> None:
        try:
            n = int(msg.subject[len(self._prefix) :])
        except ValueError:
            return
        entry = self._waiting.pop(n, None)
        if entry is None or entry[0].done():
            return  # answered after it timed out
        fut = entry[0]
        if not msg.data:  # a status message: no stream takes the subject (503)
            status = (msg.headers or {}).get("Status", "")
            fut.set_exception(PublishRefused(f"no stream answered the publish (status {status})"))
            return
        try:
            reply = _REPLY.decode(msg.data)
        except UNDECODABLE as exc:
            fut.set_exception(PublishRefused(f"undecodable ack from the stream: {exc}"))
            return
        if reply.error is not None:
            fut.set_exception(PublishRefused(reply.error.description or "stream error"))
        else:
            fut.set_result(Stored(reply.stream, reply.seq, reply.duplicate))


__all__ = ["PubAcks", "PublishRefused", "Stored"]
