"""The load engine: simulated users sending A2A messages at Poisson arrivals (open loop).

Each of `users` users has its own session (context id) and belongs to one of
`tenants` tenants. Arrivals come at `rate` per second on average regardless
of how fast answers come back (open loop: a slow agent does not slow the
offered load), each from a random user. Latency is measured from the
arrival's scheduled time, so a stalled generator cannot hide queueing.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from contracts import subjects
from contracts.a2a import A2A_VERSION, HEADER_STREAM_END, HEADER_TENANT, HEADER_VERSION
from contracts.base import UNDECODABLE
from services.a2a.client import NO_RESPONDER_RETRIES_S, request
from tools.loadgen.stats import Tally, error_kind


class _Status(msgspec.Struct):
    state: str = ""


class _Task(msgspec.Struct):
    status: _Status = msgspec.field(default_factory=_Status)


class _StatusUpdate(msgspec.Struct):
    status: _Status = msgspec.field(default_factory=_Status)


class _Result(msgspec.Struct, rename="camel"):
    task: _Task | None = None
    status_update: _StatusUpdate | None = None


class _Error(msgspec.Struct):
    code: int = -32603


class _Reply(msgspec.Struct):
    """The part of a JSON-RPC answer the generator reads (the rest is skipped)."""

    result: _Result | None = None
    error: _Error | None = None


_DEC = msgspec.json.Decoder(_Reply)
_ENC = msgspec.json.Encoder()
GOOD = "TASK_STATE_COMPLETED"


@dataclass
class Plan:
    """What to send."""

    agent: str
    users: int
    rate: float
    duration_s: float
    stream: bool = False
    tenants: int = 0
    """0: one tenant per 20 users (within the default quota of 50 sessions)."""
    timeout_s: float = 30.0
    seed: int | None = None
    text: str = "Hello! Summarise our conversation so far in one line."

    def tenant_count(self) -> int:
        return self.tenants or max(1, (self.users + 19) // 20)


class LoadRun:
    """One run of a Plan on a NATS connection."""

    def __init__(self, nc: Client, plan: Plan) -> None:
        self.nc = nc
        self.plan = plan
        self.tally = Tally()
        self.rng = random.Random(plan.seed)
        self.run_id = uuid.uuid4().hex[:8]
        self.subject = subjects.a2a_rpc(subjects.hosted_agent(plan.agent))
        tenants = plan.tenant_count()
        self.headers = [
            {HEADER_VERSION: A2A_VERSION, HEADER_TENANT: f"lg-{self.run_id}-t{i}"}
            for i in range(tenants)
        ]
        self._ids = 0
        self._streams: dict[str, asyncio.Queue[Msg]] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self.started = 0.0
        self.arrivals_done = 0.0

    def _body(self, user: int) -> bytes:
        self._ids += 1
        method = "SendStreamingMessage" if self.plan.stream else "SendMessage"
        message = {
            "messageId": f"{self.run_id}-{self._ids}",
            "role": "ROLE_USER",
            "parts": [{"text": self.plan.text}],
            "contextId": f"lg-{self.run_id}-u{user}",
        }
        params = {"message": message, "configuration": {"historyLength": 0}}
        return _ENC.encode({"jsonrpc": "2.0", "id": self._ids, "method": method, "params": params})

    async def run(self, progress: Callable[[LoadRun], None] | None = None) -> float:
        """Send for `duration_s`, then wait for answers (up to `timeout_s`); the window length."""
        inbox_sub = None
        if self.plan.stream:
            prefix = f"_INBOX.lg{self.run_id}"
            inbox_sub = await self.nc.subscribe(f"{prefix}.*", cb=self._on_stream_msg)
        plan = self.plan
        self.started = time.monotonic()
        next_at = self.started
        end = self.started + plan.duration_s
        last_progress = 0.0
        try:
            while True:
                next_at += self.rng.expovariate(plan.rate)
                if next_at >= end:
                    break
                delay = next_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                user = self.rng.randrange(plan.users)
                task = asyncio.ensure_future(self._one(user, next_at))
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)
                now = time.monotonic()
                if progress is not None and now - last_progress >= 0.2:
                    last_progress = now
                    progress(self)
            self.arrivals_done = time.monotonic()
            while self._pending:
                if progress is not None:
                    progress(self)
                await asyncio.wait(set(self._pending), timeout=0.2)
        finally:
            for task in list(self._pending):
                task.cancel()
            await asyncio.gather(*self._pending, return_exceptions=True)
            if inbox_sub is not None:
                await inbox_sub.unsubscribe()
        if progress is not None:
            progress(self)
        return plan.duration_s

    async def _one(self, user: int, scheduled: float) -> None:
        t = self.tally
        t.sent += 1
        t.inflight += 1
        t.peak_inflight = max(t.peak_inflight, t.inflight)
        headers = self.headers[user % len(self.headers)]
        try:
            if self.plan.stream:
                kind = await self._stream(self._body(user), headers, scheduled)
            else:
                kind = await self._send(self._body(user), headers)
        except (NatsTimeout, TimeoutError):
            kind = "timeout"
        except NoRespondersError:
            kind = "no_responders"
        except Exception as exc:  # a load generator reports, it does not crash
            kind = f"client_{type(exc).__name__}"
        finally:
            t.inflight -= 1
        if kind == "ok":
            t.ok += 1
            t.latencies_s.append(time.monotonic() - scheduled)
        else:
            t.errors[kind] += 1

    async def _send(self, body: bytes, headers: dict[str, str]) -> str:
        msg = await request(
            self.nc, self.subject, body, timeout_s=self.plan.timeout_s, headers=headers
        )
        kind = _kind(msg)
        return "task_unfinished" if kind == "working" else kind

    async def _stream(self, body: bytes, headers: dict[str, str], scheduled: float) -> str:
        inbox = f"_INBOX.lg{self.run_id}.{self._ids}"
        queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._streams[inbox] = queue
        last = "no_events"
        retries = iter(NO_RESPONDER_RETRIES_S)
        try:
            await self.nc.publish(self.subject, body, reply=inbox, headers=headers)
            first = True
            async with asyncio.timeout(self.plan.timeout_s):
                while True:
                    msg = await queue.get()
                    hdrs = msg.headers or {}
                    if hdrs.get(HEADER_STREAM_END) == "true":
                        return last
                    if hdrs.get("Status") == "503":  # nobody got it: safe to send again
                        pause = next(retries, None)
                        if pause is None or not first:
                            return "no_responders"
                        await asyncio.sleep(pause)
                        await self.nc.publish(self.subject, body, reply=inbox, headers=headers)
                        continue
                    if first:
                        first = False
                        self.tally.first_event_s.append(time.monotonic() - scheduled)
                    last = _kind(msg)
                    if last not in ("ok", "working"):
                        return last
        finally:
            self._streams.pop(inbox, None)

    async def _on_stream_msg(self, msg: Msg) -> None:
        queue = self._streams.get(msg.subject)
        if queue is not None:
            queue.put_nowait(msg)


def _kind(msg: Msg) -> str:
    """`ok` for a completed task, `working` mid-stream, else the error's kind."""
    if (msg.headers or {}).get("Status") == "503":
        return "no_responders"
    try:
        reply = _DEC.decode(msg.data)
    except UNDECODABLE:
        return "bad_reply"
    if reply.error is not None:
        return error_kind(reply.error.code)
    result = reply.result
    if result is None:
        return "bad_reply"
    state = ""
    if result.task is not None:
        state = result.task.status.state
    elif result.status_update is not None:
        state = result.status_update.status.state
    if state == GOOD:
        return "ok"
    if state in ("TASK_STATE_FAILED", "TASK_STATE_CANCELED", "TASK_STATE_REJECTED"):
        return "task_" + state.removeprefix("TASK_STATE_").lower()
    return "working"


async def connect(url: str) -> Client:
    """A connection for load: large pending buffers, no reconnect storms."""

    async def quiet(_exc: Exception) -> None:
        """No traceback per failed attempt (nats-py's default); the caller says it once."""

    return await nats.connect(
        url,
        name="fleet-loadgen",
        connect_timeout=2,
        pending_size=256 * 1024 * 1024,
        max_reconnect_attempts=3,
        allow_reconnect=False,
        error_cb=quiet,
    )
